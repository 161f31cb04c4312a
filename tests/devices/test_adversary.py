"""The write path tried as an adversary would, on real loop devices and mounts.

Each test is one finding: events in an unusual order (a second writer during the
read-back, swapped arguments, a loop stacked on the target, a path swapped between
the checks and the write, a FIFO as input ...). Each checks that the device, file or
mount involved is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, random_file, read_dev, run
from tests.devices.test_cli import ndjson, one_line_error, usbwriter
from tests.helpers.throttle import CGROUP_ROOT, blkio_group, enter
from usbwriter import jobs
from usbwriter.errors import Refused

pytestmark = ROOT_ONLY


def digest(path: str | Path, n: int | None = None) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read() if n is None else f.read(n)).hexdigest()


def mount_ids() -> set[tuple[str, str]]:
    """(source, mountpoint) of every mount now."""
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.add((fields[sep + 2], fields[4]))
    return out


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    """A small bootable image (BIOS + UEFI), a copy of the project's test image."""
    from tests.helpers.images import build_image

    copy = tmp_path / "grub-hybrid.iso"
    copy.write_bytes(build_image("grub-hybrid").read_bytes())
    return copy


# 1 ---------------------------------------------------------------------------------------


def test_swapped_arguments_leave_the_file_alone(loop: LoopFactory, iso: Path) -> None:
    dev = loop(16 * MiB)
    assert usbwriter("--image", str(iso), "--device", dev, "--yes").returncode == 0
    copy = iso.parent / "debian.iso"
    copy.write_bytes(iso.read_bytes())
    before, size = digest(copy), copy.stat().st_size
    p = usbwriter("--image", dev, "--device", str(copy), "--yes")
    assert p.returncode == 4, p.stderr
    assert "swapped" in one_line_error(p.stderr)
    assert (digest(copy), copy.stat().st_size) == (before, size)
    # Even with --to-file: the image is a drive, the target a file.
    p = usbwriter("--image", dev, "--device", str(copy), "--yes", "--to-file")
    assert p.returncode == 4 and digest(copy) == before


def test_regular_file_target_needs_to_file(tmp_path: Path, iso: Path) -> None:
    conf = tmp_path / "some.conf"
    conf.write_text("keep me\n")
    p = usbwriter("--image", str(iso), "--device", str(conf), "--yes")
    assert p.returncode == 4
    assert "--to-file" in one_line_error(p.stderr)
    assert conf.read_text() == "keep me\n"
    out = tmp_path / "disk.img"
    p = usbwriter("--image", str(iso), "--device", str(out), "--yes", "--to-file")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == iso.read_bytes()


# 2 ---------------------------------------------------------------------------------------


@pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller")
def test_second_writer_during_read_back_is_refused(loop: LoopFactory, tmp_path: Path) -> None:
    a = random_file(tmp_path / "a.img", 40 * MiB, seed=1)
    b = random_file(tmp_path / "b.img", 8 * MiB, seed=2)
    dev = loop(64 * MiB)
    with blkio_group(dev, 400_000_000, 10_000_000) as group:  # reading back takes ~4 s
        proc = subprocess.Popen(
            [sys.executable, "-m", "usbwriter", "--image", str(a), "--device", dev,
             "--yes", "--force", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, preexec_fn=lambda: enter(group),
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                e = json.loads(line)
                if e["event"] == "progress" and e["phase"] == "verify" and e["done"] > 0:
                    break
            os.kill(proc.pid, signal.SIGSTOP)
            second = usbwriter("--image", str(b), "--device", dev, "--yes", "--force")
            verify = usbwriter("verify", "--image", str(b), "--device", dev)
            os.kill(proc.pid, signal.SIGCONT)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert second.returncode == 4, second.stderr
    assert "busy" in one_line_error(second.stderr)
    assert verify.returncode == 4, verify.stderr
    assert proc.returncode == 0, err
    assert ndjson(out)[-1]["verified"] is True
    assert read_dev(dev, 0, 40 * MiB) == a.read_bytes()


# 3 ---------------------------------------------------------------------------------------


def test_loop_stacked_on_the_target_is_refused(
    loop: LoopFactory, tmp_path: Path, iso: Path, cleanup: list[list[str]]
) -> None:
    dev = loop(32 * MiB)
    upper = run(["losetup", "-f", "--show", dev]).stdout.strip()
    cleanup.append(["losetup", "-d", upper])
    run(["mkfs.ext4", "-q", "-F", upper])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", upper, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    (mnt / "data.txt").write_text("precious\n")
    os.sync()
    before = digest(dev)
    p = usbwriter("--image", str(iso), "--device", dev, "--yes")
    assert p.returncode == 4, p.stderr
    assert upper in one_line_error(p.stderr)
    listed = json.loads(usbwriter("list", "--all", "--json").stdout)
    row = next(d for d in listed if d["path"] == dev)
    assert not row["eligible"] and any(upper in r for r in row["reasons"])
    assert digest(dev) == before
    assert (mnt / "data.txt").read_text() == "precious\n"


# 4 ---------------------------------------------------------------------------------------


def test_symlink_retargeted_after_the_plan_writes_the_device_chosen(
    loop: LoopFactory, tmp_path: Path, iso: Path
) -> None:
    chosen, other = loop(16 * MiB), loop(16 * MiB)
    fill(other, 16 * MiB)
    link = tmp_path / "stick"
    link.symlink_to(chosen)
    plan = jobs.plan(jobs.Request(str(iso), str(link)))
    assert plan.ready, plan.blockers
    link.unlink()
    link.symlink_to(other)
    jobs.run(plan)
    assert read_dev(chosen, 0, iso.stat().st_size) == iso.read_bytes()
    assert read_dev(other, 0, MiB) == b"\xaa" * MiB


@pytest.mark.parametrize("swap", ["symlink", "other-node"])
def test_node_replaced_after_the_plan_is_refused(
    loop: LoopFactory, tmp_path: Path, iso: Path, swap: str
) -> None:
    chosen, other = loop(16 * MiB), loop(16 * MiB)
    fill(other, 16 * MiB)

    def node_for(dev: str, path: Path) -> None:
        rdev = os.stat(dev).st_rdev
        os.mknod(path, 0o600 | stat.S_IFBLK, rdev)

    node = tmp_path / "node"
    node_for(chosen, node)
    plan = jobs.plan(jobs.Request(str(iso), str(node)))
    assert plan.ready, plan.blockers
    node.unlink()
    if swap == "symlink":
        node.symlink_to(other)
    else:
        node_for(other, node)
    with pytest.raises(Refused):
        jobs.run(plan)
    assert read_dev(other, 0, MiB) == b"\xaa" * MiB
    assert read_dev(chosen, 0, MiB) == bytes(MiB)


def test_file_target_replaced_after_the_plan_is_refused(tmp_path: Path, iso: Path) -> None:
    target = tmp_path / "disk.img"
    target.write_bytes(b"old" * 1000)
    plan = jobs.plan(jobs.Request(str(iso), str(target), to_file=True))
    assert plan.ready, plan.blockers
    target.rename(tmp_path / "disk.img.old")
    target.write_bytes(b"new" * 1000)
    with pytest.raises(Refused, match="not the file that was chosen"):
        jobs.run(plan)
    assert target.read_bytes() == b"new" * 1000


# 5 and 6 ---------------------------------------------------------------------------------


def test_unmount_refuses_with_another_mount_stacked_on_top(
    mounted_ext4: tuple[str, Path], tmp_path: Path, iso: Path, cleanup: list[list[str]]
) -> None:
    dev, mnt = mounted_ext4
    other = tmp_path / "other"
    other.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=1M", "usbwriter-other", str(other)])
    cleanup.append(["umount", str(other)])
    run(["mount", "--bind", str(other), str(mnt)])
    cleanup.append(["umount", str(mnt)])
    before, mounts = digest(dev), mount_ids()
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--unmount")
    assert p.returncode == 4, p.stderr
    assert "mounted on top" in one_line_error(p.stderr)
    assert mount_ids() == mounts
    assert digest(dev) == before


def test_refused_image_leaves_the_drive_mounted(
    mounted_ext4: tuple[str, Path], tmp_path: Path
) -> None:
    dev, _ = mounted_ext4
    data = random_file(tmp_path / "data.bin", 2 * MiB)  # boots on nothing
    mounts = mount_ids()
    p = usbwriter("--image", str(data), "--device", dev, "--yes", "--unmount")
    assert p.returncode == 4, p.stderr
    assert "--force" in one_line_error(p.stderr)
    assert mount_ids() == mounts


def test_unmount_then_write(mounted_ext4: tuple[str, Path], iso: Path) -> None:
    dev, mnt = mounted_ext4
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--unmount", "--json")
    assert p.returncode == 0, p.stderr
    assert ndjson(p.stdout)[-1]["unmounted"] == [str(mnt)]
    assert not any(mp == str(mnt) for _, mp in mount_ids())


# 7 ---------------------------------------------------------------------------------------


def test_overlap_of_image_and_target_is_refused_both_ways(
    loop: LoopFactory, tmp_path: Path, iso: Path, cleanup: list[list[str]]
) -> None:
    lower = loop(16 * MiB)
    assert usbwriter("--image", str(iso), "--device", lower, "--yes").returncode == 0
    upper = run(["losetup", "-f", "--show", lower]).stdout.strip()
    cleanup.append(["losetup", "-d", upper])
    before = digest(lower)
    for image, target in ((upper, lower), (lower, upper)):
        p = usbwriter("--image", image, "--device", target, "--yes", "--force")
        assert p.returncode == 4, (image, target, p.stderr)
        assert digest(lower) == before
    # The target is a loop device over the image file.
    over_image = loop(0, backing=iso)
    image_before = digest(iso)
    p = usbwriter("--image", str(iso), "--device", over_image, "--yes")
    assert p.returncode == 4 and "overlaps" in one_line_error(p.stderr)
    assert digest(iso) == image_before
    # The image is a loop device over the target file.
    target_file = tmp_path / "target_file.img"
    target_file.write_bytes(iso.read_bytes())
    over_target = loop(0, backing=target_file)
    p = usbwriter("--image", over_target, "--device", str(target_file), "--yes", "--to-file")
    assert p.returncode == 4 and digest(target_file) == image_before


def test_image_on_a_file_system_of_the_target_is_refused(
    mounted_ext4: tuple[str, Path], iso: Path
) -> None:
    dev, mnt = mounted_ext4
    inside = mnt / "image.iso"
    inside.write_bytes(iso.read_bytes())
    p = usbwriter("--image", str(inside), "--device", dev, "--yes", "--unmount")
    assert p.returncode == 4, p.stderr
    assert inside.read_bytes() == iso.read_bytes()


# 8 and 10 --------------------------------------------------------------------------------


def test_fifos_are_refused_at_once(loop: LoopFactory, tmp_path: Path, iso: Path) -> None:
    dev = loop(16 * MiB)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    runs = [
        ("--image", str(fifo), "--device", dev, "--yes"),
        ("inspect", str(fifo)),
        ("verify", "--image", str(iso), "--device", str(fifo)),
        ("verify", "--image", str(fifo), "--device", dev),
        ("--image", str(iso), "--device", str(fifo), "--yes"),
    ]
    for args in runs:
        start = time.monotonic()
        p = usbwriter(*args, timeout=20)
        assert time.monotonic() - start < 10
        assert p.returncode == 2, (args, p.stderr)
        assert "FIFO" in one_line_error(p.stderr)


def test_one_exit_code_table_for_every_command(
    loop: LoopFactory, tmp_path: Path, iso: Path
) -> None:
    dev = loop(16 * MiB)
    missing = str(tmp_path / "missing.iso")
    for args in (
        ("--image", missing, "--device", dev, "--yes"),
        ("inspect", missing),
        ("verify", "--image", missing, "--device", dev),
        ("verify", "--image", str(iso), "--device", str(tmp_path)),
        ("verify", "--image", str(iso), "--device", str(tmp_path / "no-such-device")),
        ("--image", str(iso), "--device", str(tmp_path / "no-such-device"), "--yes"),
    ):
        p = usbwriter(*args)
        assert p.returncode == 2, (args, p.stderr)
        one_line_error(p.stderr)
    # Permission denied is a usage error (2) for every command, not 4 here and 1 there.
    image = tmp_path / "readable.iso"
    image.write_bytes(iso.read_bytes())
    os.chmod(tmp_path, 0o755)
    os.chmod(image, 0o644)

    repo = Path(__file__).resolve().parents[2]
    for args in (
        ("--image", str(image), "--device", dev, "--yes"),
        ("verify", "--image", str(image), "--device", dev),
    ):
        p = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-m", "usbwriter", *args],
            capture_output=True, text=True, cwd="/", timeout=60, check=False,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(repo), "LC_ALL": "C"},
        )  # fmt: skip
        assert p.returncode == 2, (args, p.stderr)
        assert "permission denied" in one_line_error(p.stderr)


def test_verify_holds_the_drive(loop: Callable[..., str], tmp_path: Path, iso: Path) -> None:
    """While a drive is held (here by a writer), verify does not read it: busy, exit 4."""
    dev = loop(16 * MiB)
    fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
    try:
        p = usbwriter("verify", "--image", str(iso), "--device", dev)
    finally:
        os.close(fd)
    assert p.returncode == 4 and "busy" in one_line_error(p.stderr)


@pytest.mark.parametrize("change", ["truncated", "grown", "replaced"])
def test_image_changed_after_the_plan_is_refused(
    loop: LoopFactory, tmp_path: Path, iso: Path, change: str
) -> None:
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    plan = jobs.plan(jobs.Request(str(iso), dev))
    assert plan.ready, plan.blockers
    if change == "truncated":
        os.truncate(iso, iso.stat().st_size // 2)
    elif change == "grown":
        with open(iso, "ab") as f:
            f.write(b"x" * 4096)
    else:
        data = iso.read_bytes()
        iso.rename(tmp_path / "old.iso")
        iso.write_bytes(data)
    with pytest.raises(Refused, match="changed since it was checked"):
        jobs.run(plan)
    assert read_dev(dev, 0, MiB) == b"\xaa" * MiB


def test_image_truncated_during_the_write_wipes_the_head(loop: LoopFactory, tmp_path: Path) -> None:
    from usbwriter.errors import BadImage

    image = random_file(tmp_path / "big.img", 24 * MiB)
    dev = loop(32 * MiB)
    plan = jobs.plan(jobs.Request(str(image), dev, force=True))
    assert plan.ready, plan.blockers

    def shrink(p: object) -> None:
        if image.stat().st_size > 6 * MiB:
            os.truncate(image, 6 * MiB)

    with pytest.raises(BadImage, match="first MiB was wiped") as e:
        jobs.run(plan, progress=shrink)
    assert e.value.exit_code == 1 and e.value.offset is not None
    assert read_dev(dev, 0, MiB) == bytes(MiB)

"""The job's refusals and identity pinning on real loop devices, mounts and the root disk.

Every case is a plan on the real device: a refusal is a blocker with its exit code and
words; an accepted target is a ready plan whose identity pins the device. Changes made
after the plan (a swapped backing file, a resized or detached loop, a retargeted link,
a mount appearing) are caught when the plan is run, before the first byte is written.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LoopFactory, fill, random_file, read_dev, run
from usbwriter import jobs
from usbwriter.devices import parse_mountinfo
from usbwriter.errors import BadInput, Refused, UsbWriterError
from usbwriter.identity import Identity
from usbwriter.jobs import Blocker, Plan, Request

pytestmark = pytest.mark.root

MiB = 1024 * 1024


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def mountpoints() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {m.mountpoint for m in parse_mountinfo(f.read())}


def is_mounted(mountpoint: Path) -> bool:
    return str(mountpoint) in mountpoints()


def plan(image: Path | str, device: Path | str, **kw: Any) -> Plan:
    """A plan with --force: a test image that will not boot is not what is tested here."""
    kw.setdefault("force", True)
    return jobs.plan(Request(str(image), str(device), **kw))


def refusal(p: Plan) -> Blocker:
    """The plan's one blocker (no other may hide behind it)."""
    assert not p.ready
    assert len(p.blockers) == 1, [b.message for b in p.blockers]
    (blocker,) = p.blockers
    assert not blocker.overridable
    assert "\n" not in blocker.message
    return blocker


def refused(p: Plan, pattern: str, code: int = 4) -> UsbWriterError:
    """The plan is blocked with exit code CODE and words matching PATTERN, and running it
    raises that same error."""
    blocker = refusal(p)
    assert blocker.exit_code == code, blocker.message
    with pytest.raises(UsbWriterError, match=pattern) as e:
        jobs.run(p)
    assert e.value is blocker.error
    return blocker.error


def test_root_disk_is_refused(tmp_path: Path) -> None:
    if not os.path.exists("/dev/vda"):
        pytest.skip("no /dev/vda on this machine")
    image = sparse(tmp_path / "image.iso", MiB)
    before = mountpoints()
    error = refused(plan(image, "/dev/vda"), r"^/dev/vda .*system disk: holds /")
    assert isinstance(error, Refused) and error.path == "/dev/vda"
    # not even with unmount: nothing would be unmounted, nothing is written
    p = plan(image, "/dev/vda", unmount=True)
    assert "system disk" in refusal(p).message and p.unmounts == ()
    with pytest.raises(Refused, match="system disk"):
        jobs.run(p)
    assert mountpoints() == before


def test_missing_and_odd_paths(tmp_path: Path) -> None:
    image = sparse(tmp_path / "image.iso", MiB)
    missing = tmp_path / "nope"
    error = refused(plan(image, missing), "no such device", code=2)
    assert isinstance(error, BadInput) and error.path == str(missing)
    assert not missing.exists()
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "gone")
    refused(plan(image, broken), "broken: no such device", code=2)
    refused(plan(image, "/dev/null"), r"^/dev/null: is a character device, not a drive$", code=2)
    refused(plan(image, tmp_path), "is a directory, not a drive", code=2)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(plan(image, fifo), r"is a FIFO \(named pipe\), not a drive", code=2)
    # the same kinds given as the image (to a target that would do)
    out = tmp_path / "out.img"
    refused(plan(missing, out, to_file=True), "nope: no such file", code=2)
    refused(plan(fifo, out, to_file=True), r"fifo: is a FIFO .*not an image", code=2)
    refused(plan(tmp_path, out, to_file=True), "is a directory, not an image", code=2)
    assert not out.exists()


def test_partition_node_is_refused_with_the_whole_disk_named(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    img = sparse(tmp_path / "p.img", 32 * MiB)
    run(["sfdisk", "-q", str(img)], input="label: dos\n\nsize=8M\n")
    dev = loop(0, backing=img)
    run(["partx", "-a", dev])
    cleanup.append(["partx", "-d", dev])
    image = sparse(tmp_path / "image.iso", MiB)
    refused(plan(image, f"{dev}p1"), f"^{dev}p1: is a partition; write to the whole disk {dev}$")


def test_loop_is_accepted_and_pinned(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    image = random_file(tmp_path / "image.iso", MiB)
    p = plan(image, dev)
    assert p.ready and p.unmounts == ()
    ident = p.identity
    assert ident is not None
    assert (ident.path, ident.kind, ident.size) == (dev, "block", 16 * MiB)
    st = os.stat(dev)
    assert (ident.major, ident.minor) == (os.major(st.st_rdev), os.minor(st.st_rdev))
    name = os.path.basename(dev)
    assert ident.diskseq == int(Path(f"/sys/block/{name}/diskseq").read_text())
    backing = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    assert ident.backing_file == backing
    assert ident.backing_inode == os.stat(backing).st_ino
    assert ident.unmounted == ()
    data = json.loads(json.dumps(ident.to_dict()))
    assert data["path"] == dev and data["diskseq"] == ident.diskseq
    # nothing changed: the run finds the same device on its descriptor and writes it
    receipt = jobs.run(p)
    assert receipt.verified
    assert receipt.device["diskseq"] == ident.diskseq
    assert read_dev(dev, 0, MiB) == image.read_bytes()


def test_symlinked_target_is_resolved_once(loop: Callable[..., str], tmp_path: Path) -> None:
    a, b = loop(8 * MiB), loop(8 * MiB)
    fill(a, 2 * MiB)
    fill(b, 2 * MiB)
    link = tmp_path / "usb-Stick_1234-0:0"
    link.symlink_to(a)
    image = random_file(tmp_path / "image.iso", MiB)
    p = plan(image, link)
    assert p.ready and p.identity is not None
    assert p.identity.path == a and p.identity.requested == str(link)
    assert p.target.node == a
    link.unlink()
    link.symlink_to(b)
    # the run opens the device that was resolved and pinned, never the link's new target
    receipt = jobs.run(p)
    assert receipt.verified and receipt.device["path"] == str(link)
    assert receipt.device["major"] == p.identity.major
    assert receipt.device["minor"] == p.identity.minor
    assert read_dev(a, 0, MiB) == image.read_bytes()
    assert read_dev(b, 0, 2 * MiB) == b"\xaa" * (2 * MiB)


def test_read_only_loop_is_refused(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(8 * MiB, read_only=True)
    image = sparse(tmp_path / "image.iso", MiB)
    refused(plan(image, dev), f"^{dev} .*refused: read-only$")


def test_loop_over_the_image_itself_is_refused(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.iso", 8 * MiB)
    before = image.read_bytes()
    dev = loop(0, backing=image)
    refused(plan(image, dev), f"^{dev}: refused: it overlaps the image .*the image file itself")
    assert image.read_bytes() == before


def test_disk_holding_the_image_is_refused(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = loop(32 * MiB)
    run(["mkfs.ext4", "-q", dev])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    image = mnt / "image.iso"
    image.write_bytes(b"x" * 4096)
    overlap = f"^{dev}: refused: it overlaps the image {image} \\(both on {dev}[,)]"
    for unmount in (False, True):
        p = plan(image, dev, unmount=unmount)
        assert p.blockers[0].exit_code == 4
        assert p.blockers[0].message.startswith(f"{dev}: refused: it overlaps the image")
        with pytest.raises(Refused, match=overlap):
            jobs.run(p)
        assert is_mounted(mnt)  # refused before anything was unmounted
    assert image.read_bytes() == b"x" * 4096


def partitioned(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]], table: str
) -> str:
    img = sparse(tmp_path / "disk.img", 64 * MiB)
    run(["sfdisk", "-q", str(img)], input=table)
    dev = loop(0, backing=img)
    run(["partx", "-a", dev])
    cleanup.append(["partx", "-d", dev])
    return dev


def test_mounted_partitions_refused_then_unmounted(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = partitioned(loop, tmp_path, cleanup, "label: gpt\n\nsize=24M\nsize=24M\n")
    mounts = []
    for n in (1, 2):
        run(["mkfs.ext4", "-q", f"{dev}p{n}"])
        mnt = tmp_path / f"mnt {n}"  # a space: mountinfo escapes it
        mnt.mkdir()
        run(["mount", f"{dev}p{n}", str(mnt)])
        cleanup.append(["umount", str(mnt)])
        mounts.append(mnt)
    # a second mount nested inside the first: unmounted deepest first
    nested = mounts[0] / "nested"
    nested.mkdir()
    run(["mount", f"{dev}p2", str(nested)])
    cleanup.append(["umount", str(nested)])
    every = [*mounts, nested]
    image = random_file(tmp_path / "image.iso", 2 * MiB)

    msg = refused(plan(image, dev), "pass --unmount$").message
    assert msg.startswith(f"{dev}: mounted: ") and msg.endswith("pass --unmount")
    assert f"{dev}p1 on {mounts[0]}" in msg and f"{dev}p2 on {mounts[1]}" in msg
    assert all(is_mounted(m) for m in every)

    p = plan(image, dev, unmount=True)
    assert p.ready
    assert set(p.unmount_points) == {str(m) for m in every}
    assert p.unmount_points.index(str(nested)) < p.unmount_points.index(str(mounts[0]))
    assert [m.source for m in p.unmounts].count(f"{dev}p2") == 2
    assert any(w.code == "unmount" and "will unmount first: " in w.message for w in p.warnings)
    assert all(is_mounted(m) for m in every)  # planning unmounted nothing

    told: list[str] = []
    receipt = jobs.run(p, notify=told.append)
    assert receipt.verified
    assert receipt.unmounted == p.unmount_points
    assert receipt.device["unmounted"] == list(p.unmount_points)
    assert len(told) == 3 and all(t.startswith("unmounted ") for t in told)
    assert not any(is_mounted(m) for m in every)
    assert read_dev(dev, 0, 2 * MiB) == image.read_bytes()


def test_mount_appearing_after_the_unmounts_is_refused(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = partitioned(loop, tmp_path, cleanup, "label: gpt\n\nsize=24M\n")
    run(["mkfs.ext4", "-q", f"{dev}p1"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", f"{dev}p1", str(mnt)])
    cleanup.append(["umount", str(mnt)])
    image = random_file(tmp_path / "image.iso", 2 * MiB)
    p = plan(image, dev, unmount=True)
    assert p.ready and p.unmount_points == (str(mnt),)
    # the partition table and its backup: the first and last MiB, written first by a run
    head, tail = read_dev(dev, 0, MiB), read_dev(dev, 63 * MiB, MiB)

    def automounter(text: str) -> None:  # strikes right after the planned unmount
        assert not is_mounted(mnt)
        run(["mount", f"{dev}p1", str(mnt)])

    with pytest.raises(Refused, match=f"^{dev}: .*(busy|mounted since it was chosen)") as e:
        jobs.run(p, notify=automounter)
    assert e.value.exit_code == 4
    assert is_mounted(mnt)
    assert (read_dev(dev, 0, MiB), read_dev(dev, 63 * MiB, MiB)) == (head, tail)


def test_busy_mount_cannot_be_unmounted(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = loop(16 * MiB)
    run(["mkfs.ext4", "-q", dev])
    mnt = tmp_path / "busy"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    image = random_file(tmp_path / "image.iso", MiB)
    with open(mnt / "open-file", "w"):
        p = plan(image, dev, unmount=True)
        assert p.ready and p.unmount_points == (str(mnt),)
        before = read_dev(dev, 0, 2 * MiB)
        with pytest.raises(Refused, match=f"^{mnt}: could not unmount: .*busy") as e:
            jobs.run(p)
        assert e.value.exit_code == 4
        assert is_mounted(mnt)
        assert read_dev(dev, 0, 2 * MiB) == before


def test_swapped_backing_file_is_detected(loop: LoopFactory, tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    image = random_file(tmp_path / "image.iso", MiB)
    p = plan(image, dev)
    assert p.ready
    other = tmp_path / "other.img"
    other.write_bytes(b"\x55" * (16 * MiB))
    loop.detach(dev)
    # attach the other file to the very same node (another process may take it first)
    proc = subprocess.run(["losetup", dev, str(other)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"{dev} was taken by another process between detach and attach")
    loop.devices.append(dev)
    with pytest.raises(Refused) as e:
        jobs.run(p)
    msg = e.value.message
    assert e.value.exit_code == 4
    assert msg.startswith(f"{dev}: ")
    assert "disk sequence" in msg or (f"-> {other}" in msg and "backing file inode" in msg)
    assert msg.endswith("choose the device again")
    assert read_dev(dev, 0, 16 * MiB) == b"\x55" * (16 * MiB)


def test_resized_loop_is_detected(loop: LoopFactory, tmp_path: Path) -> None:
    img = sparse(tmp_path / "grow.img", 16 * MiB)
    dev = loop(0, backing=img)
    fill(dev, 16 * MiB)
    image = random_file(tmp_path / "image.iso", MiB)
    p = plan(image, dev)
    assert p.ready
    os.truncate(img, 32 * MiB)
    run(["losetup", "-c", dev])
    with pytest.raises(Refused, match=f"{16 * MiB} -> {32 * MiB} bytes") as e:
        jobs.run(p)
    assert e.value.exit_code == 4
    assert read_dev(dev, 0, 16 * MiB) == b"\xaa" * (16 * MiB)
    assert read_dev(dev, 16 * MiB, 16 * MiB) == bytes(16 * MiB)


def test_detached_target_is_refused_when_run(loop: LoopFactory, tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    backing = loop.tmp / f"stick{loop.count}.img"
    image = random_file(tmp_path / "image.iso", MiB)
    p = plan(image, dev)
    assert p.ready
    loop.detach(dev)
    with pytest.raises(Refused, match="choose the device again") as e:
        jobs.run(p)
    assert e.value.exit_code == 4
    assert backing.read_bytes() == bytes(16 * MiB)


def test_regular_file_target(loop: Callable[..., str], tmp_path: Path) -> None:
    target = sparse(tmp_path / "vm-disk.img", 64 * MiB)
    image = random_file(tmp_path / "image.iso", MiB)

    # a regular file is a target only with --to-file
    refused(plan(image, target), "is a regular file, not a drive.*add --to-file")
    assert target.read_bytes() == bytes(64 * MiB)

    p = plan(image, target, to_file=True)
    assert p.ready and p.identity is not None
    ident = p.identity
    st = os.stat(target)
    assert ident.kind == "file" and ident.size == 64 * MiB
    assert (ident.file_device, ident.file_inode) == (st.st_dev, st.st_ino)
    assert json.loads(json.dumps(ident.to_dict()))["kind"] == "file"
    receipt = jobs.run(p)
    assert receipt.verified and receipt.device["kind"] == "file"
    assert target.read_bytes()[:MiB] == image.read_bytes()

    # the image itself is not a target
    refused(plan(image, image, to_file=True), "overlaps the image .*the image file itself")

    # nor is any file when the image is a drive: --image and --device swapped?
    drive = loop(4 * MiB)
    refused(plan(drive, target, to_file=True), "swapped")
    refused(plan(drive, tmp_path / "new.img", to_file=True), "swapped")
    assert not (tmp_path / "new.img").exists()

    # the same name, another file: the run refuses it, the new file is unchanged
    p = plan(image, target, to_file=True)
    assert p.ready
    other = tmp_path / "other.img"
    other.write_bytes(b"\x55" * (64 * MiB))
    other.rename(target)
    with pytest.raises(Refused, match="not the file that was chosen") as e:
        jobs.run(p)
    assert e.value.exit_code == 4
    assert target.read_bytes() == b"\x55" * (64 * MiB)


def test_file_backing_a_mounted_loop_is_refused(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    img = sparse(tmp_path / "fs.img", 16 * MiB)
    run(["mkfs.ext4", "-q", str(img)])
    dev = loop(0, backing=img)
    mnt = tmp_path / "m"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    image = sparse(tmp_path / "image.iso", MiB)
    p = plan(image, img, to_file=True)
    assert not p.ready
    assert p.blockers[0].exit_code == 4
    assert dev in p.blockers[0].message


def test_identity_is_frozen() -> None:
    ident = Identity("/x", 1, 2, 3, 4, "s", None)
    with pytest.raises(AttributeError):
        ident.size = 5  # type: ignore[misc]

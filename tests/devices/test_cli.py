"""The command line, end to end, as a script would run it: real loop devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.conftest import ROOT_ONLY, MiB, fill, random_file, read_dev, run
from tests.helpers.terminal import run_on_terminal
from tests.helpers.throttle import CGROUP_ROOT, blkio_group, enter

pytestmark = ROOT_ONLY


def usbwriter(
    *args: str, preexec: Callable[[], None] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        preexec_fn=preexec,
        env=dict(os.environ, LC_ALL="C"),
    )


def ndjson(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def one_line_error(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.startswith("usbwriter: ")]
    assert "Traceback" not in stderr
    assert lines, stderr
    return lines[-1]


def test_write_json_receipt(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.img", 3 * MiB + 123)
    dev = loop(8 * MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json")
    assert p.returncode == 0, p.stderr
    events = ndjson(p.stdout)
    assert any(e["event"] == "progress" and e["phase"] == "write" for e in events)
    assert any(e["event"] == "progress" and e["phase"] == "verify" for e in events)
    r = events[-1]
    assert r["event"] == "result"
    assert r["verified"] is True
    assert r["mismatch_offset"] is None
    assert r["page_cache_bypassed"] is True
    assert r["image"]["size"] == image.stat().st_size
    assert r["image"]["blake3"] == blake3.blake3(image.read_bytes()).hexdigest()
    assert r["device_blake3"] == r["image"]["blake3"]
    assert r["device"]["path"] == dev
    assert r["device"]["major"] == 7
    assert r["device"]["size"] == 8 * MiB
    assert r["bytes_written"] == image.stat().st_size
    for key in ("write_seconds", "write_mbps", "verify_seconds", "verify_mbps"):
        assert r[key] >= 0
    assert read_dev(dev, 0, image.stat().st_size) == image.read_bytes()


def test_write_plain_receipt_and_progress(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.img", 2 * MiB)
    dev = loop(8 * MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    assert p.returncode == 0, p.stderr
    assert "Written and verified" in p.stdout
    assert "page cache bypassed" in p.stdout
    assert "Writing" in p.stderr and "Verifying" in p.stderr  # plain progress lines
    assert "safe to remove" in p.stderr


def test_verify_finds_flipped_byte_exit_3(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.img", 5 * MiB + 1)
    dev = loop(8 * MiB)
    assert usbwriter("--image", str(image), "--device", dev, "--yes", "--force").returncode == 0
    ok = usbwriter("verify", "--image", str(image), "--device", dev, "--json")
    assert ok.returncode == 0, ok.stderr
    assert ndjson(ok.stdout)[-1]["verified"] is True
    offset = 4 * MiB + 4097
    with open(dev, "r+b", buffering=0) as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x80]))
        os.fsync(f.fileno())
    bad = usbwriter("verify", "--image", str(image), "--device", dev, "--json")
    assert bad.returncode == 3
    assert ndjson(bad.stdout)[-1]["mismatch_offset"] == offset
    assert f"at byte {offset}" in one_line_error(bad.stderr)


def test_too_large_image_refused_exit_4(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(4 * MiB)
    fill(dev, 4 * MiB)
    image = random_file(tmp_path / "big.img", 5 * MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json")
    assert p.returncode == 4
    err = ndjson(p.stdout)[-1]
    assert err["event"] == "error" and err["code"] == "refused"
    assert "does not fit" in one_line_error(p.stderr)
    assert read_dev(dev, 0, 4 * MiB) == b"\xaa" * (4 * MiB)


def test_mounted_device_refused_exit_4(mounted_ext4: tuple[str, Path], tmp_path: Path) -> None:
    dev, mnt = mounted_ext4
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    assert p.returncode == 4
    assert str(mnt) in one_line_error(p.stderr)


def test_unmount_flag_unmounts_then_writes(mounted_ext4: tuple[str, Path], tmp_path: Path) -> None:
    dev, mnt = mounted_ext4
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--unmount")
    assert p.returncode == 0, p.stderr
    assert f"unmounted {dev} from {mnt}" in p.stderr


def test_read_only_device_refused(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(8 * MiB, read_only=True)
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    assert p.returncode == 4
    assert "read-only" in one_line_error(p.stderr)


def test_no_yes_without_terminal_refuses(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(8 * MiB)
    fill(dev, 2 * MiB)
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--force")
    assert p.returncode == 4
    assert "--yes" in one_line_error(p.stderr)
    assert read_dev(dev, 0, 2 * MiB) == b"\xaa" * (2 * MiB)


def test_root_disk_is_refused_as_system_disk(tmp_path: Path) -> None:
    """Without --yes: even if the system-disk rule failed, nothing could be written."""
    root_dev = run(["findmnt", "-nvo", "SOURCE", "/"]).stdout.strip()
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", root_dev)
    assert p.returncode == 4
    assert "system" in one_line_error(p.stderr)


def test_partition_node_refused(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    run(["sfdisk", "-q", dev], input="label: dos\nstart=2048, size=8192, type=83\n")
    run(["partx", "-a", dev])
    try:
        image = random_file(tmp_path / "image.img", MiB)
        p = usbwriter("--image", str(image), "--device", f"{dev}p1", "--yes", "--force")
        assert p.returncode == 4
        assert dev in one_line_error(p.stderr)  # the hint names the whole disk
    finally:
        subprocess.run(["partx", "-d", dev], check=False)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--device", "/dev/loop0", "--yes"], 2),
        (["--image", "/nonexistent.iso", "--device", "/dev/loop0", "--yes"], 2),
        (["--bogus"], 2),
        (["verify", "--image", "x.iso"], 2),
    ],
)
def test_usage_errors_exit_2(args: list[str], code: int) -> None:
    p = usbwriter(*args)
    assert p.returncode == code
    one_line_error(p.stderr)


def test_empty_image_is_bad_image_exit_1(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(8 * MiB)
    image = tmp_path / "empty.iso"
    image.touch()
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    assert p.returncode == 1
    assert str(image) in one_line_error(p.stderr)


@pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller")
def test_sigint_mid_write_exits_130_quickly(loop: Callable[..., str], tmp_path: Path) -> None:
    image = tmp_path / "large.img"
    random_file(image, 2 * MiB)
    with open(image, "r+b") as f:
        f.truncate(512 * MiB)  # sparse tail: reading it is fast, writing it is throttled
    dev = loop(600 * MiB)
    with blkio_group(dev, 40_000_000, 400_000_000) as group:
        proc = subprocess.Popen(
            [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", dev,
             "--yes", "--force", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, preexec_fn=lambda: enter(group),
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until writing is under way
            e = json.loads(line)
            if e["event"] == "progress" and e["phase"] == "write" and e["done"] > 16 * MiB:
                break
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        finally:
            proc.kill()
        took = time.monotonic() - sent
        rest = proc.stdout.read()
        err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 130, err
    assert took < 2.0, f"took {took:.2f} s to stop"
    assert ndjson(rest)[-1]["code"] == "interrupted"
    assert "first MiB was wiped" in one_line_error(err)
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_io_error_exit_1_names_offset(failing_loop: str, tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.img", 32 * MiB)
    p = usbwriter("--image", str(image), "--device", failing_loop, "--yes", "--force")
    assert p.returncode == 1
    line = one_line_error(p.stderr)
    assert "error while writing bytes" in line and failing_loop in line


@pytest.mark.parametrize(("answer", "code"), [(b"yes\n", 0), (b"no\n", 130)])
def test_terminal_confirmation_names_the_drive(
    loop: Callable[..., str], tmp_path: Path, answer: bytes, code: int
) -> None:
    image = random_file(tmp_path / "image.img", MiB)
    dev = loop(8 * MiB)
    fill(dev, 2 * MiB)
    argv = [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", dev, "--force"]
    rc, screen = run_on_terminal(argv, answer)
    assert rc == code, screen
    assert f"ALL DATA on {dev}" in screen and "8.0 MiB" in screen and "stick" in screen
    if code == 0:
        assert read_dev(dev, 0, MiB) == image.read_bytes()
        assert "ETA" in screen or "done" in screen  # the progress bar on the terminal
    else:
        assert "not confirmed; nothing was written" in screen
        assert read_dev(dev, 0, 2 * MiB) == b"\xaa" * (2 * MiB)


@pytest.mark.parametrize("kind", ["data-only", "random"])
def test_unbootable_image_needs_force(loop: Callable[..., str], tmp_path: Path, kind: str) -> None:
    from tests.helpers.images import build_image

    if kind == "random":  # no boot records at all
        image = random_file(tmp_path / "data.img", MiB)
        verdict = "boot records could not be read"
        why = "its boot records could not be read ("
    else:  # a real ISO 9660 volume with nothing to boot
        image = build_image(kind)
        verdict = "Boot: BIOS no, UEFI no"
        why = "it will not boot on BIOS or UEFI; "
    dev = loop(8 * MiB)
    fill(dev, 2 * MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--json")
    assert p.returncode == 4
    line = one_line_error(p.stderr)
    assert why in line and line.endswith("use --force to write it")
    assert verdict in p.stderr  # the verdict is printed first
    assert read_dev(dev, 0, 2 * MiB) == b"\xaa" * (2 * MiB)


def test_terminal_question_comes_after_the_plans_warnings(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """What a person says yes to is the plan: its warnings (here the bmap it writes by
    and the missing checksum) are on the screen before the question, not after it."""
    image = random_file(tmp_path / "image.img", 2 * MiB)
    bmap = tmp_path / "image.img.bmap"
    subprocess.run(["bmaptool", "create", "-o", str(bmap), str(image)], check=True)
    dev = loop(8 * MiB)
    argv = [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", dev, "--force"]
    rc, screen = run_on_terminal(argv, b"no\n")
    assert rc == 130, screen
    question = screen.index("Type 'yes' to continue")
    for words in (f"writing only the ranges mapped in {bmap}", "no checksum found"):
        assert words in screen, screen
        assert screen.index(words) < question, screen


@pytest.mark.parametrize(("answer", "code"), [(b"no\n", 130), (b"yes\n", 0)])
def test_unmount_waits_for_the_confirmation(
    mounted_ext4: tuple[str, Path], tmp_path: Path, answer: bytes, code: int
) -> None:
    dev, mnt = mounted_ext4
    image = random_file(tmp_path / "image.img", MiB)
    argv = [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", dev]
    rc, screen = run_on_terminal([*argv, "--force", "--unmount"], answer)
    assert rc == code, screen
    assert f"({mnt} will be unmounted first)" in " ".join(screen.split())
    assert os.path.ismount(mnt) == (code != 0)
    if code == 0:
        assert f"unmounted {dev} from {mnt}" in screen
        assert read_dev(dev, 0, MiB) == image.read_bytes()


# Near misses: a command line that is almost the write gets the right form, nothing more.


@pytest.mark.parametrize(
    "shape",
    [
        ["{img}", "{dev}"],
        ["{img}", "{dev}", "--yes"],
        ["write", "{img}", "{dev}"],
        ["write", "--image", "{img}", "--device", "{dev}"],
        ["{img}", "--device", "{dev}"],
        ["{img}", "-d", "{dev}", "--yes"],
        ["write", "{img}", "--device", "{dev}"],
    ],
)
def test_a_near_miss_gets_the_right_form(
    loop: Callable[..., str], tmp_path: Path, shape: list[str]
) -> None:
    dev = loop(16 * MiB)
    img = random_file(tmp_path / "disk.img", MiB)
    before = read_dev(dev, 0, 2 * MiB)
    args = [a.format(img=img, dev=dev) for a in shape]
    p = usbwriter(*args)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    yes = " --yes" if "--yes" in args else ""
    assert lines[0] == (
        f"usbwriter: to write {img} to {dev}: usbwriter --image {img} --device {dev}{yes}"
    )
    assert read_dev(dev, 0, 2 * MiB) == before  # nothing was written


def test_two_words_that_are_not_an_image_and_a_drive_are_a_plain_usage_error(
    tmp_path: Path,
) -> None:
    p = usbwriter("nosuchthing", "another", "--yes")
    assert p.returncode == 2, p.stderr
    assert "unrecognized arguments: another" in p.stderr
    assert "to write" not in p.stderr

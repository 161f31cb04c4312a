"""usbwriter backup on real loop devices. Read errors on a real drive (an optical drive
with failing sectors) are in tests/guest/test_guest_optical.py: this kernel has no
device-mapper to make failing sectors on the host."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import blake3
import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file, run

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]


def usbwriter(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*USBWRITER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def b3(path: Path | str) -> str:
    h = blake3.blake3()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return str(h.hexdigest())


def result(out: str) -> dict[str, object]:
    last: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return last


def wait_for(node: str) -> None:
    subprocess.run(["udevadm", "settle"], check=False, timeout=30)
    for _ in range(100):
        if os.path.exists(node):
            return
        time.sleep(0.05)
    raise AssertionError(f"{node} did not appear")


def leftovers(folder: Path) -> list[str]:
    return sorted(n for n in os.listdir(folder) if ".usbwriter-" in n)


@pytest.fixture
def stick(loop: LoopFactory, tmp_path: Path) -> tuple[str, Path]:
    """A 48 MiB loop device: 16 MiB of random data at the start and at 32 MiB, zeros
    between (xz compresses random data slowly: keep it small)."""
    backing = tmp_path / "stick.img"
    random_file(backing, 4 * MiB, seed=7)
    with open(backing, "r+b") as f:
        f.truncate(48 * MiB)
        f.seek(32 * MiB)
        f.write(random_file(tmp_path / "more", 4 * MiB, seed=8).read_bytes())
    return loop(0, backing=backing), backing


@pytest.mark.parametrize("suffix", ["", ".zst", ".xz", ".gz"])
def test_backup_equals_the_device(stick: tuple[str, Path], tmp_path: Path, suffix: str) -> None:
    dev, backing = stick
    out = tmp_path / f"backup.img{suffix}"
    done = usbwriter("backup", dev, "-o", str(out), "--json")
    assert done.returncode == 0, done.stderr
    receipt = result(done.stdout)
    assert receipt["size"] == 48 * MiB and receipt["size_from"] == "device"
    assert receipt["blake3"] == b3(backing)
    plain = out
    if suffix:
        tool = {".zst": "zstd", ".xz": "xz", ".gz": "gzip"}[suffix]
        plain = tmp_path / "plain.img"
        with open(plain, "wb") as f:
            subprocess.run([tool, "-dc", str(out)], stdout=f, check=True)
    run(["cmp", str(plain), str(backing)])
    assert leftovers(tmp_path) == []


def test_sparse_backup_leaves_holes(stick: tuple[str, Path], tmp_path: Path) -> None:
    dev, backing = stick
    out = tmp_path / "sparse.img"
    done = usbwriter("backup", dev, "-o", str(out), "--sparse", "--verify")
    assert done.returncode == 0, done.stderr
    run(["cmp", str(out), str(backing)])
    assert os.stat(out).st_blocks * 512 <= 9 * MiB  # the zeros are holes
    assert "Verified" in done.stdout


def test_verify_catches_a_byte_changed_between_the_reads(
    stick: tuple[str, Path], tmp_path: Path
) -> None:
    from usbwriter.jobs.backup import plan_backup, run_backup
    from usbwriter.progress import Progress

    dev, backing = stick
    out = tmp_path / "changed.img"
    changed = 34 * MiB + 12345

    flipped: list[int] = []

    def change_after_the_first_read(p: Progress) -> None:
        # Once: the end of a phase may be reported twice (its last chunk, then its end).
        if p.phase == "read" and p.done >= p.total and not flipped:
            flipped.append(changed)
            # Through the drive itself (backup holds it with O_EXCL, which keeps mounts
            # and exclusive openers away, not a plain writer), bypassing every cache.
            import mmap

            block = changed // 4096 * 4096
            buf = mmap.mmap(-1, 4096)
            buf[:] = backing.read_bytes()[block : block + 4096]
            buf[changed - block] ^= 0xFF
            fd = os.open(dev, os.O_WRONLY | os.O_DIRECT)
            try:
                assert os.pwrite(fd, buf, block) == 4096
            finally:
                os.close(fd)
                buf.close()

    plan = plan_backup(dev, str(out))
    receipt = run_backup(plan, verify=True, progress=change_after_the_first_read)
    assert receipt.verify is not None and not receipt.verify.verified
    assert receipt.verify.mismatch_offset == changed
    assert out.exists()  # what was read first is kept, and the receipt says it differs


def test_refusals(stick: tuple[str, Path], tmp_path: Path) -> None:
    dev, backing = stick
    existing = tmp_path / "existing.img"
    existing.write_bytes(b"keep me")
    done = usbwriter("backup", dev, "-o", str(existing))
    assert done.returncode == 4 and "--overwrite" in done.stderr
    assert existing.read_bytes() == b"keep me"
    # Swapped arguments: an image file is not a drive, and a drive is not an output.
    swapped = usbwriter("backup", str(backing), "-o", dev)
    assert swapped.returncode == 2 and "not a drive" in swapped.stderr.lower(), swapped.stderr
    to_drive = usbwriter("backup", dev, "-o", dev, "--overwrite")  # the wrong kind of output
    assert to_drive.returncode == 2 and "not a regular file" in to_drive.stderr
    assert usbwriter("backup", str(tmp_path / "nope"), "-o", "x.img").returncode == 2
    done = usbwriter("backup", dev, "-o", str(tmp_path / "ok.img"), "--overwrite")
    assert done.returncode == 0
    assert "Traceback" not in swapped.stderr + to_drive.stderr


def test_mounted_read_write_is_refused_and_output_on_the_drive_read_too(
    loop: LoopFactory, tmp_path: Path
) -> None:
    dev = loop(64 * MiB)
    run(["sfdisk", "-q", dev], input="label: dos\n,20M\n,\n")
    run(["partx", "-a", dev])
    wait_for(f"{dev}p2")
    run(["mkfs.ext4", "-q", "-F", f"{dev}p2"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", f"{dev}p2", str(mnt)])
    try:
        whole = usbwriter("backup", dev, "-o", str(tmp_path / "whole.img"))
        assert whole.returncode == 4 and "mounted read-write" in whole.stderr
        onto = usbwriter("backup", f"{dev}p1", "-o", str(mnt / "p1.img"))
        assert onto.returncode == 4 and "the drive being read" in onto.stderr, onto.stderr
        assert not (mnt / "p1.img").exists()
        run(["mount", "-o", "remount,ro", str(mnt)])
        ro = usbwriter("backup", f"{dev}p2", "-o", str(tmp_path / "p2.img"))
        assert ro.returncode == 0, ro.stderr  # a read-only mount may be read beside
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["partx", "-d", dev], check=False)


def test_ctrl_c_stops_within_two_seconds_and_leaves_nothing(
    loop: LoopFactory, tmp_path: Path
) -> None:
    from tests.helpers.throttle import blkio_group, interrupt_after

    dev = loop(256 * MiB)
    out = tmp_path / "slow.img"
    with blkio_group(dev, 8 * MiB, 8 * MiB) as group:
        stop = interrupt_after([*USBWRITER, "backup", dev, "-o", str(out)], group, 1.5)
    assert stop.returncode == 130, stop.stderr
    assert stop.seconds < 2.0, stop.seconds
    assert not out.exists() and leftovers(tmp_path) == []


def test_drive_is_held_while_a_paused_backup_reads_it(loop: LoopFactory, tmp_path: Path) -> None:
    """Backup A is stopped (SIGSTOP) mid-read: a second backup, a write and a restore
    of the same drive are turned away as busy; A then finishes and equals the drive."""
    from tests.helpers.throttle import blkio_group, enter

    backing = random_file(tmp_path / "held.img", 64 * MiB, seed=3)
    dev = loop(0, backing=backing)
    iso = tmp_path / "t.iso"
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    run(["xorriso", "-as", "mkisofs", "-o", str(iso), str(tree)])
    out = tmp_path / "a.img"
    with blkio_group(dev, 16 * MiB, 16 * MiB) as group:
        first = subprocess.Popen(
            [*USBWRITER, "backup", dev, "-o", str(out)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: enter(group),
        )
        time.sleep(1.0)
        first.send_signal(signal.SIGSTOP)
        try:
            second = usbwriter("backup", dev, "-o", str(tmp_path / "b.img"))
            write = usbwriter("--image", str(iso), "--device", dev, "--yes", "--force")
            restore = usbwriter("restore", dev, "--yes")
        finally:
            first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=60)
    for other in (second, write, restore):
        assert other.returncode == 4 and "busy" in other.stderr, other.stderr
    assert first.returncode == 0, err
    run(["cmp", str(out), str(backing)])
    assert not (tmp_path / "b.img").exists()


def test_an_output_made_while_reading_keeps_both_files(
    loop: LoopFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output's name is taken between the check and the naming: their file stays,
    and the backup too, under the temporary name the error gives (exit 4)."""
    import usbwriter.placing as placing
    from usbwriter.errors import Refused
    from usbwriter.jobs.backup import plan_backup, run_backup

    backing = random_file(tmp_path / "src.img", 4 * MiB, seed=4)
    dev = loop(0, backing=backing)
    out = tmp_path / "b.img"
    real = placing.place_new

    def theirs_first(temp: str, name: str, *, dir_fd: int | None = None) -> None:
        out.write_text("theirs")
        real(temp, name, dir_fd=dir_fd)

    monkeypatch.setattr(placing, "place_new", theirs_first)
    with pytest.raises(Refused, match="appeared while the backup ran") as caught:
        run_backup(plan_backup(dev, str(out)))
    assert caught.value.exit_code == 4 and out.read_text() == "theirs"
    kept = leftovers(tmp_path)
    assert len(kept) == 1 and kept[0] in caught.value.message
    assert (tmp_path / kept[0]).read_bytes() == backing.read_bytes()


def test_a_cancel_is_heard_between_two_retries_of_a_bad_sector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app cancels through an event, not SIGINT: while one sector is read again and
    again (every read fails with EIO here), the next retry stops."""
    import errno
    import threading

    import usbwriter.jobs.backup as backup
    from usbwriter.errors import Cancelled

    def failing(fd: int, view: memoryview, offset: int) -> int:
        time.sleep(0.001)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(backup, "pread_into", failing)
    src = random_file(tmp_path / "disc.img", MiB)
    cancel = threading.Event()
    fd = os.open(src, os.O_RDONLY)
    try:
        chunks = backup._Salvager(fd, str(src), MiB, 2048, 10**9, False, cancel=cancel)
        threading.Timer(0.5, cancel.set).start()
        start = time.monotonic()
        with chunks, pytest.raises(Cancelled):
            for chunk in chunks:
                chunk.release()
        assert time.monotonic() - start < 2.0
    finally:
        os.close(fd)


def _swap_backing(dev: str, other: Path) -> None:
    """Detach DEV and attach OTHER at the same node: the same device number, a new
    disk sequence (as a disc swapped in the same drive)."""
    run(["losetup", "-d", dev])
    for _ in range(50):  # the kernel may take a moment to let the node go
        p = subprocess.run(["losetup", dev, str(other)], capture_output=True, text=True)
        if p.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError(p.stderr)


def test_a_medium_swapped_after_the_plan_is_refused(loop: LoopFactory, tmp_path: Path) -> None:
    from usbwriter.errors import Refused
    from usbwriter.jobs.backup import plan_backup, run_backup

    first = random_file(tmp_path / "first.img", 4 * MiB, seed=11)
    second = random_file(tmp_path / "second.img", 4 * MiB, seed=12)  # the same size
    dev = loop(0, backing=first)
    out = tmp_path / "b.img"
    plan = plan_backup(dev, str(out))
    _swap_backing(dev, second)
    with pytest.raises(Refused) as caught:
        run_backup(plan)
    message = caught.value.message
    assert dev in message and "disk sequence" in message and "\n" not in message
    assert caught.value.exit_code == 4
    assert not out.exists() and leftovers(tmp_path) == []


#: `usbwriter backup` with the medium swapped right after its plan (as a person would
#: swap a disc between the check and the read)
SWAP_DRIVER = """
import subprocess, sys, time
import usbwriter.jobs.backup as backup

dev, other = sys.argv[1:3]
real = backup.plan_backup

def plan_then_swap(*args, **kwargs):
    plan = real(*args, **kwargs)
    subprocess.run(["losetup", "-d", dev], check=True)
    for _ in range(50):
        if subprocess.run(["losetup", dev, other]).returncode == 0:
            break
        time.sleep(0.1)
    return plan

backup.plan_backup = plan_then_swap
from usbwriter.cli import main

sys.argv = ["usbwriter", *sys.argv[3:]]
raise SystemExit(main())
"""


def test_the_command_refuses_a_swapped_medium_in_one_line(
    loop: LoopFactory, tmp_path: Path
) -> None:
    first = random_file(tmp_path / "first.img", 4 * MiB, seed=11)
    second = random_file(tmp_path / "second.img", 4 * MiB, seed=12)
    dev = loop(0, backing=first)
    out = tmp_path / "b.img.zst"
    p = subprocess.run(
        [sys.executable, "-c", SWAP_DRIVER, dev, str(second), "backup", dev, "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.returncode == 4, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert dev in lines[0] and "choose the device again" in lines[0]
    assert not out.exists() and leftovers(tmp_path) == []


def test_interrupted_during_verify_says_so_and_leaves_nothing(
    stick: tuple[str, Path], tmp_path: Path
) -> None:
    import threading

    from usbwriter.errors import Cancelled
    from usbwriter.jobs.backup import plan_backup, run_backup
    from usbwriter.progress import Progress

    dev, _ = stick
    out = tmp_path / "v.img.zst"
    cancel = threading.Event()

    def stop_in_the_verify(p: Progress) -> None:
        if p.phase == "verify":
            cancel.set()

    with pytest.raises(Cancelled) as caught:
        run_backup(plan_backup(dev, str(out)), verify=True, progress=stop_in_the_verify,
                   cancel=cancel)  # fmt: skip
    assert "while reading it again" in caught.value.message
    assert "no image file was left" in caught.value.message
    assert not out.exists() and leftovers(tmp_path) == []

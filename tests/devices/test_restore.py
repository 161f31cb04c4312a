"""usbwriter format (once `restore DEVICE`) on real loop devices: a stick that held a
hybrid ISO with a GPT becomes a normal stick that the standard tools accept; and
`usbwriter restore IMAGE DEVICE` writes a backup back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, read_dev, run
from usbwriter.errors import DeviceFault
from usbwriter.jobs.restore import plan_restore, run_restore
from usbwriter.progress import Progress

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]
SIZE = 256 * MiB


def usbwriter(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*USBWRITER, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def signatures(dev: str) -> list[tuple[str, int]]:
    """(type, offset) of every signature wipefs finds on the whole device (read-only)."""
    out = json.loads(run(["wipefs", "--json", dev]).stdout or '{"signatures": []}')
    return [(s["type"], int(s["offset"], 16)) for s in out.get("signatures", [])]


@pytest.fixture
def used_stick(loop: LoopFactory, tmp_path: Path) -> Iterator[str]:
    """A stick as an ISO leaves it: a GPT (with its backup at the end), then an ISO
    9660 image written over the start; partition nodes removed afterwards."""
    dev = loop(SIZE)
    run(["sfdisk", "-q", "--wipe", "always", dev], input="label: gpt\n,64M\n,\n")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "README.TXT").write_text("an installer\n")
    iso = tmp_path / "old.iso"
    run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "OLD_ISO", "-o", str(iso), str(tree)])
    run(["dd", f"if={iso}", f"of={dev}", "bs=1M", "conv=notrunc,fsync", "status=none"])
    before = {t for t, _ in signatures(dev)}
    assert "iso9660" in before and "gpt" in before, before
    try:
        yield dev
    finally:
        subprocess.run(["partx", "-d", dev], check=False, capture_output=True)


CHECKS = {
    "fat32": (["fsck.vfat", "-n"], "vfat"),
    "exfat": (["fsck.exfat", "-n"], "exfat"),
    "ext4": (["e2fsck", "-f", "-n"], "ext4"),
}


@pytest.mark.parametrize("fs", ["fat32", "exfat", "ext4"])
def test_format_makes_a_normal_stick(used_stick: str, tmp_path: Path, fs: str) -> None:
    dev = used_stick
    done = usbwriter("format", dev, "--fs", fs, "--label", "MyStick", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout.strip().splitlines()[-1])
    assert receipt["event"] == "restore" and receipt["verified"] is True
    assert receipt["partition"] == {"start": MiB, "size": SIZE - MiB}
    # Old signatures are gone at both ends: only the new MBR table is left.
    assert signatures(dev) == [("dos", 0x1FE)]
    part = f"{dev}p1"
    check, fstype = CHECKS[fs]
    run([*check, part])
    probe = run(["blkid", "-o", "export", part]).stdout
    assert f"TYPE={fstype}" in probe
    assert ("LABEL=MYSTICK" if fs == "fat32" else "LABEL=MyStick") in probe
    table = json.loads(run(["sfdisk", "--json", dev]).stdout)["partitiontable"]
    assert table["label"] == "dos" and len(table["partitions"]) == 1
    assert table["partitions"][0]["start"] == 2048
    assert table["partitions"][0]["type"] == {"fat32": "c", "exfat": "7", "ext4": "83"}[fs]
    if fs == "fat32":  # mtools can write to it and read it back
        note = tmp_path / "note.txt"
        note.write_text("hello stick\n")
        run(["mcopy", "-i", part, str(note), "::/note.txt"])
        assert run(["mtype", "-i", part, "::/note.txt"]).stdout == "hello stick\n"
    listed = json.loads(usbwriter("list", "--all", "--json").stdout)
    drive = next(d for d in listed if d["path"] == dev)
    assert drive["eligible"] and [p["path"] for p in drive["partitions"]] == [part]


def test_restore_is_protected_like_a_write(
    mounted_ext4: tuple[str, Path], loop: LoopFactory
) -> None:
    dev, mnt = mounted_ext4
    mounted = usbwriter("restore", dev, "--yes")
    assert mounted.returncode == 4 and "mounted" in mounted.stderr
    assert run(["findmnt", "-n", str(mnt)]).returncode == 0
    no_yes = usbwriter("restore", loop(64 * MiB))
    assert no_yes.returncode == 4 and "no --yes" in no_yes.stderr
    bad_label = usbwriter("restore", dev, "--label", "MUCH TOO LONG FOR FAT", "--yes")
    assert bad_label.returncode == 2 and "labels are 1 to 11" in bad_label.stderr
    not_drive = usbwriter("restore", str(mnt), "--yes")
    assert not_drive.returncode in (2, 4), not_drive.stderr
    unmounted = usbwriter("restore", dev, "--yes", "--unmount", "--fs", "exfat")
    assert unmounted.returncode == 0, unmounted.stderr
    assert subprocess.run(["findmnt", "-n", str(mnt)], capture_output=True).returncode == 1
    subprocess.run(["partx", "-d", dev], check=False, capture_output=True)
    for out in (mounted, no_yes, bad_label, not_drive, unmounted):
        assert "Traceback" not in out.stderr


def test_partition_node_is_refused(loop: LoopFactory) -> None:
    dev = loop(64 * MiB)
    run(["sfdisk", "-q", dev], input="label: dos\n,32M\n,\n")
    run(["partx", "-a", dev])
    try:
        done = usbwriter("restore", f"{dev}p1", "--yes")
        assert done.returncode == 4 and "is a partition" in done.stderr
        assert signatures(dev) == [("dos", 0x1FE)]
    finally:
        subprocess.run(["partx", "-d", dev], check=False, capture_output=True)


@pytest.mark.parametrize(
    ("fs", "label"),
    [("exfat", "FIFTEEN_CHARS_X"), ("fat32", "MY:STICK"), ("fat32", "A*B"), ("fat32", "V1.0")],
)
def test_a_label_mkfs_would_refuse_is_refused_before_anything_changes(
    mounted_ext4: tuple[str, Path], fs: str, label: str
) -> None:
    """Found in the plan (exit 2): the drive is neither unmounted nor opened."""
    dev, mnt = mounted_ext4
    before = signatures(dev)
    done = usbwriter("restore", dev, "--fs", fs, "--label", label, "--yes", "--unmount", "--json")
    assert done.returncode == 2, done.stderr
    error = json.loads(done.stdout.strip().splitlines()[-1])
    assert error["event"] == "error" and error["code"] == "bad_input"
    assert label in error["message"] and "Traceback" not in done.stderr
    assert run(["findmnt", "-n", str(mnt)]).returncode == 0  # still mounted
    assert signatures(dev) == before


def test_interrupted_while_reading_back_says_written_but_not_verified(used_stick: str) -> None:
    import threading

    from usbwriter.errors import Cancelled

    cancel = threading.Event()

    def stop_in_the_read_back(p: Progress) -> None:
        if p.phase == "verify":
            cancel.set()

    plan = plan_restore(used_stick)
    with pytest.raises(Cancelled) as caught:
        run_restore(plan, fs="fat32", progress=stop_in_the_read_back, cancel=cancel)
    assert "written but not verified" in caught.value.message
    assert "partly erased" not in caught.value.message


def flip(dev: str, offset: int) -> None:
    """Change one byte of DEV, beside the descriptor the restore holds."""
    with open(dev, "r+b", buffering=0) as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x01]))
        os.fsync(f.fileno())


def test_only_the_layout_is_written_and_exactly_that_is_read_back(used_stick: str) -> None:
    """The new layout is written through the engine as a sparse image: its data and the
    drive's last MiB, far fewer bytes than the drive holds; the read-back reads exactly
    the bytes written (the receipt's count). The holes are left as they were."""
    dev = used_stick
    inside = SIZE // 2  # in the partition, where a fresh exFAT writes nothing
    with open(dev, "r+b", buffering=0) as f:
        f.seek(inside)
        f.write(b"OLD BYTES")
        os.fsync(f.fileno())
    seen: list[Progress] = []
    receipt = run_restore(plan_restore(dev), fs="exfat", progress=seen.append)
    assert 2 * MiB < receipt.written < SIZE // 32, receipt.written
    for phase in ("write", "verify"):
        last = [p for p in seen if p.phase == phase][-1]
        assert last.done == last.total == receipt.written, (phase, last)
    phases = [p.phase for p in seen]
    assert "sync" in phases
    sync = phases.index("sync")
    assert set(phases[:sync]) == {"write"} and set(phases[sync + 1 :]) == {"verify"}
    assert read_dev(dev, SIZE - MiB, MiB) == bytes(MiB)  # the old backup GPT is gone
    assert read_dev(dev, inside, 9) == b"OLD BYTES"  # a hole of the layout: not written


@pytest.mark.parametrize(
    "offset", [MiB + 3, SIZE - 1], ids=["in the file system", "in the last MiB"]
)
def test_a_byte_changed_before_the_read_back_fails_at_its_offset(
    used_stick: str, offset: int
) -> None:
    """Written, then changed beside the held descriptor before the read-back: the
    restore fails naming the byte, and the drive's first MiB (the new table) is wiped."""
    dev = used_stick
    flipped: list[int] = []

    def flip_before_read_back(p: Progress) -> None:
        if p.phase == "sync" and not flipped:  # every byte written, none read back yet
            flip(dev, offset)
            flipped.append(offset)

    with pytest.raises(DeviceFault) as caught:
        run_restore(plan_restore(dev), fs="exfat", progress=flip_before_read_back)
    assert flipped == [offset]
    assert caught.value.offset == offset
    assert f"different bytes at byte {offset}" in caught.value.message
    assert "first MiB was wiped" in caught.value.message
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_interrupted_while_writing_leaves_neither_table_at_either_end(used_stick: str) -> None:
    """Stopped once the first bytes are written: the first MiB is wiped and the old
    backup GPT at the end is gone already (the drive's last MiB goes before the file
    system), so no tool finds the old table and offers to bring it back."""
    import threading

    from usbwriter.errors import Cancelled

    dev = used_stick
    cancel = threading.Event()

    def stop_after_the_first_write(p: Progress) -> None:
        if p.phase == "write":
            cancel.set()

    with pytest.raises(Cancelled) as caught:
        run_restore(
            plan_restore(dev), fs="exfat", progress=stop_after_the_first_write, cancel=cancel
        )
    assert "partly erased" in caught.value.message and "run restore again" in caught.value.message
    assert read_dev(dev, 0, MiB) == bytes(MiB)
    assert read_dev(dev, SIZE - MiB, MiB) == bytes(MiB)
    assert signatures(dev) == []


def test_a_drive_with_4096_byte_sectors_is_refused_unchanged(loop: LoopFactory) -> None:
    """sfdisk and the mkfs tools, working on files, lay a table and a file system out in
    512-byte sectors: on a drive with 4096-byte logical sectors the partition would
    start at 8 MiB and end far past the drive. Refused before anything changes."""
    dev = loop(SIZE, sector_size=4096)
    run(["sfdisk", "-q", "--wipe", "always", dev], input="label: gpt\n,64M\n,\n")
    subprocess.run(["partx", "-d", dev], check=False, capture_output=True)
    before = signatures(dev)
    done = usbwriter("restore", dev, "--fs", "fat32", "--yes", "--json")
    subprocess.run(["partx", "-d", dev], check=False, capture_output=True)
    assert done.returncode == 4, done.stdout + done.stderr
    error = json.loads(done.stdout.strip().splitlines()[-1])
    assert error["event"] == "error" and "4096-byte sectors" in error["message"], error
    assert signatures(dev) == before


RENAMED = "usbwriter: 'restore DEVICE' is now 'format DEVICE'"


def test_restore_device_still_formats_and_says_its_new_name(used_stick: str) -> None:
    dev = used_stick
    done = usbwriter("restore", dev, "--fs", "exfat", "--label", "Old", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == RENAMED, done.stderr
    receipt = json.loads(done.stdout.strip().splitlines()[-1])
    assert receipt["event"] == "restore" and receipt["verified"] is True
    assert "TYPE=exfat" in run(["blkid", "-o", "export", f"{dev}p1"]).stdout
    formatted = usbwriter("format", dev, "--yes")
    assert formatted.returncode == 0 and RENAMED not in formatted.stderr, formatted.stderr


def test_restore_image_device_writes_a_backup_back(loop: LoopFactory, tmp_path: Path) -> None:
    """A backup made by `usbwriter backup`, written back onto another stick by
    `usbwriter restore IMAGE DEVICE`: the write job (plan, run, verify, receipt)."""
    size = 32 * MiB
    first = loop(size)
    data = os.urandom(4 * MiB)
    with open(first, "r+b", buffering=0) as f:
        f.write(data)
        f.seek(size - len(data))
        f.write(data[::-1])
    image = tmp_path / "stick.img"
    backup = usbwriter("backup", first, "-o", str(image))
    assert backup.returncode == 0, backup.stderr
    second = loop(size)
    done = usbwriter("restore", str(image), second, "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert "is now 'format" not in done.stderr
    receipt = json.loads(done.stdout.strip().splitlines()[-1])
    assert receipt["event"] == "result" and receipt["verified"] is True, receipt
    assert receipt["device"]["path"] == second, receipt["device"]
    assert read_dev(second, 0, size) == read_dev(first, 0, size)
    # The write's protections hold: no --yes and no terminal, a format option.
    asked = usbwriter("restore", str(image), loop(size))
    assert asked.returncode == 4 and "no --yes" in asked.stderr, asked.stderr
    wrong = usbwriter("restore", str(image), second, "--fs", "ext4", "--yes")
    assert wrong.returncode == 2 and "usbwriter format" in wrong.stderr, wrong.stderr
    # --no-verify: written, not read back.
    quick = usbwriter("restore", str(image), second, "--yes", "--json", "--no-verify")
    assert quick.returncode == 0, quick.stderr
    quick_receipt = json.loads(quick.stdout.strip().splitlines()[-1])
    assert quick_receipt["verified"] is False and quick_receipt["verify_seconds"] is None


def test_restore_image_device_refuses_a_missing_image(loop: LoopFactory, tmp_path: Path) -> None:
    dev = loop(32 * MiB)
    before = read_dev(dev, 0, MiB)
    done = usbwriter("restore", str(tmp_path / "gone.img"), dev, "--yes")
    assert done.returncode == 2, done.stderr
    assert "gone.img" in done.stderr and "Traceback" not in done.stderr
    assert read_dev(dev, 0, MiB) == before

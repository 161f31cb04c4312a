"""Restore a stick to normal use: one partition spanning it, with a fresh file system.

The plan is a write's plan without an image: the same refusals (system disk, stacked,
mounted unless --unmount, partition node, read-only), the same unmounts and the same
pinned identity. The run builds the new layout with the standard tools on a sparse
file of the drive's size (``sfdisk`` for an MBR table with one partition from 1 MiB to
the end, ``mkfs.vfat``/``mkfs.exfat``/``mkfs.ext4`` on a file the partition's size),
then writes it through the one descriptor held with O_EXCL: the first and last MiB are
zeroed (the old signatures: MBR, GPT and its backup at the end, ISO 9660 at 32 KiB), the
file system's written blocks are copied to the partition, the partition table goes
last, and every byte written is read back with O_DIRECT and compared. Nothing opens
the drive by name while the run holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from usbwriter.engine.blockio import (
    aligned_buffer,
    drop_cache,
    fd_size,
    logical_block_size,
    pread_into,
    pwrite_all,
    reread_partitions,
    round_up,
)
from usbwriter.errors import BadInput, Cancelled, DeviceFault, UsbWriterError, os_error
from usbwriter.jobs.decide import decide_target
from usbwriter.jobs.facts import look_at_target
from usbwriter.jobs.model import Plan, Request
from usbwriter.jobs.mounts import unmount_planned
from usbwriter.jobs.write import device_info, open_target
from usbwriter.progress import Meter, ProgressCallback

MIB = 1 << 20
#: a piece of the new layout: (drive offset, length, source file or None for zeros, its offset)
_Piece = tuple[int, int, "str | None", int]
CHUNK = 4 * MIB

#: file system -> (MBR partition type, mkfs argv before the label, label option, longest label)
#: The longest label counts characters for FAT (ASCII), UTF-16 code units for exFAT (its
#: volume label field holds 11) and bytes for ext4 (mke2fs would cut a longer one).
FILESYSTEMS: dict[str, tuple[str, list[str], str, int]] = {
    "fat32": ("c", ["mkfs.vfat", "-F", "32"], "-n", 11),
    "exfat": ("7", ["mkfs.exfat"], "-L", 11),
    "ext4": ("83", ["mkfs.ext4", "-F", "-q", "-E", "nodiscard"], "-L", 16),
}
#: Characters a label may not hold: mkfs.vfat refuses these (dosfstools 4.2), and the
#: exFAT specification forbids in a volume label what it forbids in a file name.
FORBIDDEN = {
    "fat32": '*?.,;:/\\|+=<>[]"',
    "exfat": '"*/:<>?\\|',
    "ext4": "/\\",
}
DEFAULT_LABEL = "USB"


@dataclass(frozen=True)
class RestoreReceipt:
    device: dict[str, Any]
    fs: str
    label: str
    partition_start: int
    partition_size: int
    uuid: str
    written: int  # bytes written (and read back)
    seconds: float
    unmounted: tuple[str, ...] = ()
    partitions_reread: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": "restore",
            "device": self.device,
            "fs": self.fs,
            "label": self.label,
            "uuid": self.uuid,
            "table": "dos",
            "partition": {"start": self.partition_start, "size": self.partition_size},
            "written": self.written,
            "verified": True,
            "seconds": round(self.seconds, 3),
            "unmounted": list(self.unmounted),
            "partitions_reread": self.partitions_reread,
        }

    def to_text(self) -> str:
        from usbwriter.receipt import describe_device
        from usbwriter.units import human_size

        lines = [
            f"Restored {describe_device(self.device)}",
            f"  Partition:  1 MiB to the end ({human_size(self.partition_size)}), MBR table",
            f"  File system: {self.fs}, label {self.label}, UUID {self.uuid}",
            f"  Written:    {human_size(self.written)}, read back and compared "
            f"({self.seconds:.1f} s); old signatures at both ends wiped",
        ]
        if not self.partitions_reread:
            lines.append("  The kernel did not re-read the table: unplug and replug the drive.")
        return "\n".join(lines)


def check_label(fs: str, label: str) -> str:
    """The label as it will be stored, or BadInput (exit 2) for one mkfs would refuse or
    cut: checked before anything is unmounted or opened. A FAT label is stored
    upper-case, as Windows stores it (mkfs.vfat would keep lower case, warning that some
    systems do not read it)."""
    if fs not in FILESYSTEMS:
        raise BadInput(f"unknown file system {fs!r}: choose fat32, exfat or ext4")
    try:
        label.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(f"label {label!r}: not valid UTF-8 text") from None
    longest = FILESYSTEMS[fs][3]
    unit = "bytes" if fs == "ext4" else "characters"
    length = {
        "fat32": len(label),
        "exfat": len(label.encode("utf-16-le")) // 2,  # a character past U+FFFF takes 2
        "ext4": len(label.encode("utf-8")),
    }[fs]
    if not label or length > longest:
        raise BadInput(f"label {label!r}: {fs} labels are 1 to {longest} {unit}")
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise BadInput(f"label {label!r}: a control character is not allowed in a label")
    article = "an" if fs[0] in "ae" else "a"
    bad = sorted({c for c in label if c in FORBIDDEN[fs]})
    if bad:
        shown = " ".join(FORBIDDEN[fs])
        raise BadInput(
            f"label {label!r}: {' '.join(bad)} not allowed in {article} {fs} label "
            f"(none of {shown})"
        )
    if fs == "fat32":
        if not label.isascii():
            raise BadInput(f"label {label!r}: FAT labels are ASCII letters, digits and signs")
        if label.startswith(" "):
            raise BadInput(f"label {label!r}: a FAT label cannot start with a space")
        return label.upper()
    return label


def plan_restore(device: str, *, unmount: bool = False) -> Plan:
    """The checks a write makes of its target, with no image: changes nothing."""
    from usbwriter.devices import read_snapshot

    request = Request(image="", device=device, unmount=unmount)
    return decide_target(request, look_at_target(device, read_snapshot()))


# --- the layout, built with the standard tools on sparse files ----------------------


@dataclass(frozen=True)
class _Layout:
    table: str  # a file the drive's size holding the partition table
    part: str  # a file the partition's size holding the new file system
    start: int
    size: int
    uuid: str


def _tool(argv: list[str], what: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, check=False, timeout=600
        )
    except FileNotFoundError:
        raise UsbWriterError(f"{argv[0]} is not installed; it is needed to {what}") from None
    if done.returncode != 0:
        why = " ".join((done.stderr or done.stdout).split())[:300]
        raise UsbWriterError(f"{argv[0]} failed to {what}: {why}")
    return done.stdout


def _build_layout(tmp: str, size: int, fs: str, label: str) -> _Layout:
    part_type, mkfs, label_opt, _ = FILESYSTEMS[fs]
    table = os.path.join(tmp, "disk.img")
    with open(table, "wb") as f:
        f.truncate(size)
    _tool(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "always", table],
        "write the partition table",
        stdin=f"label: dos\nstart=2048, type={part_type}\n",
    )
    layout = json.loads(_tool(["sfdisk", "--json", table], "read the partition table back"))
    entry = layout["partitiontable"]["partitions"][0]
    sector = int(layout["partitiontable"].get("sectorsize", 512))
    start, psize = int(entry["start"]) * sector, int(entry["size"]) * sector
    part = os.path.join(tmp, "part.img")
    with open(part, "wb") as f:
        f.truncate(psize)
    _tool([*mkfs, label_opt, label, part], f"make the {fs} file system")
    uuid = _tool(["blkid", "-o", "value", "-s", "UUID", part], "read the new file system").strip()
    return _Layout(table, part, start, psize, uuid)


def _data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The written (non-hole) ranges of a sparse file, as (offset, length)."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


# --- run ----------------------------------------------------------------------------


def run_restore(
    plan: Plan,
    *,
    fs: str = "fat32",
    label: str = DEFAULT_LABEL,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    notify: Callable[[str], None] | None = None,
) -> RestoreReceipt:
    plan.raise_if_blocked()
    label = check_label(fs, label)
    cancel = cancel or threading.Event()
    if cancel.is_set():
        raise Cancelled(f"{plan.target.requested}: cancelled before anything was changed")
    started = time.monotonic()
    unmounted = unmount_planned(plan.unmounts, notify=notify) if plan.unmounts else ()
    name = plan.target.requested
    with open_target(plan) as tgt, tempfile.TemporaryDirectory(prefix="usbwriter-") as tmp:
        size = fd_size(tgt.fd)
        block = logical_block_size(tgt.fd)
        layout = _build_layout(tmp, size, fs, label)
        # What goes where, in order: both ends zeroed, the file system, the table last.
        tail = max(MIB, size - MIB)
        pieces: list[_Piece] = [
            (0, min(MIB, size), None, 0),
            (tail, size - tail, None, 0),
        ]
        with open(layout.part, "rb") as part:
            for off, length in _data_ranges(part.fileno(), layout.size):
                pieces.append((layout.start + off, length, layout.part, off))
        pieces.append((0, min(layout.start, size), layout.table, 0))
        total = sum(p[1] for p in pieces)
        checked = pieces[2:]  # what the drive must now hold: the layout's bytes
        written = False
        try:
            meter = Meter("write", total, progress)
            for piece in pieces:
                _copy(tgt.fd, piece, block, meter, cancel, name)
            os.fsync(tgt.fd)
            written = True
            meter.finish()
            drop_cache(tgt.fd)
            meter = Meter("verify", sum(p[1] for p in checked), progress)
            for piece in checked:
                _check(tgt.fd, piece, block, meter, cancel, name)
        except OSError as e:
            raise os_error(name, e, "restore the drive").with_note(
                "the drive is partly erased; run restore again"
            ) from None
        except Cancelled:
            if written:
                raise Cancelled(
                    f"{name}: restore interrupted while reading the drive back: the new "
                    "layout was written but not verified; run restore again to be sure"
                ) from None
            raise Cancelled(
                f"{name}: restore interrupted; the drive is partly erased: run restore again"
            ) from None
        meter.finish()
        reread = _show_partition(tgt.fd, plan.target.node)
        return RestoreReceipt(
            device=device_info(plan, unmounted),
            fs=fs,
            label=label,
            partition_start=layout.start,
            partition_size=layout.size,
            uuid=layout.uuid,
            written=total,
            seconds=time.monotonic() - started,
            unmounted=unmounted,
            partitions_reread=reread,
        )


def _show_partition(fd: int, node: str) -> bool:
    """Have the kernel show the new partition: re-read the table (BLKRRPART, through the
    held descriptor); a kernel that reads no MBR tables is told of it by ``partx``."""
    reread_partitions(fd)
    sysdir = f"/sys/class/block/{os.path.basename(node)}"
    for attempt in range(2):
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if _has_partition(sysdir):
                return True
            time.sleep(0.05)
        if attempt == 0:
            subprocess.run(
                ["partx", "--add", "--nr", "1", node], capture_output=True, check=False, timeout=30
            )
    return False


def _has_partition(sysdir: str) -> bool:
    try:
        names = os.listdir(sysdir)
    except OSError:
        return False
    return any(os.path.exists(os.path.join(sysdir, n, "partition")) for n in names)


def _steps(
    fd: int,
    offset: int,
    length: int,
    src: str | None,
    src_off: int,
    block: int,
    meter: Meter,
    cancel: threading.Event,
    name: str,
) -> Iterator[tuple[int, int, memoryview, bytes]]:
    """(drive offset, length, aligned buffer of the whole blocks, the source's bytes)
    for each step of at most CHUNK of a piece; the meter advanced after each step."""
    view = memoryview(aligned_buffer(CHUNK))
    sfd = None if src is None else os.open(src, os.O_RDONLY)
    try:
        pos, end = offset, offset + length
        while pos < end:
            if cancel.is_set():
                raise Cancelled(name)
            n = min(CHUNK, end - pos)
            want = (
                bytes(round_up(n, block))
                if sfd is None
                else _read(sfd, src_off + pos - offset, round_up(n, block))
            )
            yield pos, n, view[: round_up(n, block)], want
            meter.advance(n)
            pos += n
    finally:
        if sfd is not None:
            os.close(sfd)
        # (the buffer goes with its last view: the caller may still hold the last step's)


def _copy(
    fd: int, piece: _Piece, block: int, meter: Meter, cancel: threading.Event, name: str
) -> None:
    for pos, _, io, data in _steps(fd, *piece, block, meter, cancel, name):
        io[:] = data
        pwrite_all(fd, io, pos)


def _check(
    fd: int, piece: _Piece, block: int, meter: Meter, cancel: threading.Event, name: str
) -> None:
    for pos, n, io, data in _steps(fd, *piece, block, meter, cancel, name):
        if pread_into(fd, io, pos) < n:
            raise DeviceFault(f"{name}: short read at byte {pos}", path=name, offset=pos)
        if io[:n] != data[:n]:
            at = pos + next(i for i in range(n) if io[i] != data[i])
            raise DeviceFault(
                f"{name}: reads back different bytes at byte {at} after the restore; "
                "the drive may be failing",
                path=name,
                offset=at,
            )


def _read(fd: int, offset: int, n: int) -> bytes:
    data = os.pread(fd, n, offset)
    return data + bytes(n - len(data))


__all__ = ["DEFAULT_LABEL", "FILESYSTEMS", "RestoreReceipt", "plan_restore", "run_restore"]

"""Restore a stick to normal use: one partition spanning it, with a fresh file system.

The plan is a write's plan without an image: the same refusals (system disk, stacked,
mounted unless --unmount, partition node, read-only), the same unmounts and the same
pinned identity. The run builds the new layout with the standard tools as one sparse
file of the drive's size (``sfdisk`` writes an MBR table with one partition from 1 MiB
to the end; ``mkfs.vfat``/``mkfs.exfat``/``mkfs.ext4`` make the file system on a file
the partition's size, whose data is placed at the partition's offset), and writes that
file as an image through the engine, on the one descriptor held with O_EXCL: only the
file's data ranges and the drive's last MiB are written (a ``SparseSelector``), the
first MiB zeroed before anything else changes and written last (the table), the last
MiB (an old backup GPT) before the file system; exactly those spans are read back with
O_DIRECT and compared with the file. The holes are not written: old bytes inside the
partition that the new file system does not cover stay as they were. Nothing opens
the drive by name while the run holds it.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from usbwriter.engine.blockio import reread_partitions
from usbwriter.engine.readback import Drive, read_back
from usbwriter.engine.selectors import SparseSelector, data_ranges
from usbwriter.engine.target import Target
from usbwriter.engine.write import Written, write_drive
from usbwriter.errors import BadInput, Cancelled, DeviceFault, Refused, UsbWriterError, os_error
from usbwriter.jobs.decide import decide_target
from usbwriter.jobs.facts import look_at_target
from usbwriter.jobs.model import Blocker, Plan, Request
from usbwriter.jobs.mounts import unmount_planned
from usbwriter.jobs.write import device_info, open_target
from usbwriter.progress import ProgressCallback
from usbwriter.sources import ImageSource, open_image

MIB = 1 << 20
SECTOR = 512  # the sector size sfdisk and mkfs lay a file out in
COPY = 4 * MIB  # the file system's data is placed in the layout this much at a time

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
    """The checks a write makes of its target, with no image, and a drive whose sectors
    are not 512 bytes refused: changes nothing."""
    from usbwriter.devices import read_snapshot

    request = Request(image="", device=device, unmount=unmount)
    plan = decide_target(request, look_at_target(device, read_snapshot()))
    disk = plan.target.disk
    if disk is not None and disk.logical_block_size != SECTOR:
        refusal = _sector_refusal(device, disk.logical_block_size)
        plan = replace(plan, blockers=(*plan.blockers, Blocker(refusal)))
    return plan


def _sector_refusal(device: str, sector: int) -> Refused:
    """sfdisk and mkfs, working on a file, lay the table and the file system out in
    512-byte sectors: on a drive with larger ones the partition would start at 8 MiB
    and end past the drive, and no system would mount the file system."""
    return Refused(
        f"{device}: the drive has {sector}-byte sectors; restore lays out the table and "
        "the file system for 512-byte sectors only; nothing was changed",
        path=device,
    )


# --- the layout, built with the standard tools as one sparse file --------------------


@dataclass(frozen=True)
class _Layout:
    path: str  # a sparse file the drive's size: the partition table, the file system
    start: int  # the partition's offset and size
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
    """The drive as it will be, in TMP: a sparse file of SIZE holding the table and,
    at the partition's offset, the new file system's data."""
    part_type, mkfs, label_opt, _ = FILESYSTEMS[fs]
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(size)
    _tool(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "always", disk],
        "write the partition table",
        stdin=f"label: dos\nstart=2048, type={part_type}\n",
    )
    layout = json.loads(_tool(["sfdisk", "--json", disk], "read the partition table back"))
    entry = layout["partitiontable"]["partitions"][0]
    sector = int(layout["partitiontable"].get("sectorsize", 512))
    start, psize = int(entry["start"]) * sector, int(entry["size"]) * sector
    part = os.path.join(tmp, "part.img")
    with open(part, "wb") as f:
        f.truncate(psize)
    _tool([*mkfs, label_opt, label, part], f"make the {fs} file system")
    uuid = _tool(["blkid", "-o", "value", "-s", "UUID", part], "read the new file system").strip()
    _place(part, disk, start, psize)
    os.unlink(part)
    return _Layout(disk, start, psize, uuid)


def _place(part: str, disk: str, at: int, size: int) -> None:
    """Copy the data ranges of PART (its holes stay holes) into DISK at offset AT."""
    with open(part, "rb") as src, open(disk, "r+b") as dst:
        for start, end in data_ranges(src.fileno(), size):
            for pos in range(start, end, COPY):
                data = os.pread(src.fileno(), min(COPY, end - pos), pos)
                os.pwrite(dst.fileno(), data, at + pos)


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
        if tgt.block != SECTOR:
            raise _sector_refusal(name, tgt.block)
        try:
            layout = _build_layout(tmp, tgt.size, fs, label)
        except OSError as e:
            raise os_error(tmp, e, "build the new layout").with_note(
                "nothing on the drive was changed"
            ) from None
        if cancel.is_set():
            raise Cancelled(f"{name}: restore interrupted; nothing on the drive was changed")
        with open_image(layout.path) as src:
            written = _write(tgt, src, name, progress, cancel)
            _read_back(tgt, src, written, name, progress, cancel)
        reread = _show_partition(tgt.fd, plan.target.node)
        return RestoreReceipt(
            device=device_info(plan, unmounted),
            fs=fs,
            label=label,
            partition_start=layout.start,
            partition_size=layout.size,
            uuid=layout.uuid,
            written=written.result.bytes_written,
            seconds=time.monotonic() - started,
            unmounted=unmounted,
            partitions_reread=reread,
        )


def _write(
    tgt: Target,
    src: ImageSource,
    name: str,
    progress: ProgressCallback | None,
    cancel: threading.Event,
) -> Written:
    """The layout's data, and the drive's last MiB whatever the layout holds there (an
    old backup GPT), through the engine: the first MiB zeroed first and written last;
    the first MiB wiped if the write fails."""
    tail = max(MIB, tgt.size - MIB)
    selector = SparseSelector(src.fd, tgt.size, first=[(tail, tgt.size)])
    try:
        return write_drive(src, tgt, selector, progress=progress, cancel=cancel)
    except (Cancelled, KeyboardInterrupt):
        raise Cancelled(
            f"{name}: restore interrupted; the drive may be partly erased: run restore again"
        ) from None
    except UsbWriterError as e:
        raise e.with_note("run restore again") from None


def _read_back(
    tgt: Target,
    src: ImageSource,
    written: Written,
    name: str,
    progress: ProgressCallback | None,
    cancel: threading.Event,
) -> None:
    """Every span written read back with O_DIRECT and compared with the layout; on a
    difference or a failed read the first MiB is wiped and the error raised."""
    try:
        checked = read_back(
            Drive(tgt.fd, tgt.path), written.spans, image=src, progress=progress, cancel=cancel
        )
    except (Cancelled, KeyboardInterrupt):
        raise Cancelled(
            f"{name}: restore interrupted while reading the drive back: the new layout was "
            "written but not verified; run restore again to be sure"
        ) from None
    except BaseException as e:
        note = _wiped(tgt.wipe_head())
        if isinstance(e, UsbWriterError):
            raise e.with_note(note) from None
        raise DeviceFault(f"{name}: the read-back failed ({e}); {note}", path=name) from e
    if not checked.verified:
        at = checked.mismatch_offset
        raise DeviceFault(
            f"{name}: reads back different bytes at byte {at} after the restore; the drive "
            f"may be failing; {_wiped(tgt.wipe_head())}",
            path=name,
            offset=at,
        )


def _wiped(wiped: bool) -> str:
    return (
        "its first MiB was wiped: run restore again"
        if wiped
        else "its first MiB could not be wiped: run restore again"
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


__all__ = ["DEFAULT_LABEL", "FILESYSTEMS", "RestoreReceipt", "plan_restore", "run_restore"]

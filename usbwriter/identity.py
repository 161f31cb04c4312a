"""Is it still the same device? Pinning a target's identity and checking it again.

``Identity`` is what the chosen target was when the plan looked at it: device number,
disk sequence, size, serial/WWN, a loop's backing file. ``check_descriptor`` compares it
with the descriptor the job opened (fstat, BLKGETDISKSEQ, size) and with what sysfs says
of that device now, before the first byte is written.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
from dataclasses import asdict, dataclass
from typing import Any, Literal

from usbwriter.devices import Disk, disk_from_info, read_block_info, read_snapshot, sys_path_of
from usbwriter.errors import Changed, DeviceFault

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    """What the chosen target was when it was checked.

    For a block device: major:minor, the kernel's disk sequence number (bumped on
    every new medium or loop attach), size, serial and WWN, and for a loop device its
    backing file (path, and device and inode of the file). For a regular file (a VM
    disk image): the file's device and inode, and its size. ``unmounted`` lists the
    mountpoints the job unmounted before writing.
    """

    path: str
    major: int | None
    minor: int | None
    size: int
    diskseq: int | None
    serial: str
    backing_file: str | None
    kind: Literal["block", "file"] = "block"
    requested: str = ""
    wwn: str = ""
    backing_device: str | None = None
    backing_inode: int | None = None
    file_device: int | None = None
    file_inode: int | None = None
    vendor: str = ""
    model: str = ""
    bus: str = ""
    logical_block_size: int = 512
    unmounted: tuple[str, ...] = ()

    @classmethod
    def from_disk(cls, disk: Disk, *, requested: str, unmounted: tuple[str, ...] = ()) -> Identity:
        return cls(
            path=disk.path,
            major=disk.major,
            minor=disk.minor,
            size=disk.size,
            diskseq=disk.diskseq,
            serial=disk.serial,
            backing_file=disk.backing_file,
            kind="block",
            requested=requested,
            wwn=disk.wwn,
            backing_device=disk.backing_device,
            backing_inode=disk.backing_inode,
            vendor=disk.vendor,
            model=disk.model,
            bus=disk.bus,
            logical_block_size=disk.logical_block_size,
            unmounted=unmounted,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["unmounted"] = list(self.unmounted)
        return d

    def check_descriptor(self, fd: int, *, for_writing: bool = True) -> None:
        """Raise ``Changed`` (a refusal) unless the open descriptor FD is this device (or
        file), still
        fit to write. Run once the target is open and held, before the first byte. Not
        FOR_WRITING (a backup reads the drive): only that it is the same device and
        medium; a read-only, optical or mounted drive may be read."""
        st = os.fstat(fd)
        if self.kind == "file":
            self._check_file(st)
        else:
            self._check_block(fd, st, for_writing)

    def _check_file(self, st: os.stat_result) -> None:
        changes = []
        if not stat.S_ISREG(st.st_mode):
            changes.append("no longer a regular file")
        elif self.file_inode is not None and (st.st_dev, st.st_ino) != (
            self.file_device,
            self.file_inode,
        ):
            changes.append(f"inode {self.file_inode} -> {st.st_ino} (replaced)")
        elif self.file_inode is not None and st.st_size != self.size:
            changes.append(f"size {self.size} -> {st.st_size} bytes")
        if changes:
            raise Changed(
                f"{self.path}: not the file that was chosen: {'; '.join(changes)}; "
                "choose the target again",
                path=self.path,
            )

    def _check_block(self, fd: int, st: os.stat_result, for_writing: bool = True) -> None:
        if not stat.S_ISBLK(st.st_mode):
            raise Changed(f"{self.path}: no longer a block device; choose the device again")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if (major, minor) != (self.major, self.minor):
            raise Changed(
                f"{self.path}: a different device sits there now (device number "
                f"{self.major}:{self.minor} -> {major}:{minor}); choose the device again",
                path=self.path,
            )
        seq = disk_seq(fd)
        if seq is not None and self.diskseq is not None and seq != self.diskseq:
            raise Changed(
                f"{self.path}: a new medium or device since it was chosen (disk sequence "
                f"{self.diskseq} -> {seq}); choose the device again",
                path=self.path,
            )
        size = os.lseek(fd, 0, os.SEEK_END)
        if size != self.size:
            raise Changed(
                f"{self.path}: its size changed since it was chosen ({self.size} -> {size} "
                "bytes); choose the device again",
                path=self.path,
            )
        try:
            snapshot = read_snapshot()
            disk = disk_from_info(read_block_info(sys_path_of(f"{major}:{minor}")), snapshot)
        except DeviceFault as e:
            raise Changed(f"{self.path}: vanished while checking it again: {e}") from e
        changes = identity_changes(self, disk)
        if changes:
            raise Changed(
                f"{self.path}: not the device that was chosen: {'; '.join(changes)}; "
                "choose the device again",
                path=self.path,
            )
        if not for_writing:
            return
        if disk.reasons:
            raise Changed(
                f"{self.path}: refused since it was chosen: {'; '.join(disk.reasons)}",
                path=self.path,
            )
        if disk.mounted:
            mounts = ", ".join(f"{dev} on {mp}" for dev, mp in disk.mounted)
            raise Changed(f"{self.path}: mounted since it was chosen: {mounts}", path=self.path)


#: BLKGETDISKSEQ = _IOR(0x12, 128, __u64): the disk sequence number of an open device.
BLKGETDISKSEQ = 0x80081280


def disk_seq(fd: int) -> int | None:
    """The kernel's disk sequence number of the open device (None where unsupported)."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, BLKGETDISKSEQ, buf)
    except OSError as e:
        log.debug("BLKGETDISKSEQ: %s", e.strerror)
        return None
    return int.from_bytes(buf, "little") or None


def identity_changes(identity: Identity, disk: Disk) -> list[str]:
    """Pure: what differs between a pinned identity and the disk there now."""
    changes: list[str] = []

    def differ(label: str, old: object, new: object) -> None:
        if old != new:
            changes.append(
                f"{label} {old if old not in (None, '') else '(none)'} -> "
                f"{new if new not in (None, '') else '(none)'}"
            )

    differ("device number", f"{identity.major}:{identity.minor}", f"{disk.major}:{disk.minor}")
    differ("disk sequence", identity.diskseq, disk.diskseq)
    differ("size", identity.size, disk.size)
    differ("serial", identity.serial, disk.serial)
    differ("WWN", identity.wwn, disk.wwn)
    differ("backing file", identity.backing_file, disk.backing_file)
    if identity.backing_inode is not None or disk.backing_inode is not None:
        differ(
            "backing file inode",
            f"{identity.backing_device}/{identity.backing_inode}",
            f"{disk.backing_device}/{disk.backing_inode}",
        )
    return changes

"""May this target be written? And is it still the same device right before writing?

``check_target`` decides (system disk, holders, read-only, partition node, mounted
partitions, the image on the target) and pins what it saw as an ``Identity``;
``Identity.recheck`` runs the same checks again just before the first byte and
refuses when a different device now sits at that path.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Literal

from usbwriter.devices import (
    DEV,
    Disk,
    disk_from_info,
    image_disks,
    read_block_info,
    read_snapshot,
    stat_node,
    sys_path_of,
)
from usbwriter.errors import BadInput, DeviceFault, Refused

log = logging.getLogger(__name__)

UMOUNT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Identity:
    """What the chosen target was when it was checked.

    For a block device: major:minor, the kernel's disk sequence number (bumped on
    every new medium or loop attach), size, serial and WWN, and for a loop device its
    backing file (path, and device and inode of the file). For a regular file (a VM
    disk image): the file's device and inode, and its size. ``unmounted`` lists the
    mountpoints ``check_target`` unmounted on the way.
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

    def recheck(self) -> None:
        """Raise ``Refused`` unless the same device (or file) still sits at ``path`` and
        may still be written (not mounted meanwhile, no holders, not read-only...)."""
        if self.requested and os.path.lexists(self.requested):
            now = os.path.realpath(self.requested)
            if now != self.path:
                raise Refused(
                    f"{self.requested}: now points to {now}, not {self.path} as when it was "
                    "chosen; choose the device again"
                )
        try:
            st = os.stat(self.path)
        except OSError as e:
            raise Refused(
                f"{self.path}: gone since it was chosen ({e.strerror}); choose the device again"
            ) from e
        if self.kind == "file":
            self._recheck_file(st)
        else:
            self._recheck_block(st)

    def _recheck_file(self, st: os.stat_result) -> None:
        changes = []
        if not stat.S_ISREG(st.st_mode):
            changes.append("no longer a regular file")
        elif (st.st_dev, st.st_ino) != (self.file_device, self.file_inode):
            changes.append(f"inode {self.file_inode} -> {st.st_ino} (replaced)")
        elif st.st_size != self.size:
            changes.append(f"size {self.size} -> {st.st_size} bytes")
        if changes:
            raise Refused(
                f"{self.path}: not the file that was chosen: {'; '.join(changes)}; "
                "choose the target again"
            )

    def _recheck_block(self, st: os.stat_result) -> None:
        if not stat.S_ISBLK(st.st_mode):
            raise Refused(f"{self.path}: no longer a block device; choose the device again")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        if (major, minor) != (self.major, self.minor):
            raise Refused(
                f"{self.path}: a different device sits there now (device number "
                f"{self.major}:{self.minor} -> {major}:{minor}); choose the device again"
            )
        try:
            snapshot = read_snapshot()
            disk = disk_from_info(read_block_info(sys_path_of(f"{major}:{minor}")), snapshot)
        except DeviceFault as e:
            raise Refused(f"{self.path}: vanished while checking it again: {e}") from e
        changes = identity_changes(self, disk)
        if changes:
            raise Refused(
                f"{self.path}: not the device that was chosen: {'; '.join(changes)}; "
                "choose the device again"
            )
        if disk.reasons:
            raise Refused(f"{self.path}: refused since it was chosen: {'; '.join(disk.reasons)}")
        if disk.mounted:
            raise Refused(
                f"{self.path}: mounted since it was chosen: {_mount_list(disk)}; "
                "unmount it (or pass --unmount) and try again"
            )


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


def _mount_list(disk: Disk) -> str:
    return ", ".join(f"{dev} on {mp}" for dev, mp in disk.mounted)


def unmount_all(mountpoints: list[str]) -> tuple[str, ...]:
    """Unmount with umount(8), deepest first; ``Refused`` naming the first that fails."""
    done: list[str] = []
    env = dict(os.environ, LC_ALL="C")
    for mp in sorted(set(mountpoints), key=lambda m: (-m.rstrip("/").count("/"), m)):
        argv = ["umount", mp]
        try:
            proc = subprocess.run(
                argv,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=UMOUNT_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Refused(f"{mp}: could not unmount: {e}") from e
        log.info("%s -> %d %s", " ".join(argv), proc.returncode, proc.stderr.strip())
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise Refused(f"{mp}: could not unmount: {why}")
        done.append(mp)
    return tuple(done)


def _same_file(a: os.stat_result, device: str | None, inode: int | None) -> bool:
    return device == f"{os.major(a.st_dev)}:{os.minor(a.st_dev)}" and inode == a.st_ino


def check_target(device: str, image: str | None, *, unmount: bool = False) -> Identity:
    """Decide whether ``device`` may be written with ``image`` and pin its identity.

    ``device`` may be a whole-disk node, a symlink to one (/dev/disk/by-id/...), or a
    regular file (a VM disk image). Raises ``BadInput`` for a missing path or one that
    is neither, and ``Refused`` for a partition node, the system disk, a disk with
    holders, a read-only disk, the disk holding the image, and mounted partitions
    unless ``unmount`` (then they are unmounted and listed in ``Identity.unmounted``).
    """
    path, st = stat_node(device)
    image_st = None
    if image is not None:
        try:
            image_st = os.stat(image)
        except OSError:
            image_st = None  # the image's own checks report it
    if stat.S_ISREG(st.st_mode):
        return _check_file(device, path, st, image_st)
    if not stat.S_ISBLK(st.st_mode):
        raise BadInput(f"{device}: not a block device or a regular file")

    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    sys_path = sys_path_of(devno)
    if not os.path.isdir(sys_path):
        raise BadInput(f"{device}: no block device {devno} in sysfs")
    if os.path.exists(os.path.join(sys_path, "partition")):
        parent = os.path.basename(os.path.dirname(sys_path))
        raise Refused(f"{device}: is a partition; write to the whole disk {DEV}/{parent}")
    if image_st is not None and stat.S_ISBLK(image_st.st_mode) and image_st.st_rdev == st.st_rdev:
        raise Refused(f"{device}: is the image itself")

    disk = _read_disk(sys_path, image)
    if (
        image_st is not None
        and disk.backing_inode is not None
        and _same_file(image_st, disk.backing_device, disk.backing_inode)
    ):
        raise Refused(f"{disk.path}: is a loop device over the image file itself")
    if disk.reasons:
        raise Refused(f"{disk.path} ({disk.description}): refused: {'; '.join(disk.reasons)}")

    unmounted: tuple[str, ...] = ()
    if disk.mounted:
        if not unmount:
            raise Refused(
                f"{disk.path}: mounted: {_mount_list(disk)}; unmount first or pass --unmount"
            )
        unmounted = unmount_all([mp for _, mp in disk.mounted])
        disk = _read_disk(sys_path, image)
        if disk.mounted:
            raise Refused(f"{disk.path}: still mounted after unmounting: {_mount_list(disk)}")
        if disk.reasons:
            raise Refused(f"{disk.path} ({disk.description}): refused: {'; '.join(disk.reasons)}")
    identity = Identity.from_disk(disk, requested=device, unmounted=unmounted)
    log.info("target %s pinned: %s", device, identity)
    return identity


def _read_disk(sys_path: str, image: str | None) -> Disk:
    snapshot = read_snapshot()
    try:
        info = read_block_info(sys_path)
    except DeviceFault as e:
        raise BadInput(f"{sys_path}: {e}") from e
    return disk_from_info(info, snapshot, image_disks=image_disks(image, snapshot))


def _check_file(
    device: str, path: str, st: os.stat_result, image_st: os.stat_result | None
) -> Identity:
    if image_st is not None and (image_st.st_dev, image_st.st_ino) == (st.st_dev, st.st_ino):
        raise Refused(f"{device}: is the image file itself")
    # A file that backs a loop device in use (mounted, or under the system) is not free.
    snapshot = read_snapshot()
    for node in snapshot.nodes:
        if not node.name.startswith("loop") or node.backing_devno is None:
            continue
        try:
            loop = disk_from_info(read_block_info(sys_path_of(node.devno)), snapshot)
        except DeviceFault:
            continue
        if loop.backing_inode is None or not _same_file(
            st, loop.backing_device, loop.backing_inode
        ):
            continue
        if loop.reasons or loop.mounted:
            why = "; ".join(loop.reasons) or f"mounted: {_mount_list(loop)}"
            raise Refused(f"{device}: backs {loop.path}, which is in use ({why})")
    return Identity(
        path=path,
        major=None,
        minor=None,
        size=st.st_size,
        diskseq=None,
        serial="",
        backing_file=None,
        kind="file",
        requested=device,
        file_device=st.st_dev,
        file_inode=st.st_ino,
    )

"""The frozen dataclasses of the drive layer: the block tree, mounts and swaps of a
moment (``Snapshot``, with its pure queries), and the ``Disk``/``Partition`` listed."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from usbwriter.devices.names import natural_key

#: Root of the device nodes.
DEV = "/dev"


#: A disk as a plain dict: name, sys_path, properties, attributes, holders, slaves,
#: devlinks, partitions (list of dicts) and loop (backing file identity, or None).
Info = dict[str, Any]


#: Sysfs attributes read for a whole disk, relative to its /sys/block/NAME directory.
DISK_ATTRIBUTES = (
    "dev",
    "size",
    "removable",
    "ro",
    "diskseq",
    "hidden",
    "capability",
    "queue/logical_block_size",
    "queue/physical_block_size",
    "queue/rotational",
    "serial",
    "wwid",
    "device/vendor",
    "device/model",
    "device/rev",
    "device/serial",
    "device/wwid",
    "device/type",
    "device/name",
    "device/manfid",
    "device/oemid",
    "loop/backing_file",
    "loop/offset",
    "loop/sizelimit",
    "loop/autoclear",
    "loop/dio",
    "dm/name",
)

#: Sysfs attributes read for a partition.
PARTITION_ATTRIBUTES = ("dev", "size", "start", "partition", "ro")

#: Attributes of the USB device a disk hangs off, stored as "usb/<attr>".
USB_ATTRIBUTES = ("idVendor", "idProduct", "manufacturer", "product", "serial", "speed")

#: Properties kept from udev (everything else in the udev database is noise here).
UDEV_PROPERTIES = (
    "DEVNAME",
    "DEVTYPE",
    "DEVPATH",
    "SUBSYSTEM",
    "MAJOR",
    "MINOR",
    "DISKSEQ",
    "DEVLINKS",
    "ID_BUS",
    "ID_TYPE",
    "ID_PATH",
    "ID_VENDOR",
    "ID_VENDOR_ENC",
    "ID_VENDOR_ID",
    "ID_VENDOR_FROM_DATABASE",
    "ID_MODEL",
    "ID_MODEL_ENC",
    "ID_MODEL_ID",
    "ID_MODEL_FROM_DATABASE",
    "ID_REVISION",
    "ID_SERIAL",
    "ID_SERIAL_SHORT",
    "ID_WWN",
    "ID_WWN_WITH_EXTENSION",
    "ID_USB_DRIVER",
    "ID_USB_INTERFACES",
    "ID_USB_VENDOR",
    "ID_USB_MODEL",
    "ID_USB_SERIAL_SHORT",
    "ID_DRIVE_FLASH_SD",
    "ID_DRIVE_MEDIA_FLASH_SD",
    "ID_NAME",
    "ID_PART_TABLE_TYPE",
    "ID_PART_TABLE_UUID",
    "ID_PART_ENTRY_NUMBER",
    "ID_PART_ENTRY_TYPE",
    "ID_PART_ENTRY_NAME",
    "ID_FS_TYPE",
    "ID_FS_USAGE",
    "ID_FS_LABEL",
    "ID_FS_LABEL_ENC",
    "ID_FS_UUID",
    "ID_FS_VERSION",
    "UDISKS_IGNORE",
    "UDISKS_SYSTEM",
)


# --------------------------------------------------------------------------- edge: reading


#: Mountpoints whose disk is the running system's: never a target.
CRITICAL_MOUNTPOINTS = (
    "/",
    "/boot",
    "/boot/efi",
    "/efi",
    "/usr",
    "/var",
    "/home",
    # The medium a live system runs from (Debian, Ubuntu, Fedora, Arch live images).
    "/run/live/medium",
    "/lib/live/mount/medium",
    "/cdrom",
    "/run/initramfs/live",
    "/run/archiso/bootmnt",
)


# --------------------------------------------------------------------------- snapshot


@dataclass(frozen=True)
class BlockNode:
    """One entry of /sys/class/block: how block devices stack on each other."""

    name: str
    devno: str
    parent: str | None = None  # the whole disk, for a partition
    slaves: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # e.g. "mapper/vg-root" for dm-0
    backing_devno: str | None = None  # loop: the device under its file (or the device itself)
    backing_inode: int | None = None  # loop over a regular file: the file's inode


@dataclass(frozen=True)
class MountEntry:
    devno: str
    mountpoint: str
    fstype: str
    source: str
    mount_id: int = 0  # mountinfo's own numbers: which mount, and the mount it sits on
    parent_id: int = 0


@dataclass(frozen=True)
class SwapEntry:
    path: str
    kind: str  # "partition" or "file"
    devno: str | None  # the swap device, or the device holding the swap file


@dataclass(frozen=True)
class Snapshot:
    """Mounts, swaps and the block-device tree at one moment; all queries are pure."""

    mounts: tuple[MountEntry, ...] = ()
    swaps: tuple[SwapEntry, ...] = ()
    nodes: tuple[BlockNode, ...] = ()

    @cached_property
    def _by_name(self) -> dict[str, BlockNode]:
        table = {n.name: n for n in self.nodes}
        for n in self.nodes:
            for alias in n.aliases:
                table.setdefault(alias, n)
        return table

    @cached_property
    def _by_devno(self) -> dict[str, BlockNode]:
        return {n.devno: n for n in self.nodes}

    def node(self, key: str) -> BlockNode | None:
        """A node by name ("sda2"), alias ("mapper/vg-root"), /dev path or "major:minor"."""
        if re.fullmatch(r"\d+:\d+", key):
            return self._by_devno.get(key)
        if key.startswith(DEV + "/"):
            key = key[len(DEV) + 1 :]
        return self._by_name.get(key)

    def disks_under(self, key: str) -> frozenset[str]:
        """The whole disks a device stands on: partitions to their disk, dm/md to their
        slaves, loop devices to the disk holding their backing file; the device itself
        when it is a whole disk. Empty for a device not in the tree (9p, overlay...)."""
        return frozenset(
            item[1] for item in self.footprint(key, through_files=True) if item[0] == "disk"
        )

    def footprint(self, key: str, *, through_files: bool) -> frozenset[tuple[str, ...]]:
        """What the bytes of a device live on: ("disk", name) for it and every whole disk
        below it, and ("file", "major:minor", "inode") for each loop's backing file. With
        ``through_files`` the walk goes on below a backing file to the disks of its file
        system (what reading depends on); without, it stops at the file (what writing
        through a loop device changes)."""
        out: set[tuple[str, ...]] = set()
        seen: set[str] = set()
        todo = [key]
        while todo:
            node = self.node(todo.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.parent is not None:
                todo.append(node.parent)
                continue
            out.add(("disk", node.name))
            todo.extend(node.slaves)
            if node.backing_devno is None:
                continue
            if node.backing_inode is None:  # over a device node: that device
                todo.append(node.backing_devno)
                continue
            out.add(("file", node.backing_devno, str(node.backing_inode)))
            if through_files:
                todo.append(node.backing_devno)
        return frozenset(out)

    def twins(self, key: str) -> tuple[str, ...]:
        """The other whole devices over the same backing file as KEY (two loop devices
        set up over one file): writing either writes the other's bytes."""
        files = {i for i in self.footprint(key, through_files=False) if i[0] == "file"}
        me = self.node(key)
        if not files or me is None:
            return ()
        return tuple(
            sorted(
                (
                    n.name
                    for n in self.nodes
                    if n.parent is None
                    and n.name != me.name
                    and files & self.footprint(n.name, through_files=False)
                ),
                key=natural_key,
            )
        )

    def in_use(self, key: str) -> list[str]:
        """What uses the whole device KEY in words: its and its partitions' mounts, and
        devices stacked on or holding it."""
        node = self.node(key)
        if node is None:
            return []
        mine = [node] + [n for n in self.nodes if n.parent == node.name]
        uses = [
            f"{DEV}/{n.name} is mounted on {mp}" for n in mine for mp in self.mountpoints(n.devno)
        ]
        holders = [h for n in mine for h in n.holders]
        holders += [u for u in self.stacked.get(node.name, ()) if u not in holders]
        if holders:
            uses.append(f"{', '.join(f'{DEV}/{h}' for h in holders)} stand on it")
        return uses

    @cached_property
    def stacked(self) -> Mapping[str, tuple[str, ...]]:
        """Disk name -> the other whole devices standing on it: loop devices over it, over
        one of its partitions or over a file on it, dm/md volumes, and what stands on
        those in turn. Writing a disk with anything stacked on it corrupts that."""
        users: dict[str, list[str]] = {}
        for n in self.nodes:
            if n.parent is not None:
                continue
            for disk in self.disks_under(n.name):
                if disk != n.name:
                    users.setdefault(disk, []).append(n.name)
        return {k: tuple(sorted(v, key=natural_key)) for k, v in users.items()}

    @cached_property
    def system_disks(self) -> Mapping[str, tuple[str, ...]]:
        """Disk name -> why it is a system disk (holds /, /boot ... or an active swap)."""
        why: dict[str, list[str]] = {}
        for m in self.mounts:
            if m.mountpoint not in CRITICAL_MOUNTPOINTS:
                continue
            for disk in self.disks_under(m.devno):
                reason = f"holds {m.mountpoint}"
                if reason not in why.setdefault(disk, []):
                    why[disk].append(reason)
        for s in self.swaps:
            if s.devno is None:
                continue
            for disk in self.disks_under(s.devno):
                reason = f"holds an active swap ({s.path})"
                if reason not in why.setdefault(disk, []):
                    why[disk].append(reason)
        return {k: tuple(v) for k, v in why.items()}

    def mountpoints(self, devno: str) -> tuple[str, ...]:
        """Where the device with this major:minor is mounted, in mount order."""
        seen: list[str] = []
        for m in self.mounts:
            if m.devno == devno and m.mountpoint not in seen:
                seen.append(m.mountpoint)
        return tuple(seen)

    def fstype(self, devno: str) -> str | None:
        for m in self.mounts:
            if m.devno == devno:
                return m.fstype
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "mounts": [asdict(m) for m in self.mounts],
            "swaps": [asdict(s) for s in self.swaps],
            "nodes": [asdict(n) for n in self.nodes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot:
        nodes = []
        for n in data.get("nodes", ()):
            nodes.append(
                BlockNode(
                    name=n["name"],
                    devno=n["devno"],
                    parent=n.get("parent"),
                    slaves=tuple(n.get("slaves", ())),
                    holders=tuple(n.get("holders", ())),
                    aliases=tuple(n.get("aliases", ())),
                    backing_devno=n.get("backing_devno"),
                    backing_inode=n.get("backing_inode"),
                )
            )
        return cls(
            mounts=tuple(MountEntry(**m) for m in data.get("mounts", ())),
            swaps=tuple(SwapEntry(**s) for s in data.get("swaps", ())),
            nodes=tuple(nodes),
        )


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class Partition:
    path: str
    name: str
    size: int
    fstype: str | None
    label: str | None
    mountpoints: tuple[str, ...]
    number: int | None = None
    major: int = 0
    minor: int = 0
    holders: tuple[str, ...] = ()
    start: int | None = None  # bytes from the disk's start (sysfs), when known

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mountpoints"] = list(self.mountpoints)
        d["holders"] = list(self.holders)
        return d


@dataclass(frozen=True)
class Disk:
    """A whole disk as the user would pick it. ``reasons`` say why it is not eligible."""

    path: str
    name: str
    major: int
    minor: int
    size: int
    vendor: str
    model: str
    serial: str
    bus: str
    removable: bool
    read_only: bool
    logical_block_size: int
    partitions: tuple[Partition, ...]
    by_id: str | None
    diskseq: int | None
    backing_file: str | None
    holders: tuple[str, ...]
    is_system: bool
    eligible: bool
    reasons: tuple[str, ...]
    wwn: str = ""
    sys_path: str = ""
    mountpoints: tuple[str, ...] = ()  # the whole disk itself, when it has no table
    user_drive: bool = False  # shown by default: USB, MMC/SD or removable
    notes: tuple[str, ...] = ()  # what a user should know, eligible or not
    backing_inode: int | None = None
    backing_device: str | None = None  # major:minor of the file system holding it
    usb_id: str | None = None  # "vvvv:pppp"
    twins: tuple[str, ...] = ()  # other loop devices over the same backing file

    @property
    def mounted(self) -> tuple[tuple[str, str], ...]:
        """(device path, mountpoint) for the disk and each partition that is mounted."""
        out = [(self.path, mp) for mp in self.mountpoints]
        for p in self.partitions:
            out.extend((p.path, mp) for mp in p.mountpoints)
        return tuple(out)

    @property
    def devno(self) -> str:
        return f"{self.major}:{self.minor}"

    @property
    def description(self) -> str:
        """ "SanDisk Cruzer" or the bus when the drive has no name."""
        text = " ".join(x for x in (self.vendor, self.model) if x)
        if not text and self.backing_file:
            return f"loop: {os.path.basename(self.backing_file)}"
        return text or f"{self.bus} disk"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["partitions"] = [p.to_dict() for p in self.partitions]
        for key in ("holders", "reasons", "mountpoints", "notes"):
            d[key] = list(d[key])
        d["mounted"] = [{"device": dev, "mountpoint": mp} for dev, mp in self.mounted]
        return d


# --------------------------------------------------------------------------- predicates

"""Whole disks as plain frozen dataclasses, built from udev properties and sysfs.

The layer has three tiers, so every decision can be tested on recorded data:

1. The edge (``read_block_info``, ``read_snapshot``) reads pyudev and sysfs once and
   turns a disk into a plain dict of strings (its udev properties, the sysfs
   attributes read, holders, partitions) and the machine into a ``Snapshot`` of
   mounts, swaps and the block-device tree. Without udevd, pyudev still enumerates
   sysfs (kernel properties only) and sysfs attributes fill the gaps.
2. ``disk_from_info(info, snapshot)`` is a pure function from those to a ``Disk``.
3. The predicates (``bus_of``, ``is_listable``, ``Snapshot.system_disks`` ...) are pure
   functions over the dicts and dataclasses.

``scripts/record_udev.py`` writes the dicts of real disks as JSON; the unit tests feed
them back through ``disk_from_info``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import select
import stat
import struct
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Literal

from usbwriter.errors import BadInput, DeviceFault

log = logging.getLogger(__name__)

#: Roots of the kernel interfaces read here (module constants so nothing is hidden).
SYS = "/sys"
DEV = "/dev"
MOUNTINFO = "/proc/self/mountinfo"
SWAPS = "/proc/swaps"
UDEV_CONTROL = "/run/udev/control"

#: A disk as a plain dict: name, sys_path, properties, attributes, holders, slaves,
#: devlinks, partitions (list of dicts) and loop (backing file identity, or None).
Info = dict[str, Any]

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

#: Sticks are rarely above this; a bigger "stick" earns a note (Etcher warns too).
LARGE_DRIVE = 128 * 10**9

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_UNLISTED = re.compile(r"(?:ram|zram|dm-|md)\d+$|md_d\d+$")
_HEX_ID = re.compile(r"0x[0-9a-fA-F]+$")
_UDEV_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_MOUNT_ESCAPE = re.compile(r"\\([0-7]{3})")


# --------------------------------------------------------------------------- names


def clean_name(value: str | None, limit: int = 64) -> str:
    """A device string safe to show: no control, bidi or other format characters.

    Whitespace controls become spaces, runs of spaces collapse, the ends are stripped
    and the result is cut to ``limit`` characters.
    """
    if not value:
        return ""
    out: list[str] = []
    for ch in value:
        if ch in "\t\n\r\v\f":
            out.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) in _DROP_CATEGORIES:
            continue
        else:
            out.append(ch)
    text = " ".join("".join(out).split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def decode_udev(value: str) -> str:
    r"""Decode udev's ``\xNN`` escapes (ID_VENDOR_ENC, ID_MODEL_ENC, ID_FS_LABEL_ENC)."""
    raw = _UDEV_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    try:
        # The escapes are bytes: re-read the latin-1 round trip as UTF-8 where it is.
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key: loop2 before loop10, sda before sdb."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


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
        out: set[str] = set()
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
            out.add(node.name)
            todo.extend(node.slaves)
            if node.backing_devno is not None:
                todo.append(node.backing_devno)
        return frozenset(out)

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


def _unescape_mount(text: str) -> str:
    return _MOUNT_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def parse_mountinfo(text: str) -> tuple[MountEntry, ...]:
    """/proc/self/mountinfo to entries (major:minor, mountpoint, fstype, source)."""
    out: list[MountEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        if len(fields) < sep + 3:
            continue
        out.append(
            MountEntry(
                devno=fields[2],
                mountpoint=_unescape_mount(fields[4]),
                fstype=fields[sep + 1],
                source=_unescape_mount(fields[sep + 2]),
                mount_id=_int(fields[0]),
                parent_id=_int(fields[1]),
            )
        )
    return tuple(out)


def parse_swaps(text: str) -> tuple[tuple[str, str], ...]:
    """/proc/swaps to (path, type) pairs; type is "partition" or "file"."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2:
            out.append((_unescape_mount(fields[0]), fields[1]))
    return tuple(out)


def resolve_mounts(
    mounts: Iterable[MountEntry], nodes: Iterable[BlockNode]
) -> tuple[MountEntry, ...]:
    """Give mounts of file systems with anonymous device numbers (major 0: btrfs and
    friends) the device number of their source when the source names a block device."""
    snap = Snapshot(nodes=tuple(nodes))
    out: list[MountEntry] = []
    for m in mounts:
        if m.devno.startswith("0:") and m.source.startswith(DEV + "/"):
            node = snap.node(m.source)
            if node is not None:
                m = replace(m, devno=node.devno)
        out.append(m)
    return tuple(out)


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


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(str(value).strip(), 0) if value is not None else default
    except ValueError:
        return default


def bus_of(info: Mapping[str, Any]) -> str:
    """usb, mmc, nvme, virtio, ata, scsi, loop, nbd ... from the sysfs path, else ID_BUS."""
    name: str = info["name"]
    parts = str(info.get("sys_path", "")).split("/")
    props: Mapping[str, str] = info.get("properties", {})
    if name.startswith("loop"):
        return "loop"
    if any(re.fullmatch(r"usb\d+", p) for p in parts):
        return "usb"
    if name.startswith("mmcblk") or any(p.startswith("mmc_host") for p in parts):
        return "mmc"
    if name.startswith("nvme") or "nvme" in parts:
        return "nvme"
    if any(re.fullmatch(r"ata\d+", p) for p in parts):
        return "ata"
    if any(re.fullmatch(r"virtio\d+", p) for p in parts) and name.startswith("vd"):
        return "virtio"
    bus = props.get("ID_BUS")
    if bus:
        return clean_name(bus, 16).lower()
    for prefix in ("nbd", "zram", "ram", "md", "dm-", "sr", "xvd", "vd"):
        if name.startswith(prefix):
            return {"sr": "scsi", "xvd": "xen", "vd": "virtio", "dm-": "dm"}.get(prefix, prefix)
    if any(re.fullmatch(r"virtio\d+", p) for p in parts):
        return "virtio"
    if any(re.fullmatch(r"host\d+", p) for p in parts):
        return "scsi"
    return "virtual" if "virtual" in parts else "unknown"


def is_listable(info: Mapping[str, Any]) -> bool:
    """False for what is never a drive: RAM disks, zram, device-mapper and md volumes
    (they show up as holders of their physical disks), hidden nodes, and detached
    virtual devices (an unattached loop or nbd has size 0)."""
    name: str = info["name"]
    attrs: Mapping[str, str] = info.get("attributes", {})
    if _UNLISTED.match(name):
        return False
    if attrs.get("hidden", "0").strip() == "1":
        return False
    virtual = "/virtual/" in str(info.get("sys_path", "")) or name.startswith(("loop", "nbd"))
    return not (virtual and _int(attrs.get("size")) == 0)


def _first(*values: str | None) -> str:
    for v in values:
        if v is not None:
            text = clean_name(v)
            if text:
                return text
    return ""


def _vendor(props: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    sys_vendor = attrs.get("device/vendor")
    if sys_vendor and _HEX_ID.match(sys_vendor.strip()):
        sys_vendor = None  # virtio and PCI report a numeric id here
    return _first(
        decode_udev(props["ID_VENDOR_ENC"]) if "ID_VENDOR_ENC" in props else None,
        props.get("ID_VENDOR", "").replace("_", " ") or None,
        sys_vendor,
        attrs.get("usb/manufacturer"),
        props.get("ID_VENDOR_FROM_DATABASE"),
    )


def _model(props: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    return _first(
        decode_udev(props["ID_MODEL_ENC"]) if "ID_MODEL_ENC" in props else None,
        props.get("ID_MODEL", "").replace("_", " ") or None,
        attrs.get("device/model"),
        attrs.get("device/name"),  # MMC/SD cards
        attrs.get("usb/product"),
        props.get("ID_NAME"),
    )


def _serial(props: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    return _first(
        props.get("ID_SERIAL_SHORT"),
        attrs.get("device/serial"),  # NVMe, MMC/SD
        attrs.get("serial"),  # virtio
        attrs.get("usb/serial"),
        props.get("ID_USB_SERIAL_SHORT"),
    )


def _wwn(props: Mapping[str, str], attrs: Mapping[str, str]) -> str:
    return _first(
        props.get("ID_WWN_WITH_EXTENSION"),
        props.get("ID_WWN"),
        attrs.get("wwid"),
        attrs.get("device/wwid"),
    )


def _by_id(devlinks: Iterable[str]) -> str | None:
    links = sorted(link for link in devlinks if link.startswith(f"{DEV}/disk/by-id/"))
    if not links:
        return None
    preferred = ("usb-", "mmc-", "nvme-", "ata-", "scsi-", "virtio-")
    for prefix in preferred:
        for link in links:
            if os.path.basename(link).startswith(prefix):
                return link
    return next((x for x in links if not os.path.basename(x).startswith("wwn-")), links[0])


def _node_path(info: Mapping[str, Any]) -> str:
    props: Mapping[str, str] = info.get("properties", {})
    devname = props.get("DEVNAME") or info["name"].replace("!", "/")
    return devname if devname.startswith("/") else f"{DEV}/{devname}"


def _devno(info: Mapping[str, Any]) -> tuple[int, int]:
    attrs: Mapping[str, str] = info.get("attributes", {})
    props: Mapping[str, str] = info.get("properties", {})
    dev = attrs.get("dev", "")
    if ":" in dev:
        major, _, minor = dev.strip().partition(":")
        return _int(major), _int(minor)
    return _int(props.get("MAJOR")), _int(props.get("MINOR"))


def partition_from_info(info: Mapping[str, Any], snapshot: Snapshot) -> Partition:
    props: Mapping[str, str] = info.get("properties", {})
    attrs: Mapping[str, str] = info.get("attributes", {})
    major, minor = _devno(info)
    devno = f"{major}:{minor}"
    label = None
    if "ID_FS_LABEL_ENC" in props:
        label = clean_name(decode_udev(props["ID_FS_LABEL_ENC"]))
    elif "ID_FS_LABEL" in props:
        label = clean_name(props["ID_FS_LABEL"])
    fstype = props.get("ID_FS_TYPE") or snapshot.fstype(devno)
    number = attrs.get("partition") or props.get("ID_PART_ENTRY_NUMBER")
    return Partition(
        path=_node_path(info),
        name=info["name"],
        size=_int(attrs.get("size")) * 512,
        fstype=clean_name(fstype, 32) or None,
        label=label or None,
        mountpoints=snapshot.mountpoints(devno),
        number=_int(number) if number else None,
        major=major,
        minor=minor,
        holders=tuple(info.get("holders", ())),
    )


def disk_from_info(
    info: Mapping[str, Any],
    snapshot: Snapshot | None = None,
    *,
    image_disks: Iterable[str] = (),
) -> Disk:
    """Pure: a recorded or freshly read disk dict (see ``read_block_info``), the mounts
    and swaps of the moment, and the disks holding the image file -> a ``Disk``."""
    snap = snapshot if snapshot is not None else Snapshot()
    props: Mapping[str, str] = info.get("properties", {})
    attrs: Mapping[str, str] = info.get("attributes", {})
    name: str = info["name"]
    major, minor = _devno(info)
    devno = f"{major}:{minor}"
    size = _int(attrs.get("size")) * 512
    bus = bus_of(info)
    removable = attrs.get("removable", "0").strip() == "1"
    read_only = attrs.get("ro", "0").strip() == "1"
    partitions = tuple(
        sorted(
            (partition_from_info(p, snap) for p in info.get("partitions", ())),
            key=lambda p: (p.number or 0, natural_key(p.name)),
        )
    )
    holders = list(info.get("holders", ()))
    for p in partitions:
        holders.extend(h for h in p.holders if h not in holders)
    loop: Mapping[str, Any] = info.get("loop") or {}
    backing_file = attrs.get("loop/backing_file", "").strip() or None
    diskseq_text = attrs.get("diskseq") or props.get("DISKSEQ")
    usb_id = None
    if attrs.get("usb/idVendor") and attrs.get("usb/idProduct"):
        usb_id = f"{attrs['usb/idVendor'].strip()}:{attrs['usb/idProduct'].strip()}"

    system = snap.system_disks.get(name, ())
    user_drive = bus in ("usb", "mmc") or (removable and not name.startswith("sr"))
    mountpoints = snap.mountpoints(devno)

    reasons: list[str] = [f"system disk: {why}" for why in system]
    if holders:
        reasons.append(f"in use by {', '.join(holders)} (device-mapper, md, LVM or similar)")
    stacked = [u for u in snap.stacked.get(name, ()) if u not in holders]
    if stacked and not system:  # a system disk carries loops and volumes as a matter of course
        reasons.append(f"in use: {', '.join(f'{DEV}/{u}' for u in stacked)} stacked on it")
    if read_only:
        reasons.append("read-only")
    if name in set(image_disks):
        reasons.append("holds the image file")
    if name.startswith("sr") or major == 11:
        reasons.append("optical drive")
    if size == 0:
        reasons.append("no medium (size 0)")

    notes: list[str] = []
    if bus == "usb":
        notes.append("removable USB drive" if removable else "USB drive")
    elif bus == "mmc":
        notes.append("SD/MMC card")
    elif removable:
        notes.append(f"removable {bus} disk")
    elif bus == "loop":
        notes.append(f"loop device over {backing_file}" if backing_file else "loop device")
    else:
        notes.append(f"internal {bus} disk (not USB or removable)")
    if not system:
        for dev, mp in [(f"{DEV}/{name}", mp) for mp in mountpoints] + [
            (p.path, mp) for p in partitions for mp in p.mountpoints
        ]:
            notes.append(f"{dev} is mounted on {mp} (needs unmounting)")
    if user_drive and size > LARGE_DRIVE:
        notes.append(f"larger than {LARGE_DRIVE // 10**9} GB: check this is the drive you mean")

    return Disk(
        path=_node_path(info),
        name=name,
        major=major,
        minor=minor,
        size=size,
        vendor=_vendor(props, attrs),
        model=_model(props, attrs),
        serial=_serial(props, attrs),
        bus=bus,
        removable=removable,
        read_only=read_only,
        logical_block_size=_int(attrs.get("queue/logical_block_size"), 512) or 512,
        partitions=partitions,
        by_id=_by_id(info.get("devlinks") or props.get("DEVLINKS", "").split()),
        diskseq=_int(diskseq_text) if diskseq_text else None,
        backing_file=backing_file,
        holders=tuple(holders),
        is_system=bool(system),
        eligible=not reasons,
        reasons=tuple(reasons),
        wwn=_wwn(props, attrs),
        sys_path=str(info.get("sys_path", "")),
        mountpoints=mountpoints,
        user_drive=user_drive,
        notes=tuple(notes),
        backing_inode=loop.get("inode"),
        backing_device=loop.get("device"),
        usb_id=usb_id,
    )


def sort_disks(disks: Iterable[Disk]) -> list[Disk]:
    """Drives a user would flash first, then by name (sda before sdb, loop2 before loop10)."""
    return sorted(disks, key=lambda d: (not d.user_drive, natural_key(d.name)))


# --------------------------------------------------------------------------- edge: reading


def _read_attr(directory: str, key: str) -> str | None:
    try:
        with open(os.path.join(directory, key), "rb") as f:
            data = f.read(4096)
    except OSError:
        return None
    return data.decode("utf-8", errors="replace").strip()


def _listdir(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory), key=natural_key)
    except OSError:
        return []


_udev_context: Any = None
_udev_lock = threading.Lock()


def _context() -> Any:
    global _udev_context
    with _udev_lock:
        if _udev_context is None:
            import pyudev

            _udev_context = pyudev.Context()
        return _udev_context


def _properties(sys_path: str) -> dict[str, str]:
    """udev properties (from the udev database when udevd has run, from the kernel's
    uevent otherwise), read through pyudev; the uevent file if pyudev fails."""
    props: dict[str, str] = {}
    try:
        import pyudev

        device = pyudev.Devices.from_sys_path(_context(), sys_path)
        for key in device.properties:
            props[str(key)] = str(device.properties[key])
    except Exception as e:  # pyudev missing, libudev missing, device gone
        log.debug("pyudev could not read %s: %s; reading uevent", sys_path, e)
        text = _read_attr(sys_path, "uevent") or ""
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                props[key] = value
    return {k: v for k, v in props.items() if k in UDEV_PROPERTIES}


def _usb_attributes(sys_path: str) -> dict[str, str]:
    """Attributes of the USB device (the one with idVendor) a disk hangs off, if any."""
    path = sys_path
    while path.startswith(f"{SYS}/devices/") and path != f"{SYS}/devices":
        if os.path.exists(os.path.join(path, "idVendor")) and os.path.exists(
            os.path.join(path, "busnum")
        ):
            out = {}
            for key in USB_ATTRIBUTES:
                value = _read_attr(path, key)
                if value is not None:
                    out[f"usb/{key}"] = value
            return out
        path = os.path.dirname(path)
    return {}


# struct loop_info64 from <linux/loop.h>: 5 x u64, 4 x u32, 64+64+32 bytes, 2 x u64.
_LOOP_GET_STATUS64 = 0x4C05
_LOOP_INFO64 = struct.Struct("=QQQQQIIII64s64s32sQQ")


def loop_backing(name: str, backing_file: str | None) -> dict[str, Any] | None:
    """The backing file's identity: ``{"file", "device" (major:minor), "inode"}``.

    Read with LOOP_GET_STATUS64 (the kernel's own record, right even when the file was
    renamed or deleted) when the loop node can be opened, else by stat'ing the path.
    """
    if not backing_file:
        return None
    try:
        fd = os.open(f"{DEV}/{name}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            buf = fcntl.ioctl(fd, _LOOP_GET_STATUS64, bytes(_LOOP_INFO64.size))
        finally:
            os.close(fd)
        fields = _LOOP_INFO64.unpack(buf)
        dev, ino, rdev = fields[0], fields[1], fields[2]
        return {
            "file": backing_file,
            "device": f"{os.major(dev)}:{os.minor(dev)}",
            "inode": ino,
            # A device node as the backing "file": the device it stands for.
            "rdevice": f"{os.major(rdev)}:{os.minor(rdev)}" if rdev else None,
            "source": "ioctl",
        }
    except OSError as e:
        if e.errno == errno.ENXIO:
            return None  # detached meanwhile
        log.debug("LOOP_GET_STATUS64 on /dev/%s: %s; using stat", name, e)
    path = backing_file.removesuffix(" (deleted)")
    try:
        st = os.stat(path)
    except OSError:
        return {"file": backing_file, "device": None, "inode": None, "source": "none"}
    return {
        "file": backing_file,
        "device": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}",
        "inode": st.st_ino,
        "rdevice": _devno_of(st, device=True) if stat.S_ISBLK(st.st_mode) else None,
        "source": "stat",
    }


def _by_id_links() -> dict[str, list[str]]:
    """Without udev properties: /dev/disk/by-id links, keyed by the node they point to."""
    out: dict[str, list[str]] = {}
    directory = f"{DEV}/disk/by-id"
    for entry in _listdir(directory):
        link = os.path.join(directory, entry)
        out.setdefault(os.path.realpath(link), []).append(link)
    return out


def read_block_info(sys_path: str, *, by_id: Mapping[str, list[str]] | None = None) -> Info:
    """Read one whole disk (its /sys/block/NAME or /sys/devices/... directory) into the
    plain dict that ``disk_from_info`` and the recorded test data use."""
    real = os.path.realpath(sys_path)
    if not os.path.isdir(real):
        raise DeviceFault(f"{sys_path}: no such block device in sysfs (was it removed?)")
    name = os.path.basename(real)
    attributes: dict[str, str] = {}
    for key in DISK_ATTRIBUTES:
        value = _read_attr(real, key)
        if value is not None:
            attributes[key] = value
    attributes.update(_usb_attributes(real))
    properties = _properties(real)
    partitions: list[Info] = []
    for entry in _listdir(real):
        part_dir = os.path.join(real, entry)
        if not os.path.exists(os.path.join(part_dir, "partition")):
            continue
        part_attrs = {}
        for key in PARTITION_ATTRIBUTES:
            value = _read_attr(part_dir, key)
            if value is not None:
                part_attrs[key] = value
        partitions.append(
            {
                "name": entry,
                "sys_path": part_dir,
                "properties": _properties(part_dir),
                "attributes": part_attrs,
                "holders": _listdir(os.path.join(part_dir, "holders")),
            }
        )
    devlinks = properties.get("DEVLINKS", "").split()
    if not devlinks:
        links = by_id if by_id is not None else _by_id_links()
        devlinks = links.get(f"{DEV}/{name.replace('!', '/')}", [])
    return {
        "name": name,
        "sys_path": real,
        "properties": properties,
        "attributes": attributes,
        "holders": _listdir(os.path.join(real, "holders")),
        "slaves": _listdir(os.path.join(real, "slaves")),
        "devlinks": devlinks,
        "partitions": partitions,
        "loop": loop_backing(name, attributes.get("loop/backing_file")),
    }


def read_nodes() -> tuple[BlockNode, ...]:
    """The block-device tree from /sys/class/block."""
    nodes: list[BlockNode] = []
    base = f"{SYS}/class/block"
    for name in _listdir(base):
        real = os.path.realpath(os.path.join(base, name))
        devno = _read_attr(real, "dev")
        if not devno:
            continue
        parent = None
        if os.path.exists(os.path.join(real, "partition")):
            parent = os.path.basename(os.path.dirname(real))
        aliases = []
        dm_name = _read_attr(real, "dm/name")
        if dm_name:
            aliases.append(f"mapper/{dm_name}")
        backing_devno, backing_inode = None, None
        backing_file = _read_attr(real, "loop/backing_file")
        if backing_file:
            backing = loop_backing(name, backing_file)
            if backing:
                # Over a device node: stacked on that device, not on /dev's file system.
                backing_devno = backing.get("rdevice") or backing.get("device")
                if not backing.get("rdevice"):
                    backing_inode = backing.get("inode")
        nodes.append(
            BlockNode(
                name=name,
                devno=devno,
                parent=parent,
                slaves=tuple(_listdir(os.path.join(real, "slaves"))),
                holders=tuple(_listdir(os.path.join(real, "holders"))),
                aliases=tuple(aliases),
                backing_devno=backing_devno,
                backing_inode=backing_inode,
            )
        )
    return tuple(nodes)


def _devno_of(st: os.stat_result, *, device: bool) -> str:
    dev = st.st_rdev if device else st.st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


def read_snapshot() -> Snapshot:
    """Mounts (/proc/self/mountinfo), active swaps (/proc/swaps) and the block tree."""
    nodes = read_nodes()
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            mounts = list(parse_mountinfo(f.read()))
    except OSError as e:
        raise DeviceFault(f"{MOUNTINFO}: cannot read the mount table: {e.strerror}") from e
    # Anonymous device numbers (btrfs, ...) whose source is a device node: stat it.
    for i, m in enumerate(mounts):
        if m.devno.startswith("0:") and m.source.startswith(DEV + "/"):
            with contextlib.suppress(OSError):
                st = os.stat(m.source)
                if stat.S_ISBLK(st.st_mode):
                    mounts[i] = replace(m, devno=_devno_of(st, device=True))
    swaps: list[SwapEntry] = []
    try:
        with open(SWAPS, encoding="utf-8", errors="replace") as f:
            swap_text = f.read()
    except OSError:
        swap_text = ""
    for path, kind in parse_swaps(swap_text):
        devno = None
        try:
            st = os.stat(path.removesuffix(" (deleted)"))
            devno = _devno_of(st, device=stat.S_ISBLK(st.st_mode))
        except OSError as e:
            log.warning("active swap %s cannot be resolved to a device: %s", path, e)
        swaps.append(SwapEntry(path, kind, devno))
    return Snapshot(mounts=resolve_mounts(mounts, nodes), swaps=tuple(swaps), nodes=nodes)


def image_disks(image: str | None, snapshot: Snapshot) -> frozenset[str]:
    """The whole disks that hold ``image`` (a file, or a device when cloning one)."""
    if not image:
        return frozenset()
    try:
        st = os.stat(image)
    except OSError:
        return frozenset()
    if stat.S_ISBLK(st.st_mode):
        return snapshot.disks_under(_devno_of(st, device=True))
    found = snapshot.disks_under(_devno_of(st, device=False))
    if found:
        return found
    # Anonymous device (btrfs subvolume, ...): the longest mountpoint above the file.
    real = os.path.realpath(image)
    best: MountEntry | None = None
    for m in snapshot.mounts:
        prefix = m.mountpoint.rstrip("/") + "/"
        if (real.startswith(prefix) or m.mountpoint == "/") and (
            best is None or len(m.mountpoint) > len(best.mountpoint)
        ):
            best = m
    return snapshot.disks_under(best.devno) if best is not None else frozenset()


def sys_path_of(devno: str) -> str:
    """The sysfs directory of the block device with this major:minor."""
    return os.path.realpath(f"{SYS}/dev/block/{devno}")


def list_disks(include_all: bool = False, *, image: str | None = None) -> list[Disk]:
    """Whole disks, drives a user would flash first.

    Default view: USB disks (removable or not), MMC/SD cards and removable disks, with a
    medium. ``include_all`` adds every other whole disk (loop devices included) except
    RAM/zram disks, dm/md volumes and detached loop devices. ``image``, when given,
    marks the disks that hold it as not eligible.
    """
    snapshot = read_snapshot()
    held = image_disks(image, snapshot)
    by_id = _by_id_links()
    disks: list[Disk] = []
    for name in _listdir(f"{SYS}/block"):
        try:
            info = read_block_info(f"{SYS}/block/{name}", by_id=by_id)
        except DeviceFault as e:
            log.info("skipping %s: %s", name, e)
            continue
        if not is_listable(info):
            continue
        disk = disk_from_info(info, snapshot, image_disks=held)
        if not include_all and (not disk.user_drive or disk.size == 0):
            continue
        disks.append(disk)
    return sort_disks(disks)


def stat_node(path: str) -> tuple[str, os.stat_result]:
    """(the path with symlinks resolved, its stat); BadInput when it is not there."""
    if not os.path.lexists(path):
        raise BadInput(f"{path}: no such device")
    real = os.path.realpath(path)
    try:
        return real, os.stat(real)
    except OSError as e:
        raise BadInput(f"{path}: cannot open: {e.strerror}") from e


def disk_from_path(path: str, *, image: str | None = None) -> Disk:
    """The whole disk at ``path`` (symlinks such as /dev/disk/by-id/... resolved).

    Raises ``BadInput`` for a missing path, a path that is not a block device, or a
    partition (the message names its whole disk).
    """
    _, st = stat_node(path)
    if not stat.S_ISBLK(st.st_mode):
        raise BadInput(f"{path}: not a block device")
    sys_path = sys_path_of(_devno_of(st, device=True))
    if os.path.exists(os.path.join(sys_path, "partition")):
        parent = os.path.basename(os.path.dirname(sys_path))
        raise BadInput(f"{path}: is a partition; use the whole disk {DEV}/{parent}")
    snapshot = read_snapshot()
    return disk_from_info(
        read_block_info(sys_path), snapshot, image_disks=image_disks(image, snapshot)
    )


# --------------------------------------------------------------------------- table


def format_size(size: int) -> str:
    """1.9 GiB, 64.0 MiB, 512 B."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def format_disk_table(disks: Iterable[Disk]) -> str:
    """A plain-text table for ``usbwriter list``: one line per disk, then its status."""
    rows = [("DEVICE", "SIZE", "BUS", "RM", "RO", "VENDOR / MODEL", "SERIAL", "STATUS")]
    for d in disks:
        if d.eligible:
            status = "ok: " + (d.notes[0] if d.notes else "eligible")
            if d.mounted:
                status += "; mounted (needs --unmount)"
        else:
            status = "no: " + "; ".join(d.reasons)
        rows.append(
            (
                d.path,
                format_size(d.size),
                d.bus,
                "yes" if d.removable else "no",
                "yes" if d.read_only else "no",
                clean_name(d.description, 40),
                clean_name(d.serial, 24) or "-",
                status,
            )
        )
    if len(rows) == 1:
        return "no drives found"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------- hot-plug


@dataclass(frozen=True)
class DiskEvent:
    """A whole disk appeared, went, or changed (media, size, partitions).

    ``disk`` is None when the device is gone, or is not (or no longer) a disk the
    watcher's view lists (e.g. a loop device just detached): drop it from a list.
    """

    action: Literal["add", "remove", "change"]
    disk: Disk | None
    path: str


@dataclass
class Watcher:
    """Hot-plug events for whole disks, from a pyudev netlink monitor.

    The udev source is used when udevd runs (its events carry ID_* properties and come
    after udev's rules ran), the kernel source otherwise. Partition events are reported
    as a "change" of their disk. Call ``start()`` before the initial listing so no event
    is lost between the two; ``iter_events`` starts the monitor itself otherwise.
    """

    include_all: bool = False
    source: str | None = None
    poll_interval: float = 0.25
    _monitor: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.source is None:
            self.source = "udev" if os.path.exists(UDEV_CONTROL) else "kernel"

    def start(self) -> None:
        if self._monitor is not None:
            return
        import pyudev

        monitor = pyudev.Monitor.from_netlink(_context(), source=self.source)
        monitor.filter_by("block")
        monitor.start()
        self._monitor = monitor
        log.debug("watching block devices (%s events)", self.source)

    def close(self) -> None:
        self._monitor = None  # pyudev closes the socket when the monitor is freed

    def iter_events(self, cancel: threading.Event) -> Iterator[DiskEvent]:
        """Yield events until ``cancel`` is set (honoured within ``poll_interval``)."""
        self.start()
        monitor = self._monitor
        try:
            while not cancel.is_set():
                ready, _, _ = select.select([monitor], [], [], self.poll_interval)
                if not ready:
                    continue
                while not cancel.is_set():
                    device = monitor.poll(timeout=0)
                    if device is None:
                        break
                    event = self.event_from_device(device)
                    if event is not None:
                        yield event
        finally:
            self.close()

    def event_from_device(self, device: Any) -> DiskEvent | None:
        """Turn one pyudev event into a DiskEvent (None for events that do not matter)."""
        action = str(device.action or "")
        devtype = str(device.device_type or "")
        sys_path = str(device.sys_path)
        if action not in ("add", "remove", "change", "move"):
            return None
        if devtype == "partition":
            sys_path = os.path.dirname(sys_path)
            action = "change"
        elif devtype != "disk":
            return None
        name = os.path.basename(sys_path)
        if _UNLISTED.match(name):
            return None
        path = f"{DEV}/{name.replace('!', '/')}"
        if devtype == "disk" and device.device_node:
            path = str(device.device_node)
        kind: Literal["add", "remove", "change"] = (
            "remove" if action == "remove" else "add" if action == "add" else "change"
        )
        if kind == "remove":
            return DiskEvent(kind, None, path)
        return DiskEvent(kind, self._disk(sys_path), path)

    def _disk(self, sys_path: str) -> Disk | None:
        try:
            info = read_block_info(sys_path)
            if not is_listable(info):
                return None
            disk = disk_from_info(info, read_snapshot())
        except (OSError, DeviceFault) as e:
            log.debug("%s vanished while reading it: %s", sys_path, e)
            return None
        if not self.include_all and (not disk.user_drive or disk.size == 0):
            return None
        return disk

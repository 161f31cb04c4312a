"""Pure functions from recorded or freshly read dicts and text: the mount and swap
tables parsed, a disk dict to a ``Disk``, and the predicates (bus, listable, order)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from usbwriter.devices.model import (
    DEV,
    BlockNode,
    Disk,
    MountEntry,
    Partition,
    Snapshot,
)
from usbwriter.devices.names import clean_name, decode_udev, natural_key

#: Sticks are rarely above this; a bigger "stick" earns a note (Etcher warns too).
LARGE_DRIVE = 128 * 10**9


_UNLISTED = re.compile(r"(?:ram|zram|dm-|md)\d+$|md_d\d+$")
_HEX_ID = re.compile(r"0x[0-9a-fA-F]+$")
_MOUNT_ESCAPE = re.compile(r"\\([0-7]{3})")


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
        start=_int(attrs["start"]) * 512 if "start" in attrs else None,
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
    for twin in snap.twins(name):
        # One backing file under two loop devices: what uses the other is written too.
        uses = snap.in_use(twin)
        if uses:
            reasons.append(
                f"shares its backing file with {DEV}/{twin}, which is in use ({'; '.join(uses)})"
            )
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
        twins = snap.twins(name)
        if twins:
            notes.append(
                f"the same backing file as {', '.join(f'{DEV}/{t}' for t in twins)}: "
                "writing one writes the other"
            )
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
        twins=snap.twins(name),
    )


def sort_disks(disks: Iterable[Disk]) -> list[Disk]:
    """Drives a user would flash first, then by name (sda before sdb, loop2 before loop10)."""
    return sorted(disks, key=lambda d: (not d.user_drive, natural_key(d.name)))

"""The edge: reads sysfs, udev, the loop ioctl and /proc once, into plain dicts and a
``Snapshot``; lists disks and resolves a path to its disk."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import struct
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from usbwriter.devices.classify import (
    disk_from_info,
    is_listable,
    parse_mountinfo,
    parse_swaps,
    resolve_mounts,
    sort_disks,
)
from usbwriter.devices.model import (
    DEV,
    DISK_ATTRIBUTES,
    PARTITION_ATTRIBUTES,
    UDEV_PROPERTIES,
    USB_ATTRIBUTES,
    BlockNode,
    Disk,
    Info,
    MountEntry,
    Snapshot,
    SwapEntry,
)
from usbwriter.devices.names import natural_key
from usbwriter.errors import BadInput, DeviceFault

log = logging.getLogger(__name__)


#: Roots of the kernel interfaces read here (module constants so nothing is hidden).
SYS = "/sys"
MOUNTINFO = "/proc/self/mountinfo"
SWAPS = "/proc/swaps"


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


def read_mounts() -> tuple[MountEntry, ...]:
    """This process's mount table, /proc/self/mountinfo, as it is now."""
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="replace") as f:
            return parse_mountinfo(f.read())
    except OSError as e:
        raise DeviceFault(f"{MOUNTINFO}: cannot read the mount table: {e.strerror}") from e


def read_snapshot() -> Snapshot:
    """Mounts (/proc/self/mountinfo), active swaps (/proc/swaps) and the block tree."""
    nodes = read_nodes()
    mounts = list(read_mounts())
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

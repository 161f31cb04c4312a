"""The drive layer: whole disks as plain frozen dataclasses, built from udev properties
and sysfs.

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

The modules, by what they hold:

- ``model``: the frozen dataclasses (``BlockNode``, ``MountEntry``, ``SwapEntry``,
  ``Snapshot`` and its pure queries, ``Partition``, ``Disk``) and the shape of a disk dict;
- ``names``: device strings made safe to show, udev escapes decoded, natural order;
- ``classify``: tier 2 and 3, the pure functions (mount and swap tables parsed,
  ``disk_from_info``, ``bus_of``, ``is_listable``, ``sort_disks``);
- ``read``: tier 1, the edge (sysfs, udev, the loop ioctl, /proc; ``list_disks``);
- ``watch``: hot-plug events (``DiskEvent``, ``Watcher``);
- ``table``: the plain-text table of ``usbwriter list``.

The kernel paths are module constants of the module that reads them (``read.SYS``,
``read.MOUNTINFO``, ``read.SWAPS``, ``watch.UDEV_CONTROL``, ``model.DEV``): patch them
there, not here.
"""

from __future__ import annotations

from usbwriter.devices.classify import (
    LARGE_DRIVE,
    bus_of,
    disk_from_info,
    is_listable,
    parse_mountinfo,
    parse_swaps,
    partition_from_info,
    resolve_mounts,
    sort_disks,
)
from usbwriter.devices.model import (
    CRITICAL_MOUNTPOINTS,
    DEV,
    DISK_ATTRIBUTES,
    PARTITION_ATTRIBUTES,
    UDEV_PROPERTIES,
    USB_ATTRIBUTES,
    BlockNode,
    Disk,
    Info,
    MountEntry,
    Partition,
    Snapshot,
    SwapEntry,
)
from usbwriter.devices.names import clean_name, decode_udev, natural_key
from usbwriter.devices.read import (
    MOUNTINFO,
    SWAPS,
    SYS,
    disk_from_path,
    image_disks,
    list_disks,
    loop_backing,
    read_block_info,
    read_mounts,
    read_nodes,
    read_snapshot,
    stat_node,
    sys_path_of,
)
from usbwriter.devices.table import format_disk_table, format_size
from usbwriter.devices.watch import UDEV_CONTROL, DiskEvent, Watcher

__all__ = [
    "CRITICAL_MOUNTPOINTS",
    "DEV",
    "DISK_ATTRIBUTES",
    "LARGE_DRIVE",
    "MOUNTINFO",
    "PARTITION_ATTRIBUTES",
    "SWAPS",
    "SYS",
    "UDEV_CONTROL",
    "UDEV_PROPERTIES",
    "USB_ATTRIBUTES",
    "BlockNode",
    "Disk",
    "DiskEvent",
    "Info",
    "MountEntry",
    "Partition",
    "Snapshot",
    "SwapEntry",
    "Watcher",
    "bus_of",
    "clean_name",
    "decode_udev",
    "disk_from_info",
    "disk_from_path",
    "format_disk_table",
    "format_size",
    "image_disks",
    "is_listable",
    "list_disks",
    "loop_backing",
    "natural_key",
    "parse_mountinfo",
    "parse_swaps",
    "partition_from_info",
    "read_block_info",
    "read_mounts",
    "read_nodes",
    "read_snapshot",
    "resolve_mounts",
    "sort_disks",
    "stat_node",
    "sys_path_of",
]

"""What the plan suggests from what the drive holds: "write only what changed".

A drive that already holds an image of the same size class (a stick written before
from an earlier build of this image) is planned as a delta write: the drive is read
beside the image and only the MiB blocks that differ are written. The rule is pure
(``delta_suggested``); ``read_layout`` is the one read it needs (34 KiB of the drive).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from usbwriter.devices import Disk


@dataclass(frozen=True)
class Extent:
    """A part of a drive: where it starts (bytes; None when not known), its size and
    the file system on it."""

    start: int | None
    size: int
    fstype: str | None = None


@dataclass(frozen=True)
class Layout:
    """What a drive holds, as far as it matters for a delta write: its partitions, in
    table order, and an ISO 9660 volume on the whole disk (at byte 32768), if any."""

    partitions: tuple[Extent, ...] = ()
    whole: Extent | None = None


def layout_of(disk: Disk, starts: Mapping[str, int], whole: Extent | None) -> Layout:
    """DISK's partitions with their starts (by partition name) and the whole-disk volume."""
    return Layout(
        tuple(Extent(starts.get(p.name), p.size, p.fstype) for p in disk.partitions),
        whole,
    )


def _near(size: int, image_size: int) -> bool:
    return abs(size - image_size) <= image_size / 4


def delta_suggested(layout: Layout, image_size: int | None) -> bool:
    """Pre-select "write only what changed": the drive looks as if it already holds an
    image of this size class. Its partitions end within the image and at least halfway
    through it; or its first partition, or the whole disk, is an ISO 9660 volume within
    25% of the image's size."""
    if not image_size or image_size <= 0:
        return False
    parts = layout.partitions
    if parts and all(p.start is not None for p in parts):
        end = max((p.start or 0) + p.size for p in parts)
        if image_size / 2 <= end <= image_size:
            return True
    volumes = [*parts[:1], *([layout.whole] if layout.whole is not None else [])]
    return any(v.fstype == "iso9660" and _near(v.size, image_size) for v in volumes)


def read_layout(disk: Disk) -> Layout:
    """DISK's partitions with their starts (as listed), and an ISO 9660 volume on the
    whole disk (its primary volume descriptor). Reads 34 KiB of the drive; changes
    nothing. What cannot be read is left out (then no delta write is suggested)."""
    from usbwriter.iso.descriptors import disc_volume_size

    starts = {p.name: p.start for p in disk.partitions if p.start is not None}
    volume = None
    try:
        fd = os.open(disk.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
        try:
            volume = disc_volume_size(fd, disk.logical_block_size or 512, disk.path)
        finally:
            os.close(fd)
    except OSError:
        pass
    whole = Extent(0, volume, "iso9660") if volume else None
    return layout_of(disk, starts, whole)

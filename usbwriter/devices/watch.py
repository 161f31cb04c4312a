"""Hot-plug: whole-disk events from a pyudev netlink monitor."""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from usbwriter.devices.classify import _UNLISTED, disk_from_info, is_listable
from usbwriter.devices.model import DEV, Disk
from usbwriter.devices.read import _context, read_block_info, read_snapshot
from usbwriter.errors import DeviceFault

log = logging.getLogger(__name__)


#: udevd's control socket: present when udevd runs.
UDEV_CONTROL = "/run/udev/control"


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

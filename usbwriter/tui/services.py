"""The core, as the app sees it: a bundle of plain callables.

The app takes a ``Services`` in its constructor (the app-factory pattern), so tests
and snapshots can pass their own drive source, watcher or recorded reports while
everything else stays real. ``Services.real()`` wires the core modules; they are
imported lazily, inside the callables, so building the bundle is cheap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usbwriter.devices import Disk, DiskEvent
    from usbwriter.safety import Identity
    from usbwriter.verify import VerifyResult
    from usbwriter.writer import WriteResult

ListDisks = Callable[[bool, "str | None"], "list[Disk]"]
WatchDisks = Callable[[threading.Event], "Iterator[DiskEvent]"]
InspectImage = Callable[[str], Mapping[str, Any]]
CheckTarget = Callable[[str, "str | None", bool], "Identity"]


@dataclass(frozen=True)
class Services:
    """What the app needs from the core; every call may block (run it in a worker)."""

    list_disks: ListDisks
    watch_disks: WatchDisks | None
    inspect_image: InspectImage
    check_target: CheckTarget
    write_image: Callable[..., WriteResult]
    verify_device: Callable[..., VerifyResult]
    wipe_device_head: Callable[[str], bool]
    is_root: Callable[[], bool]

    @classmethod
    def real(cls) -> Services:
        """The core modules, imported when first called."""
        return cls(
            list_disks=_list_disks,
            watch_disks=_watch_disks,
            inspect_image=_inspect_image,
            check_target=_check_target,
            write_image=_write_image,
            verify_device=_verify_device,
            wipe_device_head=_wipe_device_head,
            is_root=lambda: os.geteuid() == 0,
        )


def _list_disks(include_all: bool, image: str | None) -> list[Disk]:
    from usbwriter.devices import list_disks

    return list_disks(include_all=include_all, image=image)


def _watch_disks(cancel: threading.Event) -> Iterator[DiskEvent]:
    from usbwriter.devices import Watcher

    # Every disk is watched; the app filters what it shows, so "show all" can
    # change without restarting the watcher.
    return Watcher(include_all=True).iter_events(cancel)


def _inspect_image(path: str) -> Mapping[str, Any]:
    from usbwriter.boot import inspect_image

    report: Mapping[str, Any] = inspect_image(path).to_dict()
    return report


def _check_target(device: str, image: str | None, unmount: bool) -> Identity:
    from usbwriter.safety import check_target

    identity: Identity = check_target(device, image, unmount=unmount)
    return identity


def _write_image(image: str, device: str, **kw: Any) -> WriteResult:
    from usbwriter.writer import write_image

    return write_image(image, device, **kw)


def _verify_device(device: str, size: int, expected: str, **kw: Any) -> VerifyResult:
    from usbwriter.verify import verify_device

    return verify_device(device, size, expected, **kw)


def _wipe_device_head(device: str) -> bool:
    from usbwriter.writer import wipe_device_head

    return wipe_device_head(device)

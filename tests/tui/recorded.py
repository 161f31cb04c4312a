"""Recorded inputs for the snapshots and unit tests: disks and boot reports.

The disks are udev/sysfs dicts recorded from the qemu guest's USB sticks and from this
machine kind (tests/unit/data/udev, scripts/record_udev.py), turned into ``Disk``
values by the real ``disk_from_info``. The boot reports are ``usbwriter inspect
--json`` output of images built by scripts/make_images.py (record_reports.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usbwriter.devices import Disk, Snapshot, disk_from_info

if TYPE_CHECKING:
    from usbwriter.tui.services import Services

HERE = Path(__file__).resolve().parent
UDEV = HERE.parent / "unit" / "data" / "udev"


def recorded_disks() -> list[Disk]:
    def load(name: str) -> Any:
        return json.loads((UDEV / f"{name}.json").read_text())

    guest = Snapshot.from_dict(load("guest-usb-system"))
    host = Snapshot.from_dict(load("host-system"))
    return [
        disk_from_info(load("guest-usb-removable"), guest),  # SanDisk Cruzer, 64 MiB
        disk_from_info(load("guest-usb-fixed"), guest),  # WD My Passport, 96 MiB
        disk_from_info(load("guest-usb-readonly"), guest),  # Kingston, read-only
        disk_from_info(load("host-vda"), host),  # the system disk
        disk_from_info(load("host-loop0"), host),  # a loop device with a mounted partition
    ]


DISKS = recorded_disks()
REPORTS: dict[str, Mapping[str, Any]] = {
    p.stem.removeprefix("boot-"): json.loads(p.read_text()) for p in (HERE / "data").glob("*.json")
}


def not_called(*args: object, **kw: object) -> Any:
    raise AssertionError("not called")


def recorded_services(**calls: Any) -> Services:
    """The app's services over the recorded drives and grub-hybrid's report; every other
    call of the core fails the test unless CALLS gives it."""
    from usbwriter.tui.services import Services

    base: dict[str, Any] = {
        "list_disks": lambda include_all, image: list(DISKS),
        "watch_disks": None,
        "inspect_image": lambda path: REPORTS["grub-hybrid"],
        "plan": not_called,
        "run": not_called,
        "is_root": lambda: True,
    }
    return Services(**{**base, **calls})

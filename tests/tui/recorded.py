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
from typing import Any

from usbwriter.devices import Disk, Snapshot, disk_from_info

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

#!/usr/bin/env python3
"""Record real disks as JSON, so the drive predicates can be tested on real data.

Each whole disk becomes one file ``OUT/PREFIX-NAME.json`` holding exactly what
usbwriter's drive layer reads from the machine: the udev properties (through pyudev:
from the udev database when udevd runs, the kernel's uevent otherwise), the sysfs
attributes, the sysfs path, holders, by-id links, partitions, and for a loop device the
identity of its backing file. ``OUT/PREFIX-system.json`` holds the mounts on block
devices and critical mountpoints, the active swaps and the block-device tree (what
decides which disk is the system disk). The unit tests load these files and feed them
to ``usbwriter.devices.disk_from_info``.

Usage (from the project directory; needs pyudev and the standard library only, and
works as a normal user)::

    python3 scripts/record_udev.py                      # every disk, prefix = host
    python3 scripts/record_udev.py --prefix guest sda   # only /sys/block/sda
    python3 scripts/record_udev.py --out DIR --prefix guest /dev/sda /dev/sdb
    python3 scripts/record_udev.py --stdout sda         # print instead of writing

Default output folder: tests/unit/data/udev/. Inside the qemu guest use
``--prefix guest`` (files named guest-sda.json ...). Detached loop devices (size 0)
and RAM disks are skipped unless named. Device nodes may be given as /dev paths,
/dev/disk/by-id links or bare names.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from usbwriter import devices  # noqa: E402  (pyudev + stdlib only)

DEFAULT_OUT = REPO / "tests" / "unit" / "data" / "udev"


def _name(arg: str) -> str:
    if "/" not in arg:
        return arg
    real = os.path.realpath(arg)
    st = os.stat(real)
    sys_path = devices.sys_path_of(f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}")
    return os.path.basename(sys_path)


def _system(snapshot: devices.Snapshot) -> dict[str, Any]:
    data = snapshot.to_dict()
    # Only what decides things: mounts of block devices and of critical mountpoints.
    data["mounts"] = [
        m
        for m in data["mounts"]
        if not m["devno"].startswith("0:") or m["mountpoint"] in devices.CRITICAL_MOUNTPOINTS
    ]
    return data


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("devices", nargs="*", help="disks to record (default: all)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--prefix", default="host", help="file name prefix (host, guest ...)")
    p.add_argument("--stdout", action="store_true", help="print JSON instead of writing")
    args = p.parse_args(argv)

    snapshot = devices.read_snapshot()
    names = [_name(a) for a in args.devices] or os.listdir(f"{devices.SYS}/block")
    meta = {
        "kernel": platform.release(),
        "udevd": os.path.exists(devices.UDEV_CONTROL),
        "euid": os.geteuid(),
    }
    records: dict[str, dict[str, Any]] = {}
    for name in sorted(names, key=devices.natural_key):
        info = devices.read_block_info(f"{devices.SYS}/block/{name}")
        skip = name.startswith("ram") or (not devices.is_listable(info) and name.startswith("loop"))
        if skip and not args.devices:
            continue
        records[f"{args.prefix}-{name}.json"] = {"_meta": meta, **info}
    records[f"{args.prefix}-system.json"] = {"_meta": meta, **_system(snapshot)}

    if args.stdout:
        print(json.dumps(records, indent=2, sort_keys=True))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for filename, record in records.items():
        target = args.out / filename
        target.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

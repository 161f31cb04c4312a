"""Record what usbwriter's drive layer reads from real USB disks, in the qemu guest.

    python -m tests.guest.record [--out DIR] [--prefix guest-usb]

Boots the guest twice with three emulated USB disks and runs scripts/record_udev.py
there: once with udevd (prefix ``guest-usb``), once without it (prefix
``guest-usb-noudev``: sysfs and the kernel's uevent only). The disks:

- ``removable``: a removable SanDisk Cruzer (serial SN0001), 64 MiB, with an MBR and
  one FAT16 partition labelled MYSTICK;
- ``fixed``: a non-removable WD My Passport (WD-XYZ9), 96 MiB, blank;
- ``readonly``: a removable Kingston DataTraveler on a read-only drive (KT-RO-0003).

Files are named by role, not by sdX (the kernel's order is not guaranteed):
``PREFIX-removable.json``, ``PREFIX-fixed.json``, ``PREFIX-readonly.json`` and
``PREFIX-system.json`` (mounts, swaps, block tree). scripts/record_guest_udev.sh runs
this with the project's defaults.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.guest.harness import REPO, Guest, GuestError, Stick

DEFAULT_OUT = REPO / "tests" / "unit" / "data" / "udev"
MiB = 1 << 20


@dataclass(frozen=True)
class Role:
    name: str
    stick: Stick


def make_fat_stick(path: Path, size: int, label: str) -> Path:
    """A stick image with an MBR and one FAT16 partition from 1 MiB to the end."""
    with open(path, "wb") as f:
        f.truncate(size)
    env = dict(os.environ, LC_ALL="C")
    # Fixed identifiers, so a new recording differs from the last only where it must.
    table = "label: dos\nlabel-id: 0x55534257\nstart=2048, type=e, bootable\n"
    subprocess.run(["sfdisk", "-q", str(path)], input=table, text=True, check=True, env=env)
    kib = (size - MiB) // 1024
    subprocess.run(
        [
            "mkfs.fat",
            "-F",
            "16",
            "-n",
            label,
            "-i",
            "55534257",
            "--offset",
            "2048",
            str(path),
            str(kib),
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    return path


def roles(directory: Path) -> list[Role]:
    blank = directory / "fixed.img"
    with open(blank, "wb") as f:
        f.truncate(96 * MiB)
    readonly = directory / "readonly.img"
    with open(readonly, "wb") as f:
        f.truncate(32 * MiB)
    removable = make_fat_stick(directory / "removable.img", 64 * MiB, "MYSTICK")
    return [
        Role("removable", Stick(removable, "SN0001", "SanDisk", "Cruzer")),
        Role("fixed", Stick(blank, "WD-XYZ9", "WD", "My Passport", removable=False)),
        Role(
            "readonly",
            Stick(readonly, "KT-RO-0003", "Kingston", "DataTraveler", read_only=True),
        ),
    ]


def record(out: Path, prefix: str, *, udev: bool, timeout: float = 180.0) -> list[Path]:
    """One guest run: record the three disks; write PREFIX-ROLE.json files into out."""
    with tempfile.TemporaryDirectory(prefix="usbwriter-record.") as tmp:
        disks = roles(Path(tmp))
        # Each disk by the serial of its USB device, from sysfs (works without udevd).
        find = (
            "for s in {serials}; do for d in /sys/block/sd*; do "
            '[ "$(cat $d/device/../../../../serial)" = "$s" ] && echo /dev/${{d##*/}}; '
            "done; done"
        ).format(serials=" ".join(r.stick.serial for r in disks))
        command = "\n".join(
            [
                f"devs=$({find})",
                "step names echo $devs",
                "step record python scripts/record_udev.py --stdout --prefix rec $devs",
            ]
        )
        with Guest(command, sticks=[r.stick for r in disks], udev=udev, timeout=timeout) as g:
            result = g.wait()
        st = result.step("record")
        if st.returncode != 0:
            raise GuestError(f"record_udev.py failed in the guest\n{result.describe()}")
        names = result.step("names").stdout.split()
        if len(names) != len(disks):
            raise GuestError(f"expected {len(disks)} disks, found {names}\n{result.describe()}")
        records: dict[str, Any] = json.loads(st.stdout)
    written = []
    out.mkdir(parents=True, exist_ok=True)
    by_file = {os.path.basename(n): r.name for n, r in zip(names, disks, strict=True)}
    for filename, data in records.items():
        node = filename.removeprefix("rec-").removesuffix(".json")
        role = "system" if node == "system" else by_file[node]
        target = out / f"{prefix}-{role}.json"
        target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.guest.record", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    p.add_argument("--prefix", default="guest-usb", help="file name prefix")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for prefix, udev in ((args.prefix, True), (f"{args.prefix}-noudev", False)):
        for path in record(args.out, prefix, udev=udev):
            sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

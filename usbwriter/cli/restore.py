"""usbwriter restore DEVICE: make a used stick a normal, empty stick again."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Return a stick to normal use: wipe old signatures at both ends, write one partition "
    "spanning the disk and make a file system on it."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", metavar="DEVICE", help="the whole drive, e.g. /dev/sdb")
    p.add_argument(
        "--fs", choices=("fat32", "exfat", "ext4"), default="fat32", help="default fat32"
    )
    p.add_argument("--label", metavar="L", help="the file system's label (default USB)")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument(
        "--unmount", action="store_true", help="unmount the drive's mounted file systems first"
    )
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")


def run(ns: argparse.Namespace) -> int:
    raise NotImplementedError

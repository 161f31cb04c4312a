"""usbwriter mkiso DIR -o OUT.iso: build an ISO 9660 image (Rock Ridge, Joliet) from a folder."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Build an ISO image from a folder: ISO 9660 with Rock Ridge and Joliet (and UDF for "
    "large files), reproducible with SOURCE_DATE_EPOCH, optionally bootable."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="the folder to put in the image")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the ISO file to create")
    p.add_argument("--label", metavar="L", help="the volume label (default: the folder's name)")
    p.add_argument("--udf", action="store_true", help="add UDF even without files of 4 GiB")
    p.add_argument(
        "--boot-bios", metavar="IMG", help="El Torito BIOS boot image (a file inside DIR)"
    )
    p.add_argument(
        "--boot-efi", metavar="IMG", help="El Torito UEFI boot image (a FAT image in DIR)"
    )
    p.add_argument(
        "--hybrid", action="store_true", help="also bootable when written to a USB stick"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", action="store_true", help="the result as a JSON object")


def run(ns: argparse.Namespace) -> int:
    raise NotImplementedError

"""usbwriter extract IMAGE [PATH ...] -o DIR: copy files out of an ISO, safely."""

from __future__ import annotations

import argparse

DESCRIPTION = (
    "Copy files out of an ISO image into a folder; nothing lands outside it, and "
    "existing files are kept unless --overwrite."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the ISO image (raw or compressed)")
    p.add_argument(
        "paths", metavar="PATH", nargs="*", help="files or folders inside (default: everything)"
    )
    p.add_argument("-o", "--output", metavar="DIR", required=True, help="the folder to fill")
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    p.add_argument("--member", metavar="NAME", help="the file in a zip archive holding several")
    p.add_argument("--json", action="store_true", help="NDJSON: each file and each refusal")


def run(ns: argparse.Namespace) -> int:
    raise NotImplementedError

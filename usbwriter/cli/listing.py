"""usbwriter list: the drives a user would flash (or every disk, with why not)."""

from __future__ import annotations

import argparse
import json
import sys

from usbwriter.errors import EXIT_OK

DESCRIPTION = "List drives a user would flash."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--all",
        action="store_true",
        help="also list every other whole disk, with why it is not eligible",
    )
    p.add_argument("--json", action="store_true", help="a JSON list of drives")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.devices import format_disk_table, list_disks

    disks = list_disks(include_all=ns.all)
    if ns.json:
        print(json.dumps([d.to_dict() for d in disks], indent=2))
    elif disks:
        print(format_disk_table(disks))
    else:
        hint = "" if ns.all else " (use --all to see every disk)"
        print(f"No removable or USB drives found{hint}.", file=sys.stderr)
    return EXIT_OK

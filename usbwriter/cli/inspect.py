"""usbwriter inspect IMAGE: the boot report, will it boot on BIOS and on UEFI, and why."""

from __future__ import annotations

import argparse
import json

from usbwriter.errors import EXIT_OK

DESCRIPTION = "Read an image's boot records and say how it will boot."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the image to inspect")
    p.add_argument("--member", metavar="NAME", help="the file in a zip archive holding several")
    p.add_argument("--json", action="store_true", help="the report as a JSON object")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.boot import inspect_image, render_text
    from usbwriter.sources import open_image

    # The same checks as every command that reads an image: missing, FIFO, directory.
    open_image(ns.image, member=ns.member).close()
    report = inspect_image(ns.image, member=ns.member)
    if ns.json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(render_text(report))
    return EXIT_OK

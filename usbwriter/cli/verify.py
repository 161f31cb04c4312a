"""usbwriter verify --image IMG --device DEV: compare a drive with an image, holding it."""

from __future__ import annotations

import argparse

from usbwriter.cli.output import ProgressPrinter, cancel_on_signals, emit, say, tell
from usbwriter.errors import EXIT_MISMATCH, EXIT_OK

DESCRIPTION = "Compare a drive with an image, reading the drive with O_DIRECT."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", "-i", required=True, help="the image the drive should hold")
    p.add_argument("--device", "-d", required=True, help="the drive (or image file) to read")
    p.add_argument("--member", metavar="NAME", help="the file in a zip archive holding several")
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.jobs import verify_only
    from usbwriter.jobs.write import mismatch_message

    with cancel_on_signals() as cancel, ProgressPrinter(ns.json) as show:
        receipt = verify_only(ns.image, ns.device, member=ns.member, progress=show, cancel=cancel)
    if ns.json:
        emit(receipt.to_json())
    elif receipt.verified:
        tell(receipt.to_text())
    if not receipt.verified:
        say(f"usbwriter: {mismatch_message(receipt)}")
        return EXIT_MISMATCH
    return EXIT_OK

"""usbwriter backup DEVICE -o IMAGE: read a stick, card or disc into an image file."""

from __future__ import annotations

import argparse

from usbwriter.cli.output import ProgressPrinter, cancel_on_signals, emit, say, tell
from usbwriter.compression import WRITABLE
from usbwriter.errors import EXIT_MISMATCH, EXIT_OK, BadInput

DESCRIPTION = (
    "Read a drive (USB stick, SD card, optical disc) into an image file, raw or "
    f"compressed by its suffix ({', '.join(f.suffix for f in WRITABLE)}), with a blake3 receipt."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", metavar="DEVICE", help="the drive to read, e.g. /dev/sdb or /dev/sr0")
    p.add_argument(
        "-o", "--output", metavar="IMAGE", required=True, help="the image file to create"
    )
    p.add_argument("--verify", action="store_true", help="read the drive again and compare")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="fill unreadable sectors with zeros and list them, instead of stopping",
    )
    p.add_argument(
        "--retries", type=int, default=3, metavar="N", help="reads of a failing sector (default 3)"
    )
    p.add_argument("--sparse", action="store_true", help="leave zero blocks as holes in the file")
    p.add_argument("--overwrite", action="store_true", help="replace IMAGE if it exists")
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.jobs.backup import plan_backup, run_backup
    from usbwriter.outputs import file_word, format_of

    if ns.retries < 1:
        raise BadInput("--retries must be 1 or more")
    fmt = format_of(ns.output)
    if ns.sparse and fmt != "raw":
        raise BadInput(f"{ns.output}: --sparse is for a raw image, not a {file_word(fmt)} file")
    plan = plan_backup(ns.device, ns.output, overwrite=ns.overwrite)
    with cancel_on_signals() as cancel, ProgressPrinter(ns.json) as show:
        receipt = run_backup(
            plan,
            verify=ns.verify,
            keep_going=ns.keep_going,
            retries=ns.retries,
            sparse=ns.sparse,
            progress=show,
            cancel=cancel,
        )
    if ns.json:
        emit(receipt.to_json())
    else:
        tell(receipt.to_text())
    for bad in receipt.unreadable:
        say(f"usbwriter: warning: {ns.device}: {bad.length} unreadable bytes at byte {bad.offset}")
    if receipt.verify is not None and not receipt.verify.verified:
        say(
            f"usbwriter: {ns.device} read again differs from {ns.output} at byte "
            f"{receipt.verify.mismatch_offset}"
        )
        return EXIT_MISMATCH
    return EXIT_OK

"""usbwriter format DEVICE: make a used stick a normal, empty stick again (the command
once named `restore DEVICE`, which still runs it)."""

from __future__ import annotations

import argparse

from usbwriter.cli.output import (
    ProgressPrinter,
    cancel_on_signals,
    confirm,
    emit,
    interactive,
    say,
    tell,
)
from usbwriter.errors import EXIT_OK, Cancelled, Refused

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
    from usbwriter.cli.write import refusal_for
    from usbwriter.jobs.restore import DEFAULT_LABEL, check_label, plan_restore, run_restore
    from usbwriter.jobs.write import device_info
    from usbwriter.receipt import describe_device

    label = check_label(ns.fs, ns.label or DEFAULT_LABEL)
    plan = plan_restore(ns.device, unmount=ns.unmount)
    refusal = refusal_for(plan, asking=False)
    if refusal is not None:
        raise refusal
    if not ns.yes:
        if not interactive():
            raise Refused(
                f"{ns.device}: not on a terminal and no --yes: refusing to erase the drive"
            )
        then = (
            f" ({', '.join(plan.unmount_points)} will be unmounted first)" if plan.unmounts else ""
        )
        question = (
            f"ALL DATA on {describe_device(device_info(plan))}{then} will be erased and "
            f"replaced by one empty {ns.fs} partition labelled {label}.\n"
            "Type 'yes' to continue: "
        )
        if not confirm(question):
            raise Cancelled("not confirmed; nothing was changed")
    with cancel_on_signals() as cancel, ProgressPrinter(ns.json) as show:

        def notify(text: str) -> None:
            show.end_line()
            say(f"usbwriter: {text}")

        receipt = run_restore(
            plan, fs=ns.fs, label=label, progress=show, cancel=cancel, notify=notify
        )
    if ns.json:
        emit(receipt.to_json())
    else:
        tell(receipt.to_text())
        say("It is safe to remove the drive.")
    return EXIT_OK

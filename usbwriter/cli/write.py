"""usbwriter --image IMG --device DEV: plan, show, confirm, run, render the receipt."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from usbwriter.cli.output import (
    ProgressPrinter,
    cancel_on_signals,
    confirm,
    emit,
    interactive,
    say,
    tell,
)
from usbwriter.errors import EXIT_MISMATCH, EXIT_OK, BadInput, Cancelled, Refused, UsbWriterError

if TYPE_CHECKING:
    from usbwriter.jobs import Plan, Request


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image_arg", nargs="?", metavar="IMAGE", help="image for the app to preselect")
    p.add_argument("--image", "-i", help="the image to write (.iso, .img, .raw)")
    p.add_argument(
        "--device",
        "-d",
        action="append",
        help="the whole drive to write, e.g. /dev/sdb (repeat it to write several at once)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-verify", action="store_true", help="skip reading the drive back")
    p.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the quick test for fake capacity before writing",
    )
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")
    p.add_argument(
        "--force", action="store_true", help="write an image that will not boot on BIOS or UEFI"
    )
    p.add_argument(
        "--unmount",
        action="store_true",
        help="unmount the drive's mounted file systems before writing",
    )
    p.add_argument(
        "--to-file",
        action="store_true",
        help="the target is a regular file (a VM disk image), created if missing",
    )
    p.add_argument(
        "--member", metavar="NAME", help="the file to write from a zip archive holding several"
    )
    p.add_argument(
        "--checksum",
        metavar="ALG:HEX",
        help="check the image file against this (sha256, sha512, sha1, md5, blake3) first",
    )
    p.add_argument(
        "--sums",
        metavar="FILE",
        help="check against this sums file (default: SHA256SUMS and the like beside the image)",
    )
    p.add_argument(
        "--keyring",
        metavar="FILE",
        action="append",
        default=[],
        help="require a good signature by a key of this keyring over the sums line that "
        "matches the image, checked with gpgv (repeatable)",
    )
    p.add_argument(
        "--strict-keys",
        action="store_true",
        help="with --keyring: also refuse a signature whose key has expired since",
    )
    p.add_argument(
        "--bmap",
        metavar="FILE",
        help="write only the ranges this bmaptool block map marks (default: IMAGE.bmap if found)",
    )
    p.add_argument("--no-bmap", action="store_true", help="ignore a bmap found beside the image")
    p.add_argument(
        "--delta",
        action="store_true",
        help="read the drive first and write only the chunks that differ (re-flashing)",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "raw", "files"),
        default="auto",
        help="raw: write the image's bytes; files: copy an ISO's files onto one FAT32 "
        "partition (chosen by itself for a Windows installer); default auto",
    )
    p.add_argument(
        "--windows-bypass",
        metavar="LIST",
        help="a Windows 11 stick: add an autounattend.xml that bypasses these checks "
        "(tpm,secureboot,ram,online-account, or all)",
    )
    p.add_argument("--all", action="store_true", help="app: also list non-eligible drives")


def run(ns: argparse.Namespace) -> int:
    if not ns.device:
        if ns.image is not None and ns.image_arg is not None:
            raise BadInput("give the image once, as IMAGE or --image")
        if ns.json or ns.yes:
            raise BadInput("--device is required to write (see 'usbwriter --help')")
        from usbwriter.tui import run_app

        code: int = run_app(image=ns.image or ns.image_arg, show_all=ns.all)
        return code
    image = ns.image or ns.image_arg
    if image is None:
        raise BadInput("--image is required with --device")
    from usbwriter.jobs import Request

    request = Request(
        image,
        ns.device[0],
        verify=not ns.no_verify,
        force=ns.force,
        unmount=ns.unmount,
        to_file=ns.to_file,
        member=ns.member,
        checksum=ns.checksum,
        sums=ns.sums,
        keyrings=tuple(ns.keyring),
        strict_keys=ns.strict_keys,
        bmap=ns.bmap,
        no_bmap=ns.no_bmap,
        delta=ns.delta,
        probe=not ns.no_probe,
        mode=ns.mode,
        windows_bypass=windows_bypass(ns.windows_bypass),
    )
    if len(ns.device) > 1:
        from usbwriter.cli.several import write_several

        return write_several(request, ns.device, yes=ns.yes, json_mode=ns.json)
    return write(request, yes=ns.yes, json_mode=ns.json)


def windows_bypass(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    from usbwriter.windows.unattend import parse  # (xml.sax loads urllib: 15 ms)

    return parse(text)


def boot_summary(plan: Plan) -> str:
    if plan.mode == "files":
        from usbwriter.jobs.files import files_summary

        return "\n".join(files_summary(plan))
    boot = plan.boot
    if boot is None:
        return ""
    if boot.unreadable:
        return f"Boot: boot records could not be read: {boot.unreadable}"
    words = {"yes": "yes", "no": "no", "firmware-dependent": "depends on the firmware"}
    lines = [
        f"Boot: BIOS {words.get(boot.bios, boot.bios)}, UEFI {words.get(boot.uefi, boot.uefi)}"
    ]
    lines += [f"  - {r}" for r in boot.reasons]
    return "\n".join(lines)


def made_of(plan: Plan) -> str:
    """What the drive will hold, for the question."""
    f = plan.files
    if plan.mode == "files" and f is not None:
        return (
            f"an MBR partition table with one FAT32 partition '{f.label}' holding the "
            f"{f.files} files of {plan.image.requested}"
        )
    return f"{plan.image.requested} ({plan.image.describe()})"


def refusal_for(plan: Plan, *, asking: bool) -> UsbWriterError | None:
    """Why the command line will not run PLAN. A person asked at a terminal may confirm
    past the blockers marked overridable (shown as warnings); nobody else may."""
    for blocker in plan.blockers:
        if not blocker.overridable:
            return blocker.error
    if plan.blockers and not asking:
        return plan.blockers[0].error
    return None


def write(request: Request, *, yes: bool, json_mode: bool) -> int:
    from usbwriter import jobs
    from usbwriter.jobs.write import device_info, mismatch_message
    from usbwriter.receipt import describe_device

    device = request.device
    with cancel_on_signals() as cancel, ProgressPrinter(json_mode) as show:
        plan = jobs.plan(request, progress=show, cancel=cancel)
    check = plan.checksum
    if check is not None and not any(check.describe() in w.message for w in plan.warnings):
        say(f"Checksum: {check.describe()}")  # (otherwise the warning says it)
    refusal = refusal_for(plan, asking=not yes and interactive())
    if refusal is None or plan.needs_confirmation_only:
        # The boot verdict is worth showing unless the target itself is refused.
        if json_mode and plan.boot is not None:
            emit({"event": "boot", **plan.boot.to_dict()})
        summary = boot_summary(plan)
        if summary:
            say(summary)
    if refusal is not None:
        raise refusal
    for warning in plan.warnings:  # before the question: what the person says yes to
        if warning.code != "unmount":  # (the question names them; --yes: said as done)
            say(f"usbwriter: warning: {warning}")
    if not yes:
        if not interactive():
            raise Refused(f"{device}: not on a terminal and no --yes: refusing to erase the drive")
        warn = "".join(f"WARNING: {b.message}\n" for b in plan.blockers)
        then = (
            f" ({', '.join(plan.unmount_points)} will be unmounted first)" if plan.unmounts else ""
        )
        question = (
            f"{warn}ALL DATA on {describe_device(device_info(plan))}{then} will be erased "
            f"and replaced by {made_of(plan)}.\n"
            "Type 'yes' to continue: "
        )
        if not confirm(question):
            raise Cancelled("not confirmed; nothing was written")
        plan = plan.confirmed()

    with cancel_on_signals() as cancel, ProgressPrinter(json_mode) as show:

        def notify(text: str) -> None:
            show.end_line()
            say(f"usbwriter: {text}")

        receipt = jobs.run(plan, progress=show, cancel=cancel, notify=notify)
    if json_mode:
        emit(receipt.to_json())
    else:
        tell(receipt.to_text())
    if receipt.verify is not None and not receipt.verified:
        say(f"usbwriter: {mismatch_message(receipt)}")
        return EXIT_MISMATCH
    if not json_mode:
        say("It is safe to remove the drive.")
    return EXIT_OK

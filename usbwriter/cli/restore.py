"""usbwriter restore IMAGE DEVICE: write a backup back onto a drive, the write of
`usbwriter --image IMAGE --device DEVICE`. `restore DEVICE` alone is the old name of
`usbwriter format DEVICE`: it still formats, and says the new name on stderr."""

from __future__ import annotations

import argparse

from usbwriter.cli import format as format_command
from usbwriter.cli.output import say
from usbwriter.errors import BadInput

DESCRIPTION = (
    "Write a backup (an image made by 'usbwriter backup') back onto a drive, plan, "
    "confirmation and verification as 'usbwriter --image IMAGE --device DEVICE'. With "
    "DEVICE alone: the old name of 'usbwriter format DEVICE'."
)

RENAMED = "usbwriter: 'restore DEVICE' is now 'format DEVICE'"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "image", nargs="?", metavar="IMAGE", help="the backup to write (raw or compressed)"
    )
    p.add_argument("device", metavar="DEVICE", help="the whole drive, e.g. /dev/sdb")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-verify", action="store_true", help="skip reading the drive back")
    p.add_argument(
        "--unmount", action="store_true", help="unmount the drive's mounted file systems first"
    )
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")
    p.add_argument(
        "--fs",
        choices=("fat32", "exfat", "ext4"),
        help="with DEVICE alone, as 'usbwriter format': the file system (default fat32)",
    )
    p.add_argument(
        "--label", metavar="L", help="with DEVICE alone, as 'usbwriter format': the label"
    )


def run(ns: argparse.Namespace) -> int:
    if ns.image is None:
        if ns.no_verify:
            raise BadInput(
                "--no-verify is for 'usbwriter restore IMAGE DEVICE'; "
                "'usbwriter format DEVICE' always checks its work"
            )
        say(RENAMED)
        ns.fs = ns.fs or "fat32"
        return format_command.run(ns)
    if ns.fs is not None or ns.label is not None:
        raise BadInput(
            f"--fs and --label are for making an empty stick: usbwriter format {ns.device}"
        )
    from usbwriter.cli.write import write
    from usbwriter.jobs import Request

    # A backup holds whatever the drive held: that it may boot on neither BIOS nor UEFI
    # is no reason to refuse it (the write's --force), and the boot verdict is still shown.
    request = Request(ns.image, ns.device, verify=not ns.no_verify, unmount=ns.unmount, force=True)
    return write(request, yes=ns.yes, json_mode=ns.json)

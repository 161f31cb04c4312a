"""usbwriter mkiso DIR -o OUT.iso: build an ISO 9660 image (Rock Ridge, Joliet) from a folder."""

from __future__ import annotations

import argparse
import json
import os

DESCRIPTION = (
    "Build an ISO image from a folder: ISO 9660 with Rock Ridge and Joliet (and UDF for "
    "large files), reproducible with SOURCE_DATE_EPOCH, optionally bootable."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", metavar="DIR", help="the folder to put in the image")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the ISO file to create")
    p.add_argument("--label", metavar="L", help="the volume label (default: the folder's name)")
    p.add_argument(
        "--udf", action="store_true", help="add UDF (added anyway for a file of 4 GiB or more)"
    )
    p.add_argument(
        "--boot-bios",
        metavar="IMG",
        help="El Torito BIOS boot image, a path relative to DIR (e.g. isolinux/isolinux.bin)",
    )
    p.add_argument(
        "--boot-efi",
        metavar="IMG",
        help="El Torito UEFI boot image: a FAT image in DIR holding EFI/BOOT/BOOTX64.EFI",
    )
    p.add_argument(
        "--hybrid",
        action="store_true",
        help="an MBR so that a USB stick holding the ISO boots too (UEFI; BIOS with isolinux "
        "or GRUB)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--json", action="store_true", help="the result as a JSON object")


def _source_date_epoch() -> int | None:
    from usbwriter.errors import BadInput

    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return None
    try:
        sde = int(value)
    except ValueError:
        raise BadInput(f"SOURCE_DATE_EPOCH={value!r}: not a whole number of seconds") from None
    if sde < 0:
        raise BadInput(f"SOURCE_DATE_EPOCH={value!r}: before 1970")
    return sde


def run(ns: argparse.Namespace) -> int:
    from usbwriter.cli.output import ProgressPrinter, cancel_on_signals, say
    from usbwriter.errors import EXIT_OK
    from usbwriter.iso.build import BuildRequest, build_iso
    from usbwriter.units import count, human_size

    req = BuildRequest(
        folder=ns.folder,
        output=ns.output,
        label=ns.label,
        udf=ns.udf,
        boot_bios=ns.boot_bios,
        boot_efi=ns.boot_efi,
        hybrid=ns.hybrid,
        overwrite=ns.overwrite,
        source_date_epoch=_source_date_epoch(),
    )
    with cancel_on_signals() as cancel, ProgressPrinter(json_mode=False) as show:

        def warn(text: str) -> None:
            show.end_line()
            say(f"usbwriter: warning: {text}")

        result = build_iso(req, progress=show, cancel=cancel, warn=warn)
    if ns.json:
        print(json.dumps(result.to_dict(), indent=2))
        return EXIT_OK
    extras = ", with UDF" if result.udf else ""
    print(
        f"{result.output}: {human_size(result.size)}, label {result.label}, "
        f"{count(result.files, 'file')}, {count(result.directories, 'folder')}, "
        f"{count(result.symlinks, 'symlink')}{extras}"
    )
    for entry in result.boot:
        if "platform" in entry:
            what = "BIOS" if entry["platform"] == "bios" else "UEFI"
            print(f"El Torito {what} boot image: {entry['image']}")
    if result.hybrid is not None:
        print(f"Hybrid: {result.hybrid['summary']}")
    if result.stick is not None:
        print(
            f"Written raw to a USB stick, it boots: BIOS {result.stick['bios']}, "
            f"UEFI {result.stick['uefi']} (usbwriter inspect tells why)"
        )
    if result.skipped:
        print(f"Skipped {count(len(result.skipped), 'special file')}: see the warnings above")
    if result.private_because is not None:
        print(
            f"Mode {result.mode:04o}: only you can read {result.output}, as "
            f"{result.private_because} is not readable by everyone"
        )
    print(f"blake3  {result.blake3}")
    return EXIT_OK

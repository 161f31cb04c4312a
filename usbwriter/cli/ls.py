"""usbwriter ls IMAGE [PATH]: the files inside an ISO, without mounting and without root."""

from __future__ import annotations

import argparse

from usbwriter.errors import EXIT_OK

DESCRIPTION = (
    "List the files inside an ISO image (Rock Ridge, Joliet, ISO 9660 or UDF names), "
    "raw or compressed, without mounting it. Files whose bytes the image shares (hard "
    "links, or a crafted image) are counted in a note on stderr."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the ISO image (raw or compressed)")
    p.add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        default="/",
        help="a folder or file inside (default: the root)",
    )
    p.add_argument("-R", "--recursive", action="store_true", help="list folders recursively")
    p.add_argument("--member", metavar="NAME", help="the file in a zip archive holding several")
    p.add_argument("--json", action="store_true", help="one JSON object per entry on stdout")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.cli.output import emit, say
    from usbwriter.iso.contents import IsoImage, sharing, text_line

    with IsoImage(ns.image, member=ns.member) as iso:
        entries = iso.contents.select(ns.path, ns.recursive)
    for e in entries:
        if ns.json:
            emit(e.to_dict())
        else:
            print(text_line(e))
    shared = sharing(entries).note()
    if shared:
        say(f"usbwriter: note: {shared}; extract writes each in full")
    return EXIT_OK

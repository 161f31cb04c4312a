"""usbwriter extract IMAGE [PATH ...] -o DIR: copy files out of an ISO, safely."""

from __future__ import annotations

import argparse
from typing import Any

from usbwriter.cli.output import ProgressPrinter, cancel_on_signals, emit, say, tell
from usbwriter.errors import EXIT_FAILED, EXIT_OK

DESCRIPTION = (
    "Copy files out of an ISO image into a folder; nothing lands outside it, and "
    "existing files are kept unless --overwrite. Whatever is refused (unsafe names, "
    "symlinks pointing outside, a symlink in the way, existing files) is reported as "
    "skipped and the rest extracted: exit 0 with skips, 1 if a file could not be written. "
    "DIR is made if missing; a symbolic link on its path is followed only if root or you "
    "own it (exit 4 otherwise), and a file where DIR should be is exit 2. Refused before "
    "the first byte (exit 4) when the files do not fit in DIR's file system."
)

#: Progress is shown only for extractions at least this large.
PROGRESS_FROM = 64 << 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the ISO image (raw or compressed)")
    p.add_argument(
        "paths",
        metavar="PATH",
        nargs="*",
        help="files or folders inside, kept at their place below DIR (default: everything)",
    )
    p.add_argument(
        "-o", "--output", metavar="DIR", required=True, help="the folder to fill (made if missing)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace files that already exist")
    p.add_argument("--member", metavar="NAME", help="the file in a zip archive holding several")
    p.add_argument(
        "--json",
        action="store_true",
        help="NDJSON on stdout: each file, folder and symlink, each refusal, then the result",
    )


def run(ns: argparse.Namespace) -> int:
    from usbwriter.iso.contents import IsoImage, printable
    from usbwriter.iso.extract import EXISTS, Extractor, select, skip_reasons
    from usbwriter.units import count, human_size

    def on_event(ev: dict[str, Any]) -> None:
        if ns.json:
            emit(ev)
        elif ev["event"] in ("skipped", "failed"):
            say(f"usbwriter: {ev['event']} {printable(ev['path'])}: {printable(ev['reason'])}")

    with (
        cancel_on_signals() as cancel,
        ProgressPrinter(json_mode=ns.json) as show,
        IsoImage(ns.image, member=ns.member, cancel=cancel) as iso,
    ):
        entries = select(iso.contents, ns.paths)
        total = sum(e.size for e in entries if e.type == "file")
        x = Extractor(
            iso,
            ns.output,
            overwrite=ns.overwrite,
            on_event=on_event,
            progress=show if total >= PROGRESS_FROM else None,
            cancel=cancel,
        )
        result = x.run(entries)
    if ns.json:
        emit(result.to_dict())
    else:
        extra = ""
        if result.skipped:
            extra += f"; {len(result.skipped)} skipped: {skip_reasons(result.skipped)}"
        if result.failed:
            extra += f"; {len(result.failed)} failed"
        tell(
            f"{ns.output}: {count(result.files, 'file')} ({human_size(result.bytes)}), "
            f"{count(result.dirs, 'folder')}, {count(result.symlinks, 'symlink')} "
            f"extracted{extra}"
        )
        kept = sum(1 for _, why in result.skipped if why.endswith(EXISTS))
        if kept:
            say(f"usbwriter: {count(kept, 'existing file')} kept (--overwrite replaces them)")
        if result.shared:
            say(
                f"usbwriter: note: {count(result.shared, 'file')} share their bytes in the image; "
                "each was written in full"
            )
    return EXIT_FAILED if result.failed else EXIT_OK

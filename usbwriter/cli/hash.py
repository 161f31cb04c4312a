"""usbwriter hash IMAGE: checksums of the file as downloaded and, for a compressed
image, of the image inside (the bytes a stick would hold)."""

from __future__ import annotations

import argparse
import json
import os

from usbwriter.cli.output import ProgressPrinter, cancel_on_signals
from usbwriter.errors import EXIT_OK

DESCRIPTION = "Print checksums of an image file, and of the image inside a compressed one."
DEFAULT_ALGS = ("sha256", "blake3")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", metavar="IMAGE", help="the image file (raw or compressed)")
    p.add_argument(
        "--alg",
        action="append",
        default=[],
        metavar="ALG",
        help="sha256, sha512, sha1, md5 or blake3 (repeatable; default sha256 and blake3)",
    )
    p.add_argument("--member", metavar="NAME", help="the file in a zip archive holding several")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.checksums.hashing import hash_stream, new_hashers
    from usbwriter.sources import open_image
    from usbwriter.sources.streams import RawStream

    algs = ns.alg or list(DEFAULT_ALGS)
    result: dict[str, object] = {"path": ns.image}
    with (
        cancel_on_signals() as cancel,
        ProgressPrinter(json_mode=False) as show,  # on stderr; stdout holds the result
        open_image(ns.image, member=ns.member) as src,
    ):
        file_hashers = new_hashers(ns.image, algs)
        with RawStream(src.fd, src.file_size) as raw:
            hash_stream(raw, file_hashers, src.file_size, ns.image, progress=show, cancel=cancel)
        result["format"] = src.info.format
        result["size"] = src.file_size
        result["file"] = {a: h.hexdigest() for a, h in file_hashers.items()}
        if src.info.compressed:
            image_hashers = new_hashers(ns.image, algs)
            with src.stream() as stream:
                size = hash_stream(
                    stream, image_hashers, src.file_size, ns.image, progress=show, cancel=cancel
                )
            result["image"] = {
                "size": size,
                "member": src.info.member,
                **{a: h.hexdigest() for a, h in image_hashers.items()},
            }
    if ns.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    name = os.path.basename(ns.image)
    file_hashes = result["file"]
    assert isinstance(file_hashes, dict)
    for alg, digest in file_hashes.items():
        print(f"{alg}  {digest}  {name}")
    inside = result.get("image")
    if isinstance(inside, dict):
        for alg in algs:
            print(f"{alg}  {inside[alg]}  {name} (decompressed, {inside['size']} bytes)")
    return EXIT_OK

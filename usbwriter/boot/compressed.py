"""A compressed image's first part, read for the boot report.

The boot records a verdict needs sit near an image's start: the MBR and GPT, the ISO 9660
descriptors, the El Torito catalog and boot images, and usually a board image's boot
partition. So the first ``DECOMPRESS_LIMIT`` bytes of the image are decoded, once, by the
ISO toolkit's reader (``usbwriter.iso.source.DecodedBytes`` with a limit: ``xz -T0``
where installed, the format's library otherwise) into a sparse file as large as the image
in a private temporary folder, removed afterwards; the reader's ``known`` tells the boot
readers which bytes were really read, and whatever lies past is reported as not read,
not as missing or damaged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from usbwriter.boot.model import Compression
from usbwriter.iso.source import DecodedBytes

#: How much of a compressed image is decompressed to inspect it. 64 MiB holds the
#: system area, the ISO descriptors and catalog, the boot images of common ISOs, and
#: the boot partition's start on board images (Raspberry Pi OS puts it at 4 MiB).
DECOMPRESS_LIMIT = 64 << 20


@contextlib.contextmanager
def decompressed(
    path: str, *, member: str | None = None, limit: int = DECOMPRESS_LIMIT
) -> Iterator[tuple[DecodedBytes, Compression]]:
    """A reader of the first LIMIT bytes of the image compressed in PATH, and what was
    decompressed. BadImage when the data is damaged or the archive holds no image."""
    from usbwriter.sources import open_image

    with open_image(path, member=member) as src:
        info = src.info
        problem = info.member_problem(path)
        if problem is not None:
            raise problem
        with DecodedBytes(src, limit=limit) as r:
            got, ended = r.limit, r.ended
            size_is = info.size_is if info.size is not None else "unknown"
            size_from = info.size_from
            if ended and not (info.size_exact and info.size == got):
                size_is, size_from = "exact", "decompressed"
            recorded = got if ended else info.size
            yield (
                r,
                Compression(
                    format=info.format,
                    file_size=info.file_size,
                    image_size=recorded,
                    size_from=size_from if recorded is not None else "",
                    size_is=size_is,
                    member=info.member,
                    decompressed=got,
                    whole=ended,
                ),
            )

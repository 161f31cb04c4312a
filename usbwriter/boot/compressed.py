"""A compressed image's first part, decompressed into a temporary file to be read.

The boot records a verdict needs sit near an image's start: the MBR and GPT, the ISO 9660
descriptors, the El Torito catalog and boot images, and usually a board image's boot
partition. So the first ``DECOMPRESS_LIMIT`` bytes of the image are decompressed
(``usbwriter.sources``: ``xz -T0`` where installed, the format's library otherwise) into a
file in a private temporary directory, which is removed afterwards. The file is made as
large as the image (sparse) when the compressed file records the image's size, so offsets
past the part decompressed are holes; the reader (``ImageReader.known``) tells the readers
which bytes were really read, and whatever lies past is reported as not read, not as
missing or damaged.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO

from usbwriter.boot.model import Compression
from usbwriter.boot.reader import ImageReader
from usbwriter.errors import BadImage

if TYPE_CHECKING:
    from usbwriter.sources import Stream

#: How much of a compressed image is decompressed to inspect it. 64 MiB holds the
#: system area, the ISO descriptors and catalog, the boot images of common ISOs, and
#: the boot partition's start on board images (Raspberry Pi OS puts it at 4 MiB).
DECOMPRESS_LIMIT = 64 << 20
#: The file's size when the compressed file does not record the image's (bzip2, a
#: gzip over 4 GiB, a zstd frame without a size): large enough for any offset read.
UNKNOWN_EXTENT = 1 << 40
CHUNK = 4 << 20


@contextlib.contextmanager
def decompressed(
    path: str, *, member: str | None = None, limit: int = DECOMPRESS_LIMIT
) -> Iterator[tuple[ImageReader, Compression]]:
    """An ImageReader over the first LIMIT bytes of the image compressed in PATH, and what
    was decompressed. BadImage when the data is damaged or the archive holds no image."""
    from usbwriter.sources import open_image

    with open_image(path, member=member) as src:
        info = src.info
        problem = info.member_problem(path)
        if problem is not None:
            raise problem
        with tempfile.TemporaryDirectory(prefix="usbwriter-inspect-") as tmp:
            name = os.path.join(tmp, "image")
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "r+b") as f:
                got, ended = _copy(src.stream(), f, limit)
                size_is = info.size_is if info.size is not None else "unknown"
                size_from = info.size_from
                if ended:  # the whole image was decompressed: its size is known
                    size, known, recorded = got, True, info.size
                    if not (info.size_exact and info.size == got):
                        size_is, size_from = "exact", "decompressed"
                elif info.size_exact and info.size is not None and info.size > got:
                    size, known, recorded = info.size, True, info.size
                else:  # not recorded, or only a lower bound or a guess (see SourceInfo)
                    size, known, recorded = UNKNOWN_EXTENT, False, info.size
                if size == 0:
                    raise BadImage(f"{path}: the {info.format} file holds an empty image")
                try:
                    f.truncate(size)  # sparse: the part not decompressed reads as holes
                except OSError as e:
                    raise BadImage(
                        f"{path}: cannot make a temporary file for the image: {e.strerror or e}",
                        path=path,
                    ) from None
                f.flush()
                r = ImageReader(path, f, size=size, limit=got, size_known=known, tool_path=name)
                compression = Compression(
                    format=info.format,
                    file_size=info.file_size,
                    image_size=recorded if not ended else got,
                    size_from=size_from if recorded is not None or ended else "",
                    size_is=size_is,
                    member=info.member,
                    decompressed=got,
                    whole=ended,
                )
                yield r, compression


def _copy(stream: Stream, f: BinaryIO, limit: int) -> tuple[int, bool]:
    """Copy up to LIMIT bytes of the stream into f: (bytes copied, the image ended)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    got = 0
    with stream:
        while got < limit:
            want = min(CHUNK, limit - got)
            n = stream.readfull(view[:want])
            f.write(view[:n])
            got += n
            if n < want:
                return got, True
        return got, stream.readfull(memoryview(bytearray(1))) == 0

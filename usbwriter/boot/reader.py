"""Bounded reads from an image file or block device.

Every read is clipped to the image's size and to MAX_READ, so no field read from a
damaged image can make the inspector read (or allocate) without limit.

A compressed image is read from the first part of it, decompressed into a temporary
file (usbwriter.boot.compressed): ``limit`` is where the bytes read end, ``size`` the
image's size (or a stand-in when the compressed file does not record it). Bytes from
``limit`` to ``size`` read as zeros; ``known`` tells the readers whether a range was
really read, and every read past ``limit`` is counted in ``missed``.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from usbwriter.errors import BadImage

MAX_READ = 64 << 20


class ImageReader:
    """Reads of one image. ``path`` names it for people; ``tool_path`` is the file tools
    such as mtools open (the temporary file of a compressed image)."""

    def __init__(
        self,
        path: str,
        f: BinaryIO,
        *,
        size: int | None = None,
        limit: int | None = None,
        size_known: bool = True,
        tool_path: str | None = None,
    ) -> None:
        self.path = path
        self.f = f
        self.tool_path = tool_path or path
        if size is None:
            try:
                size = f.seek(0, os.SEEK_END)
            except OSError as e:
                raise BadImage(f"{path}: cannot seek: {e.strerror or e}") from e
        self.size = size
        self.limit = size if limit is None else min(limit, size)
        self.size_known = size_known  # False: size is a stand-in, the real size is unknown
        self.missed = 0  # reads that reached past limit (into bytes not read)

    @property
    def partial(self) -> bool:
        """Only the image's first ``limit`` bytes were read (a compressed image)."""
        return self.limit < self.size

    def known(self, offset: int, n: int = 1) -> bool:
        """Whether the n bytes at offset lie in the part of the image that was read (or
        past its end, which is known too); False for bytes not decompressed."""
        return not self.partial or offset + max(n, 1) <= self.limit or offset >= self.size

    def read(self, offset: int, n: int) -> bytes:
        """Up to n bytes at offset; fewer (maybe none) past the end of the image."""
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset, MAX_READ)
        if offset + n > self.limit:
            self.missed += 1
        try:
            self.f.seek(offset)
            return self.f.read(n)
        except OSError as e:
            raise BadImage(f"{self.path}: read error at byte {offset}: {e.strerror or e}") from e

    def read_exact(self, offset: int, n: int) -> bytes | None:
        """Exactly n bytes at offset, or None when the image ends before that."""
        b = self.read(offset, n)
        return b if len(b) == n else None


def u16le(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def u32le(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def u64le(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<Q", b, o)[0])


def u16be(b: bytes, o: int) -> int:
    return int(struct.unpack_from(">H", b, o)[0])


def u32be(b: bytes, o: int) -> int:
    return int(struct.unpack_from(">I", b, o)[0])


def clean_text(b: bytes, encoding: str = "ascii") -> str:
    """Bytes from an image to a printable one-line string (control characters dropped)."""
    s = b.decode(encoding, "replace")
    s = "".join(c for c in s if c.isprintable())  # drops control and bidi characters
    return s.strip(" \x00")

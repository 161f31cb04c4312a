"""Bounded reads from an image file or block device.

Every read is clipped to the image's size and to MAX_READ, so no field read from a
damaged image can make the inspector read (or allocate) without limit.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from usbwriter.errors import BadImage

MAX_READ = 64 << 20


class ImageReader:
    def __init__(self, path: str, f: BinaryIO) -> None:
        self.path = path
        self.f = f
        try:
            self.size = f.seek(0, os.SEEK_END)
        except OSError as e:
            raise BadImage(f"{path}: cannot seek: {e.strerror or e}") from e

    def read(self, offset: int, n: int) -> bytes:
        """Up to n bytes at offset; fewer (maybe none) past the end of the image."""
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset, MAX_READ)
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

"""What the boot readers read through, and the byte helpers they share.

The image's bytes come from the ISO toolkit's one bounded reader
(``usbwriter.iso.source.ImageBytes``, named ``ImageReader`` here): every read clipped to
the image's size and to ``MAX_READ``; for a compressed image only its first part is
decoded (``limit``), bytes past it read as zeros, ``known`` says which bytes were really
read and ``missed`` counts the reads that reached past them.
"""

from __future__ import annotations

import struct

from usbwriter.iso.descriptors import clean_text
from usbwriter.iso.source import MAX_READ
from usbwriter.iso.source import ImageBytes as ImageReader

__all__ = ["MAX_READ", "ImageReader", "clean_text", "u16be", "u16le", "u32be", "u32le", "u64le"]


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

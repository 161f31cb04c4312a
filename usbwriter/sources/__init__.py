"""Image sources: the file as downloaded (raw or compressed), opened without blocking,
and its image's bytes in order.

``open_image(path)`` checks what the path is (a FIFO, a directory, a socket are
refused), recognises the format by its magic bytes and returns an ``ImageSource`` with
its ``info`` (format, file size, image size where known) and ``stream()``, a fresh
sequential reader of the image's bytes (decompressed).
"""

from __future__ import annotations

from usbwriter.sources.files import (
    KIND_WORDS,
    ImageSource,
    kind_of,
    not_a_drive,
    not_an_image,
    open_image,
)
from usbwriter.sources.formats import COMPRESSED, SourceInfo, describe, detect_format
from usbwriter.sources.streams import Stream, open_stream, read_prefix

__all__ = [
    "COMPRESSED",
    "KIND_WORDS",
    "ImageSource",
    "SourceInfo",
    "Stream",
    "describe",
    "detect_format",
    "kind_of",
    "not_a_drive",
    "not_an_image",
    "open_image",
    "open_stream",
    "read_prefix",
]

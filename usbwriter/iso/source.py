"""The image's bytes at any offset, for a reader that seeks (pycdlib, extraction).

A raw image is read with pread. A compressed one is decoded forward from its first
byte; what was decoded is kept in a bounded cache: every block of the first
``HEAD_BYTES`` (where an ISO's volume descriptors, path tables and directories live)
and an LRU of the ``LRU_BLOCKS`` most recently read blocks. A read before the decoder's
position that the cache does not hold starts decoding again from the first byte
(``restarts`` counts them); extraction reads files in the order of their extents so
that this does not happen. Memory stays under ``HEAD_BYTES + LRU_BLOCKS * BLOCK``
(48 MiB) plus the decoder's own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Protocol

from usbwriter.errors import BadImage, Cancelled, os_error
from usbwriter.sources.files import ImageSource
from usbwriter.sources.streams import Stream

log = logging.getLogger(__name__)

BLOCK = 1 << 16  # 64 KiB
HEAD_BYTES = 32 << 20
HEAD_BLOCKS = HEAD_BYTES // BLOCK
LRU_BLOCKS = 256  # 16 MiB
SECTOR = 2048
VD_OFFSET = 16 * SECTOR  # the first volume descriptor


class ImageBytes(Protocol):
    """Random access to an image's bytes (decompressed)."""

    path: str

    @property
    def size(self) -> int | None:
        """The image's size in bytes, None when only reading it to its end would tell."""

    def pread(self, offset: int, n: int) -> bytes:
        """Up to N bytes at OFFSET; fewer only at the end of the image."""

    def close(self) -> None: ...


class RawBytes:
    """A raw image file or block device, read with pread."""

    def __init__(self, src: ImageSource) -> None:
        self.path = src.path
        self.fd = src.fd
        self._size = src.file_size

    @property
    def size(self) -> int | None:
        return self._size

    def pread(self, offset: int, n: int) -> bytes:
        n = max(0, min(n, self._size - offset))
        parts: list[bytes] = []
        got = 0
        while got < n:
            try:
                b = os.pread(self.fd, n - got, offset + got)
            except OSError as e:
                raise os_error(self.path, e, "read the image", offset=offset + got) from None
            if not b:
                break
            parts.append(b)
            got += len(b)
        return b"".join(parts)

    def close(self) -> None:
        pass


class DecodedBytes:
    """A compressed image decoded forward, with a bounded cache (see the module's text)."""

    def __init__(self, src: ImageSource, cancel: threading.Event | None = None) -> None:
        self.path = src.path
        self.src = src
        self.cancel = cancel
        self._size = src.info.size if src.info.size_exact else None
        self._stream: Stream | None = None
        self._pos = 0  # decoded bytes so far (a multiple of BLOCK until the end)
        self._end: int | None = self._size  # the image's end, once known
        self._head: dict[int, bytes] = {}
        self._lru: OrderedDict[int, bytes] = OrderedDict()
        self._buf = bytearray(BLOCK)
        self.restarts = 0
        self.decoded = 0  # bytes decoded in all, restarts included

    @property
    def size(self) -> int | None:
        return self._size if self._size is not None else self._end

    def _restart(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self.restarts += 1
            log.debug("%s: decoding again from the start (%d)", self.path, self.restarts)
        self._stream = self.src.stream()
        self._pos = 0

    def _block(self, i: int) -> bytes:
        got = self._head.get(i)
        if got is not None:
            return got
        got = self._lru.get(i)
        if got is not None:
            self._lru.move_to_end(i)
            return got
        if self._end is not None and i * BLOCK >= self._end:
            return b""
        if self._stream is None or i * BLOCK < self._pos:
            self._restart()
        assert self._stream is not None
        view = memoryview(self._buf)
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("interrupted")
            j = self._pos // BLOCK
            n = self._stream.readfull(view)
            data = bytes(view[:n])
            self._pos += n
            self.decoded += n
            if n < BLOCK:
                self._end = self._pos
            if j < HEAD_BLOCKS:
                self._head[j] = data
            if j == i:
                if j >= HEAD_BLOCKS:
                    self._lru[j] = data
                    if len(self._lru) > LRU_BLOCKS:
                        self._lru.popitem(last=False)
                return data
            if n < BLOCK:
                return b""

    def pread(self, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        end = offset + n
        while offset < end:
            i, skip = divmod(offset, BLOCK)
            block = self._block(i)
            piece = block[skip : skip + (end - offset)]
            if not piece:
                break
            parts.append(piece)
            offset += len(piece)
            if len(block) < BLOCK and skip + len(piece) >= len(block):
                break  # the image's end
        return b"".join(parts)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._head.clear()
        self._lru.clear()


def image_bytes(src: ImageSource, cancel: threading.Event | None = None) -> ImageBytes:
    """Random access to SRC's image: pread for a raw one, a decoding cache otherwise."""
    if src.info.compressed:
        return DecodedBytes(src, cancel)
    return RawBytes(src)


def volume_size(data: ImageBytes) -> int:
    """The size the primary volume descriptor records (0 if there is none); BadImage
    when the image has no ISO 9660 volume descriptor at byte 32768."""
    vd = data.pread(VD_OFFSET, SECTOR)
    if len(vd) < 7 or vd[1:6] != b"CD001":
        if vd[1:6] in (b"BEA01", b"NSR02", b"NSR03"):
            raise BadImage(
                f"{data.path}: a UDF image without an ISO 9660 volume descriptor (not supported)",
                path=data.path,
            )
        raise BadImage(
            f"{data.path}: not an ISO 9660 image (no volume descriptor at byte 32768)",
            path=data.path,
        )
    offset = VD_OFFSET
    for _ in range(64):  # the descriptor set: find the primary (type 1) before the end
        if vd[0] == 1:
            blocks = int.from_bytes(vd[80:84], "little")
            block_size = int.from_bytes(vd[128:130], "little") or SECTOR
            return blocks * block_size
        if vd[0] == 255 or vd[1:6] != b"CD001":
            break
        offset += SECTOR
        vd = data.pread(offset, SECTOR)
        if len(vd) < 7:
            break
    return 0

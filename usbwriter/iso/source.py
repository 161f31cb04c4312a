"""The one reader of an image's bytes at any offset: the boot report, `ls`, extraction,
pycdlib and a disc's volume size all read through an ``ImageBytes``.

Every read is bounded: clipped to the image's size, and ``read`` to ``MAX_READ``, so
no field read from a damaged image makes a reader read (or allocate) without limit.
Errors name the file and the byte read.

- ``RawBytes``: a raw image file or block device, read with pread.
- ``AlignedBytes``: a drive held with ``O_DIRECT`` (a backup's), read in whole blocks
  through an aligned buffer.
- ``DecodedBytes``: a compressed image decoded forward from its first byte. What was
  decoded is kept in a bounded cache: the first ``head`` bytes (``HEAD_BYTES``: where an
  ISO's volume descriptors, path tables, directories and boot images live, and a board
  image's boot partition starts) in a sparse file of a private temporary folder (tools
  such as mtools read it there: ``tool_path``), and an LRU of the ``LRU_BLOCKS`` most
  recently read blocks past it in memory. A read before the decoder's position that the
  cache does not hold starts decoding again from the first byte (``restarts`` counts
  them); extraction reads files in the order of their extents so that this does not
  happen. With ``limit`` (the boot report), only the first ``limit`` bytes are decoded,
  at once; bytes past them read as zeros, ``known`` tells which bytes were really read,
  and every read reaching past them is counted in ``missed``. Memory stays under
  ``LRU_BLOCKS * BLOCK`` (16 MiB) plus the decoder's own, the temporary file under
  ``head`` bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Self

from usbwriter.errors import BadImage, Cancelled, UsbWriterError, os_error
from usbwriter.sources.files import ImageSource
from usbwriter.sources.streams import Stream

log = logging.getLogger(__name__)

MAX_READ = 64 << 20  # the most one ``read`` returns
BLOCK = 1 << 16  # 64 KiB, the decoding cache's unit
HEAD_BYTES = 64 << 20
LRU_BLOCKS = 256  # 16 MiB
#: The size taken for an image whose size only decoding it to its end would tell (bzip2,
#: a gzip over 4 GiB, a zstd frame without a size): large enough for any offset read.
UNKNOWN_EXTENT = 1 << 40


class ImageBytes:
    """Bounded random access to one image's bytes (decompressed). ``path`` names it for
    people; ``tool_path`` is the file tools such as mtools open; ``size`` is the image's
    size, or ``UNKNOWN_EXTENT`` while ``size_known`` is false. ``PREAD(offset, n)``
    gives the bytes (subclasses read them themselves)."""

    def __init__(
        self,
        path: str,
        size: int,
        *,
        pread: Callable[[int, int], bytes] | None = None,
        size_known: bool = True,
        limit: int | None = None,
        tool_path: str | None = None,
    ) -> None:
        self.path = path
        self.tool_path = tool_path or path
        self.size = size
        self.size_known = size_known
        self.limit = size if limit is None else min(limit, size)
        self.missed = 0  # reads that reached past limit (into bytes not read)
        self.fd: int | None = None  # the image's own descriptor, when read from one
        self._source = pread

    def _read(self, offset: int, n: int) -> bytes:
        """Up to N bytes at OFFSET (inside the image); fewer only at its end."""
        assert self._source is not None
        return self._source(offset, n)

    @property
    def partial(self) -> bool:
        """Only the image's first ``limit`` bytes were read (a compressed image)."""
        return self.limit < self.size

    def known(self, offset: int, n: int = 1) -> bool:
        """Whether the N bytes at OFFSET lie in the part of the image read (or past its
        end, which is known too); False for bytes not decoded."""
        return not self.partial or offset + max(n, 1) <= self.limit or offset >= self.size

    def pread(self, offset: int, n: int) -> bytes:
        """Up to N bytes at OFFSET; fewer (maybe none) only past the image's end. Bytes
        past ``limit`` read as zeros (and the read is counted in ``missed``)."""
        if offset < 0 or n <= 0 or offset >= self.size:
            return b""
        n = min(n, self.size - offset)
        if offset + n <= self.limit:
            return self._read(offset, n)
        self.missed += 1
        head = self._read(offset, self.limit - offset) if offset < self.limit else b""
        return head + bytes(n - len(head))

    def read(self, offset: int, n: int) -> bytes:
        """Up to N bytes at OFFSET, at most ``MAX_READ``; fewer past the end."""
        return self.pread(offset, min(n, MAX_READ))

    def read_exact(self, offset: int, n: int) -> bytes | None:
        """Exactly N bytes at OFFSET, or None when the image ends before that."""
        b = self.read(offset, n)
        return b if len(b) == n else None

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pread_all(fd: int, path: str, offset: int, n: int) -> bytes:
    parts: list[bytes] = []
    got = 0
    while got < n:
        try:
            b = os.pread(fd, n - got, offset + got)
        except OSError as e:
            at = offset + got
            raise os_error(path, e, f"read the image at byte {at:,}", offset=at) from None
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


class RawBytes(ImageBytes):
    """A raw image file or block device, read with pread (the descriptor is the
    caller's)."""

    def __init__(self, path: str, fd: int, size: int) -> None:
        super().__init__(path, size)
        self.fd: int = fd

    @classmethod
    def of(cls, src: ImageSource) -> RawBytes:
        return cls(src.path, src.fd, src.file_size)

    def _read(self, offset: int, n: int) -> bytes:
        return _pread_all(self.fd, self.path, offset, n)


class AlignedBytes(ImageBytes):
    """A drive's descriptor that may have ``O_DIRECT``: whole BLOCKs read into an aligned
    buffer. Its size is not looked up (reads past the end come back short)."""

    def __init__(self, path: str, fd: int, block: int) -> None:
        super().__init__(path, UNKNOWN_EXTENT, size_known=False)
        self.fd: int = fd
        self.block = max(block, 512)

    def _read(self, offset: int, n: int) -> bytes:
        from usbwriter.engine.blockio import aligned_buffer, pread_into, round_up

        lo = offset // self.block * self.block
        length = round_up(offset + n, self.block) - lo
        buf = aligned_buffer(round_up(length, 4096))
        try:
            with memoryview(buf) as view:
                try:
                    got = pread_into(self.fd, view[:length], lo)
                except OSError as e:
                    raise os_error(
                        self.path, e, f"read the drive at byte {lo:,}", offset=lo
                    ) from None
                return bytes(view[offset - lo : min(got, offset - lo + n)])
        finally:
            buf.close()


class DecodedBytes(ImageBytes):
    """A compressed image decoded forward, with a bounded cache (see the module's text)."""

    def __init__(
        self,
        src: ImageSource,
        cancel: threading.Event | None = None,
        *,
        limit: int | None = None,
        head: int = HEAD_BYTES,
    ) -> None:
        info = src.info
        exact = info.size if info.size_exact else None
        super().__init__(
            src.path, exact if exact is not None else UNKNOWN_EXTENT, size_known=exact is not None
        )
        self.src = src
        self.info = info
        self.cancel = cancel
        self.head = limit if limit is not None else head // BLOCK * BLOCK
        self._stream: Stream | None = None
        self._pos = 0  # decoded bytes so far (a multiple of BLOCK until the end)
        self._stored = 0  # bytes of the head in the temporary file (a prefix)
        self._end: int | None = None  # the image's end, once found
        self._lru: OrderedDict[int, bytes] = OrderedDict()
        self._buf = bytearray(BLOCK)
        self._lock = threading.Lock()
        self.restarts = 0
        self.decoded = 0  # bytes decoded in all, restarts included
        self._dir = tempfile.mkdtemp(prefix="usbwriter-image-")
        self.tool_path = os.path.join(self._dir, "image")
        self._fd = -1
        try:
            self._fd = os.open(
                self.tool_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
            )
            if limit is not None:
                self._decode_head(limit)
        except BaseException:
            self.close()
            raise

    @property
    def ended(self) -> bool:
        """The image's end was reached while decoding (its size is then exact)."""
        return self._end is not None

    def _decode_head(self, limit: int) -> None:
        """Decode the first LIMIT bytes now, and no more later: the boot report's mode."""
        while self._end is None and self._pos < limit:
            self._next_block(min(BLOCK, limit - self._pos))
        probe = memoryview(bytearray(1))
        if self._end is None and self._stream is not None and self._stream.readfull(probe) == 0:
            self._found_end(self._pos)  # the image ends right here
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        got = self._pos
        if self._end is None and not (self.size_known and self.size > got):
            self.size, self.size_known = UNKNOWN_EXTENT, False  # only a guess was recorded
        if self.size == 0:
            raise BadImage(
                f"{self.path}: the {self.info.format} file holds an empty image", path=self.path
            )
        self.limit = min(got, self.size)
        try:
            os.ftruncate(self._fd, self.size)  # sparse: the part not decoded reads as holes
        except OSError as e:
            raise BadImage(
                f"{self.path}: cannot make a temporary file for the image: {e.strerror or e}",
                path=self.path,
            ) from None

    def _found_end(self, end: int) -> None:
        self._end = end
        self.size, self.size_known, self.limit = end, True, end

    def _restart(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self.restarts += 1
            log.debug("%s: decoding again from the start (%d)", self.path, self.restarts)
        self._stream = self.src.stream()
        self._pos = 0

    def _next_block(self, want: int = BLOCK) -> bytes:
        """Decode WANT bytes at the decoder's position, keep them, and return them."""
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled("interrupted")
        if self._stream is None:
            self._restart()
        assert self._stream is not None
        at = self._pos
        try:
            n = self._stream.readfull(memoryview(self._buf)[:want])
        except Cancelled:
            raise
        except UsbWriterError as e:  # damaged data: say where in the image it stopped
            if e.offset is not None:
                raise
            raise type(e)(
                f"{e}, at byte {at:,} of the image", path=e.path or self.path, offset=at,
                errno=e.errno,
            ) from None  # fmt: skip
        data = bytes(self._buf[:n])
        self._pos += n
        self.decoded += n
        if at == self._stored and at < self.head:
            keep = min(n, self.head - at)
            try:
                os.pwrite(self._fd, data[:keep], at)
            except OSError as e:
                raise os_error(
                    self.tool_path, e, "keep the decoded image in a temporary file", offset=at
                ) from None
            self._stored = at + keep
        if n < want:
            self._found_end(self._pos)
        return data

    def _block(self, i: int) -> bytes:
        """Block I (past the head kept in the file): from the LRU, else decoded."""
        got = self._lru.get(i)
        if got is not None:
            self._lru.move_to_end(i)
            return got
        start = i * BLOCK
        if self._end is not None and start >= self._end:
            return b""
        if self._stream is None or start < self._pos:
            self._restart()
        while True:
            j = self._pos // BLOCK
            data = self._next_block()
            if j == i:
                if j * BLOCK >= self.head:
                    self._lru[j] = data
                    if len(self._lru) > LRU_BLOCKS:
                        self._lru.popitem(last=False)
                return data
            if self._end is not None:
                return b""

    def _read(self, offset: int, n: int) -> bytes:
        parts: list[bytes] = []
        end = offset + n
        with self._lock:
            while offset < end:
                if offset < self._stored:  # the head, kept in the file
                    want = min(end, self._stored) - offset
                    piece = _pread_all(self._fd, self.tool_path, offset, want)
                    parts.append(piece)
                    offset += len(piece)
                    if len(piece) < want:
                        break
                    continue
                if self._end is not None and offset >= self._end:
                    break
                i, skip = divmod(offset, BLOCK)
                block = self._block(i)
                if i * BLOCK < self._stored:
                    continue  # decoding reached it, into the head
                piece = block[skip : skip + (end - offset)]
                if not piece:
                    break
                parts.append(piece)
                offset += len(piece)
        return b"".join(parts)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._lru.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = ""


def image_bytes(
    src: ImageSource, cancel: threading.Event | None = None, *, limit: int | None = None
) -> ImageBytes:
    """Random access to SRC's image: pread for a raw one, a decoding cache otherwise
    (with LIMIT: only its first LIMIT bytes decoded, at once)."""
    if src.info.compressed:
        return DecodedBytes(src, cancel, limit=limit)
    return RawBytes.of(src)

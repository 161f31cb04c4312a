"""Low-level block I/O shared by the writer and the verifier.

Page-aligned buffers from anonymous mmaps (O_DIRECT needs aligned address, length
and offset), a reader thread that fills them ahead of the consumer, and a few
device helpers (size, flush, re-read partition table).
"""

from __future__ import annotations

import errno
import fcntl
import functools
import logging
import mmap
import os
import queue
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

MiB = 1 << 20
CHUNK_SIZE = 4 * MiB  # best for O_DIRECT here: 1 MiB was ~25% slower, 16 MiB ~20% slower
ALIGN = 4096
BLKRRPART = 0x125F
BLKSSZGET = 0x1268


def round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


def aligned_buffer(size: int) -> mmap.mmap:
    """A page-aligned, zero-filled buffer usable with O_DIRECT."""
    return mmap.mmap(-1, round_up(size, ALIGN))


def is_block_device(fd: int) -> bool:
    return stat.S_ISBLK(os.fstat(fd).st_mode)


def fd_size(fd: int) -> int:
    """Size in bytes of a block device or regular file behind fd."""
    return os.lseek(fd, 0, os.SEEK_END)


def logical_block_size(fd: int) -> int:
    if not is_block_device(fd):
        return 512
    buf = bytearray(4)
    try:
        fcntl.ioctl(fd, BLKSSZGET, buf)
    except OSError:
        return 512
    return int.from_bytes(buf, "little") or 512


def reread_partitions(fd: int) -> bool:
    """Ask the kernel to re-read the partition table; False where unsupported."""
    try:
        fcntl.ioctl(fd, BLKRRPART)
    except OSError as e:
        log.debug("BLKRRPART: %s", e.strerror)
        return False
    return True


def drop_cache(fd: int) -> None:
    """Drop the device's clean cached pages, so a buffered reader sees the device."""
    try:
        os.fsync(fd)
    except OSError as e:
        log.debug("fsync before dropping the cache: %s", e.strerror)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def set_direct(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    new = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
    if new != flags:
        fcntl.fcntl(fd, fcntl.F_SETFL, new)


def open_held(path: str, flags: int, *, block: bool, exclusive: bool = True) -> int:
    """Open PATH (resolved already: the last component is not followed) with O_DIRECT, and
    hold it: a drive with O_EXCL (no mount, no second writer, read-only or not), a regular
    file with a non-blocking flock (exclusive, or shared for reading). O_DIRECT is dropped
    only for a regular file on a file system without it. Raises OSError (EWOULDBLOCK when
    the file is locked by someone else)."""
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_EXCL if block else 0)
    try:
        fd = os.open(path, flags | os.O_DIRECT, 0o644)
    except OSError as e:
        if e.errno != errno.EINVAL or block:
            raise
        fd = os.open(path, flags, 0o644)
    if not block:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
    return fd


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        data = data[n:]
        offset += n


def pread_into(fd: int, buf: memoryview, offset: int) -> int:
    """Fill buf from offset; return how many bytes were read (short only at EOF)."""
    got = 0
    while got < len(buf):
        n = os.preadv(fd, [buf[got:]], offset + got)
        if n == 0:
            break
        got += n
    return got


class Sequential(Protocol):
    """A reader of bytes in order (a decompressing stream)."""

    def readfull(self, view: memoryview) -> int: ...


class Piece(Protocol):
    """Bytes of the image on their way to a drive: a Chunk, or a view of a mapped image
    (engine.mapped). Released once per consumer."""

    offset: int
    length: int

    @property
    def data(self) -> memoryview: ...

    def release(self) -> None: ...


@dataclass
class Chunk:
    """A filled buffer on its way through the pipeline. Release it once per consumer."""

    offset: int
    length: int
    buf: mmap.mmap
    _home: queue.Queue[mmap.mmap]
    _users: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def data(self) -> memoryview:
        return memoryview(self.buf)[: self.length]

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users == 0
        if last:
            self._home.put(self.buf)


class ReadError(Exception):
    """The reader thread's OSError, with the offset it failed at."""

    def __init__(self, offset: int, error: OSError) -> None:
        super().__init__(f"offset {offset}: {error.strerror}")
        self.offset = offset
        self.error = error


class Prefetcher:
    """Reads [start, end) of a source on a thread into a small pool of aligned buffers.

    The source is a descriptor (read with pread at each offset) or a sequential reader
    with ``readfull(view)`` (a decompressing stream, already at ``start``; with
    ``end=None`` it is read to its end). A descriptor may be read over SEGMENTS instead,
    (start, end) pairs in order (the spans of a ranged write, read back by one thread).
    Iterating yields Chunks in order, never across a segment's end; each must be
    released `users` times before its buffer is reused. Descriptor reads are rounded up
    to `block` (for O_DIRECT); chunk lengths never pass `end`. An error in the reader is
    raised by the iteration: an OSError as ``ReadError`` with its offset.
    """

    def __init__(
        self,
        source: int | Sequential,
        start: int = 0,
        end: int | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        buffers: int = 3,
        users: int = 1,
        block: int = 512,
        segments: list[tuple[int, int]] | None = None,
    ) -> None:
        self.source, self.start, self.end = source, start, end
        self.segments: list[tuple[int, int | None]] = (
            list(segments) if segments is not None else [(start, end)]
        )
        self.chunk_size, self.users, self.block = chunk_size, users, block
        self._free: queue.Queue[mmap.mmap] = queue.Queue()
        self._bufs = [aligned_buffer(chunk_size) for _ in range(buffers)]
        for b in self._bufs:
            self._free.put(b)
        self._out: queue.Queue[Chunk | BaseException | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="usbwriter-reader", daemon=True)
        self._thread.start()

    def _read(self, view: memoryview, want: int, offset: int) -> int:
        if isinstance(self.source, int):
            return pread_into(self.source, view[: round_up(want, self.block)], offset)
        return self.source.readfull(view[:want])

    def _run(self) -> None:
        try:
            for start, end in self.segments:
                if not self._segment(start, end):
                    return
        finally:
            self._out.put(None)

    def _segment(self, offset: int, end: int | None) -> bool:
        """Read one segment; False when the reading stopped (an error, the end of a
        sequential source, or close)."""
        while end is None or offset < end:
            if self._stop.is_set():
                return False
            try:
                buf = self._free.get(timeout=0.1)
            except queue.Empty:
                continue
            left = self.chunk_size if end is None else end - offset
            want = min(self.chunk_size, left)
            view = memoryview(buf)
            try:
                got = min(self._read(view, want, offset), want)
            except OSError as e:
                self._out.put(ReadError(offset, e))
                return False
            except BaseException as e:  # a decoder's error: the consumer raises it
                self._out.put(e)
                return False
            finally:
                view.release()
            if got == 0:
                if end is not None:
                    self._out.put(ReadError(offset, OSError(errno.EIO, "unexpected end of data")))
                self._free.put(buf)
                return False
            self._out.put(Chunk(offset, got, buf, self._free, self.users))
            offset += got
        return True

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            item = self._out.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        # Unblock the reader if it waits for a free buffer, then wait for it.
        while self._thread.is_alive():
            try:
                while True:
                    item = self._out.get_nowait()
                    if isinstance(item, Chunk):
                        item.release()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.05)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@functools.cache
def _memcmp() -> Any:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    libc.memcmp.restype = ctypes.c_int
    return libc.memcmp


def same_bytes(a: memoryview | bytearray, b: memoryview | bytearray) -> bool:
    """memcmp of two writable buffers (a memoryview compares item by item: 20x slower)."""
    import ctypes

    n = len(a)
    if n != len(b):
        return False
    if n == 0:
        return True
    pa = (ctypes.c_char * n).from_buffer(a)
    pb = (ctypes.c_char * n).from_buffer(b)
    try:
        return int(_memcmp()(pa, pb, n)) == 0
    finally:
        del pa, pb

"""An uncompressed image read without a copy: its pages mapped, under a read lease.

Writing the drive straight from the image's cached pages (pwrite from a mapping) and
comparing the drive with them (memcmp) saves a copy of every byte in each phase: at
memory speed that copy is a third of the work. The danger of a mapping is a file cut
short under it: touching a page past the new end kills the process (SIGBUS), with no
chance to wipe the drive or say why.

A read lease (``F_SETLEASE, F_RDLCK``) closes that door. The kernel grants it only while
no one has the file open for writing, and to the file's owner or root (CAP_LEASE). Once
it is held, whoever opens the file for writing or truncates it is made to wait until the
lease is given back (at most ``/proc/sys/fs/lease-break-time`` seconds, 45 by default).
The readers ask before each chunk whether such a break is pending (``F_GETLEASE`` then
says ``F_UNLCK``). When it is, they finish the chunks in hand, give the lease back, and
read the rest with pread as before: the other program goes on at once. The signal the
kernel sends the lease holder is set to SIGURG, which is ignored by default.

Where no lease is granted (someone has the file open for writing, a file system without
leases, an unprivileged user's file they do not own), nothing is mapped and the image is
read with pread. The remaining window: a process stopped (SIGSTOP) inside a chunk for
longer than the lease-break time while the image is truncated.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import mmap
import os
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from usbwriter.engine.blockio import Chunk, Prefetcher

log = logging.getLogger(__name__)

PAGE = mmap.PAGESIZE
AHEAD = 4  # chunks handed out and not yet released, at most (as a Prefetcher's buffers)


class Check(Protocol):
    """What hashes the file as downloaded, in order (sources.streams.FileCheck)."""

    def update(self, data: memoryview) -> None: ...


class Mapped:
    """SIZE bytes of a regular file, mapped (private, never written) while this process
    holds a read lease on it through FD, its own descriptor of the file."""

    def __init__(self, fd: int, size: int, mm: mmap.mmap) -> None:
        self.fd, self.size, self._mm = fd, size, mm
        self._view = memoryview(mm)
        self._leased = True
        self._lock = threading.Lock()

    @classmethod
    def take(cls, fd: int, size: int) -> Mapped | None:
        """The file open at FD mapped under a lease of its own (a fresh open of the same
        file: a lease belongs to an open file, and the image's descriptor may be shared
        by several drives' jobs), or None where no lease is granted or the file is not
        SIZE bytes long once it is held."""
        try:
            st = os.fstat(fd)
            if size <= 0 or not stat.S_ISREG(st.st_mode):
                return None
            own = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            log.debug("the image cannot be opened again: %s", e.strerror)
            return None
        try:
            again = os.fstat(own)
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
                raise OSError(errno.ESTALE, "not the same file")
            fcntl.fcntl(own, fcntl.F_SETSIG, signal.SIGURG)
            fcntl.fcntl(own, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as e:
            log.debug("no read lease on the image: %s", e.strerror)
            os.close(own)
            return None
        try:
            if os.fstat(own).st_size != size:
                raise OSError(errno.ESTALE, "the file's size changed")
            # Private and writable: a buffer ctypes can compare, whose pages are the
            # file's own until written (they never are).
            flags, prot = mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE
            mm = mmap.mmap(own, size, flags=flags, prot=prot)
        except (OSError, ValueError) as e:
            log.debug("image not mapped: %s", e)
            _unlease(own)
            os.close(own)
            return None
        mm.madvise(mmap.MADV_SEQUENTIAL)
        return cls(own, size, mm)

    def intact(self) -> bool:
        """The lease is held and no one waits for it: the mapping may be read."""
        if not self._leased:
            return False
        try:
            return fcntl.fcntl(self.fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK
        except OSError:
            return False

    def view(self, offset: int, length: int) -> memoryview:
        return self._view[offset : offset + length]

    def done_with(self, offset: int, length: int) -> None:
        """Pages behind OFFSET no longer needed: out of this process's memory (they stay
        in the page cache), so the resident size stays that of the buffers."""
        start = offset // PAGE * PAGE
        end = min(self.size, offset + length)
        if end > start:
            try:
                self._mm.madvise(mmap.MADV_DONTNEED, start, end - start)
            except (OSError, ValueError) as e:
                log.debug("madvise: %s", e)

    def release(self) -> None:
        """Give the lease back: call only once nothing reads the mapping any more."""
        with self._lock:
            if not self._leased:
                return
            self._leased = False
        _unlease(self.fd)

    def close(self) -> None:
        self.release()
        self._view.release()
        with contextlib.suppress(BufferError):  # a view still held: unmapped when collected
            self._mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _unlease(fd: int) -> None:
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError as e:
        log.debug("giving the lease back: %s", e.strerror)


@dataclass
class MappedChunk:
    """A chunk of the mapped image (the pipeline's Chunk without a buffer of its own);
    CHECK, when set, is what its consumer feeds the bytes to (the file's digests)."""

    offset: int
    length: int
    _reader: MappedReader
    check: Check | None = None

    @property
    def data(self) -> memoryview:
        return self._reader.mapped.view(self.offset, self.length)

    def release(self) -> None:
        self._reader.released(self)


class MappedReader:
    """Chunks of [START, END) of a mapped image, in order, each to be released USERS
    times. When a break of the lease is pending, the chunks in hand are waited for, the
    lease given back, and the rest read by REST(offset), an iterable of ordinary chunks.
    CHECK is handed with every mapped chunk; AT_END(END) is called once every mapped
    chunk was released (no more reads of the mapping) when the mapping reached the end."""

    def __init__(
        self,
        mapped: Mapped,
        start: int,
        end: int,
        *,
        chunk_size: int,
        users: int,
        rest: Callable[[int], Prefetcher],
        check: Check | None = None,
        at_end: Callable[[int], None] | None = None,
    ) -> None:
        self.mapped, self.start, self.end = mapped, start, end
        self.chunk_size, self.users, self.check = chunk_size, users, check
        self._rest, self._at_end = rest, at_end
        self._cond = threading.Condition()
        self._in_hand: dict[int, int] = {}  # chunk offset -> releases still due
        self.fell_back_at: int | None = None
        self._fallback: Prefetcher | None = None

    def released(self, chunk: MappedChunk) -> None:
        with self._cond:
            left = self._in_hand[chunk.offset] - 1
            if left:
                self._in_hand[chunk.offset] = left
                return
            del self._in_hand[chunk.offset]
            self._cond.notify_all()
        self.mapped.done_with(chunk.offset, chunk.length)

    def settle(self) -> None:
        """Wait until every chunk handed out was released."""
        with self._cond:
            while self._in_hand:
                self._cond.wait()

    def __iter__(self) -> Iterator[Chunk | MappedChunk]:
        offset = self.start
        while offset < self.end:
            if not self.mapped.intact():
                self.settle()
                self.mapped.release()
                self.fell_back_at = offset
                log.debug("lease broken at %d: reading on with pread", offset)
                self._fallback = self._rest(offset)
                yield from self._fallback
                return
            n = min(self.chunk_size, self.end - offset)
            with self._cond:
                while len(self._in_hand) >= AHEAD:  # a slower consumer: wait for it
                    self._cond.wait()
                self._in_hand[offset] = self.users
            yield MappedChunk(offset, n, self, self.check)
            offset += n
        self.settle()
        if self._at_end is not None:
            self._at_end(self.end)

    def close(self) -> None:
        """The lease given back and the mapping closed: call once every consumer of the
        chunks is done with them (a chunk dropped on an error is never released)."""
        if self._fallback is not None:
            self._fallback.close()
        self.mapped.close()

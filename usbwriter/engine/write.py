"""The one write loop: the image's bytes to one drive, whatever parts of it are written.

A full write, a bmap write and a delta write are the same loop with another
``Selector``. The image is read (decompressed as it is read) by a reader thread into
aligned buffers; a hashing thread takes the blake3 of the image, the blake3 of each
span written (for a ranged write) and the selector's checks (a bmap's range checksums);
the calling thread writes what the selector picks. The drive is handled one way for
all of them:

- the first MiB, and the drive's last MiB past the image (where a stale backup GPT
  would be), are zeroed before the first byte that changes the drive, and the image's
  own first MiB is written last: an interrupted write never leaves a stick that looks
  bootable;
- it is synced every 64 MiB written and every 2 seconds, and at the end (a "sync"
  phase in the progress);
- progress follows the image's bytes, or the file's when the image's size is unknown;
- on a failure or a cancel, its first MiB is wiped through the held descriptor.

An uncompressed image whose bmap carries a checksum for every range is read only where
the bmap maps: those checksums then prove the bytes written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import blake3

from usbwriter.engine.blockio import (
    CHUNK_SIZE,
    MiB,
    Piece,
    Prefetcher,
    ReadError,
    aligned_buffer,
    pread_into,
    reread_partitions,
    round_up,
    same_bytes,
)
from usbwriter.engine.mapped import Mapped, MappedChunk, MappedReader
from usbwriter.engine.readback import Span, image_read_error
from usbwriter.engine.selectors import Coverage, Everything, Selector
from usbwriter.engine.target import (
    Target,
    WriteResult,
    check_chunk_fits,
    check_declared_size,
    check_fits,
    failed_write,
    last_mib,
    wipe_note,
)
from usbwriter.errors import BadImage, Cancelled
from usbwriter.progress import Meter, Progress, ProgressCallback
from usbwriter.sources.streams import RawStream

if TYPE_CHECKING:
    from usbwriter.sources import ImageSource, Stream

log = logging.getLogger(__name__)

SYNC_EVERY = 64 * MiB
SYNC_SECONDS = 2.0
WRITE_PIECE = MiB  # the most written by one call: a cancel waits for no more


@dataclass(frozen=True)
class Written:
    """A drive written: the result, what a ranged write covered, and the spans to read
    back (a full write: one span from byte 0, with the image's blake3)."""

    result: WriteResult
    coverage: Coverage | None
    spans: tuple[Span, ...]


@dataclass
class _Drive:
    """The target and what has been done to it."""

    tgt: Target
    image_end: int | None  # where the image ends on the drive, when known up front
    sync_every: int = SYNC_EVERY
    sync_seconds: float = SYNC_SECONDS
    touched: bool = False
    spans: list[Span] = field(default_factory=list)
    written_at: float | None = None  # when the drive held everything
    unsynced: int = 0
    synced_at: float = field(default_factory=time.monotonic)
    cancel: threading.Event | None = None

    def touch(self) -> None:
        """Before the first byte that changes the drive: zero its first MiB, and its last
        MiB where the image does not reach (an old backup GPT)."""
        if self.touched:
            return
        self.touched = True
        tgt = self.tgt
        zeros = aligned_buffer(MiB)
        tgt.write(memoryview(zeros)[: min(MiB, tgt.size)], 0)
        if tgt.is_block and tgt.size > 2 * MiB:
            last = last_mib(tgt, MiB)
            if self.image_end is None or self.image_end < tgt.size:
                start = max(last, round_up(self.image_end or 0, tgt.block))
                if start < tgt.size:
                    tgt.write(memoryview(zeros)[: tgt.size - start], start)
        tgt.sync()
        self.synced_at = time.monotonic()

    def write(self, data: memoryview, offset: int, digest: str | None = None) -> None:
        """Write DATA at OFFSET; its span's digest is given, or filled in by the hasher.
        Written a MiB at a time, the cancel heard between (a slow stick takes seconds for
        a whole chunk)."""
        self.touch()
        for at in range(0, len(data), WRITE_PIECE):
            if at and self.cancel is not None and self.cancel.is_set():
                raise Cancelled("cancelled")
            self.tgt.write(data[at : at + WRITE_PIECE], offset + at)
        self.spans.append(Span(offset, len(data), digest))
        self.unsynced += len(data)
        now = time.monotonic()
        if self.unsynced >= self.sync_every or now - self.synced_at >= self.sync_seconds:
            self.tgt.sync()
            self.unsynced, self.synced_at = 0, now


class _Hasher(threading.Thread):
    """The hashing thread: blake3 of the image read, the selector's checks, and the
    blake3 of each span written (ranged writes), chunk by chunk in order. An error is
    kept for the writer to raise."""

    def __init__(self, selector: Selector, *, whole: bool, spans: bool) -> None:
        super().__init__(name="usbwriter-hash", daemon=True)
        self.selector, self.whole, self.want_spans = selector, whole, spans
        self.image = blake3.blake3()
        self.digests: dict[int, str] = {}  # span offset -> blake3
        self.error: BaseException | None = None
        self.q: queue.Queue[tuple[Piece, list[tuple[int, int]]] | None] = queue.Queue()

    def feed(self, data: memoryview, offset: int, parts: list[tuple[int, int]]) -> None:
        if self.whole:
            self.image.update(data)
        self.selector.check(offset, data)
        if self.want_spans:
            for off, n in parts:
                rel = off - offset
                self.digests[off] = str(blake3.blake3(data[rel : rel + n]).hexdigest())

    def run(self) -> None:
        while (item := self.q.get()) is not None:
            chunk, parts = item
            try:
                if self.error is None:
                    if isinstance(chunk, MappedChunk) and chunk.check is not None:
                        chunk.check.update(chunk.data)  # the file's digests, in order
                    self.feed(chunk.data, chunk.offset, parts)
            except BaseException as e:
                self.error = e
            finally:
                chunk.release()
                self.q.task_done()
        self.q.task_done()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def settle(self) -> None:
        """Wait until every chunk handed over is done; raise what was found."""
        self.q.join()
        self.raise_error()

    def finish(self) -> str | None:
        self.q.put(None)
        self.join()
        return str(self.image.hexdigest()) if self.whole else None


def write_drive(
    src: ImageSource,
    tgt: Target,
    selector: Selector | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
    sync_every: int = SYNC_EVERY,
) -> Written:
    """Write the image SRC holds to the open target TGT: the parts SELECTOR picks (all of
    it by default). On a failure or a cancel the first MiB is wiped (if anything was
    written) and the error raised, saying so."""
    selector = selector or Everything()
    cancel = cancel or threading.Event()
    check_fits(src, tgt, cancel)
    drive = _Drive(tgt, src.size, sync_every=sync_every, cancel=cancel)
    start = time.monotonic()
    try:
        with src.stream() as stream:
            digest, size = _write(stream, src, drive, selector, progress, cancel, chunk_size)
            file_digest = stream.file_blake3 if src.info.compressed else None
            confirmed = stream.confirmed
    except BaseException as e:
        if not drive.touched:
            raise failed_write(e, tgt.path, "nothing on the drive was changed") from None
        raise failed_write(e, tgt.path, wipe_note(tgt.wipe_head())) from None
    finally:
        selector.close()
    seconds = (drive.written_at or time.monotonic()) - start
    reread = drive.touched and tgt.is_block and reread_partitions(tgt.fd)
    spans = sorted(drive.spans, key=lambda s: s.offset)
    coverage = selector.coverage(size, spans)
    result = WriteResult(
        image_path=src.path,
        image_size=size,
        blake3=digest,
        device=tgt.path,
        bytes_written=coverage.written if coverage is not None else size,
        seconds=seconds,
        direct_io=tgt.direct,
        partitions_reread=bool(reread),
        format=src.info.format,
        file_blake3=file_digest,
        checksum_confirmed=confirmed,
    )
    if coverage is None:
        return Written(result, None, (Span(0, size, digest),))
    return Written(result, coverage, tuple(spans))


def _read_head(stream: Stream, src: ImageSource, view: memoryview) -> int:
    try:
        n = stream.readfull(view)
    except OSError as e:
        raise BadImage(
            f"error reading '{src.path}' at offset 0: {e.strerror}", path=src.path, errno=e.errno
        ) from None
    if n == 0:
        raise BadImage(f"{src.path}: the image is empty", path=src.path)
    return n


def _reader(
    stream: Stream, src: ImageSource, selector: Selector, head_len: int, chunk_size: int
) -> tuple[Prefetcher | MappedReader, bool]:
    """The reader of the image past its head, and whether it reads only some of it. A
    whole uncompressed file is read from its mapped pages where a lease guards them."""
    segments = None if src.info.compressed or head_len < MiB else selector.reads(head_len)
    if segments is not None:
        return Prefetcher(src.fd, chunk_size=chunk_size, users=2, block=1, segments=segments), True
    whole_file = isinstance(stream, RawStream) and src.size == src.file_size > head_len == MiB
    mapped = Mapped.take(src.fd, src.file_size) if whole_file else None
    if mapped is None or not isinstance(stream, RawStream):  # (the second: for the type)
        return Prefetcher(stream, head_len, None, chunk_size=chunk_size, users=2), False
    raw = stream

    def rest(offset: int) -> Prefetcher:
        raw.read_elsewhere(offset)
        return Prefetcher(raw, offset, None, chunk_size=chunk_size, users=2)

    reader = MappedReader(
        mapped,
        head_len,
        src.file_size,
        chunk_size=chunk_size,
        users=2,
        rest=rest,
        check=raw.check,
        at_end=raw.read_elsewhere,
    )
    return reader, False


def _write(
    stream: Stream,
    src: ImageSource,
    drive: _Drive,
    selector: Selector,
    progress: ProgressCallback | None,
    cancel: threading.Event,
    chunk_size: int,
) -> tuple[str | None, int]:
    tgt, image, size = drive.tgt, src.path, src.size
    full = selector.mode == "full"
    head = aligned_buffer(MiB)
    head_view = memoryview(head)[: _read_head(stream, src, memoryview(head)[:MiB])]
    head_len = len(head_view)
    prefetch, only_mapped = _reader(stream, src, selector, head_len, chunk_size)
    by_file = size is None
    total = src.file_size if by_file else size or 0
    if only_mapped and selector.image_size is not None:
        total = head_len + sum(b - a for a, b in (selector.reads(head_len) or []))
    meter = Meter("write", total, progress, by_file=by_file)
    hasher = _Hasher(selector, whole=not only_mapped, spans=not full)
    head_digest = str(blake3.blake3(head_view).hexdigest())
    hasher.feed(head_view, 0, [])
    hasher.start()
    end = head_len
    try:
        head_differs = selector.start(tgt, head_view)
        last = selector.last_write_end
        if full:
            drive.touch()  # the ends zeroed while the reader fills its buffers
        for chunk in prefetch:
            try:
                if cancel.is_set():
                    raise Cancelled("cancelled")
                hasher.raise_error()
                check_chunk_fits(tgt, image, chunk)
                parts = selector.parts(chunk)
                hasher.q.put((chunk, parts))  # the hasher releases it once more
                for off, n in parts:
                    rel = off - chunk.offset
                    drive.write(chunk.data[rel : rel + n], off, None)
            finally:
                chunk.release()
            end = chunk.offset + chunk.length
            meter.advance(stream.consumed - meter.done if by_file else chunk.length)
            if last is not None and drive.written_at is None and end >= last:
                # Everything the drive gets is written: finish it now; the rest of the
                # image is only read, for its hash and its size.
                hasher.settle()
                known = size if size is not None else selector.image_size
                _finish(drive, head_view, head_digest, head_differs, last, known, full)
    except ReadError as e:
        raise image_read_error(image, e) from None
    finally:
        digest = hasher.finish()  # first: no thread reads the image's chunks after it
        prefetch.close()
    hasher.raise_error()
    if cancel.is_set():
        raise Cancelled("cancelled")
    if only_mapped:
        end = selector.image_size or end
    else:
        check_declared_size(src, end)
    selector.finish(end)
    meter.advance((src.file_size if by_file else head_len) - (meter.done if by_file else 0))
    meter.finish()
    if drive.written_at is None:
        syncing = None if progress is None else lambda: progress(Progress("sync", end, end, 0, 0))
        _finish(drive, head_view, head_digest, head_differs, end, end, full, syncing)
    drive.spans = [
        s if s.blake3 or full else Span(s.offset, s.length, hasher.digests[s.offset])
        for s in drive.spans
    ]
    return digest, end


def _finish(
    drive: _Drive,
    head: memoryview,
    head_digest: str,
    head_differs: bool,
    written_end: int,
    image_end: int | None,
    full: bool,
    syncing: Callable[[], None] | None = None,
) -> None:
    """The head last (the partition table), a stale tail zeroed, everything synced (said
    by SYNCING first: the "sync" phase)."""
    if head_differs or drive.touched:
        drive.write(head, 0, head_digest)
    if image_end is not None and not full:
        _zero_stale_tail(drive, max(written_end, image_end))
    if syncing is not None:
        syncing()
    if drive.touched:
        drive.tgt.sync()
    drive.written_at = time.monotonic()


def _zero_stale_tail(drive: _Drive, end: int) -> None:
    """The drive's last MiB, past the image, may hold an old backup GPT: zero it when it
    is not zero already (read first, so a delta write that changes nothing writes
    nothing)."""
    tgt = drive.tgt
    if not tgt.is_block or tgt.size < end + MiB:
        return
    last = last_mib(tgt, end)
    n = tgt.size - last
    buf, zeros = aligned_buffer(round_up(n, 4096)), aligned_buffer(round_up(n, 4096))
    try:
        with memoryview(buf) as whole, memoryview(zeros) as none:
            got = pread_into(tgt.fd, whole[:n], last)
            if got < n or not same_bytes(whole[:n], none[:n]):
                drive.touch()
                tgt.write(none[:n], last)
    finally:
        buf.close()
        zeros.close()

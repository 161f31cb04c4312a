"""Writing fewer bytes: only the ranges a bmap maps, or only the chunks that differ.

Both modes stream the image once (decompressed as it is read), hash all of it with
blake3 as a plain write does, and write only some of it; what was written is recorded
as spans, each with the blake3 of its image bytes, and the read-back then reads exactly
those spans with O_DIRECT and compares them.

- **bmap**: the mapped ranges of a bmaptool block map are written and each range's
  checksum (sha1/sha256, from the bmap) is checked as its bytes go by; a wrong one
  stops the write (exit 4). Unmapped ranges are left as they were on the drive.
- **delta**: each chunk of the drive is read first (O_DIRECT, page cache dropped) and
  compared with the image; only differing MiB blocks are written. The compare is
  itself a read of the drive, so every byte of the image is confirmed: by the compare
  or by the read-back of what was written. When the first part shows nearly every
  block differs, the rest is written plainly (said in the coverage).

The head of the drive is handled as in a plain write: zeroed before the first byte
that changes anything is written and rewritten last, so an interrupted write does not
leave a stick that looks bootable; a delta write that finds nothing to change never
touches it.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import blake3

from usbwriter.blockio import (
    CHUNK_SIZE,
    Chunk,
    MiB,
    Prefetcher,
    ReadError,
    aligned_buffer,
    drop_cache,
    pread_into,
    reread_partitions,
    round_up,
    same_bytes,
)
from usbwriter.errors import Cancelled
from usbwriter.progress import Meter, Progress, ProgressCallback
from usbwriter.units import human_size
from usbwriter.verify import VerifyResult, device_read_error
from usbwriter.writer import (
    WriteResult,
    check_chunk_fits,
    check_declared_size,
    check_fits,
    failed_write,
    image_read_error,
    last_mib,
    read_head,
    wipe_note,
)

if TYPE_CHECKING:
    from usbwriter.sources import ImageSource, Stream
    from usbwriter.sources.bmap import Bmap
    from usbwriter.writer import Target

log = logging.getLogger(__name__)

BLOCK = MiB  # delta: the unit compared and written
PROBE = 64 * MiB  # delta: decide after this much whether comparing pays
MOSTLY_DIFFERENT = 0.9


@dataclass(frozen=True)
class Span:
    """Image bytes written at [offset, offset + length), with their blake3."""

    offset: int
    length: int
    blake3: str


@dataclass(frozen=True)
class Coverage:
    """What a ranged write did with each part of the image."""

    mode: str  # "bmap" or "delta"
    image_size: int
    spans: tuple[Span, ...]  # written, and read back by the verify
    unchanged: int = 0  # delta: bytes the compare found equal (not written)
    untouched: int = 0  # bmap: unmapped bytes left as they were
    switched_at: int | None = None  # delta: from here on written plainly
    bmap: dict[str, Any] | None = None

    @property
    def written(self) -> int:
        return sum(s.length for s in self.spans)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "image_size": self.image_size,
            "written": self.written,
            "spans": len(self.spans),
            "unchanged": self.unchanged,
            "untouched": self.untouched,
            "not_written": self.image_size - self.written,
            "switched_to_full_at": self.switched_at,
            **({"bmap": self.bmap} if self.bmap is not None else {}),
        }

    def describe(self) -> list[str]:
        written = f"{human_size(self.written)} written in {len(self.spans)} span(s)"
        if self.mode == "bmap":
            return [
                f"  bmap    {written}; {human_size(self.untouched)} unmapped left as it was"
                " (not written, not read back)"
            ]
        lines = [
            f"  delta   {written}; {human_size(self.unchanged)} already equal (confirmed by"
            f" the compare read); flash wear saved: {human_size(self.unchanged)}"
        ]
        if self.switched_at is not None:
            lines.append(
                f"          nearly everything differed: written plainly from byte "
                f"{self.switched_at}"
            )
        return lines


class Selector(Protocol):
    """Which parts of each chunk of image bytes get written."""

    mode: str

    def start(self, tgt: Target, head: memoryview) -> bool:
        """Before the stream: True when the head differs from the drive's."""
        ...

    def parts(self, chunk: Chunk) -> list[tuple[int, int]]:
        """(offset, length) pieces of CHUNK to write, in order (on the writing thread)."""
        ...

    def check(self, offset: int, data: memoryview) -> None:
        """Check the image's bytes as they go by (on the hashing thread)."""
        ...

    @property
    def last_write_end(self) -> int | None:
        """Where the last byte to write ends, when known before the stream ends."""
        ...

    @property
    def image_size(self) -> int | None:
        """The image's size, when the selector knows it (a bmap says it)."""
        ...

    def finish(self, end: int) -> None: ...

    def close(self) -> None: ...

    def coverage(self, size: int, spans: list[Span]) -> Coverage: ...


# --- bmap -----------------------------------------------------------------------------


class BmapSelector:
    mode = "bmap"

    def __init__(self, bmap: Bmap, image: str) -> None:
        from usbwriter.sources.bmap import RangeHasher

        self.bmap, self.image = bmap, image
        self.hasher = RangeHasher(bmap, image)
        self.align = 512

    def start(self, tgt: Target, head: memoryview) -> bool:
        self.align = tgt.block if tgt.direct else 1
        return True

    def check(self, offset: int, data: memoryview) -> None:
        self.hasher.feed(offset, data)

    @property
    def last_write_end(self) -> int | None:
        ranges = self.bmap.ranges
        return ranges[-1].first + ranges[-1].length if ranges else 0

    @property
    def image_size(self) -> int | None:
        return self.bmap.image_size

    def parts(self, chunk: Chunk) -> list[tuple[int, int]]:
        from usbwriter.sources.bmap import mapped_parts

        out: list[tuple[int, int]] = []
        end = chunk.offset + chunk.length
        for off, n in mapped_parts(self.bmap.ranges, chunk.offset, chunk.length):
            # O_DIRECT writes whole blocks: widen to them (the image's own bytes).
            lo = off // self.align * self.align
            hi = min(end, round_up(off + n, self.align))
            if out and lo <= out[-1][0] + out[-1][1]:
                prev = out.pop()
                lo = prev[0]
            out.append((lo, hi - lo))
        return out

    def finish(self, end: int) -> None:
        self.hasher.finish()

    def close(self) -> None:
        pass

    def coverage(self, size: int, spans: list[Span]) -> Coverage:
        written = sum(s.length for s in spans)
        return Coverage(
            "bmap",
            size,
            tuple(spans),
            untouched=max(0, size - written),
            bmap=self.bmap.to_dict(),
        )


# --- delta ----------------------------------------------------------------------------


class DeltaSelector:
    mode = "delta"

    def __init__(self, notify: Callable[[str], None] | None = None) -> None:
        self.notify = notify or (lambda _t: None)
        self.device: Prefetcher | None = None
        self._chunks: Iterator[Chunk] | None = None
        self._pending: Chunk | None = None
        self.unchanged = 0
        self.compared = 0
        self.differing = 0
        self.switched_at: int | None = None
        self.tgt: Target | None = None

    def start(self, tgt: Target, head: memoryview) -> bool:
        self.tgt = tgt
        drop_cache(tgt.fd)
        n = len(head)
        buf = aligned_buffer(round_up(max(n, 1), max(tgt.block, 4096)))
        try:
            view = memoryview(buf)
            got = pread_into(tgt.fd, view[: round_up(n, tgt.block)], 0)
            differs = got < n or not same_bytes(view[:n], head)
            view.release()
        finally:
            buf.close()
        if not differs:
            self.unchanged += n
        self.device = Prefetcher(tgt.fd, n, tgt.size, block=tgt.block)
        self._chunks = iter(self.device)
        return differs

    def _device_chunk(self, offset: int) -> Chunk | None:
        assert self._chunks is not None
        chunk = self._pending or next(self._chunks, None)
        self._pending = None
        if chunk is not None and chunk.offset != offset:  # image chunks follow the device's
            raise AssertionError(f"delta out of step: {chunk.offset} != {offset}")
        return chunk

    def parts(self, chunk: Chunk) -> list[tuple[int, int]]:
        if self.switched_at is not None:
            return [(chunk.offset, chunk.length)]
        try:
            dev = self._device_chunk(chunk.offset)
        except ReadError as e:
            raise device_read_error(self.tgt.path if self.tgt else "?", e) from None
        if dev is None:  # past the drive's end: the fit check says so
            return [(chunk.offset, chunk.length)]
        out: list[tuple[int, int]] = []
        try:
            img, have = chunk.data, dev.data
            for pos in range(0, chunk.length, BLOCK):
                n = min(BLOCK, chunk.length - pos)
                if pos + n <= len(have) and same_bytes(img[pos : pos + n], have[pos : pos + n]):
                    self.unchanged += n
                    continue
                self.differing += n
                off = chunk.offset + pos
                if out and out[-1][0] + out[-1][1] == off:
                    out[-1] = (out[-1][0], out[-1][1] + n)
                else:
                    out.append((off, n))
        finally:
            dev.release()
        self.compared += chunk.length
        if self.compared >= PROBE and self.differing > MOSTLY_DIFFERENT * self.compared:
            self._switch(chunk.offset + chunk.length)
        return out

    def check(self, offset: int, data: memoryview) -> None:
        pass

    @property
    def last_write_end(self) -> int | None:
        return None

    @property
    def image_size(self) -> int | None:
        return None

    def _switch(self, at: int) -> None:
        self.switched_at = at
        self.notify(
            f"nearly everything differs ({100 * self.differing // max(self.compared, 1)}% of "
            f"the first {human_size(self.compared)}): writing the rest without comparing"
        )
        self.close()

    def finish(self, end: int) -> None:
        self.close()

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            self.device = None

    def coverage(self, size: int, spans: list[Span]) -> Coverage:
        return Coverage(
            "delta", size, tuple(spans), unchanged=self.unchanged, switched_at=self.switched_at
        )


# --- the write ------------------------------------------------------------------------


@dataclass
class _State:
    tgt: Target
    touched: bool = False
    spans: list[Span] = field(default_factory=list)
    written_at: float | None = None  # when the drive held everything (before the stream ended)

    def touch(self) -> None:
        """Before the first byte that changes the drive: zero its first MiB."""
        if self.touched:
            return
        self.touched = True
        zeros = aligned_buffer(MiB)
        self.tgt.write(memoryview(zeros)[: min(MiB, self.tgt.size)], 0)
        self.tgt.sync()

    def write(self, data: memoryview, offset: int, digest: str = "") -> None:
        """Write DATA at OFFSET; its span's digest is given, or filled in by the checker."""
        self.touch()
        self.tgt.write(data, offset)
        self.spans.append(Span(offset, len(data), digest))


class _Checker(threading.Thread):
    """The hashing thread of a ranged write: blake3 of the whole image, the selector's
    checks (a bmap's range checksums) and the blake3 of each span written, chunk by
    chunk in order, off the writing thread. An error is kept for the writer to raise."""

    def __init__(self, selector: Selector) -> None:
        super().__init__(name="usbwriter-hash", daemon=True)
        self.selector = selector
        self.image = blake3.blake3()
        self.digests: dict[int, str] = {}  # span offset -> blake3
        self.error: BaseException | None = None
        self.q: queue.Queue[tuple[Chunk, list[tuple[int, int]]] | None] = queue.Queue()

    def run(self) -> None:
        while (item := self.q.get()) is not None:
            chunk, parts = item
            try:
                if self.error is None:
                    data = chunk.data
                    self.image.update(data)
                    self.selector.check(chunk.offset, data)
                    for off, n in parts:
                        rel = off - chunk.offset
                        self.digests[off] = str(blake3.blake3(data[rel : rel + n]).hexdigest())
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
        """Wait until every chunk handed over is checked; raise what was found."""
        self.q.join()
        self.raise_error()

    def finish(self) -> str:
        self.q.put(None)
        self.join()
        return str(self.image.hexdigest())


def write_ranged(
    src: ImageSource,
    tgt: Target,
    selector: Selector,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> tuple[WriteResult, Coverage]:
    """Stream SRC, write the parts SELECTOR picks to TGT; the write's result and what
    was written. On failure or cancel the first MiB is wiped (if anything was written)."""
    cancel = cancel or threading.Event()
    check_fits(src, tgt, cancel)
    state = _State(tgt)
    start = time.monotonic()
    with src.stream() as stream:
        try:
            digest, size = _write(stream, src, state, selector, progress, cancel)
        except BaseException as e:
            raise _failed(e, state) from None
        finally:
            selector.close()
        file_digest = stream.file_blake3 if src.info.compressed else None
    seconds = (state.written_at or time.monotonic()) - start
    reread = state.touched and tgt.is_block and reread_partitions(tgt.fd)
    coverage = selector.coverage(size, sorted(state.spans, key=lambda s: s.offset))
    result = WriteResult(
        image_path=src.path,
        image_size=size,
        blake3=digest,
        device=tgt.path,
        bytes_written=coverage.written,
        seconds=seconds,
        direct_io=tgt.direct,
        partitions_reread=bool(reread),
        format=src.info.format,
        file_blake3=file_digest,
    )
    return result, coverage


def _failed(e: BaseException, state: _State) -> BaseException:
    if not state.touched:
        return failed_write(e, state.tgt.path, "nothing on the drive was changed")
    return failed_write(e, state.tgt.path, wipe_note(state.tgt.wipe_head()))


def _write(
    stream: Stream,
    src: ImageSource,
    state: _State,
    selector: Selector,
    progress: ProgressCallback | None,
    cancel: threading.Event,
) -> tuple[str, int]:
    tgt, image, size = state.tgt, src.path, src.size
    by_file = size is None
    meter = Meter("write", src.file_size if by_file else size or 0, progress, by_file=by_file)
    head = aligned_buffer(MiB)
    head_len = read_head(stream, memoryview(head)[:MiB], image)
    head_view = memoryview(head)[:head_len]
    head_digest = str(blake3.blake3(head_view).hexdigest())
    checker = _Checker(selector)
    checker.image.update(head_view)
    selector.check(0, head_view)
    checker.start()
    head_differs = selector.start(tgt, head_view)
    last = selector.last_write_end
    end = head_len
    # CHUNK_SIZE, as the delta selector's reads of the drive: their chunks pair up
    prefetch = Prefetcher(stream, head_len, None, chunk_size=CHUNK_SIZE, users=2)
    try:
        for chunk in prefetch:
            try:
                if cancel.is_set():
                    raise Cancelled("cancelled")
                checker.raise_error()
                check_chunk_fits(tgt, image, chunk)
                parts = selector.parts(chunk)
                checker.q.put((chunk, parts))  # the checker releases it once more
                for off, n in parts:
                    state.write(chunk.data[off - chunk.offset : off - chunk.offset + n], off)
            finally:
                chunk.release()
            end = chunk.offset + chunk.length
            meter.advance(stream.consumed - meter.done if by_file else chunk.length)
            if last is not None and state.written_at is None and end >= last:
                # Everything the drive gets is written: finish it now; the rest of the
                # image is only read, for its hash and its size.
                checker.settle()
                known = size if size is not None else selector.image_size
                _finish_drive(state, head_view, head_digest, head_differs, last, known)
    except ReadError as e:
        raise image_read_error(image, e) from None
    finally:
        prefetch.close()
        digest = checker.finish()
    checker.raise_error()
    if cancel.is_set():
        raise Cancelled("cancelled")
    check_declared_size(src, end)
    selector.finish(end)
    if state.written_at is None:
        _finish_drive(state, head_view, head_digest, head_differs, end, end)
    state.spans = [
        s if s.blake3 else Span(s.offset, s.length, checker.digests[s.offset]) for s in state.spans
    ]
    meter.advance((src.file_size if by_file else head_len) - (meter.done if by_file else 0))
    meter.finish()
    if progress is not None:
        progress(Progress("sync", end, end, 0.0, 0.0))
    return digest, end


def _finish_drive(
    state: _State,
    head: memoryview,
    head_digest: str,
    head_differs: bool,
    written_end: int,
    image_end: int | None,
) -> None:
    """The head last (the partition table), a stale tail zeroed, everything synced."""
    if head_differs or state.touched:
        state.write(head, 0, head_digest)
    if image_end is not None:
        _zero_stale_tail(state, max(written_end, image_end))
    if state.touched:
        state.tgt.sync()
    state.written_at = time.monotonic()


def _zero_stale_tail(state: _State, end: int) -> None:
    """The drive's last MiB, past the image, may hold an old backup GPT: zero it when
    it is not zero already (read first, so a delta write that changes nothing writes
    nothing)."""
    tgt = state.tgt
    if not tgt.is_block or tgt.size < end + MiB:
        return
    last = last_mib(tgt, end)
    n = tgt.size - last
    buf, zeros = aligned_buffer(round_up(n, 4096)), aligned_buffer(round_up(n, 4096))
    try:
        with memoryview(buf) as whole, memoryview(zeros) as none:
            got = pread_into(tgt.fd, whole[:n], last)
            if got < n or not same_bytes(whole[:n], none[:n]):
                state.touch()
                tgt.write(none[:n], last)
    finally:
        buf.close()
        zeros.close()


# --- the read-back of the spans -------------------------------------------------------


def verify_spans(
    tgt: Target,
    coverage: Coverage,
    src: ImageSource,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> VerifyResult:
    """Read back exactly the spans written (O_DIRECT, page cache dropped) and compare
    each with the blake3 of its image bytes. The result's hashes are blake3 over the
    spans' digests in order (the drive's and the image's)."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    drop_cache(tgt.fd)
    total = coverage.written
    meter = Meter("verify", total, progress)
    device_digests: list[str] = []
    mismatch: int | None = None
    for region in _regions(coverage.spans):
        digests = _read_region(tgt, region, meter, cancel)
        for span, got in zip(region, digests, strict=True):
            device_digests.append(got)
            if mismatch is None and got != span.blake3:
                mismatch = _first_difference(tgt, src, span)
    meter.finish()
    expected = blake3.blake3("".join(s.blake3 for s in coverage.spans).encode()).hexdigest()
    found = blake3.blake3("".join(device_digests).encode()).hexdigest()
    return VerifyResult(
        verified=mismatch is None and expected == found,
        mismatch_offset=mismatch,
        device_blake3=str(found),
        expected_blake3=str(expected),
        size=total,
        seconds=time.monotonic() - start,
        page_cache_bypassed=tgt.direct,
    )


def _regions(spans: tuple[Span, ...], gap: int = 0) -> Iterator[list[Span]]:
    """Spans in order, grouped where each follows the last without a gap."""
    group: list[Span] = []
    for s in sorted(spans, key=lambda s: s.offset):
        if group and s.offset > group[-1].offset + group[-1].length + gap:
            yield group
            group = []
        group.append(s)
    if group:
        yield group


def _read_region(
    tgt: Target, region: list[Span], meter: Meter, cancel: threading.Event
) -> list[str]:
    """The blake3 of each span of a gapless region, read through one reader thread."""
    lo, hi = region[0].offset, region[-1].offset + region[-1].length
    hashers = [blake3.blake3() for _ in region]
    i = 0
    with Prefetcher(tgt.fd, lo, hi, block=tgt.block if tgt.direct else 1) as chunks:
        try:
            for chunk in chunks:
                try:
                    if cancel.is_set():
                        raise Cancelled(f"verify of {tgt.path} interrupted")
                    c_lo, c_hi = chunk.offset, chunk.offset + chunk.length
                    while i < len(region):
                        s = region[i]
                        a, b = max(s.offset, c_lo), min(s.offset + s.length, c_hi)
                        if a < b:
                            hashers[i].update(chunk.data[a - c_lo : b - c_lo])
                        if s.offset + s.length <= c_hi:
                            i += 1
                        else:
                            break
                finally:
                    chunk.release()
                meter.advance(chunk.length)
        except ReadError as e:
            raise device_read_error(tgt.path, e) from None
    return [str(h.hexdigest()) for h in hashers]


def _first_difference(tgt: Target, src: ImageSource, span: Span) -> int:
    """The first byte of SPAN where the drive differs from the image."""
    want = image_bytes(src, span.offset, span.length)
    n = round_up(span.length, max(tgt.block, 1))
    buf = aligned_buffer(round_up(n, 4096))
    try:
        view = memoryview(buf)
        got = pread_into(tgt.fd, view[:n], span.offset)
        have = bytes(view[: min(got, span.length)])
        view.release()
    finally:
        buf.close()
    for i, (x, y) in enumerate(zip(have, want, strict=False)):
        if x != y:
            return span.offset + i
    return span.offset + min(len(have), len(want))


def image_bytes(src: ImageSource, offset: int, length: int) -> bytes:
    """LENGTH bytes of the image at OFFSET: read from a raw file, or decompressed (the
    stream read and dropped up to OFFSET)."""
    if not src.info.compressed:
        return os.pread(src.fd, length, offset)
    out = bytearray()
    buf = aligned_buffer(CHUNK_SIZE)
    try:
        view = memoryview(buf)
        pos = 0
        with src.stream() as stream:
            while pos < offset + length:
                n = stream.readfull(view)
                if n == 0:
                    break
                a, b = max(offset, pos), min(offset + length, pos + n)
                if a < b:
                    out += view[a - pos : b - pos]
                pos += n
        view.release()
    finally:
        buf.close()
    return bytes(out)


__all__ = [
    "BmapSelector",
    "Coverage",
    "DeltaSelector",
    "Span",
    "image_bytes",
    "verify_spans",
    "write_ranged",
]

"""Which parts of the image a drive gets: all of it, the ranges a bmap maps, the blocks
that differ from what the drive holds, or the data ranges of a sparse file.

A selector is asked, chunk by chunk of the image, which (offset, length) pieces to
write; it may check the bytes as they go by (a bmap's range checksums) and says what
the write covered. ``reads`` says which parts of an uncompressed image need reading at
all: a bmap whose every range carries a checksum reads only its mapped ranges, a sparse
file only its data.
"""

from __future__ import annotations

import bisect
import errno
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from usbwriter.engine.blockio import (
    Chunk,
    MiB,
    Piece,
    Prefetcher,
    ReadError,
    aligned_buffer,
    drop_cache,
    pread_into,
    round_up,
    same_bytes,
)
from usbwriter.engine.readback import Span, device_read_error
from usbwriter.units import count, human_size

if TYPE_CHECKING:
    from usbwriter.engine.target import Target
    from usbwriter.sources.bmap import Bmap

BLOCK = MiB  # delta: the unit compared and written
PROBE = 64 * MiB  # delta: decide after this much whether comparing pays
MOSTLY_DIFFERENT = 0.9


@dataclass(frozen=True)
class Coverage:
    """What a ranged write did with each part of the image."""

    mode: str  # "bmap", "delta" or "sparse"
    image_size: int
    spans: tuple[Span, ...]  # written, and read back by the verify
    unchanged: int = 0  # delta: bytes the compare found equal (not written)
    untouched: int = 0  # bmap: unmapped bytes left as they were; sparse: the holes
    switched_at: int | None = None  # delta: from here on written plainly
    bmap: dict[str, Any] | None = None
    read_only_mapped: bool = False  # bmap: the image was read only where it maps

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
            "read_only_mapped": self.read_only_mapped,
            **({"bmap": self.bmap} if self.bmap is not None else {}),
        }

    def describe(self) -> list[str]:
        written = f"{human_size(self.written)} written in {count(len(self.spans), 'span')}"
        if self.mode == "bmap":
            lines = [
                f"  bmap    {written}; {human_size(self.untouched)} unmapped left as it was"
                " (not written, not read back)"
            ]
            if self.read_only_mapped:
                lines.append(
                    "          the image was read only where mapped; its bytes are those the"
                    " bmap's range checksums name"
                )
            return lines
        if self.mode == "sparse":
            return [
                f"  sparse  {written}; {human_size(self.untouched)} of holes left as they were"
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


def _leaving_the_rest(
    mode: str, size: int, spans: list[Span], read_only: bool, **extra: Any
) -> Coverage:
    """The coverage of a write that leaves what it does not write as the drive held it
    (a bmap's unmapped ranges, a sparse file's holes)."""
    written = sum(s.length for s in spans)
    return Coverage(
        mode,
        size,
        tuple(spans),
        untouched=max(0, size - written),
        read_only_mapped=read_only,
        **extra,
    )


class Selector(Protocol):
    """Which parts of each chunk of image bytes get written."""

    mode: str  # "full", "bmap", "delta" or "sparse"

    def reads(self, head_len: int) -> list[tuple[int, int]] | None:
        """The parts of an uncompressed image past its head to read, or None for all."""
        ...

    def start(self, tgt: Target, head: memoryview) -> bool:
        """Before the stream: True when the head differs from the drive's."""
        ...

    def parts(self, chunk: Piece) -> list[tuple[int, int]]:
        """(offset, length) pieces of CHUNK to write, in order (on the writing thread)."""
        ...

    def check(self, offset: int, data: memoryview) -> None:
        """The bytes of the image at OFFSET (on the hashing thread, in order)."""
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

    def coverage(self, size: int, spans: list[Span]) -> Coverage | None: ...


class Everything:
    """A full write: every byte of the image."""

    mode = "full"
    last_write_end = None
    image_size = None

    def reads(self, head_len: int) -> list[tuple[int, int]] | None:
        return None

    def start(self, tgt: Target, head: memoryview) -> bool:
        return True

    def parts(self, chunk: Piece) -> list[tuple[int, int]]:
        return [(chunk.offset, chunk.length)]

    def check(self, offset: int, data: memoryview) -> None:
        pass

    def finish(self, end: int) -> None:
        pass

    def close(self) -> None:
        pass

    def coverage(self, size: int, spans: list[Span]) -> Coverage | None:
        return None


# --- bmap -----------------------------------------------------------------------------


class BmapSelector:
    """The mapped ranges of a bmaptool block map, each range's checksum checked as its
    bytes go by (a wrong one stops the write)."""

    mode = "bmap"

    def __init__(self, bmap: Bmap, image: str) -> None:
        from usbwriter.sources.bmap import RangeHasher

        self.bmap, self.image = bmap, image
        self.hasher = RangeHasher(bmap, image)
        self.align = 512
        self.read_only_mapped = False

    def reads(self, head_len: int) -> list[tuple[int, int]] | None:
        """Only the mapped ranges, when every range carries a checksum (they then prove
        the bytes written are the image's); else the whole image, as bmaptool reads it."""
        if any(r.checksum is None for r in self.bmap.ranges):
            return None
        self.read_only_mapped = True
        out: list[tuple[int, int]] = []
        for r in self.bmap.ranges:
            lo, hi = max(r.first, head_len), r.end
            if lo >= hi:
                continue
            if out and out[-1][1] >= lo:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return out

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

    def parts(self, chunk: Piece) -> list[tuple[int, int]]:
        from usbwriter.sources.bmap import mapped_parts

        out: list[tuple[int, int]] = []
        end = chunk.offset + chunk.length
        for off, n in mapped_parts(self.bmap.ranges, chunk.offset, chunk.length):
            # O_DIRECT writes whole blocks: widen to them (the image's own bytes).
            lo = max(chunk.offset, off // self.align * self.align)
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
        return _leaving_the_rest(
            "bmap", size, spans, self.read_only_mapped, bmap=self.bmap.to_dict()
        )


# --- delta ----------------------------------------------------------------------------


class DeltaSelector:
    """The MiB blocks that differ from what the drive holds, read beside the image."""

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

    def reads(self, head_len: int) -> list[tuple[int, int]] | None:
        return None

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

    def parts(self, chunk: Piece) -> list[tuple[int, int]]:
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


# --- sparse ---------------------------------------------------------------------------

SPARSE_BLOCK = 4096  # data ranges are widened to it: every drive's logical block divides it


def data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """The (start, end) ranges of the file open at FD, up to SIZE, that hold data rather
    than holes, as SEEK_DATA and SEEK_HOLE find them (a file system that keeps no holes
    calls it all data)."""
    out: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # only a hole is left
                break
            raise
        if start >= size:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        out.append((start, end))
        pos = end
    return out


def _merged(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(r for r in ranges if r[0] < r[1]):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _clipped(ranges: Iterable[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    return [(max(a, lo), min(b, hi)) for a, b in ranges if max(a, lo) < min(b, hi)]


def _without(ranges: list[tuple[int, int]], cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """RANGES less CUT (both merged)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        pos = a
        for c, d in cut:
            if c < b and d > pos:
                if c > pos:
                    out.append((pos, c))
                pos = d
        if pos < b:
            out.append((pos, b))
    return out


class SparseSelector:
    """The data ranges of an uncompressed sparse image file (SEEK_DATA, SEEK_HOLE): only
    they are read and written; the holes are neither, and the drive keeps what it holds
    there (``untouched`` in the coverage). FIRST ranges are written whatever the file
    holds there (zeros in a hole), before the rest: an image as large as the drive puts
    the drive's last MiB there, where an old backup GPT is wiped before anything else
    changes. Ranges are widened to whole 4 KiB blocks (O_DIRECT) of the file's bytes."""

    mode = "sparse"
    last_write_end = None

    def __init__(self, fd: int, size: int, *, first: Sequence[tuple[int, int]] = ()) -> None:
        self.size = size
        self.first = _merged(self._widened(r) for r in first)
        data = (self._widened(r) for r in data_ranges(fd, size))
        self.ranges = _merged([*data, *self.first])
        self._ends = [b for _, b in self.ranges]
        self.read_only_data = False

    def _widened(self, r: tuple[int, int]) -> tuple[int, int]:
        lo, hi = max(0, r[0]), min(self.size, r[1])
        return lo // SPARSE_BLOCK * SPARSE_BLOCK, min(self.size, round_up(hi, SPARSE_BLOCK))

    @property
    def image_size(self) -> int:
        return self.size

    def reads(self, head_len: int) -> list[tuple[int, int]] | None:
        """The FIRST ranges, then the other data ranges, past the head."""
        self.read_only_data = True
        first = _clipped(self.first, head_len, self.size)
        return first + _without(_clipped(self.ranges, head_len, self.size), first)

    def start(self, tgt: Target, head: memoryview) -> bool:
        return True

    def parts(self, chunk: Piece) -> list[tuple[int, int]]:
        lo, hi = chunk.offset, chunk.offset + chunk.length
        out: list[tuple[int, int]] = []
        for a, b in self.ranges[bisect.bisect_right(self._ends, lo) :]:
            if a >= hi:
                break
            out.append((max(a, lo), min(b, hi) - max(a, lo)))
        return out

    def check(self, offset: int, data: memoryview) -> None:
        pass

    def finish(self, end: int) -> None:
        pass

    def close(self) -> None:
        pass

    def coverage(self, size: int, spans: list[Span]) -> Coverage:
        return _leaving_the_rest("sparse", size, spans, self.read_only_data)

"""The read-back: a drive read through its held descriptor, proven span by span.

Every job reads back the same way. The drive's cached pages are dropped and it is read
with O_DIRECT over the spans that were written (a full write is one span from byte 0),
by one reader thread. Each span is proven in one of two ways:

- **compared** byte for byte (memcmp) with the image's own bytes, re-read through the
  image's open descriptor after checking that the file is the one written (device,
  inode, size, modification and change times): for an uncompressed image. The drive's
  hash is then the image's, by proven equality, and no second blake3 pass is needed;
- **hashed** with blake3 and checked against the digest taken while writing: for a
  compressed image (its bytes would have to be decompressed again), or an image that
  changed since it was written.

A mismatch is located at its first differing byte. A read error names its culprit: the
drive (DeviceFault) or the image (BadImage).
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from usbwriter.engine.blockio import (
    CHUNK_SIZE,
    Chunk,
    Prefetcher,
    ReadError,
    aligned_buffer,
    drop_cache,
    fd_size,
    logical_block_size,
    pread_into,
    round_up,
    same_bytes,
)
from usbwriter.engine.mapped import Mapped
from usbwriter.errors import BadImage, Cancelled, DeviceFault
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.engine.probe import ProbeResult
    from usbwriter.sources import ImageSource

COMPARED = "compared"  # byte for byte with the image file
HASHED = "hashed"  # blake3 of the drive against the digest taken while writing


@dataclass(frozen=True)
class Span:
    """Image bytes written at [offset, offset + length), with their blake3 when taken."""

    offset: int
    length: int
    blake3: str | None = None

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True)
class VerifyResult:
    verified: bool
    mismatch_offset: int | None
    device_blake3: str | None
    expected_blake3: str | None
    size: int
    seconds: float
    page_cache_bypassed: bool
    file_blake3: str | None = None  # a compressed image read beside the device: its file's
    proof: str = HASHED  # how the drive was proven: "compared" or "hashed"
    explanation: str | None = None  # a mismatch: what came back instead (explain_mismatch)

    @property
    def rate(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0


def device_read_error(path: str, e: ReadError) -> DeviceFault:
    """A failed read of the drive (the reader thread's ReadError), with its offset."""
    return DeviceFault(
        f"error while reading '{path}' at offset {e.offset}: {e.error.strerror}",
        path=path,
        offset=e.offset,
        errno=e.error.errno,
    )


def image_read_error(image: str, e: ReadError) -> BadImage:
    return BadImage(
        f"error reading '{image}' at offset {e.offset}: {e.error.strerror}",
        path=image,
        offset=e.offset,
        errno=e.error.errno,
    )


class Drive:
    """A drive (or file) to read back through a descriptor the caller holds: its cached
    pages dropped first, read with O_DIRECT when the descriptor has it."""

    def __init__(self, fd: int, path: str, *, limit: int | None = None) -> None:
        import fcntl

        self.fd, self.path = fd, path
        drop_cache(fd)
        self.size = fd_size(fd) if limit is None else min(fd_size(fd), limit)
        self.block = logical_block_size(fd)
        self.direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)

    def check_fits(self, size: int | None) -> None:
        if size is not None and size > self.size:
            raise DeviceFault(
                f"{self.path}: the device ({human_size(self.size)}) is smaller than the image "
                f"({human_size(size)})",
                path=self.path,
            )

    def chunks(self, segments: list[tuple[int, int]], chunk_size: int = CHUNK_SIZE) -> Prefetcher:
        # O_DIRECT reads are rounded up to the block size; the device is at least that long.
        return Prefetcher(
            self.fd,
            chunk_size=chunk_size,
            block=self.block if self.direct else 1,
            segments=segments,
        )


def image_unchanged(src: ImageSource) -> bool:
    """The open image file is still the one written: same inode, size and times (a
    change in place moves its change time, which no user can set back)."""
    st = os.fstat(src.fd)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == (
        src.st_dev,
        src.st_ino,
        src.info.file_size,
        src.st_mtime_ns,
        src.st_ctime_ns,
    )


def can_compare(src: ImageSource | None) -> bool:
    """Whether the read-back may compare the drive with the image's own bytes."""
    return (
        src is not None
        and not src.info.compressed
        and not src.is_block
        and src.st_ctime_ns != 0
        and image_unchanged(src)
    )


def read_back(
    drive: Drive,
    spans: Sequence[Span],
    *,
    image: ImageSource | None = None,
    image_blake3: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> VerifyResult:
    """Prove that the drive holds SPANS of the image: compared with IMAGE's bytes where
    it is an unchanged uncompressed file, else hashed against each span's blake3.
    IMAGE_BLAKE3 is the whole image's (a full write), reported as the drive's when the
    compare proves them equal. A full verify is one span from 0."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    spans = sorted(spans, key=lambda s: s.offset)
    total = sum(s.length for s in spans)
    drive.check_fits(max((s.end for s in spans), default=0))
    meter = Meter("verify", total, progress)
    # The lease first, the file's identity then: no one can change it in between.
    mapped = _mapped(image)
    compare = can_compare(image)
    if compare:
        assert image is not None
        try:
            if mapped is not None:
                mismatch = _compare_mapped(drive, image, mapped, spans, meter, cancel, chunk_size)
            else:
                mismatch = _compare(drive, image, spans, meter, cancel, chunk_size)
        finally:
            if mapped is not None:
                mapped.close()
        if mismatch is not None and not image_unchanged(image):
            raise BadImage(
                f"{image.path}: changed while the drive was compared with it: the drive "
                "could not be verified",
                path=image.path,
                offset=mismatch,
            )
        expected = image_blake3 if len(spans) == 1 else _combined(spans)
        found = expected if mismatch is None else None
    else:
        if mapped is not None:
            mapped.close()
        if any(s.blake3 is None for s in spans):
            raise DeviceFault(
                f"{drive.path}: cannot verify: the image changed since it was written and "
                "its digests were not taken",
                path=drive.path,
            )
        digests = _hash(drive, spans, meter, cancel, chunk_size)
        mismatch = None
        for span, got in zip(spans, digests, strict=True):
            if got != span.blake3:
                mismatch = first_difference(drive, image, span) if image else span.offset
                break
        expected = spans[0].blake3 if len(spans) == 1 else _combined(spans)
        found = digests[0] if len(spans) == 1 else _combined_digests(digests)
    meter.finish()
    return VerifyResult(
        verified=mismatch is None,
        mismatch_offset=mismatch,
        device_blake3=found,
        expected_blake3=expected,
        size=total,
        seconds=time.monotonic() - start,
        page_cache_bypassed=drive.direct,
        proof=COMPARED if compare else HASHED,
    )


def _combined(spans: Sequence[Span]) -> str | None:
    """The blake3 of the spans' digests in order: what a ranged write's receipt shows."""
    if any(s.blake3 is None for s in spans):
        return None
    return _combined_digests([s.blake3 or "" for s in spans])


def _combined_digests(digests: Sequence[str]) -> str:
    return str(blake3.blake3("".join(digests).encode()).hexdigest())


def _segments(spans: Sequence[Span]) -> list[tuple[int, int]]:
    return [(s.offset, s.end) for s in spans if s.length]


def _mapped(image: ImageSource | None) -> Mapped | None:
    """The image's pages mapped under a lease, for an uncompressed regular file."""
    if image is None or image.info.compressed or image.is_block:
        return None
    return Mapped.take(image.fd, image.file_size)


def _compare_mapped(
    drive: Drive,
    image: ImageSource,
    mapped: Mapped,
    spans: Sequence[Span],
    meter: Meter,
    cancel: threading.Event,
    chunk_size: int,
) -> int | None:
    """As _compare, the image's bytes taken from its mapped pages (no copy) while the
    lease holds; after a break, read with pread chunk by chunk."""
    buf: mmap.mmap | None = None
    try:
        with drive.chunks(_segments(spans), chunk_size) as dev_chunks:
            for d in _checked_read(dev_chunks, cancel, drive.path):
                want = memoryview(b"")
                try:
                    have = d.data
                    if mapped.intact():
                        want = mapped.view(d.offset, d.length)
                    else:
                        mapped.release()  # nothing else reads the mapping: go on at once
                        buf = buf or aligned_buffer(chunk_size)
                        want = _pread_image(image, memoryview(buf), d.offset, d.length)
                    n = min(len(have), len(want))
                    if n < d.length or not same_bytes(have[:n], want[:n]):
                        return d.offset + _first_in(have, want)
                    mapped.done_with(d.offset, d.length)
                finally:
                    want.release()
                    d.release()
                meter.advance(d.length)
    finally:
        if buf is not None:
            buf.close()
    return None


def _pread_image(image: ImageSource, view: memoryview, offset: int, length: int) -> memoryview:
    try:
        got = pread_into(image.fd, view[:length], offset)
    except OSError as e:
        raise image_read_error(image.path, ReadError(offset, e)) from None
    return view[:got]


def _checked_read(chunks: Prefetcher, cancel: threading.Event, path: str) -> Iterator[Chunk]:
    """The drive's chunks, a read error as the drive's (DeviceFault), a cancel heard."""
    try:
        yield from _checked(chunks, cancel, path)
    except ReadError as e:
        raise device_read_error(path, e) from None


def _compare(
    drive: Drive,
    image: ImageSource,
    spans: Sequence[Span],
    meter: Meter,
    cancel: threading.Event,
    chunk_size: int,
) -> int | None:
    """The first byte where the drive differs from the image over SPANS, or None."""
    segments = _segments(spans)
    with (
        drive.chunks(segments, chunk_size) as dev_chunks,
        Prefetcher(image.fd, chunk_size=chunk_size, block=1, segments=segments) as img_chunks,
    ):
        devices, images = iter(dev_chunks), iter(img_chunks)
        while True:
            try:
                d = next(devices, None)
            except ReadError as e:
                raise device_read_error(drive.path, e) from None
            try:
                i = next(images, None)
            except ReadError as e:
                if d is not None:
                    d.release()
                raise image_read_error(image.path, e) from None
            if d is None or i is None:
                for c in (d, i):
                    if c is not None:
                        c.release()
                return None
            try:
                if cancel.is_set():
                    raise Cancelled(f"verify of {drive.path} interrupted")
                n = min(d.length, i.length)
                if d.offset != i.offset or not same_bytes(d.data[:n], i.data[:n]):
                    return i.offset + _first_in(d.data[:n], i.data[:n])
                meter.advance(i.length)
            finally:
                d.release()
                i.release()


def _hash(
    drive: Drive,
    spans: Sequence[Span],
    meter: Meter,
    cancel: threading.Event,
    chunk_size: int,
) -> list[str]:
    """The blake3 of each span as the drive holds it, read by one thread."""
    # One hashing thread: blake3's own worker pool gained nothing on two cores while the
    # reader thread and the kernel copy the data.
    hashers = [blake3.blake3() for _ in spans]
    by_start = {s.offset: k for k, s in enumerate(spans)}
    k = -1
    with drive.chunks(_segments(spans), chunk_size) as chunks:
        try:
            for chunk in _checked(chunks, cancel, drive.path):
                try:
                    k = by_start.get(chunk.offset, k)
                    hashers[k].update(chunk.data)
                finally:
                    chunk.release()
                meter.advance(chunk.length)
        except ReadError as e:
            raise device_read_error(drive.path, e) from None
    return [str(h.hexdigest()) for h in hashers]


def _checked(chunks: Prefetcher, cancel: threading.Event, path: str) -> Iterator[Chunk]:
    for chunk in chunks:
        if cancel.is_set():
            chunk.release()
            raise Cancelled(f"verify of {path} interrupted")
        yield chunk


def _first_in(x: memoryview | bytes, y: memoryview | bytes) -> int:
    """The first index where X and Y differ (the shorter one's length if one is a prefix
    of the other): halves compared with memcmp-speed slices, then bytes."""
    lo, n = 0, min(len(x), len(y))
    step = n
    while step > 64:
        step //= 2
        while lo + step <= n and x[lo : lo + step] == y[lo : lo + step]:
            lo += step
    while lo < n and x[lo] == y[lo]:
        lo += 1
    return lo


def first_difference(drive: Drive, image: ImageSource, span: Span) -> int:
    """The first byte of SPAN where the drive differs from the image (decompressed)."""
    want = image_bytes(image, span.offset, span.length)
    n = round_up(span.length, max(drive.block, 1))
    buf = aligned_buffer(round_up(n, 4096))
    try:
        view = memoryview(buf)
        try:
            got = pread_into(drive.fd, view[:n], span.offset)
        except OSError as e:
            raise device_read_error(drive.path, ReadError(span.offset, e)) from None
        have = bytes(view[: min(got, span.length)])
        view.release()
    finally:
        buf.close()
    return span.offset + _first_in(have, want)


def image_bytes(src: ImageSource, offset: int, length: int) -> bytes:
    """LENGTH bytes of the image at OFFSET: read from a raw file, or decompressed (the
    stream read and dropped up to OFFSET)."""
    if not src.info.compressed:
        try:
            return os.pread(src.fd, length, offset)
        except OSError as e:
            raise image_read_error(src.path, ReadError(offset, e)) from None
    out = bytearray()
    buf = aligned_buffer(CHUNK_SIZE)
    try:
        view = memoryview(buf)
        pos = 0
        with src.stream(confirm=False) as stream:
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


def read_back_against(
    drive: Drive,
    image: ImageSource,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> VerifyResult:
    """A drive compared with an image written before (``usbwriter verify``, a backup's
    --verify): the image read (decompressed) beside the drive to the image's end, both
    hashed, compared chunk by chunk. An image longer than the drive differs at the
    drive's end."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    by_file = image.size is None
    total = image.file_size if by_file else image.size or 0
    meter = Meter("verify", total, progress, by_file=by_file)
    img_h, dev_h = blake3.blake3(), blake3.blake3()
    mismatch: int | None = None
    length = 0
    with (
        image.stream(confirm=False) as stream,
        Prefetcher(stream, 0, None, chunk_size=chunk_size) as img_chunks,
        drive.chunks([(0, drive.size)], chunk_size) as dev_chunks,
    ):
        images, devices = iter(img_chunks), iter(dev_chunks)
        while True:
            try:
                i = next(images, None)
            except ReadError as e:
                raise image_read_error(image.path, e) from None
            if i is None:
                break
            try:
                d = next(devices, None)
            except ReadError as e:
                i.release()
                raise device_read_error(drive.path, e) from None
            try:
                if cancel.is_set():
                    raise Cancelled(f"verify of {drive.path} interrupted")
                n = min(i.length, d.length) if d is not None else 0
                img_h.update(i.data)
                if d is not None:
                    dev_h.update(d.data[:n])
                if mismatch is None and (
                    d is None or n < i.length or not same_bytes(d.data[:n], i.data)
                ):
                    mismatch = i.offset + _first_in(d.data[:n] if d else b"", i.data)
            finally:
                i.release()
                if d is not None:
                    d.release()
            length = i.offset + i.length
            meter.advance(stream.consumed - meter.done if by_file else i.length)
        file_hash = stream.file_blake3 if image.info.compressed else None
    meter.finish()
    img, dev = str(img_h.hexdigest()), str(dev_h.hexdigest())
    return VerifyResult(
        verified=mismatch is None and img == dev,
        mismatch_offset=mismatch,
        device_blake3=dev,
        expected_blake3=img,
        size=length,
        seconds=time.monotonic() - start,
        page_cache_bypassed=drive.direct,
        file_blake3=file_hash,
        proof=COMPARED,
    )


def explain_mismatch(
    drive: Drive, image: ImageSource | None, offset: int, probe: ProbeResult | None = None
) -> str:
    """What came back at the first differing byte OFFSET, in words: zeros (the writes
    were dropped), the image's bytes from another offset (the drive wraps around), or
    other bytes (the old content kept, or damage); with the probe's numbers."""
    block = 4096
    at = offset // block * block
    try:
        got = read_block(drive, at, block)
    except OSError as e:
        return f"the drive could not be read there ({e.strerror})"
    raw = image is not None and not image.info.compressed
    want = image_bytes(image, at, block) if image is not None and raw else None
    words = None
    if got.count(0) == len(got):
        where = " where the image has data" if want is not None and any(want) else ""
        words = f"zeros came back{where}: the drive dropped the writes"
    elif raw and image is not None:
        other = _alias(image, at, got, probe)
        if other is not None:
            words = (
                f"the image's bytes from offset {other} came back: the drive wraps around "
                f"(writes {human_size(abs(other - at))} apart land on the same blocks)"
            )
    if words is None:
        words = (
            "other bytes came back (neither the image's nor zeros): the drive dropped the "
            "writes and kept its old content, or damaged them"
        )
    if probe is not None:
        words += f"; the probe before writing found it {probe.describe()}"
    return words


def _alias(image: ImageSource, at: int, got: bytes, probe: ProbeResult | None) -> int | None:
    """The offset of the image whose block GOT is, among where a drive that wraps at a
    power of two (or the size the probe found) would have put it: the last alias
    written above AT, the next one, the one below."""
    size, block = image.size or 0, len(got)
    steps = [1 << k for k in range(20, 44)]
    if probe is not None and 0 < probe.usable_size < probe.reported_size:
        steps.insert(0, probe.usable_size)
    for step in steps:
        last = at + (size - block - at) // step * step
        for other in dict.fromkeys((last, at + step, at - step)):
            inside = other != at and other >= 0 and other + block <= size
            if inside and image_bytes(image, other, block) == got:
                return other
    return None


def read_block(drive: Drive, offset: int, length: int) -> bytes:
    """LENGTH bytes of the drive at OFFSET, through its descriptor (cache dropped)."""
    drop_cache(drive.fd)
    n = round_up(length, max(drive.block, 1))
    buf = aligned_buffer(round_up(n, 4096))
    try:
        view = memoryview(buf)
        got = pread_into(drive.fd, view[:n], offset)
        data = bytes(view[: min(got, length)])
        view.release()
        return data
    finally:
        buf.close()

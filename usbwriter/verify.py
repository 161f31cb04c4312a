"""Read a device back, bypassing the page cache, and prove it holds the image.

The device is read through the descriptor the job holds, with O_DIRECT (after its
cached pages are dropped), into aligned buffers on a reader thread; blake3 runs over
exactly the image's length. On a mismatch the image is compared with the device again to find the
first differing byte.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import blake3

from usbwriter.blockio import (
    CHUNK_SIZE,
    Prefetcher,
    ReadError,
    drop_cache,
    fd_size,
    logical_block_size,
    same_bytes,
)
from usbwriter.errors import BadInput, Cancelled, DeviceFault
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.sources import ImageSource


@dataclass(frozen=True)
class VerifyResult:
    verified: bool
    mismatch_offset: int | None
    device_blake3: str
    expected_blake3: str
    size: int
    seconds: float
    page_cache_bypassed: bool
    file_blake3: str | None = None  # a compressed image read beside the device: its file's

    @property
    def rate(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0


class Reader:
    """The target read back through a descriptor the caller holds (the job's exclusive
    one): its cached pages dropped first, read with O_DIRECT when the descriptor has it."""

    def __init__(self, fd: int, path: str, size: int | None, *, limit: int | None = None) -> None:
        """SIZE: the image's, which must fit; LIMIT: read no further (a disc's ISO
        volume: what lies past it may be unreadable run-out)."""
        self.path, self.fd = path, fd
        drop_cache(fd)
        self.size = fd_size(fd)
        self.block = logical_block_size(fd)
        self.direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        if size is not None and size > self.size:
            raise DeviceFault(
                f"{path}: the device ({human_size(self.size)}) is smaller than the image "
                f"({human_size(size)})",
                path=path,
            )
        if limit is not None:
            self.size = min(self.size, limit)

    def chunks(self, start: int, end: int, chunk_size: int) -> Prefetcher:
        # O_DIRECT reads are rounded up to the block size; the device is at least that long.
        return Prefetcher(
            self.fd, start, end, chunk_size=chunk_size, block=self.block if self.direct else 1
        )


def verify_fd(
    reader: Reader,
    size: int | None,
    expected_blake3: str | None = None,
    *,
    image: ImageSource | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> VerifyResult:
    """Check that the first SIZE bytes read through READER are the image.

    With EXPECTED_BLAKE3 (the hash taken while writing, SIZE known), the device is
    hashed and compared; IMAGE, when given, is read again (decompressed) only to locate
    a mismatch. Without it, IMAGE is read beside the device and both are compared and
    hashed in one pass, to the image's end (SIZE may be None: a compressed image whose
    size only decompressing tells).
    """
    cancel = cancel or threading.Event()
    start = time.monotonic()
    if expected_blake3 is not None and size is not None:
        device_hash = _hash_device(reader, size, progress, cancel, chunk_size)
        expected = expected_blake3
        mismatch = None
        if device_hash != expected and image is not None:
            mismatch = _compare(reader, image, None, cancel, chunk_size, limit=size).mismatch
        file_hash = None
    elif image is not None:
        both = _compare(reader, image, progress, cancel, chunk_size, hashing=True)
        expected, mismatch, device_hash = both.image_blake3, both.mismatch, both.device_blake3
        size, file_hash = both.length, both.file_blake3
    else:
        raise BadInput("verify needs the image or the hash it was written with")
    return VerifyResult(
        verified=device_hash == expected and mismatch is None,
        mismatch_offset=mismatch,
        device_blake3=device_hash,
        expected_blake3=expected,
        size=size,
        seconds=time.monotonic() - start,
        page_cache_bypassed=reader.direct,
        file_blake3=file_hash,
    )


@dataclass(frozen=True)
class _Compared:
    image_blake3: str
    mismatch: int | None  # the first differing byte
    device_blake3: str
    length: int  # bytes compared
    file_blake3: str | None  # the compressed file's, when read to its end


def _hash_device(
    reader: Reader,
    size: int,
    progress: ProgressCallback | None,
    cancel: threading.Event,
    chunk_size: int,
) -> str:
    meter = Meter("verify", size, progress)
    # One hashing thread: blake3's own worker pool (max_threads=AUTO) gained nothing on
    # two cores while the reader thread and the kernel copy the data, and its idle
    # workers spin in sched_yield, taking CPU time from them.
    h = blake3.blake3()
    with reader.chunks(0, size, chunk_size) as chunks:
        try:
            for chunk in chunks:
                try:
                    if cancel.is_set():
                        raise Cancelled(f"verify of {reader.path} interrupted")
                    h.update(chunk.data)
                finally:
                    chunk.release()
                meter.advance(chunk.length)
        except ReadError as e:
            raise device_read_error(reader.path, e) from None
    meter.finish()
    return str(h.hexdigest())


def _compare(
    reader: Reader,
    src: ImageSource,
    progress: ProgressCallback | None,
    cancel: threading.Event,
    chunk_size: int,
    *,
    hashing: bool = False,
    limit: int | None = None,
) -> _Compared:
    """Read the image (decompressed) and the device side by side to the image's end (or
    LIMIT); (image blake3, first differing byte or None, device blake3, bytes compared).
    An image longer than the device differs at the device's end."""
    by_file = src.size is None
    meter = Meter("verify", src.file_size if by_file else src.size or 0, progress, by_file=by_file)
    img_h = blake3.blake3()
    dev_h = blake3.blake3()
    mismatch: int | None = None
    length = 0
    with (
        src.stream() as stream,
        Prefetcher(stream, 0, limit, chunk_size=chunk_size) as img_chunks,
        reader.chunks(0, reader.size, chunk_size) as dev_chunks,
    ):
        devices = iter(dev_chunks)
        try:
            for i in img_chunks:
                d = next(devices, None)
                try:
                    if cancel.is_set():
                        raise Cancelled(f"verify of {reader.path} interrupted")
                    n = min(i.length, d.length) if d is not None else 0
                    if hashing:
                        img_h.update(i.data)
                        if d is not None:
                            dev_h.update(d.data[:n])
                    if mismatch is None and (
                        n < i.length or d is None or not same_bytes(d.data[:n], i.data)
                    ):
                        mismatch = i.offset + _first_difference(d.data[:n] if d else b"", i.data)
                        if not hashing:
                            break
                finally:
                    i.release()
                    if d is not None:
                        d.release()
                length = i.offset + i.length
                meter.advance(stream.consumed - meter.done if by_file else i.length)
        except ReadError as e:
            raise device_read_error(reader.path, e) from None
        whole = hashing and src.info.compressed
        file_hash = stream.file_blake3 if whole else None
    if progress is not None:
        meter.finish()
    return _Compared(str(img_h.hexdigest()), mismatch, str(dev_h.hexdigest()), length, file_hash)


def _first_difference(x: memoryview | bytes, y: memoryview | bytes) -> int:
    """The first index where X and Y differ (the shorter one's length if one is a prefix
    of the other)."""
    lo, n = 0, min(len(x), len(y))
    # Narrow down by halves with fast slice comparisons, then step bytes.
    step = n
    while step > 64:
        step //= 2
        while lo + step <= n and x[lo : lo + step] == y[lo : lo + step]:
            lo += step
    while lo < n and x[lo] == y[lo]:
        lo += 1
    return lo


def device_read_error(path: str, e: ReadError) -> DeviceFault:
    """A failed read of the drive (the reader thread's ReadError), with its offset."""
    return DeviceFault(
        f"error while reading '{path}' at offset {e.offset}: {e.error.strerror}",
        path=path,
        offset=e.offset,
        errno=e.error.errno,
    )

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
    Chunk,
    Prefetcher,
    ReadError,
    drop_cache,
    fd_size,
    logical_block_size,
)
from usbwriter.errors import BadInput, Cancelled, DeviceFault
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.image import ImageSource


@dataclass(frozen=True)
class VerifyResult:
    verified: bool
    mismatch_offset: int | None
    device_blake3: str
    expected_blake3: str
    size: int
    seconds: float
    page_cache_bypassed: bool

    @property
    def rate(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0


class Reader:
    """The target read back through a descriptor the caller holds (the job's exclusive
    one): its cached pages dropped first, read with O_DIRECT when the descriptor has it."""

    def __init__(self, fd: int, path: str, size: int) -> None:
        self.path, self.fd = path, fd
        drop_cache(fd)
        self.size = fd_size(fd)
        self.block = logical_block_size(fd)
        self.direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        if size > self.size:
            raise DeviceFault(
                f"{path}: the device ({human_size(self.size)}) is smaller than the image "
                f"({human_size(size)})",
                path=path,
            )

    def chunks(self, start: int, end: int, chunk_size: int) -> Prefetcher:
        # O_DIRECT reads are rounded up to the block size; the device is at least that long.
        return Prefetcher(
            self.fd, start, end, chunk_size=chunk_size, block=self.block if self.direct else 1
        )


def verify_fd(
    reader: Reader,
    size: int,
    expected_blake3: str | None = None,
    *,
    image: ImageSource | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> VerifyResult:
    """Check that the first SIZE bytes read through READER are the image.

    With EXPECTED_BLAKE3 (the hash taken while writing), the device is hashed and
    compared; IMAGE, when given, is re-read only to locate a mismatch. Without it,
    IMAGE is read beside the device and both are compared and hashed in one pass.
    """
    if expected_blake3 is None and image is None:
        raise BadInput("verify needs the image or the hash it was written with")
    cancel = cancel or threading.Event()
    start = time.monotonic()
    if expected_blake3 is not None:
        device_hash = _hash_device(reader, size, progress, cancel, chunk_size)
        expected = expected_blake3
        mismatch = None
        if device_hash != expected and image is not None:
            mismatch = _compare(reader, image, size, None, cancel, chunk_size)[1]
    else:
        assert image is not None
        expected, mismatch, device_hash = _compare(
            reader, image, size, progress, cancel, chunk_size, hashing=True
        )
    return VerifyResult(
        verified=device_hash == expected and mismatch is None,
        mismatch_offset=mismatch,
        device_blake3=device_hash,
        expected_blake3=expected,
        size=size,
        seconds=time.monotonic() - start,
        page_cache_bypassed=reader.direct,
    )


def _hash_device(
    reader: Reader,
    size: int,
    progress: ProgressCallback | None,
    cancel: threading.Event,
    chunk_size: int,
) -> str:
    meter = Meter("verify", size, progress)
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
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
            raise _read_error(reader.path, e) from None
    meter.finish()
    return str(h.hexdigest())


def _compare(
    reader: Reader,
    src: ImageSource,
    size: int,
    progress: ProgressCallback | None,
    cancel: threading.Event,
    chunk_size: int,
    hashing: bool = False,
) -> tuple[str, int | None, str]:
    meter = Meter("verify", size, progress)
    img_h = blake3.blake3()
    dev_h = blake3.blake3()
    mismatch: int | None = None
    if src.size < size:
        raise BadInput(f"{src.path}: the image is shorter ({src.size} bytes) than {size} bytes")
    with (
        reader.chunks(0, size, chunk_size) as dev_chunks,
        Prefetcher(src.fd, 0, size, chunk_size=chunk_size, block=1) as img_chunks,
    ):
        try:
            for d, i in zip(dev_chunks, img_chunks, strict=True):
                try:
                    if cancel.is_set():
                        raise Cancelled(f"verify of {reader.path} interrupted")
                    if hashing:
                        dev_h.update(d.data)
                        img_h.update(i.data)
                    if mismatch is None and d.data != i.data:
                        mismatch = d.offset + _first_difference(d, i)
                        if not hashing:
                            break
                finally:
                    d.release()
                    i.release()
                meter.advance(d.length)
        except ReadError as e:
            raise _read_error(reader.path, e) from None
    if progress is not None:
        meter.finish()
    return str(img_h.hexdigest()), mismatch, str(dev_h.hexdigest())


def _first_difference(a: Chunk, b: Chunk) -> int:
    x, y = a.data, b.data
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


def _read_error(path: str, e: ReadError) -> DeviceFault:
    return DeviceFault(
        f"error while reading '{path}' at offset {e.offset}: {e.error.strerror}",
        path=path,
        offset=e.offset,
        errno=e.error.errno,
    )

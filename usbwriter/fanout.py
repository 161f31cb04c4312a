"""One image to several drives at once: read and hashed once, each drive its own writer.

The image is streamed once (decompressed as it is read) into a pool of aligned
buffers; each chunk goes to the hashing thread and to one writer thread per drive,
and its buffer returns to the pool when all of them have released it. Each writer
does what a single write does to its drive (first and last MiB zeroed first, the head
written last, synced), so each drive is as safe as if written alone. A drive that
fails (an I/O error, pulled out) is wiped at its head if it can be and drops out; the
others go on. The read-back then runs for every drive at once, each on its own thread
through its own held descriptor.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from usbwriter.blockio import (
    CHUNK_SIZE,
    Chunk,
    MiB,
    Prefetcher,
    ReadError,
    aligned_buffer,
    reread_partitions,
)
from usbwriter.errors import Cancelled, DeviceFault, UsbWriterError
from usbwriter.progress import Meter, Progress
from usbwriter.verify import Reader, VerifyResult, verify_fd
from usbwriter.writer import (
    Hasher,
    WriteResult,
    check_chunk_fits,
    check_declared_size,
    failed_write,
    image_read_error,
    read_head,
    wipe_note,
    zero_ends,
)

if TYPE_CHECKING:
    from usbwriter.sources import ImageSource, Stream
    from usbwriter.writer import Target

log = logging.getLogger(__name__)

#: drive path, its progress
DriveProgress = Callable[[str, Progress], None]
#: drive path, what went wrong and what was done about it (said as it happens)
DriveFailed = Callable[[str, str], None]


class _Drive(threading.Thread):
    """Writes the chunks it is handed to one target, in order; on an error it wipes the
    head, keeps the error and only releases what it is handed from then on."""

    def __init__(
        self,
        tgt: Target,
        image: str,
        size: int | None,
        on_progress: DriveProgress | None,
        cancel: threading.Event,
        on_failed: DriveFailed | None = None,
    ):
        super().__init__(name=f"usbwriter-write-{tgt.path}", daemon=True)
        self.tgt, self.cancel, self.image = tgt, cancel, image
        self.q: queue.Queue[Chunk | None] = queue.Queue()
        self.error: BaseException | None = None
        self.wiped: bool | None = None  # set when the drive dropped out
        self.reread = False  # the kernel read the new partition table
        self.on_failed = on_failed
        self.end = 0
        self.meter = Meter(
            "write",
            size or 0,
            (lambda p: on_progress(tgt.path, p)) if on_progress else None,
        )

    def prepare(self, head_len: int) -> None:
        """Zero the first and last MiB: no stale table (or backup GPT) survives."""
        try:
            zero_ends(self.tgt, head_len)
        except BaseException as e:
            self.fail(e)

    def fail(self, e: BaseException) -> None:
        if self.error is None:
            self.error = e
            log.warning("%s: %s", self.tgt.path, e)

    def drop_out(self) -> None:
        """After an error: wipe the head at once (a failed drive may be pulled before the
        others are done) and say so; a cancel is not this drive's failure."""
        if self.wiped is not None or self.error is None:
            return
        self.wiped = self.tgt.wipe_head()
        if self.on_failed is not None and not isinstance(self.error, Cancelled):
            self.on_failed(self.tgt.path, self.failure().message)

    def failure(self) -> UsbWriterError:
        assert self.error is not None
        err = failed_write(self.error, self.tgt.path, wipe_note(bool(self.wiped)))
        if not isinstance(err, UsbWriterError):
            err = UsbWriterError(f"{self.tgt.path}: {err}", path=self.tgt.path)
        return err

    def run(self) -> None:
        self.drop_out()  # zeroing the ends failed
        while (chunk := self.q.get()) is not None:
            try:
                if self.error is None and self.cancel.is_set():
                    self.fail(Cancelled("cancelled"))  # queued chunks are only released
                if self.error is None:
                    check_chunk_fits(self.tgt, self.image, chunk)
                    self.tgt.write(chunk.data, chunk.offset)
                    self.end = chunk.offset + chunk.length
                    self.meter.advance(chunk.length)
            except BaseException as e:
                self.fail(e)
                self.drop_out()
            finally:
                chunk.release()

    def finish(self, head: memoryview, end: int) -> None:
        if self.error is not None:
            return
        try:
            self.tgt.write(head, 0)
            self.meter.advance(len(head))
            self.tgt.sync()
            self.meter.finish()
            self.end = end
            self.reread = self.tgt.is_block and reread_partitions(self.tgt.fd)
        except BaseException as e:
            self.fail(e)
            self.drop_out()


@dataclass(frozen=True)
class Outcome:
    """One drive's result: what was written, then what the read-back proved, or the
    error that took it out."""

    path: str
    write: WriteResult | None
    verify: VerifyResult | None = None
    error: UsbWriterError | None = None
    wiped: bool | None = None


def write_many(
    src: ImageSource,
    targets: list[Target],
    *,
    on_progress: DriveProgress | None = None,
    on_failed: DriveFailed | None = None,
    cancel: threading.Event | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> list[Outcome]:
    """Write SRC to every target; one outcome per target, in order. An error of the
    image (unreadable, damaged, cancelled) ends every drive's write. A drive that fails
    alone is wiped and reported through ON_FAILED at once."""
    cancel = cancel or threading.Event()
    if cancel.is_set():
        raise Cancelled("write cancelled before it started; no drive was changed")
    start = time.monotonic()
    drives = [_Drive(t, src.path, src.size, on_progress, cancel, on_failed) for t in targets]
    with src.stream() as stream:
        try:
            digest, size = _fan_out(stream, src, drives, cancel, chunk_size)
        except BaseException as e:
            for d in drives:
                d.fail(e)
            digest, size = "", 0
        file_digest = stream.file_blake3 if src.info.compressed else None
    seconds = time.monotonic() - start
    outcomes = []
    for d in drives:
        if d.error is not None:
            outcomes.append(_failed(d))
            continue
        outcomes.append(
            Outcome(
                d.tgt.path,
                WriteResult(
                    image_path=src.path,
                    image_size=size,
                    blake3=digest,
                    device=d.tgt.path,
                    bytes_written=size,
                    seconds=seconds,
                    direct_io=d.tgt.direct,
                    partitions_reread=d.reread,
                    format=src.info.format,
                    file_blake3=file_digest,
                ),
            )
        )
    return outcomes


def _failed(d: _Drive) -> Outcome:
    if d.wiped is None:  # an error of the image: every drive stopped together
        d.wiped = d.tgt.wipe_head()
    return Outcome(d.tgt.path, None, error=d.failure(), wiped=d.wiped)


def _fan_out(
    stream: Stream,
    src: ImageSource,
    drives: list[_Drive],
    cancel: threading.Event,
    chunk_size: int,
) -> tuple[str, int]:
    head = aligned_buffer(MiB)
    head_len = read_head(stream, memoryview(head)[:MiB], src.path)
    hasher = Hasher()
    hasher.update(memoryview(head)[:head_len])
    for d in drives:
        d.prepare(head_len)
        d.start()
    end = head_len
    prefetch = Prefetcher(
        stream, head_len, None, chunk_size=chunk_size, users=len(drives) + 1,
        buffers=3 + len(drives),
    )  # fmt: skip
    try:
        for chunk in prefetch:
            hasher.submit(chunk)
            for d in drives:
                d.q.put(chunk)
            end = chunk.offset + chunk.length
            if cancel.is_set() or all(d.error is not None for d in drives):
                raise Cancelled("cancelled") if cancel.is_set() else _all_failed(drives)
    except ReadError as e:
        raise image_read_error(src.path, e) from None
    finally:
        prefetch.close()
        for d in drives:
            d.q.put(None)
        for d in drives:
            d.join()
        digest = hasher.finish()
    check_declared_size(src, end)
    for d in drives:
        d.finish(memoryview(head)[:head_len], end)
    return digest, end


def _all_failed(drives: list[_Drive]) -> BaseException:
    first = drives[0].error
    return first if first is not None else UsbWriterError("every drive failed")


def verify_many(
    src: ImageSource,
    outcomes: list[Outcome],
    targets: list[Target],
    *,
    on_progress: DriveProgress | None = None,
    on_failed: DriveFailed | None = None,
    cancel: threading.Event | None = None,
) -> list[Outcome]:
    """Read every written drive back at once (a thread each, O_DIRECT through its held
    descriptor) and compare with the blake3 of the bytes written; a drive that fails is
    wiped and reported through ON_FAILED as soon as its own read-back ends."""
    cancel = cancel or threading.Event()
    results: dict[int, Outcome] = {}

    def check(i: int, out: Outcome, tgt: Target) -> None:
        assert out.write is not None
        try:
            reader = Reader(tgt.fd, tgt.path, out.write.image_size)
            checked = verify_fd(
                reader,
                out.write.image_size,
                out.write.blake3,
                image=src,
                progress=(lambda p: on_progress(tgt.path, p)) if on_progress else None,
                cancel=cancel,
            )
            wiped = None if checked.verified else tgt.wipe_head()
            results[i] = Outcome(out.path, out.write, checked, wiped=wiped)
            if wiped is not None and on_failed is not None:
                on_failed(
                    tgt.path,
                    f"{tgt.path}: verification FAILED: first difference at byte "
                    f"{checked.mismatch_offset}; {wipe_note(wiped)}",
                )
        except Cancelled as e:  # written whole, left unverified: as a single drive's
            results[i] = Outcome(out.path, out.write, None, error=e)
        except BaseException as e:  # whatever it is, this drive gets its outcome
            err = (
                e
                if isinstance(e, UsbWriterError)
                else DeviceFault(f"{tgt.path}: the read-back failed: {e}", path=tgt.path)
            )
            wiped = tgt.wipe_head()
            err = err.with_note(wipe_note(wiped))
            results[i] = Outcome(out.path, out.write, None, error=err, wiped=wiped)
            if on_failed is not None:
                on_failed(tgt.path, err.message)

    threads = []
    for i, (out, tgt) in enumerate(zip(outcomes, targets, strict=True)):
        if out.write is None:
            results[i] = out
            continue
        t = threading.Thread(target=check, args=(i, out, tgt), name=f"usbwriter-verify-{i}")
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    return [results[i] for i in range(len(outcomes))]


__all__ = ["DriveFailed", "DriveProgress", "Outcome", "verify_many", "write_many"]

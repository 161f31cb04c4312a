"""The drive being written, held on one descriptor, and what a write of it reports.

``Target`` opens the drive (or a regular file) once, exclusively (O_EXCL for a drive, a
flock for a file), writes O_DIRECT where it can, and wipes its first MiB when a write
fails so that no half-written stick looks bootable.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from usbwriter.engine.blockio import (
    MiB,
    Piece,
    aligned_buffer,
    fd_size,
    is_block_device,
    logical_block_size,
    open_held,
    pwrite_all,
    set_direct,
)
from usbwriter.errors import BadImage, Cancelled, DeviceFault, Refused, UsbWriterError, os_error
from usbwriter.units import human_size

if TYPE_CHECKING:
    from types import TracebackType

    from usbwriter.sources import ImageSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriteResult:
    image_path: str
    image_size: int
    blake3: str | None  # None: the image was read only where its bmap maps
    device: str
    bytes_written: int
    seconds: float
    direct_io: bool
    partitions_reread: bool
    format: str = "raw"  # the file as downloaded: raw or its compression
    file_blake3: str | None = None  # blake3 of the compressed file as downloaded
    checksum_confirmed: bool = False  # the sums' digest found again on the bytes read

    @property
    def rate(self) -> float:
        return self.bytes_written / self.seconds if self.seconds > 0 else 0.0


class Target:
    """The device (or regular file) being written, on one descriptor held from the first
    byte to the last read-back: O_EXCL for a block device, an exclusive flock for a file."""

    def __init__(self, fd: int, path: str) -> None:
        self.path = path
        self.fd = fd
        self.also_held: list[int] = []  # twins: other loop devices over the same file
        self.is_block = is_block_device(fd)
        self.size = fd_size(fd)
        self.block = logical_block_size(fd)
        self.direct = bool(os.O_DIRECT & _fcntl_flags(fd))

    @classmethod
    def open(cls, path: str, *, block: bool, create: bool = False) -> Target:
        """Open PATH (already resolved: the final component is not followed) for reading
        and writing, exclusively. ``create`` makes a new file and fails if one appeared."""
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create and not block else 0)
        try:
            fd = open_held(path, flags, block=block)
        except OSError as e:
            raise os_error(path, e, "open for writing") from None
        try:
            return cls(fd, path)
        except BaseException:
            os.close(fd)
            raise

    def write(self, data: memoryview, offset: int) -> None:
        """Write data at offset: O_DIRECT for whole blocks, a buffered write for a tail."""
        try:
            aligned = len(data) // self.block * self.block if self.direct else len(data)
            if aligned:
                pwrite_all(self.fd, data[:aligned], offset)
            if aligned < len(data):
                set_direct(self.fd, False)
                try:
                    pwrite_all(self.fd, data[aligned:], offset + aligned)
                    os.fdatasync(self.fd)
                finally:
                    set_direct(self.fd, self.direct)
        except OSError as e:
            raise DeviceFault(
                f"error while writing bytes {offset}-{offset + len(data) - 1} "
                f"of '{self.path}': {e.strerror}",
                path=self.path,
                offset=offset,
                errno=e.errno,
            ) from None

    def sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise DeviceFault(
                f"error while flushing '{self.path}': {e.strerror}", path=self.path, errno=e.errno
            ) from None

    def wipe_head(self) -> bool:
        """Zero the first MiB so a half-written stick does not look bootable."""
        try:
            set_direct(self.fd, self.direct)
            zeros = aligned_buffer(MiB)
            n = min(MiB, fd_size(self.fd))
            pwrite_all(self.fd, memoryview(zeros)[:n], 0)
            os.fdatasync(self.fd)
        except OSError as e:
            log.warning("could not wipe the first MiB of %s: %s", self.path, e.strerror)
            return False
        return True

    def hold_twins(self, paths: tuple[str, ...]) -> None:
        """Hold PATHS (other loop devices over the drive's backing file) with O_EXCL too,
        so that none is mounted while this one is written; Refused if one is in use."""
        for path in paths:
            try:
                self.also_held.append(
                    os.open(path, os.O_RDONLY | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW)
                )
            except OSError as e:
                raise Refused(
                    f"{self.path}: shares its backing file with {path}, which is in use "
                    f"({e.strerror}); nothing was written",
                    path=self.path,
                    errno=e.errno,
                ) from None

    def close(self) -> None:
        for fd in self.also_held:
            os.close(fd)
        self.also_held.clear()
        os.close(self.fd)

    def __enter__(self) -> Target:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _fcntl_flags(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_GETFL)


def wipe_note(wiped: bool) -> str:
    """What a failed write did about the stick's head, in words."""
    return (
        "the first MiB was wiped, so the stick does not look bootable"
        if wiped
        else "the first MiB could not be wiped: do not boot from this stick"
    )


def failed_write(e: BaseException, path: str, note: str) -> BaseException:
    """The error to raise for a write that failed with E (NOTE: what was done about it)."""
    if isinstance(e, Cancelled | KeyboardInterrupt):
        return Cancelled(f"write to {path} interrupted; {note}")
    if isinstance(e, UsbWriterError):
        return e.with_note(note)
    return e


def check_fits(src: ImageSource, tgt: Target, cancel: threading.Event) -> None:
    """Before the first byte: an image surely larger than the drive, or a cancel."""
    if tgt.is_block and src.info.surely_larger_than(tgt.size):
        raise Refused(
            f"{tgt.path}: the image {src.path} ({human_size(src.size or 0)}) does not fit "
            f"on the device ({human_size(tgt.size)})",
            path=tgt.path,
        )
    if cancel.is_set():
        raise Cancelled(f"write to {tgt.path} cancelled before it started; device unchanged")


def check_chunk_fits(tgt: Target, image: str, chunk: Piece) -> None:
    """While writing: the image turned out larger than the drive (decompressing showed)."""
    if tgt.is_block and chunk.offset + chunk.length > tgt.size:
        raise Refused(
            f"{tgt.path}: the image {image} does not fit on the device "
            f"({human_size(tgt.size)}): it is larger, as decompressing it showed",
            path=tgt.path,
            offset=tgt.size,
        )


def last_mib(tgt: Target, floor: int) -> int:
    """Where the drive's last MiB starts (on a block boundary), not before FLOOR: where
    a stale backup GPT would be."""
    return max(floor, (tgt.size - MiB) // tgt.block * tgt.block)


def check_declared_size(src: ImageSource, actual: int) -> None:
    """A compressed file whose bytes disagree with the size its headers gave is damaged.
    A zstd or lz4 header gives its own frame's size (more frames may follow); gzip's
    trailer is only an estimate (the size modulo 4 GiB, made up by damage)."""
    declared, kind = src.size, src.info.size_is
    if declared is None or kind == "about" or actual == declared:
        return
    if kind == "at least" and actual > declared:
        return  # more frames followed the first
    if not src.info.compressed:
        raise BadImage(
            f"{src.path}: changed while it was read: {actual} bytes of the {declared} it "
            "had when opened",
            path=src.path,
            offset=min(actual, declared),
        )
    raise BadImage(
        f"{src.path}: decompressed to {actual} bytes, but its {src.info.size_from} says "
        f"{declared}: the file is damaged or cut short",
        path=src.path,
        offset=min(actual, declared),
    )

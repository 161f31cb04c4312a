"""Open an image source: a regular file (raw or compressed), or a block device.

Opening never blocks: a FIFO, a terminal or a socket given as an image is opened with
O_NONBLOCK (or not at all), its type checked on the descriptor, and refused with a
one-line message. ``kind_of`` names what a path is without opening it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from usbwriter.errors import BadImage, BadInput, UsbWriterError, os_error
from usbwriter.sources.formats import SourceInfo, describe
from usbwriter.sources.streams import Expected, Stream, open_stream

KIND_WORDS = {
    "file": "a regular file",
    "block": "a block device",
    "directory": "a directory",
    "fifo": "a FIFO (named pipe)",
    "char": "a character device",
    "socket": "a socket",
    "other": "not a file or a device",
}


def kind_of(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISBLK(mode):
        return "block"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode):
        return "char"
    if stat.S_ISSOCK(mode):
        return "socket"
    return "other"


def not_an_image(path: str, kind: str) -> UsbWriterError:
    return BadInput(
        f"{path}: is {KIND_WORDS.get(kind, kind)}, not an image (give an image file)", path=path
    )


def not_a_drive(path: str, kind: str) -> UsbWriterError:
    return BadInput(f"{path}: is {KIND_WORDS.get(kind, kind)}, not a drive", path=path)


@dataclass(frozen=True)
class ImageSource:
    """An open image file (or block device) and what it holds."""

    path: str
    fd: int
    info: SourceInfo
    is_block: bool
    st_dev: int = 0
    st_ino: int = 0
    st_rdev: int = 0
    st_mtime_ns: int = 0  # the file's times when opened: a read-back comparing with it
    st_ctime_ns: int = 0  # checks the file is still the one written
    #: digests the file as downloaded must have: every stream confirms them at its end
    expect: tuple[Expected, ...] = ()

    @property
    def file_size(self) -> int:
        return self.info.file_size

    @property
    def size(self) -> int | None:
        """The image's size, None when only decompressing it tells."""
        return self.info.size

    def stream(self, *, confirm: bool = True) -> Stream:
        """A fresh reader of the image's bytes from the first (decompressed); read to its
        end, it refuses a file whose digests are not those expected (unless CONFIRM is
        false: a partial re-read that locates a difference)."""
        return open_stream(self.fd, self.info, self.expect if confirm else ())

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_without_blocking(
    path: str, doing: str, refuse: Callable[[str, str], UsbWriterError]
) -> tuple[int, os.stat_result]:
    """PATH opened for reading without blocking (a FIFO or a terminal cannot hang it), and
    its stat. REFUSE(path, kind) is the error for a socket, which cannot be opened; the
    caller refuses the other kinds it does not read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        error = os_error(path, e, doing)
        if e.errno == errno.ENXIO:  # a socket: say what it is
            with contextlib.suppress(OSError):
                error = refuse(path, kind_of(os.stat(path).st_mode))
        raise error from None
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def open_readable(path: str) -> tuple[int, bool, int]:
    """(descriptor, is a block device, size) of the regular file or block device at PATH,
    opened for reading without blocking: a FIFO, socket or terminal is refused (BadInput)
    without hanging; nothing is read."""
    fd, st = open_without_blocking(path, "open the image", not_an_image)
    try:
        kind = kind_of(st.st_mode)
        if kind not in ("file", "block"):
            raise not_an_image(path, kind)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        size = st.st_size if kind == "file" else os.lseek(fd, 0, os.SEEK_END)
        if kind == "file":
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except BaseException:
        os.close(fd)
        raise
    return fd, kind == "block", size


def open_image(path: str, *, member: str | None = None) -> ImageSource:
    """Open PATH for reading without blocking and say what it holds; BadInput for a
    missing path or one that is not a regular file or block device, BadImage if it is
    empty or a damaged archive."""
    fd, is_block, file_size = open_readable(path)
    try:
        st = os.fstat(fd)
        if file_size == 0:
            raise BadImage(f"{path}: the image is empty", path=path)
        if is_block:
            info = SourceInfo(path, "raw", file_size, file_size, "device")
        else:
            info = describe(fd, path, file_size, member=member)
        if member is not None and info.format != "zip":
            what = "a drive" if is_block else f"a {info.format} image, not a zip archive"
            raise BadInput(
                f"{path}: --member names a file inside a zip archive; this is {what}", path=path
            )
    except BaseException:
        os.close(fd)
        raise
    return ImageSource(
        path=path,
        fd=fd,
        info=info,
        is_block=is_block,
        st_dev=st.st_dev,
        st_ino=st.st_ino,
        st_rdev=st.st_rdev,
        st_mtime_ns=st.st_mtime_ns,
        st_ctime_ns=st.st_ctime_ns,
    )

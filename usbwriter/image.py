"""Open an image source: a regular file, or a block device (for verify and backup)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from usbwriter.errors import BadImage, BadInput


@dataclass(frozen=True)
class ImageSource:
    path: str
    fd: int
    size: int
    is_block: bool

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_image(path: str) -> ImageSource:
    """Open PATH for reading; BadInput for a missing or unusable path, BadImage if empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot open: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            size, is_block = st.st_size, False
        elif stat.S_ISBLK(st.st_mode):
            size, is_block = os.lseek(fd, 0, os.SEEK_END), True
        else:
            raise BadInput(f"{path}: not a regular file or block device")
        if size == 0:
            raise BadImage(f"{path}: the image is empty")
    except BaseException:
        os.close(fd)
        raise
    return ImageSource(path=path, fd=fd, size=size, is_block=is_block)

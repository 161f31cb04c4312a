"""Giving a finished file its name without replacing a file that appeared meanwhile.

A backup, an extracted file or a built ISO is written under a temporary name and named
when whole. Unless the user asked to replace, the name must not be taken over from a
file somebody made in the meantime. Linux offers two atomic ways: ``renameat2`` with
``RENAME_NOREPLACE`` (ext4, xfs, btrfs, tmpfs and the other local file systems) and
``link`` (which also fails on an existing name). FAT and exFAT drives mounted through
FUSE take neither (``EINVAL``, then ``EPERM``: no hard links there); on those the name
is checked and then renamed, the only way such a file system offers.
"""

from __future__ import annotations

import ctypes
import errno
import os

from usbwriter.errors import Refused

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_NOT_OFFERED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)

_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def place_new(temp: str, name: str, *, dir_fd: int | None = None) -> None:
    """Rename TEMP to NAME (both relative to DIR_FD when given) unless NAME exists:
    FileExistsError then, with TEMP left in place. Other failures raise OSError."""
    fd = _AT_FDCWD if dir_fd is None else dir_fd
    if _renameat2 is not None:
        if _renameat2(fd, os.fsencode(temp), fd, os.fsencode(name), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in _NOT_OFFERED:
            raise OSError(err, os.strerror(err), name)
    try:
        os.link(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as e:
        if e.errno not in _NOT_OFFERED:
            raise
    else:
        os.unlink(temp, dir_fd=dir_fd)
        return
    # No atomic way on this file system: check, then rename.
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name)


def give_name(temp: str, name: str, *, replace: bool, made_by: str) -> None:
    """Rename the finished TEMP to NAME: over an existing file only when REPLACE;
    otherwise a file that appeared at NAME (while MADE_BY ran) is kept, and so is TEMP,
    under its own name (Refused, exit 4)."""
    if replace:
        os.replace(temp, name)
        return
    try:
        place_new(temp, name)
    except FileExistsError:
        raise Refused(
            f"{name}: appeared while the {made_by} ran; nothing was replaced, and the new "
            f"file is kept as {temp}",
            path=name,
            errno=errno.EEXIST,
        ) from None

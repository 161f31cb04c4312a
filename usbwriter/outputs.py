"""Image files written by usbwriter (a backup of a drive): raw, sparse or compressed.

An output is written under a temporary name in its folder and given its final name
only by ``commit()``; ``discard()`` (or leaving the ``with`` block on an error) removes
it, so an interrupted or failed backup never leaves a file that looks complete. The
final name is taken with ``link`` (which fails if something appeared there meanwhile)
unless replacing was asked for. The suffix chooses the compression (a writable format
of ``usbwriter.compression``: .zst, .xz, .gz); it runs in the standard tool (``zstd
-T0``, ``xz -T0``, ``pigz`` or ``gzip``) on its own process, fed through a pipe;
without the tool, in the library (zstandard, lzma, gzip).

``check_output_file`` is the one rule for a path usbwriter is asked to write a file to
(backup -o, mkiso -o, --log-file): the wrong kind of thing is a usage error (BadInput,
exit 2: a directory, a FIFO, a socket, a device node, a trailing slash on a file's
name, a missing folder, permission denied); a path refused for safety is Refused (exit
4: a symbolic link, which is never followed; an existing file without --overwrite; a
name under /dev, /proc or /sys). ``open_log`` opens a log file by that rule, without
blocking on a FIFO and without following a link.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import subprocess
from typing import IO

from usbwriter.compression import by_name, by_suffix
from usbwriter.engine.blockio import same_bytes
from usbwriter.errors import BadInput, InternalError, Refused, UsbWriterError, os_error
from usbwriter.placing import give_name

SPARSE_BLOCK = 64 * 1024
_ZEROS = memoryview(bytearray(SPARSE_BLOCK))  # writable, for memcmp


#: Where no file of usbwriter's belongs: device nodes and the kernel's own files. A
#: mistyped drive (-o /dev/sdx) would otherwise become a file filling memory.
KERNEL_TREES = ("/dev", "/proc", "/sys")

_KINDS = {
    stat.S_IFIFO: "a FIFO (a named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device (a drive)",
}


def kind_of(mode: int) -> str:
    """What a file of MODE is, in words: 'a directory', 'a FIFO (a named pipe)'..."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a regular file"
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_output_file(path: str, *, overwrite: bool = False, append: bool = False) -> None:
    """Raise unless PATH may be created (or, with OVERWRITE, replaced; with APPEND,
    appended to) as a regular file: BadInput (exit 2) for the wrong kind of thing,
    Refused (exit 4) for what is refused for safety. Changes nothing."""
    if path.endswith("/") or os.path.basename(path) in ("", ".", ".."):
        if os.path.isdir(path):
            raise BadInput(f"{path}: is a directory, not a file", path=path)
        raise BadInput(
            f"{path}: ends with a slash, which names a folder: give a file's name", path=path
        )
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _path_error(path, e) from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise Refused(
                f"{path}: is a symbolic link, which is never followed; give the file's own path",
                path=path,
            )
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{path}: is {kind_of(st.st_mode)}, not a regular file", path=path)
    folder = os.path.dirname(os.path.abspath(path))
    if st is None:
        _check_folder(path, folder)
    real = os.path.join(os.path.realpath(folder), os.path.basename(path))
    for top in KERNEL_TREES:
        if real == top or real.startswith(top + "/"):
            raise Refused(
                f"{path}: is under {top}, which holds devices and kernel files: refusing to "
                "create a file there",
                path=path,
            )
    if st is not None and not (overwrite or append):
        raise Refused(f"{path}: exists; pass --overwrite to replace it", path=path)
    if st is not None and append and not os.access(path, os.W_OK, effective_ids=True):
        raise BadInput(f"{path}: permission denied: cannot write to it", path=path)


def _check_folder(path: str, folder: str) -> None:
    try:
        fst = os.stat(folder)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise BadInput(f"{path}: its folder {folder} does not exist", path=path) from None
        raise _path_error(path, e) from None
    if not stat.S_ISDIR(fst.st_mode):
        raise BadInput(f"{path}: {folder} is not a folder", path=path)
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            raise BadInput(f"{path}: its folder {folder} is on a read-only file system", path=path)
        raise BadInput(f"{path}: permission denied: cannot create a file in {folder}", path=path)


def _path_error(path: str, e: OSError) -> UsbWriterError:
    if e.errno == errno.ENOTDIR:
        return BadInput(f"{path}: a part of the path is not a folder", path=path, errno=e.errno)
    if e.errno in (errno.EACCES, errno.EPERM):
        return BadInput(f"{path}: permission denied ({e.strerror})", path=path, errno=e.errno)
    return os_error(path, e, "look at the output")


def open_log(path: str) -> int:
    """A descriptor appending to the log file PATH (made 0600 if new), by the rule of
    ``check_output_file``: opened without blocking (a FIFO with no reader would hang the
    open) and without following a link (one planted by another user in /tmp would lead
    root's log anywhere); anything but a regular file is refused (exit 2)."""
    check_output_file(path, append=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags | os.O_NOCTTY | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO that appeared, with no reader
            raise BadInput(
                f"{path}: is a FIFO (a named pipe), not a regular file", path=path
            ) from None
        raise os_error(path, e, "open the log file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise BadInput(f"{path}: is {kind_of(st.st_mode)}, not a regular file", path=path)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def format_of(path: str) -> str:
    """The compression an output path asks for by its suffix: a writable format's name
    ("zstd", "xz", "gzip"), or "raw" for any other name."""
    fmt = by_suffix(path)
    return fmt.name if fmt is not None and fmt.writable else "raw"


def file_word(fmt: str) -> str:
    """FMT as a backup names the file written: "raw", "zst", "xz", "gz"."""
    compression = by_name(fmt)
    return fmt if compression is None else compression.short_name


class Output:
    """An image file being written: ``write(view)`` in order, then ``commit()``."""

    def __init__(self, path: str, *, fmt: str, sparse: bool = False, replace: bool = False):
        if sparse and fmt != "raw":
            raise BadInput(f"{path}: --sparse is for a raw image, not a {file_word(fmt)} file")
        compression = by_name(fmt)
        if fmt != "raw" and (compression is None or not compression.writable):
            raise InternalError(f"{path}: usbwriter does not write {fmt} files")
        self.compression = compression
        self.path, self.fmt, self.sparse, self.replace = path, fmt, sparse, replace
        folder, name = os.path.split(os.path.abspath(path))
        self.temp = os.path.join(folder, f".{name[:200]}.usbwriter-{secrets.token_hex(4)}")
        try:
            self.fd = os.open(
                self.temp,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
        except OSError as e:
            raise os_error(path, e, "create the image file") from None
        self.size = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._lib: IO[bytes] | None = None
        self._raw: IO[bytes] | None = None
        self._done = False
        try:
            if fmt != "raw":
                self._start_compressor()
        except BaseException:
            self.discard()
            raise

    def _start_compressor(self) -> None:
        fmt = self.compression
        assert fmt is not None and fmt.open_compressor is not None
        for argv in fmt.compress_tools:
            if shutil.which(argv[0]):
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=self.fd, stderr=subprocess.PIPE
                )
                return
        raw = self._raw = os.fdopen(os.dup(self.fd), "wb")
        self._lib = fmt.open_compressor(raw)  # closed by discard or finish

    def write(self, data: memoryview) -> None:
        try:
            if self._proc is not None:
                assert self._proc.stdin is not None
                self._proc.stdin.write(data)
            elif self._lib is not None:
                self._lib.write(data)
            elif self.sparse:
                self._write_sparse(data)
            else:
                _write_all(self.fd, data)
        except BrokenPipeError:
            raise self._tool_failed() from None
        except OSError as e:
            raise os_error(self.path, e, "write the image file", offset=self.size) from None
        self.size += len(data)

    def _write_sparse(self, data: memoryview) -> None:
        """Zero blocks become holes: seek past them (the file is extended at the end)."""
        pos = 0
        while pos < len(data):
            block = data[pos : pos + SPARSE_BLOCK]
            if not same_bytes(block, _ZEROS[: len(block)]):
                os.lseek(self.fd, self.size + pos, os.SEEK_SET)
                _write_all(self.fd, block)
            pos += len(block)

    def _tool_failed(self) -> UsbWriterError:
        assert self._proc is not None
        self._proc.wait()
        err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
        why = " ".join(err.split())[:200] or f"exit status {self._proc.returncode}"
        return UsbWriterError(f"{self.path}: the compressor failed: {why}", path=self.path)

    def finish(self) -> None:
        """Flush everything to the file (compressor ended, data synced); not yet named."""
        if self._proc is not None:
            assert self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise self._tool_failed()
        elif self._lib is not None:
            self._lib.close()
            self._close_raw()
        if self.sparse:
            os.ftruncate(self.fd, self.size)
        try:
            os.fsync(self.fd)
        except OSError as e:
            raise os_error(self.path, e, "write the image file") from None

    def commit(self) -> None:
        """Give the finished file its final name."""
        try:
            give_name(self.temp, self.path, replace=self.replace, made_by="backup")
        except Refused:  # a file appeared at the name: ours stays under the temporary one
            self._done = True
            self._close()
            raise
        except OSError as e:
            raise os_error(self.path, e, "name the image file") from None
        self._done = True
        self._close()

    def discard(self) -> None:
        if self._done:
            return
        self._done = True
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        if self._lib is not None:
            with contextlib.suppress(OSError, ValueError, EOFError):
                self._lib.close()
            self._close_raw()
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)

    def _close_raw(self) -> None:
        if self._raw is not None and not self._raw.closed:
            with contextlib.suppress(OSError):
                self._raw.close()

    def _close(self) -> None:
        if self._proc is not None and self._proc.stderr is not None:
            self._proc.stderr.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]


__all__ = ["Output", "check_output_file", "file_word", "format_of", "kind_of", "open_log"]

"""Image files written by usbwriter (a backup of a drive): raw, sparse or compressed.

An output is written under a temporary name in its folder and given its final name
only by ``commit()``; ``discard()`` (or leaving the ``with`` block on an error) removes
it, so an interrupted or failed backup never leaves a file that looks complete. The
final name is taken with ``link`` (which fails if something appeared there meanwhile)
unless replacing was asked for. Compression runs in the standard tool (``zstd -T0``,
``xz -T0``, ``pigz`` or ``gzip``) on its own process, fed through a pipe; without the
tool, in the library (zstandard, lzma, gzip).
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import secrets
import shutil
import subprocess
from typing import IO, Any

from usbwriter.blockio import same_bytes
from usbwriter.errors import BadInput, Refused, UsbWriterError, os_error
from usbwriter.placing import give_name

#: suffix -> format; anything else is written raw.
SUFFIXES = {".zst": "zst", ".zstd": "zst", ".xz": "xz", ".gz": "gz"}
TOOLS = {
    "zst": (["zstd", "-q", "-T0", "-c"],),
    "xz": (["xz", "-q", "-T0", "-c"],),
    "gz": (["pigz", "-q", "-c"], ["gzip", "-q", "-c"]),
}
SPARSE_BLOCK = 64 * 1024
_ZEROS = memoryview(bytearray(SPARSE_BLOCK))  # writable, for memcmp


def format_of(path: str) -> str:
    """The compression an output path asks for by its suffix ("raw" for none)."""
    for suffix, fmt in SUFFIXES.items():
        if path.lower().endswith(suffix):
            return fmt
    return "raw"


class Output:
    """An image file being written: ``write(view)`` in order, then ``commit()``."""

    def __init__(self, path: str, *, fmt: str, sparse: bool = False, replace: bool = False):
        if sparse and fmt != "raw":
            raise BadInput(f"{path}: --sparse is for a raw image, not a {fmt} file")
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
        for argv in TOOLS[self.fmt]:
            if shutil.which(argv[0]):
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=self.fd, stderr=subprocess.PIPE
                )
                return
        raw = self._raw = os.fdopen(os.dup(self.fd), "wb")
        lib: Any
        if self.fmt == "zst":
            import zstandard

            lib = zstandard.ZstdCompressor(threads=-1).stream_writer(raw, closefd=True)
        elif self.fmt == "xz":
            lib = lzma.LZMAFile(raw, "wb")  # noqa: SIM115 (closed by discard or finish)
        else:
            lib = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)
        self._lib = lib

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


__all__ = ["Output", "format_of"]

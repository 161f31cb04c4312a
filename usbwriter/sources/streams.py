"""The image's bytes in order, from the file as downloaded.

A ``Stream`` is read sequentially with ``readinto`` (filled completely except at the
end). A raw file is read with pread. A compressed one is decompressed by the fastest
well-kept decoder at hand, as its entry in ``usbwriter.compression`` says: the standard
tool where installed (``xz -dc -T0``, multi-threaded, and ``zstd``), else the standard
library (xz, gzip, bzip2, zip members) or the bindings (zstd, lz4). While decompressing,
the file as downloaded is hashed with blake3 (``file_blake3``) and its read position
kept (``consumed``) for progress when the image's size is not known.

A stream opened with ``expect`` (the digests a checksum check found the file to have)
also hashes the file as downloaded with those algorithms while it is read, and at its
end refuses bytes whose digest differs: what was checked is then what was read, even if
the file was changed in place between the check and the write.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import blake3

from usbwriter.compression import FORMATS, Format, by_name
from usbwriter.engine.blockio import pread_into
from usbwriter.errors import BadImage, Refused
from usbwriter.sources.formats import SourceInfo

if TYPE_CHECKING:
    from usbwriter.progress import Meter

log = logging.getLogger(__name__)

FEED = 1 << 20  # compressed bytes read at a time


class Hasher(Protocol):
    def update(self, data: memoryview, /) -> object: ...

    def hexdigest(self) -> str: ...


def new_hasher(alg: str) -> Hasher:
    """A hashlib hasher, or blake3 with threads of its own."""
    if alg == "blake3":
        h: Hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        return h
    return hashlib.new(alg)


@dataclass(frozen=True)
class Expected:
    """A digest the file as downloaded must have: ``source`` says in words where the
    value came from ("SHA256SUMS", "the given checksum")."""

    alg: str
    hex: str
    source: str


class FileCheck:
    """Hashes the file as downloaded, in order, with the algorithms of EXPECT, and at the
    end refuses (``Refused``) bytes whose digest is not the one expected."""

    def __init__(self, path: str, expect: Sequence[Expected]) -> None:
        self.path, self.expect = path, tuple(expect)
        self.hashers = {e.alg: new_hasher(e.alg) for e in self.expect}
        self.done = False

    def update(self, data: memoryview) -> None:
        for h in self.hashers.values():
            h.update(data)

    def restart(self) -> None:
        self.hashers = {e.alg: new_hasher(e.alg) for e in self.expect}

    def confirm(self, read_in_order: bool = True) -> None:
        """At the file's end: every digest as expected, or Refused naming both."""
        if self.done or not self.expect:
            return
        self.done = True
        if not read_in_order:
            raise Refused(
                f"{self.path}: its checksum could not be confirmed on the bytes written "
                "(the file was not read in order)",
                path=self.path,
            )
        for e in self.expect:
            got = self.hashers[e.alg].hexdigest()
            if got != e.hex:
                raise Refused(
                    f"{self.path}: changed since its checksum was checked: the {e.alg} of "
                    f"the bytes written is {got}, {e.source} says {e.hex}",
                    path=self.path,
                )


#: the meter that the image bytes read in this thread advance, while a reader that does
#: not report progress itself is being waited for (the boot report's read of a
#: compressed image's first part: seconds for a .bz2)
_METER: ContextVar[Meter | None] = ContextVar("usbwriter_reading_meter", default=None)


@contextmanager
def reading(meter: Meter | None) -> Iterator[Meter | None]:
    """While inside, every image byte a Stream gives this thread advances METER (up to
    its total); nothing with None."""
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


class Stream:
    """Sequential bytes of the image from its first byte."""

    consumed = 0  # bytes of the file as downloaded read so far

    def readinto(self, view: memoryview) -> int:
        raise NotImplementedError

    def readfull(self, view: memoryview) -> int:
        """Fill VIEW; fewer bytes only at the end of the image."""
        got = 0
        while got < len(view):
            n = self.readinto(view[got:])
            if n == 0:
                break
            got += n
        meter = _METER.get()
        if meter is not None and got:
            meter.advance(min(got, max(0, meter.total - meter.done)))
        return got

    @property
    def file_blake3(self) -> str | None:
        """blake3 of the file as downloaded, once it has been read to its end."""
        return None

    check: FileCheck | None = None

    @property
    def confirmed(self) -> bool:
        """The expected digests were found again on the bytes read (read to the end)."""
        return self.check is not None and self.check.done

    def close(self) -> None:
        pass

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RawStream(Stream):
    def __init__(self, fd: int, size: int, check: FileCheck | None = None) -> None:
        self.fd, self.size, self.check = fd, size, check

    def read_elsewhere(self, end: int) -> None:
        """The file up to END was read another way (its mapped pages, fed to the check in
        order): the stream goes on from END, and confirms the check when that is the
        file's end."""
        self.consumed = end
        if self.check is not None and end >= self.size:
            self.check.confirm()

    def readinto(self, view: memoryview) -> int:
        n = pread_into(self.fd, view[: max(0, self.size - self.consumed)], self.consumed)
        self.consumed += n
        if self.check is not None:
            if n:
                self.check.update(view[:n])
            elif len(view):
                self.check.confirm()
        return n


class _HashingFile(io.RawIOBase):
    """The compressed file as a read-only file object over pread that hashes it in order.

    Bytes are hashed only as they follow on from what was hashed already; a zip archive
    is read from its member on (``restart_at``) after its directory, with the bytes
    before hashed first, and ``digest`` hashes whatever was not read, so the hash is the
    whole file's either way. A read out of order makes the hash unknown (None)."""

    def __init__(self, fd: int, size: int, check: FileCheck | None = None) -> None:
        super().__init__()
        self.fd, self.size, self.pos = fd, size, 0
        self.hash: Any = blake3.blake3()
        self.check = check
        self.hashed = 0  # bytes [0, hashed) are in the hash
        self.in_order = True

    def restart_at(self, offset: int) -> None:
        """Hash afresh: the file's first OFFSET bytes now, what is read from there on."""
        self.hash, self.hashed, self.in_order = blake3.blake3(), 0, True
        if self.check is not None:
            self.check.restart()
        self._hash_to(offset)
        self.pos = offset

    def _update(self, data: memoryview) -> None:
        self.hash.update(data)
        if self.check is not None:
            self.check.update(data)

    def _hash_to(self, end: int) -> None:
        buf = bytearray(FEED)
        view = memoryview(buf)
        while self.hashed < end:
            n = pread_into(self.fd, view[: min(FEED, end - self.hashed)], self.hashed)
            if n == 0:
                break
            self._update(view[:n])
            self.hashed += n

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        try:
            n = pread_into(self.fd, view[: max(0, self.size - self.pos)], self.pos)
        except OSError as e:
            raise BadImage(
                f"error reading at byte {self.pos}: {e.strerror}", offset=self.pos, errno=e.errno
            ) from None
        if self.pos == self.hashed:
            self._update(view[:n])
            self.hashed += n
        elif self.pos > self.hashed or self.pos + n > self.hashed:
            self.in_order = False
        self.pos += n
        return n

    def digest(self) -> str | None:
        if not self.in_order:
            return None
        self._hash_to(self.size)
        return str(self.hash.hexdigest())

    def confirm(self) -> None:
        """The file read to its end: its digests as the check expects (if any)."""
        if self.check is not None:
            if self.in_order:
                self._hash_to(self.size)
            self.check.confirm(self.in_order)


class _Frames(io.RawIOBase):
    """A decoder of concatenated streams (xz) or frames (zstd) as a file object, with
    bounded output and an error for input that ends inside a stream. The standard
    library's LZMAFile stops at xz stream padding, and zstandard's stream reader ends a
    truncated frame quietly; both are replaced here (for when the tools are missing)."""

    def __init__(self, raw: _HashingFile, new: Callable[[], Any], feed: int, padding: bool) -> None:
        super().__init__()
        self.raw, self.new, self.feed, self.padding = raw, new, feed, padding
        self.dec: Any = None  # the decoder of the current stream, once data is seen
        self.pending = b""  # output not handed out yet
        self.rest = b""  # input after the end of the last stream

    def readable(self) -> bool:
        return True

    def _next_input(self) -> bytes:
        if self.rest:
            data, self.rest = self.rest, b""
            return data
        return self.raw.read(self.feed) or b""

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        while not self.pending:
            if self.dec is not None and self.dec.eof:
                self.rest += self.dec.unused_data
                self.dec = None
            if self.dec is None:
                data = self._next_input()
                if self.padding:
                    data = data.lstrip(b"\0")  # stream padding (a multiple of 4 zero bytes)
                if not data:
                    if self.raw.pos >= self.raw.size:
                        return 0  # the end, between streams
                    continue
                self.dec = self.new()
            else:
                data = self._next_input() if self._needs_input() else b""
                if not data and self._needs_input():
                    raise EOFError("the compressed data ends inside a stream")
            self.pending = self._decompress(data, len(view))
        n = min(len(view), len(self.pending))
        view[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n

    def _needs_input(self) -> bool:
        return bool(getattr(self.dec, "needs_input", True))

    def _decompress(self, data: bytes, most: int) -> bytes:
        if hasattr(self.dec, "needs_input"):  # lzma: output bounded by max_length
            return bytes(self.dec.decompress(data, max_length=most))
        return bytes(self.dec.decompress(data))  # zstd: bounded by the small feed


def _decoder(fmt: Format, raw: _HashingFile) -> BinaryIO:
    """The format's library decoder over RAW."""
    if fmt.new_decompressor is not None:
        frames = _Frames(raw, fmt.new_decompressor, fmt.feed or FEED, fmt.padding)
        return frames  # type: ignore[return-value]
    if fmt.open_decoder is not None:
        return fmt.open_decoder(raw)  # type: ignore[arg-type]
    raise ValueError(fmt.name)


_BASE_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, ValueError, RuntimeError)


def decode_errors() -> tuple[type[BaseException], ...]:
    """What decoders raise for damaged or truncated input: those of the decoder modules
    loaded so far (a module never imported raised nothing), so that looking needs no
    import of zstandard for an xz or a raw image."""
    errors = list(_BASE_ERRORS)
    for fmt in FORMATS:
        if fmt.decode_error is not None:
            module = sys.modules.get(fmt.decode_error[0])
            if module is not None:
                errors.append(getattr(module, fmt.decode_error[1]))
    return tuple(errors)


def open_errors() -> tuple[type[BaseException], ...]:
    return (*decode_errors(), KeyError)


def _bad(info: SourceInfo, consumed: int, e: BaseException) -> BadImage:
    if isinstance(e, BadImage):
        return BadImage(f"{info.path}: {e}", path=info.path, offset=e.offset, errno=e.errno)
    why = str(e) or type(e).__name__
    if isinstance(e, EOFError):
        why = "the compressed data ends early (truncated download?)"
    return BadImage(
        f"{info.path}: {info.format} data damaged near byte {consumed} of the file: {why}",
        path=info.path,
        offset=consumed,
    )


class DecoderStream(Stream):
    """Decompressed in this process (on the thread that reads the stream)."""

    def __init__(self, fd: int, info: SourceInfo, check: FileCheck | None = None) -> None:
        self.info, self.check = info, check
        self.raw = _HashingFile(fd, info.file_size, check)
        fmt = by_name(info.format)
        if fmt is None:
            raise ValueError(info.format)
        if fmt.members:
            self.zip = zipfile.ZipFile(self.raw)  # reads the directory
            zinfo = self.zip.getinfo(info.member or "")
            self.raw.restart_at(zinfo.header_offset)
            self.file: BinaryIO = self.zip.open(zinfo)  # type: ignore[assignment]
        else:
            self.file = _decoder(fmt, self.raw)

    @property
    def consumed(self) -> int:  # type: ignore[override]
        return self.raw.pos

    def readinto(self, view: memoryview) -> int:
        try:
            n: int = self.file.readinto(view)  # type: ignore[attr-defined]
        except decode_errors() as e:
            raise _bad(self.info, self.raw.pos, e) from None
        if n == 0 and len(view):
            self.raw.confirm()
        return n

    @property
    def file_blake3(self) -> str | None:
        return self.raw.digest()

    def close(self) -> None:
        try:
            self.file.close()
        except decode_errors() as e:
            log.debug("closing the decoder of %s: %s", self.info.path, e)


class ToolStream(Stream):
    """Decompressed by the format's standard tool (its ``decode_tool``), fed from this
    process (so the file is hashed on the way) by a feeder thread; the tool reports a
    truncated or damaged file by its exit status."""

    def __init__(
        self, fd: int, info: SourceInfo, argv: list[str], check: FileCheck | None = None
    ) -> None:
        self.info, self.check = info, check
        self.tool = os.path.basename(argv[0])
        self.raw = _HashingFile(fd, info.file_size, check)
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(os.environ, LC_ALL="C"),
        )
        self.error: BaseException | None = None
        self.feeder = threading.Thread(target=self._feed, name="usbwriter-feed", daemon=True)
        self.feeder.start()

    def _feed(self) -> None:
        assert self.proc.stdin is not None
        buf = bytearray(FEED)
        view = memoryview(buf)
        try:
            while n := self.raw.readinto(view):
                self.proc.stdin.write(view[:n])
        except BrokenPipeError:
            pass  # the tool stopped early: its exit status says why
        except BaseException as e:
            self.error = e
        finally:
            try:
                self.proc.stdin.close()
            except OSError as e:
                log.debug("closing %s's input: %s", self.tool, e)

    @property
    def consumed(self) -> int:  # type: ignore[override]
        return self.raw.pos

    def readinto(self, view: memoryview) -> int:
        assert self.proc.stdout is not None
        n: int = self.proc.stdout.readinto(view)  # type: ignore[attr-defined]
        if n:
            return n
        self.feeder.join()
        rc = self.proc.wait()
        if self.error is not None:
            raise _bad(self.info, self.raw.pos, self.error)
        if rc != 0:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            why = (err.strip().splitlines() or [f"{self.tool} exited with status {rc}"])[-1]
            why = why.rsplit(": ", 1)[-1]
            raise BadImage(
                f"{self.info.path}: {self.info.format} data damaged or truncated "
                f"({self.tool}: {why})",
                path=self.info.path,
            )
        if len(view):
            self.raw.confirm()
        return 0

    @property
    def file_blake3(self) -> str | None:
        self.feeder.join()
        return self.raw.digest()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.feeder.join()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def open_stream(fd: int, info: SourceInfo, expect: Sequence[Expected] = ()) -> Stream:
    """The image's bytes from the first, decompressed when the file is compressed; with
    EXPECT, the file as downloaded is confirmed to have those digests at the end."""
    check = FileCheck(info.path, expect) if expect else None
    if not info.compressed:
        return RawStream(fd, info.file_size, check)
    fmt = by_name(info.format)
    argv = fmt.decode_tool if fmt is not None else ()
    tool = shutil.which(argv[0]) if argv else None
    if argv and tool:
        return ToolStream(fd, info, [tool, *argv[1:]], check)
    try:
        return DecoderStream(fd, info, check)
    except open_errors() as e:
        raise _bad(info, 0, e) from None


def read_prefix(fd: int, info: SourceInfo, n: int) -> bytes:
    """The image's first N bytes (fewer if it is shorter)."""
    buf = bytearray(n)
    with open_stream(fd, info) as stream:
        got = stream.readfull(memoryview(buf))
    return bytes(buf[:got])

"""The compression formats usbwriter reads (and some it writes): one entry each.

A ``Format`` says everything usbwriter knows of one format: its name (the one word
used everywhere: ``SourceInfo.format``, receipts, messages), its magic bytes, its file
suffixes, where the image's size is recorded and how far that record is to be trusted,
the standard tool and the library that decode it, and, for the formats a backup can
write, the tools and the library that compress. Adding a format is one entry in
``FORMATS``; what recognises, names, sizes, decodes or writes a compressed file looks
it up here.

The module is light (the libraries are imported by the functions that use them), so
the command line's help can name the suffixes without loading the decoders.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

FOUR_GIB = 1 << 32

#: (fd, file size, offset of the first frame) -> the image's size, None if not recorded;
#: raises ValueError (or struct.error, OSError...) for a record that makes no sense
SizeReader = Callable[[int, int, int], int | None]


@dataclass(frozen=True)
class Format:
    """One compression format."""

    name: str  # "xz", "gzip", "bzip2", "zstd", "lz4", "zip"
    magic: bytes  # what its files start with
    suffixes: tuple[str, ...]  # lower case; the first is the usual one (".zst")
    #: where the image's size is recorded ("xz index"); "" when the format does not say
    size_from: str = ""
    #: what that record is worth: "exact", "at least" (zstd, lz4: the first frame's own
    #: size; more frames may follow), "about" (gzip: the size modulo 4 GiB)
    size_is: str = "exact"
    read_size: SizeReader | None = None
    skippable_frames: bool = False  # zstd, lz4: skippable frames may come first
    members: bool = False  # an archive (zip): the image is one file in it
    #: the standard tool that decodes it (stdin to stdout), preferred where installed
    decode_tool: tuple[str, ...] = ()
    #: the library decoder: a file object over the compressed file object...
    open_decoder: Callable[[BinaryIO], BinaryIO] | None = None
    #: ...or, for files of concatenated streams (frames), a decompressor of one stream,
    #: fed ``feed`` bytes at a time (None: as read), zero padding between streams skipped
    #: when ``padding``
    new_decompressor: Callable[[], Any] | None = None
    feed: int | None = None
    padding: bool = False
    #: what the library raises for damaged input beyond OSError, ValueError, EOFError
    #: and RuntimeError, as (module, class): looked up once that module is loaded, so
    #: that nothing is imported to catch it
    decode_error: tuple[str, str] | None = None
    #: the tools that compress it (stdin to stdout), the first installed is used; none:
    #: usbwriter does not write this format
    compress_tools: tuple[tuple[str, ...], ...] = ()
    #: the library compressor, writing to the file object it is given, without the tools
    open_compressor: Callable[[IO[bytes]], IO[bytes]] | None = None

    @property
    def suffix(self) -> str:
        """The usual suffix: '.zst'."""
        return self.suffixes[0]

    @property
    def short_name(self) -> str:
        """'zst', 'xz', 'gz': the word of the usual suffix, which a backup's receipt
        (its "format" field) and messages give for the file written."""
        return self.suffix.lstrip(".")

    @property
    def writable(self) -> bool:
        """usbwriter can write it (a backup)."""
        return bool(self.compress_tools) and self.open_compressor is not None


# --- the sizes formats record --------------------------------------------------------


def pread(fd: int, n: int, offset: int) -> bytes:
    return os.pread(fd, n, offset) if offset >= 0 else b""


def _varint(b: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(b) or shift > 63:
            raise ValueError("bad variable-length integer in the index")
        byte = b[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def xz_size(fd: int, file_size: int) -> int:
    """The uncompressed size of an .xz file: every stream's index, read from the end
    (stream padding and concatenated streams included)."""
    end, total = file_size, 0
    while end > 0:
        while end >= 4 and pread(fd, 4, end - 4) == b"\0\0\0\0":  # stream padding
            end -= 4
        if end == 0:
            break
        footer = pread(fd, 12, end - 12)
        if len(footer) != 12 or footer[10:12] != b"YZ":
            raise ValueError("no xz stream footer at the end of the file")
        index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
        index_start = end - 12 - index_size
        index = pread(fd, index_size, index_start)
        if len(index) != index_size or index[0] != 0:
            raise ValueError("no xz index before the stream footer")
        count, pos = _varint(index, 1)
        blocks = 0
        for _ in range(count):
            unpadded, pos = _varint(index, pos)
            uncompressed, pos = _varint(index, pos)
            blocks += (unpadded + 3) // 4 * 4
            total += uncompressed
        end = index_start - blocks - 12  # the stream header
        if end < 0 or pread(fd, 6, end) != XZ.magic:
            raise ValueError("the xz index does not match the stream")
    return total


def _xz_size(fd: int, file_size: int, first: int) -> int:
    return xz_size(fd, file_size)


def _zstd_size(fd: int, file_size: int, first: int) -> int | None:
    import zstandard

    n = zstandard.frame_content_size(pread(fd, 18, first))
    return n if n >= 0 else None


def _lz4_size(fd: int, file_size: int, first: int) -> int | None:
    import lz4.frame

    n = int(lz4.frame.get_frame_info(pread(fd, 19, first)).get("content_size") or 0)
    return n if n > 0 else None


def _gzip_size(fd: int, file_size: int, first: int) -> int | None:
    """ISIZE, the trailer's size modulo 4 GiB: only for files under 4 GiB."""
    if not 18 <= file_size < FOUR_GIB:
        return None
    return int(struct.unpack("<I", pread(fd, 4, file_size - 4))[0])


# --- decoders and compressors (the libraries, imported when used) --------------------


def _gzip_decoder(raw: BinaryIO) -> BinaryIO:
    import gzip

    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def _bzip2_decoder(raw: BinaryIO) -> BinaryIO:
    import bz2

    return bz2.BZ2File(raw)  # type: ignore[return-value]


def _lz4_decoder(raw: BinaryIO) -> BinaryIO:
    import lz4.frame

    return lz4.frame.LZ4FrameFile(raw)  # type: ignore[no-any-return]


def _xz_decompressor() -> Any:
    import lzma

    return lzma.LZMADecompressor(lzma.FORMAT_XZ)


def _zstd_decompressor() -> Any:
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj()


def _zstd_compressor(raw: IO[bytes]) -> IO[bytes]:
    import zstandard

    return zstandard.ZstdCompressor(threads=-1).stream_writer(raw, closefd=True)


def _xz_compressor(raw: IO[bytes]) -> IO[bytes]:
    import lzma

    return lzma.LZMAFile(raw, "wb")


def _gzip_compressor(raw: IO[bytes]) -> IO[bytes]:
    import gzip

    return gzip.GzipFile(fileobj=raw, mode="wb", mtime=0)  # type: ignore[return-value]


# --- the formats -----------------------------------------------------------------------

ZSTD = Format(
    name="zstd",
    magic=b"\x28\xb5\x2f\xfd",
    suffixes=(".zst", ".zstd"),
    size_from="zstd frame header",
    size_is="at least",
    read_size=_zstd_size,
    skippable_frames=True,
    decode_tool=("zstd", "--decompress", "--stdout", "--quiet"),
    new_decompressor=_zstd_decompressor,
    decode_error=("zstandard", "ZstdError"),
    # A frame's blocks decompress to at most 128 KiB each, from as little as 4 bytes:
    # 8 KiB of input is at most 256 MiB of output at once.
    feed=8 << 10,
    compress_tools=(("zstd", "-q", "-T0", "-c"),),
    open_compressor=_zstd_compressor,
)
XZ = Format(
    name="xz",
    magic=b"\xfd7zXZ\x00",
    suffixes=(".xz",),
    size_from="xz index",
    read_size=_xz_size,
    # -T0 decompresses multi-block files on every core
    decode_tool=("xz", "--decompress", "--stdout", "--threads=0", "--quiet"),
    # the standard library's LZMAFile stops at stream padding: streams are decoded one
    # by one instead
    new_decompressor=_xz_decompressor,
    padding=True,
    decode_error=("lzma", "LZMAError"),
    compress_tools=(("xz", "-q", "-T0", "-c"),),
    open_compressor=_xz_compressor,
)
GZIP = Format(
    name="gzip",
    magic=b"\x1f\x8b",
    suffixes=(".gz",),
    size_from="gzip trailer",
    size_is="about",
    read_size=_gzip_size,
    open_decoder=_gzip_decoder,
    compress_tools=(("pigz", "-q", "-c"), ("gzip", "-q", "-c")),
    open_compressor=_gzip_compressor,
)
BZIP2 = Format(name="bzip2", magic=b"BZh", suffixes=(".bz2",), open_decoder=_bzip2_decoder)
LZ4 = Format(
    name="lz4",
    magic=b"\x04\x22\x4d\x18",
    suffixes=(".lz4",),
    size_from="lz4 frame header",
    size_is="at least",
    read_size=_lz4_size,
    skippable_frames=True,
    open_decoder=_lz4_decoder,
)
ZIP = Format(
    name="zip",
    magic=b"PK\x03\x04",
    suffixes=(".zip",),
    size_from="zip entry",
    members=True,
    decode_error=("zipfile", "BadZipFile"),
)

#: every format, those a backup writes first (in the order the help names them)
FORMATS = (ZSTD, XZ, GZIP, BZIP2, LZ4, ZIP)
NAMES = tuple(f.name for f in FORMATS)
#: every compressed suffix (lower case)
SUFFIXES = tuple(s for f in FORMATS for s in f.suffixes)
#: the formats a backup writes
WRITABLE = tuple(f for f in FORMATS if f.writable)

_BY_NAME = {f.name: f for f in FORMATS}


def by_name(name: str) -> Format | None:
    """The format named NAME; None for "raw" or an unknown name."""
    return _BY_NAME.get(name)


def by_magic(head: bytes) -> Format | None:
    """The format whose magic bytes HEAD starts with; None for none."""
    return next((f for f in FORMATS if head.startswith(f.magic)), None)


def by_suffix(name: str) -> Format | None:
    """The format a file NAME's suffix names ('disk.img.XZ': xz); None for none."""
    lower = name.lower()
    return next((f for f in FORMATS if lower.endswith(f.suffixes)), None)


def _is_skippable(head: bytes) -> bool:
    """A zstd/lz4 skippable frame (magic 0x184D2A50-5F, little-endian), as pzstd
    writes first."""
    return len(head) >= 8 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"


def first_frame(fd: int) -> tuple[Format | None, int]:
    """(format, offset of its first real frame) of the file open at FD, past leading
    skippable frames; (None, 0) for a file in no compression format."""
    offset = 0
    for _ in range(16):
        head = pread(fd, 64, offset)
        if not _is_skippable(head):
            fmt = by_magic(head)
            return fmt, offset if fmt is not None and fmt.skippable_frames else 0
        offset += 8 + struct.unpack_from("<I", head, 4)[0]
    return None, 0

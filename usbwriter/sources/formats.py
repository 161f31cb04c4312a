"""What an image file is: raw, or compressed (by its magic bytes, never its name), and
how large the image inside is, where the format says so without decompressing.

xz: the stream index at the end of the file; zstd and lz4: the frame header's content
size; gzip: the trailer's ISIZE (the size modulo 4 GiB, so only for files under
4 GiB); zip: the member's entry. bzip2 does not record it.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass

from usbwriter.errors import BadImage, BadInput, UsbWriterError

MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"PK\x03\x04", "zip"),
)
COMPRESSED = tuple(name for _, name in MAGIC)
FOUR_GIB = 1 << 32


@dataclass(frozen=True)
class SourceInfo:
    """The file as downloaded and the image it holds."""

    path: str
    format: str  # "raw" or one of COMPRESSED
    file_size: int
    size: int | None  # the image's size; None when only decompressing tells
    size_from: str = ""  # where the size came from ("file", "xz index", ...)
    size_is: str = "exact"  # "at least" (zstd, lz4: the first frame's own size; more
    # frames may follow), or "about" (gzip's trailer: modulo 4 GiB, made up by damage)

    @property
    def size_exact(self) -> bool:
        return self.size_is == "exact"

    def may_be(self, size: int) -> bool:
        """Whether the image may be SIZE bytes, as far as its records tell: the same
        size when exact, the same modulo 4 GiB for gzip's trailer, no less for a size
        that is "at least"; any size when none is recorded."""
        if self.size is None:
            return True
        if self.size_is == "about":
            return size % (1 << 32) == self.size % (1 << 32)
        if self.size_is == "at least":
            return size >= self.size
        return size == self.size

    def surely_larger_than(self, limit: int) -> bool:
        """The image is known to be larger than LIMIT bytes."""
        return self.size is not None and self.size > limit and self.size_is != "about"

    member: str | None = None  # zip: the member written
    members: tuple[str, ...] = ()  # zip: every file in the archive

    @property
    def compressed(self) -> bool:
        return self.format != "raw"

    def member_problem(self, name: str) -> UsbWriterError | None:
        """Why no image can be read from this zip archive (named NAME) as asked: no
        file in it, several and none chosen (--member), or the one chosen missing."""
        if self.format != "zip" or (self.member is not None and self.size is not None):
            return None
        if not self.members:
            return BadImage(f"{name}: the zip archive holds no file", path=name)
        listed = ", ".join(self.members[:10]) + (" ..." if len(self.members) > 10 else "")
        if self.member is None:
            return BadInput(
                f"{name}: the zip archive holds several files ({listed}); choose one with "
                "--member NAME",
                path=name,
            )
        return BadInput(f"{name}: no file {self.member!r} in the archive ({listed})", path=name)

    def describe(self) -> str:
        """'4.2 MiB', or 'xz: 1.1 GiB file, 4.0 GiB image' for a compressed one."""
        from usbwriter.units import human_size

        if not self.compressed:
            return human_size(self.file_size)
        inside = (
            f"{'' if self.size_exact else self.size_is + ' '}{human_size(self.size)} image"
            if self.size is not None
            else "image size known once decompressed"
        )
        member = f" {self.member}" if self.member else ""
        return f"{self.format}{member}: {human_size(self.file_size)} file, {inside}"

    def to_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "file_size": self.file_size,
            "size": self.size,
            "size_from": self.size_from,
            "member": self.member,
        }


def detect_format(head: bytes) -> str:
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return "raw"


def _is_skippable(head: bytes) -> bool:
    """A zstd/lz4 skippable frame (magic 0x184D2A50-5F, little-endian), as pzstd
    writes first."""
    return len(head) >= 8 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18"


def _first_frame(fd: int) -> tuple[str, int]:
    """(format, offset of the first real frame), past leading skippable frames."""
    offset = 0
    for _ in range(16):
        head = _pread(fd, 64, offset)
        if not _is_skippable(head):
            return detect_format(head), offset
        offset += 8 + struct.unpack_from("<I", head, 4)[0]
    return "raw", 0


def _pread(fd: int, n: int, offset: int) -> bytes:
    return os.pread(fd, n, offset) if offset >= 0 else b""


def describe(fd: int, path: str, file_size: int, *, member: str | None = None) -> SourceInfo:
    """Read the magic bytes and the size records of the file open at FD."""
    fmt, first = _first_frame(fd)
    if fmt not in ("zstd", "lz4"):
        first = 0
    if fmt == "raw":
        return SourceInfo(path, "raw", file_size, file_size, "file")
    if fmt == "zip":
        return _describe_zip(path, file_size, member)
    size, size_from = None, ""
    try:
        if fmt == "xz":
            size = xz_size(fd, file_size)
            size_from = "xz index"
        elif fmt == "zstd":
            import zstandard

            n = zstandard.frame_content_size(_pread(fd, 18, first))
            if n < 0:
                return SourceInfo(path, fmt, file_size, None)
            return SourceInfo(path, fmt, file_size, n, "zstd frame header", size_is="at least")
        elif fmt == "lz4":
            import lz4.frame

            n = int(lz4.frame.get_frame_info(_pread(fd, 19, first)).get("content_size") or 0)
            if n <= 0:
                return SourceInfo(path, fmt, file_size, None)
            return SourceInfo(path, fmt, file_size, n, "lz4 frame header", size_is="at least")
        elif fmt == "gzip" and file_size < FOUR_GIB and file_size >= 18:
            size = struct.unpack("<I", _pread(fd, 4, file_size - 4))[0]
            return SourceInfo(path, fmt, file_size, size, "gzip trailer", size_is="about")
    except (ValueError, RuntimeError, struct.error, OSError) as e:
        raise BadImage(f"{path}: not a valid {fmt} file ({e})", path=path) from None
    return SourceInfo(path, fmt, file_size, size, size_from)


def _describe_zip(path: str, file_size: int, member: str | None) -> SourceInfo:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise BadImage(f"{path}: not a valid zip file ({e})", path=path) from None
    names = tuple(i.filename for i in infos)
    if member is None and len(infos) == 1:
        member = infos[0].filename
    chosen = next((i for i in infos if i.filename == member), None)
    size = chosen.file_size if chosen is not None else None
    return SourceInfo(
        path, "zip", file_size, size, "zip entry" if chosen else "", member=member, members=names
    )


# --- the xz index ---------------------------------------------------------------------


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
        while end >= 4 and _pread(fd, 4, end - 4) == b"\0\0\0\0":  # stream padding
            end -= 4
        if end == 0:
            break
        footer = _pread(fd, 12, end - 12)
        if len(footer) != 12 or footer[10:12] != b"YZ":
            raise ValueError("no xz stream footer at the end of the file")
        index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
        index_start = end - 12 - index_size
        index = _pread(fd, index_size, index_start)
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
        if end < 0 or _pread(fd, 6, end) != b"\xfd7zXZ\x00":
            raise ValueError("the xz index does not match the stream")
    return total

"""What an image file is: raw, or compressed (by its magic bytes, never its name), and
how large the image inside is, where the format says so without decompressing.

The formats and where each records the size are in ``usbwriter.compression``: xz: the
stream index at the end of the file; zstd and lz4: the frame header's content size;
gzip: the trailer's ISIZE (the size modulo 4 GiB, so only for files under 4 GiB); zip:
the member's entry. bzip2 does not record it.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass

from usbwriter.compression import NAMES, ZIP, by_magic, by_name, first_frame, xz_size
from usbwriter.errors import BadImage, BadInput, UsbWriterError

COMPRESSED = NAMES


@dataclass(frozen=True)
class SourceInfo:
    """The file as downloaded and the image it holds."""

    path: str
    format: str  # "raw" or a compression format's name (usbwriter.compression)
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
        fmt = by_name(self.format)
        if fmt is None or not fmt.members or (self.member is not None and self.size is not None):
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
    fmt = by_magic(head)
    return "raw" if fmt is None else fmt.name


def describe(fd: int, path: str, file_size: int, *, member: str | None = None) -> SourceInfo:
    """Read the magic bytes and the size records of the file open at FD."""
    fmt, first = first_frame(fd)
    if fmt is None:
        return SourceInfo(path, "raw", file_size, file_size, "file")
    if fmt.members:
        return _describe_zip(path, file_size, member)
    if fmt.read_size is None:
        return SourceInfo(path, fmt.name, file_size, None)
    try:
        size = fmt.read_size(fd, file_size, first)
    except (ValueError, RuntimeError, struct.error, OSError) as e:
        raise BadImage(f"{path}: not a valid {fmt.name} file ({e})", path=path) from None
    if size is None:
        return SourceInfo(path, fmt.name, file_size, None)
    return SourceInfo(path, fmt.name, file_size, size, fmt.size_from, size_is=fmt.size_is)


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
        path,
        ZIP.name,
        file_size,
        size,
        ZIP.size_from if chosen else "",
        member=member,
        members=names,
    )


__all__ = ["COMPRESSED", "SourceInfo", "describe", "detect_format", "xz_size"]

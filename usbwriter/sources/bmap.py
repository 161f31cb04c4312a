"""bmaptool's block maps: which byte ranges of a sparse image hold data, and their checksums.

``read_bmap(path)`` reads a bmap file (format versions 1.0 to 2.x, as ``bmaptool create``
writes them) into a frozen ``Bmap``, checking the file's own checksum and everything the
ranges promise (in order, inside the image) before anyone relies on them. The file is
input from the internet: it is opened without blocking, limited in size, refused if it
declares a DOCTYPE or entities, and parsed as it streams so memory stays bounded.

``find_bmap(image)`` finds the bmap beside an image as bmaptool does; ``mapped_parts``
says which parts of a stretch of the image are mapped; ``RangeHasher`` checks each
range's checksum as the image's bytes go by, in any chunks.

Format versions: 1.0-1.3 have SHA1 checksums in a ``sha1`` attribute of each Range
(1.3 adds MappedBlocksCount and BmapFileSHA1); 1.4 (released by mistake) and 2.x name
the hash in ChecksumType and put it in ``chksum`` attributes and BmapFileChecksum.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import os
import re
import stat
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload
from xml.parsers import expat

from usbwriter.compression import SUFFIXES
from usbwriter.errors import BadImage, BadInput, InternalError, Refused, os_error
from usbwriter.sources.files import KIND_WORDS, kind_of, open_without_blocking

log = logging.getLogger(__name__)

MAX_BMAP_BYTES = 64 << 20
MAX_RANGES = 1 << 20
MAX_DEPTH = 8  # bmap > BlockMap > Range is 3
MAX_IMAGE_SIZE = 1 << 50  # 1 PiB
MIN_BLOCK_SIZE = 512
MAX_BLOCK_SIZE = 64 << 20
#: hashlib names a bmap may use (bmaptool writes sha256; 1.x files sha1)
CHECKSUM_TYPES = ("sha1", "sha224", "sha256", "sha384", "sha512")

_NUMBER = re.compile(r"\d{1,20}")
_VERSION = re.compile(r"(\d{1,4})\.(\d{1,4})")
_RANGE = re.compile(r"\s*(\d{1,20})\s*(?:-\s*(\d{1,20})\s*)?")
_HEX = re.compile(r"[0-9a-f]+")
# Any markup declaration but a comment or CDATA: DOCTYPE, ENTITY, ELEMENT, ATTLIST...
_DECLARATION = re.compile(rb"<!(?!--|\[CDATA\[)")

_HEADERS = (
    "ImageSize",
    "BlockSize",
    "BlocksCount",
    "MappedBlocksCount",
    "ChecksumType",
    "BmapFileChecksum",
    "BmapFileSHA1",
)


@dataclass(frozen=True, slots=True)
class BmapRange:
    """A mapped stretch of the image, in bytes, with its checksum from the bmap."""

    first: int  # byte offset
    length: int  # bytes (the last range may end at image_size, not on a block boundary)
    checksum: str | None  # hex, lower case

    @property
    def end(self) -> int:
        """The offset just past the range."""
        return self.first + self.length


class Ranges(Sequence[BmapRange]):
    """Mapped ranges stored compactly (offsets and lengths in arrays, checksums as
    bytes: about 90 bytes a range, where objects took 700), read as ``BmapRange``
    objects made on demand. A bmap may hold a million ranges."""

    def __init__(self, ranges: Iterable[BmapRange] = ()) -> None:
        self._first = array("q")
        self._length = array("q")
        self._sums: list[bytes | None] = []
        for r in ranges:
            self.append(r.first, r.length, bytes.fromhex(r.checksum) if r.checksum else None)

    def append(self, first: int, length: int, checksum: bytes | None) -> None:
        self._first.append(first)
        self._length.append(length)
        self._sums.append(checksum)

    def __len__(self) -> int:
        return len(self._first)

    @overload
    def __getitem__(self, index: int) -> BmapRange: ...

    @overload
    def __getitem__(self, index: slice) -> Ranges: ...

    def __getitem__(self, index: int | slice) -> BmapRange | Ranges:
        if isinstance(index, slice):
            return Ranges(self[i] for i in range(*index.indices(len(self))))
        digest = self._sums[index]
        return BmapRange(self._first[index], self._length[index], digest.hex() if digest else None)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ranges):
            return (self._first, self._length, self._sums) == (
                other._first,
                other._length,
                other._sums,
            )
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    @property
    def total(self) -> int:
        return sum(self._length)

    def __repr__(self) -> str:
        return f"Ranges({len(self)} ranges, {self.total} bytes)"


@dataclass(frozen=True)
class Bmap:
    """A bmap file as read and checked by ``read_bmap``."""

    path: str
    version: str  # e.g. "2.0"
    image_size: int  # bytes
    block_size: int
    blocks: int
    mapped_blocks: int
    checksum_type: str  # "sha1" or "sha256" (hashlib names)
    ranges: Sequence[BmapRange]  # sorted, non-overlapping, each as in the file
    #: (algorithm, hex) of the bytes of the file as read, for a sums file that lists it
    file_digests: tuple[tuple[str, str], ...] = ()

    def digest(self, alg: str) -> str:
        """The ALG digest of the bmap file's bytes as they were read ("" if not taken)."""
        return dict(self.file_digests).get(alg, "")

    @property
    def mapped_bytes(self) -> int:
        if isinstance(self.ranges, Ranges):
            return self.ranges.total
        return sum(r.length for r in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "version": self.version,
            "image_size": self.image_size,
            "block_size": self.block_size,
            "mapped_bytes": self.mapped_bytes,
            "ranges": len(self.ranges),
            "checksum_type": self.checksum_type,
        }


# ---------------------------------------------------------------- reading


def _bad(path: str, why: str) -> BadImage:
    return BadImage(f"{path}: not a usable bmap file: {why}", path=path)


def _read_file(path: str) -> bytes:
    """The bytes of the regular file at PATH, opened without blocking (a FIFO, a
    directory, a socket or a device is refused with BadInput) and at most
    MAX_BMAP_BYTES long."""
    fd, st = open_without_blocking(path, "open the bmap file", _not_a_bmap)
    try:
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_bmap(path, kind_of(st.st_mode))
        if st.st_size > MAX_BMAP_BYTES:
            raise _bad(path, f"{st.st_size} bytes is too large (at most {MAX_BMAP_BYTES})")
        chunks: list[bytes] = []
        total = 0
        while True:
            try:
                chunk = os.read(fd, (1 << 20))
            except OSError as e:
                raise os_error(path, e, "read the bmap file", offset=total) from None
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_BMAP_BYTES:  # grew since fstat
                raise _bad(path, f"larger than {MAX_BMAP_BYTES} bytes")
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _not_a_bmap(path: str, kind: str) -> BadInput:
    return BadInput(f"{path}: is {KIND_WORDS.get(kind, kind)}, not a bmap file", path=path)


def _number(path: str, name: str, text: str | None) -> int:
    value = (text or "").strip()
    if not _NUMBER.fullmatch(value):
        raise _bad(path, f"<{name}> is {value[:40]!r}, not a number")
    return int(value)


class _Parsed:
    """What the XML says, before it is checked: headers' texts and raw block ranges
    (first and last block in arrays, each range's checksum attribute as written)."""

    def __init__(self) -> None:
        self.version = ""
        self.headers: dict[str, str] = {}
        self.block_map = False
        self.firsts = array("q")
        self.lasts = array("q")
        self.sums: list[bytes | None] = []
        self.attribute = "chksum"  # where a Range's checksum is: sha1 in 1.0-1.3


def _parse(path: str, data: bytes) -> _Parsed:
    """Read the XML with expat's callbacks, keeping only the headers' texts and each
    Range's blocks and checksum as it ends (no element tree is built), so that memory
    follows the ranges, not the file."""
    out = _Parsed()
    # The declared encoding is overridden: a document in UTF-16 (say) cannot hide a
    # declaration from the byte search in read_bmap; bmaptool writes ASCII.
    parser = expat.ParserCreate(encoding="utf-8")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    tags: list[str] = []
    text: list[str] = []
    wanted = 0  # the depth whose text is being kept (a header's or a Range's), or 0
    count = 0
    checksum: str | None = None

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal wanted, count, checksum
        tags.append(tag)
        depth = len(tags)
        count += 1
        if depth > MAX_DEPTH:
            raise _bad(path, f"elements nested more than {MAX_DEPTH} deep")
        if count > MAX_RANGES + 100:
            raise _bad(path, f"more than {MAX_RANGES + 100} elements")
        if depth == 1:
            if tag != "bmap":
                raise _bad(path, f"its root element is <{tag}>, not <bmap>")
            out.version = attrs.get("version", "")
            vm = _VERSION.fullmatch(out.version.strip())
            if vm is not None and int(vm.group(1)) == 1 and int(vm.group(2)) < 4:
                out.attribute = "sha1"
        elif depth == 2 and tag == "BlockMap":
            if out.block_map:
                raise _bad(path, "more than one <BlockMap>")
            out.block_map = True
        elif (depth == 2 and tag in _HEADERS) or (
            depth == 3 and tag == "Range" and tags[1] == "BlockMap"
        ):
            wanted, checksum = depth, attrs.get(out.attribute)
            text.clear()

    def chars(data: str) -> None:
        if wanted and len(tags) == wanted:  # text directly inside, as ElementTree's .text
            text.append(data)

    def end(tag: str) -> None:
        nonlocal wanted
        depth = len(tags)
        tags.pop()
        if not wanted or depth != wanted:
            return
        wanted = 0
        value = "".join(text)
        if depth == 2:
            if tag in out.headers:
                raise _bad(path, f"more than one <{tag}>")
            out.headers[tag] = value
            return
        first, last = _range_blocks(path, value)
        out.firsts.append(first)
        out.lasts.append(last)
        out.sums.append(_range_checksum(path, first, last, checksum))

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise _bad(
            path,
            f"not well-formed XML ({expat.errors.messages[e.code]}: line "
            f"{e.lineno}, column {e.offset})",
        ) from None
    return out


def _range_blocks(path: str, text: str) -> tuple[int, int]:
    m = _RANGE.fullmatch(text)
    if m is None:
        raise _bad(path, f"a <Range> reads {text.strip()[:40]!r}, not 'first-last' or 'n'")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    if last < first:
        raise _bad(path, f"the range of blocks {first}-{last} ends before it starts")
    if last >= 1 << 62:
        raise _bad(path, f"the range of blocks {first}-{last} is past any image's end")
    return first, last


def _range_checksum(path: str, first: int, last: int, text: str | None) -> bytes | None:
    if text is None:
        return None
    value = text.strip().lower()
    if not value or len(value) % 2 or not _HEX.fullmatch(value):
        raise _bad(
            path,
            f"the range of blocks {first}-{last} has checksum {value[:80]!r}, "
            "not a checksum in hex",
        )
    return bytes.fromhex(value)


def _checksum_type(path: str, major: int, minor: int, headers: dict[str, str]) -> str:
    if major == 1 and minor < 4:
        return "sha1"
    if "ChecksumType" not in headers:
        raise _bad(path, "no <ChecksumType>")
    name = headers["ChecksumType"].strip().lower()
    if name not in CHECKSUM_TYPES:
        raise _bad(
            path, f"unknown checksum type {name[:40]!r} (known: {', '.join(CHECKSUM_TYPES)})"
        )
    return name


def _check_file_checksum(path: str, data: bytes, checksum_type: str, text: str) -> None:
    """The bmap file's checksum over the file with the checksum written as zeroes, as
    bmaptool computes it (the first occurrence of the value is the one zeroed)."""
    stored = text.strip()
    width = len(hashlib.new(checksum_type).hexdigest())
    if len(stored) != width or not _HEX.fullmatch(stored.lower()):
        raise _bad(path, f"its own checksum {stored[:80]!r} is not a {checksum_type} in hex")
    at = data.find(stored.encode("ascii"))
    if at < 0:  # cannot be: the text came from the data
        raise InternalError(f"{path}: the bmap's own checksum is not in its bytes")
    h = hashlib.new(checksum_type)
    view = memoryview(data)
    h.update(view[:at])
    h.update(b"0" * width)
    h.update(view[at + width :])
    computed = h.hexdigest()
    if computed != stored.lower():
        raise BadImage(
            f"{path}: the bmap file is damaged or was edited: its {checksum_type} is "
            f"{computed}, the file says {stored.lower()}",
            path=path,
        )


def read_bmap(path: str) -> Bmap:
    """Read and check the bmap file at PATH.

    BadInput for a path that is missing, unreadable or not a regular file (a FIFO or a
    directory is refused without blocking); BadImage for anything wrong with the file:
    not XML, a DOCTYPE or entity declaration, a format version other than 1.x or 2.x,
    missing elements, sizes that disagree or are absurd, ranges out of order, overlapping
    or past the image's end, an unknown checksum type, or a wrong checksum of the file.
    """
    data = _read_file(path)
    if not data.strip():
        raise _bad(path, "the file is empty")
    # UTF-8 only (bmaptool writes ASCII): expat believes a UTF-16 byte order mark over
    # the encoding it is given, and in UTF-16 a declaration would hide from the search.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _bad(path, f"not UTF-8 text (byte {e.start})") from None
    if b"\0" in data:
        raise _bad(path, f"not text (a NUL byte at {data.index(0)})")
    m = _DECLARATION.search(data)
    if m is not None:
        what = data[m.start() : m.start() + 10].decode("ascii", "replace")
        raise _bad(path, f"it has a markup declaration ({what!r}...), which bmap files never do")
    parsed = _parse(path, data)

    vm = _VERSION.fullmatch(parsed.version.strip())
    if vm is None:
        raise _bad(path, f"its format version is {parsed.version[:20]!r}, not 'major.minor'")
    major, minor = int(vm.group(1)), int(vm.group(2))
    version = f"{major}.{minor}"
    if not 1 <= major <= 2:
        raise _bad(path, f"format version {version} is not supported (1.x and 2.x are)")

    h = parsed.headers
    for name in ("ImageSize", "BlockSize", "BlocksCount"):
        if name not in h:
            raise _bad(path, f"no <{name}>")
    if not parsed.block_map:
        raise _bad(path, "no <BlockMap>")
    image_size = _number(path, "ImageSize", h["ImageSize"])
    block_size = _number(path, "BlockSize", h["BlockSize"])
    blocks = _number(path, "BlocksCount", h["BlocksCount"])
    if not 0 < image_size <= MAX_IMAGE_SIZE:
        raise _bad(path, f"an image size of {image_size} bytes")
    if not MIN_BLOCK_SIZE <= block_size <= MAX_BLOCK_SIZE:
        raise _bad(path, f"a block size of {block_size} bytes")
    if blocks != -(-image_size // block_size):
        raise _bad(
            path,
            f"{blocks} blocks of {block_size} bytes do not make an image of {image_size} bytes",
        )

    checksum_type = _checksum_type(path, major, minor, h)
    old = major == 1 and minor < 4
    own = h.get("BmapFileSHA1" if old else "BmapFileChecksum")
    if own is not None:
        _check_file_checksum(path, data, checksum_type, own)

    width = hashlib.new(checksum_type).digest_size
    ranges = Ranges()
    mapped = 0
    next_block = 0
    for first, last, checksum in zip(parsed.firsts, parsed.lasts, parsed.sums, strict=True):
        if first < next_block:
            raise _bad(
                path,
                f"the range of blocks {first}-{last} overlaps or comes before the one "
                f"ending at block {next_block - 1}",
            )
        if last >= blocks:
            raise _bad(
                path,
                f"the range of blocks {first}-{last} goes past the image's end "
                f"(block {blocks - 1})",
            )
        if checksum is not None and len(checksum) != width:
            raise _bad(
                path,
                f"the range of blocks {first}-{last} has checksum {checksum.hex()[:80]!r}, "
                f"not a {checksum_type} in hex",
            )
        start = first * block_size
        end = min((last + 1) * block_size, image_size)
        ranges.append(start, end - start, checksum)
        mapped += last - first + 1
        next_block = last + 1
    del parsed

    if "MappedBlocksCount" in h:
        mapped_blocks = _number(path, "MappedBlocksCount", h["MappedBlocksCount"])
        if mapped_blocks != mapped:
            raise _bad(
                path, f"<MappedBlocksCount> says {mapped_blocks} but its ranges hold {mapped}"
            )
    elif major == 1 and minor < 3:
        mapped_blocks = mapped
    else:
        raise _bad(path, "no <MappedBlocksCount>")

    bmap = Bmap(
        path=path,
        version=version,
        image_size=image_size,
        block_size=block_size,
        blocks=blocks,
        mapped_blocks=mapped_blocks,
        checksum_type=checksum_type,
        ranges=ranges,
        file_digests=_file_digests(data),
    )
    log.debug(
        "bmap %s: version %s, %d bytes, %d ranges, %d bytes mapped, %s",
        path,
        version,
        image_size,
        len(ranges),
        bmap.mapped_bytes,
        checksum_type if any(r.checksum for r in ranges) else "no checksums",
    )
    return bmap


def _file_digests(data: bytes) -> tuple[tuple[str, str], ...]:
    """Digests of the bmap's bytes in every algorithm a sums file may list it with."""
    import blake3

    out = [(alg, hashlib.new(alg, data).hexdigest()) for alg in ("sha512", "sha256", "sha1", "md5")]
    return (*out, ("blake3", str(blake3.blake3(data).hexdigest())))


# ---------------------------------------------------------------- finding and checking


def find_bmap(image: str) -> str | None:
    """The bmap beside IMAGE as bmaptool looks for it: IMAGE.bmap, then, for a
    compressed name, the name without its compression suffix (any format's in
    ``usbwriter.compression``, spelt in lower case) and with .bmap (disk.img.xz:
    disk.img.xz.bmap, then disk.img.bmap). Only a regular file (or a
    symbolic link to one) counts; None when there is none."""
    candidates = [image + ".bmap"]
    for suffix in SUFFIXES:
        stem = image[: -len(suffix)]
        if image.endswith(suffix) and stem and not stem.endswith("/"):
            candidates.append(stem + ".bmap")
            break
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode):
            return candidate
    return None


def mapped_parts(ranges: Sequence[BmapRange], offset: int, length: int) -> list[tuple[int, int]]:
    """The (offset, length) parts of [OFFSET, OFFSET+LENGTH) that RANGES (sorted, not
    overlapping) map, in order; parts that touch are joined into one."""
    end = offset + length
    parts: list[tuple[int, int]] = []
    if length <= 0:
        return parts
    i = max(bisect.bisect_right(ranges, offset, key=lambda r: r.first) - 1, 0)
    while i < len(ranges):
        r = ranges[i]
        if r.first >= end:
            break
        lo, hi = max(r.first, offset), min(r.end, end)
        if lo < hi:
            if parts and parts[-1][0] + parts[-1][1] == lo:
                parts[-1] = (parts[-1][0], hi - parts[-1][0])
            else:
                parts.append((lo, hi - lo))
        i += 1
    return parts


# ---------------------------------------------------------------- checking the image


class RangeHasher:
    """Checks the image's mapped ranges against the bmap's checksums as its bytes pass.

    ``feed(offset, data)`` takes the image's bytes in order from offset 0, in chunks of
    any size (a chunk may span ranges and the holes between them), and raises Refused
    as soon as a range is complete and its checksum is not the bmap's. ``finish()``
    raises BadImage if the image ended before the last mapped byte. Ranges without a
    checksum are only tracked. Slices of the memoryview are hashed, never copied;
    hashlib releases the GIL while it hashes.
    """

    def __init__(self, bmap: Bmap, image_name: str | None = None) -> None:
        self.bmap = bmap
        self.image_name = image_name or "the image"
        self.position = 0  # the next offset expected
        self.checked = 0  # ranges whose checksum matched
        self._ranges = bmap.ranges
        self._index = 0  # the range being hashed, or the next one
        self._hash: Any = None  # the hash of the range at _index once it has begun

    def feed(self, offset: int, data: memoryview | bytes) -> None:
        """The image's bytes at OFFSET: in order, and only unmapped bytes may be skipped
        (an image read only where its bmap maps)."""
        if offset != self.position and (
            offset < self.position or self._maps(self.position, offset)
        ):
            raise InternalError(
                f"{self.image_name}: bytes at offset {offset} given to the bmap check, "
                f"which expected offset {self.position}",
                offset=offset,
            )
        end = offset + len(data)
        if end > self.bmap.image_size:
            raise Refused(
                f"{self.image_name}: its bmap {self.bmap.path} says the image is "
                f"{self.bmap.image_size} bytes, but it is longer; wrong bmap?",
                path=self.image_name,
                offset=self.bmap.image_size,
            )
        view = data if isinstance(data, memoryview) else memoryview(data)
        ranges = self._ranges
        pos = offset
        while self._index < len(ranges):
            r = ranges[self._index]
            if r.first >= end:
                break
            r_end = r.first + r.length
            lo = max(pos, r.first)
            hi = min(r_end, end)
            if r.checksum is not None:
                if self._hash is None:
                    self._hash = hashlib.new(self.bmap.checksum_type)
                self._hash.update(view[lo - offset : hi - offset])
            if hi < r_end:
                break  # the range goes on in the next chunk
            self._complete(r)
            pos = hi
        self.position = end

    def _maps(self, lo: int, hi: int) -> bool:
        """Whether a range not yet complete has bytes in [lo, hi)."""
        if self._index >= len(self._ranges):
            return False
        r = self._ranges[self._index]
        return r.first < hi and r.end > lo

    def _complete(self, r: BmapRange) -> None:
        digest = self._hash.hexdigest() if self._hash is not None else None
        self._hash = None
        self._index += 1
        if r.checksum is None:
            return
        if digest != r.checksum:
            raise Refused(
                f"{self.image_name}: does not match its bmap {self.bmap.path}: the range at "
                f"bytes {r.first}-{r.end - 1} has {self.bmap.checksum_type} {digest}, "
                f"the bmap says {r.checksum}",
                path=self.image_name,
                offset=r.first,
            )
        self.checked += 1

    def finish(self) -> None:
        """BadImage if a mapped range was not complete when the image ended."""
        if self._index < len(self._ranges):
            r = self._ranges[self._index]
            raise BadImage(
                f"{self.image_name}: ends at byte {self.position}, but its bmap "
                f"{self.bmap.path} maps bytes {r.first}-{r.end - 1}; the image is "
                "truncated or the bmap is not its own",
                path=self.image_name,
                offset=self.position,
            )

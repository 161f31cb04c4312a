"""usbwriter.sources.bmap against bmaptool: sparse images and a real ext4 made in the test,
their bmaps made by ``bmaptool create``, and bmaptool's own test data for format versions
1.2, 1.3, 1.4 and 2.0 (tests/unit/data/bmap, see its README). The ranges read are checked
against the image's data extents (SEEK_DATA) and the bmap's text; the range checksums
against the image, as ``bmaptool copy`` checks them; every refusal against a bmap built
to have exactly that one fault."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from usbwriter.jobs.model import TargetFacts

import pytest

from usbwriter.errors import (
    EXIT_FAILED,
    EXIT_REFUSED,
    EXIT_USAGE,
    BadImage,
    BadInput,
    InternalError,
    Refused,
    UsbWriterError,
    exit_code_of,
)
from usbwriter.sources.bmap import (
    BmapRange,
    RangeHasher,
    find_bmap,
    mapped_parts,
    read_bmap,
)

MiB = 1 << 20
DATA = Path(__file__).parent / "data" / "bmap"
VERSIONS = ("1.2", "1.3", "1.4", "2.0")
SPARSE_SIZE = 8 * MiB + 1234  # the last block is a partial one
#: (offset, length) of the random data written into the sparse image
SPARSE_WRITES = ((0, 4096 + 100), (MiB, 64 << 10), (5 * MiB + 3000, 10000), (8 * MiB + 1000, 100))


def sh(*argv: str) -> str:
    env = dict(os.environ, LC_ALL="C")
    done = subprocess.run(argv, check=True, text=True, capture_output=True, env=env)
    return done.stdout + done.stderr


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/lib/setup.sh installs it)")


def bmaptool_create(image: Path) -> Path:
    need("bmaptool")
    out = image.with_name(image.name + ".bmap")
    sh("bmaptool", "create", "-o", str(out), str(image))
    return out


def data_extents(path: Path) -> list[tuple[int, int]]:
    """The (start, end) byte stretches of PATH that hold data, by SEEK_DATA/SEEK_HOLE."""
    out: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: no data after pos
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out


def blocks_of(extents: list[tuple[int, int]], block_size: int) -> set[int]:
    return {b for start, end in extents for b in range(start // block_size, -(-end // block_size))}


def ranges_in_text(text: str) -> list[tuple[int, int, str | None]]:
    """The Ranges of a bmap as its text has them (not through ElementTree)."""
    out: list[tuple[int, int, str | None]] = []
    for attrs, body in re.findall(r"<Range([^>]*)>([^<]*)</Range>", text):
        m = re.search(r'(?:chksum|sha1)="([0-9a-f]+)"', attrs)
        first, _, last = body.strip().partition("-")
        out.append((int(first), int(last or first), m.group(1) if m else None))
    return out


def feed_file(hasher: RangeHasher, path: Path, chunk: int = 4 * MiB) -> None:
    buf = bytearray(chunk)
    view = memoryview(buf)
    offset = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            hasher.feed(offset, view[:n])
            offset += n
    hasher.finish()


def feed_bytes(hasher: RangeHasher, data: bytes, sizes: Iterator[int]) -> None:
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        n = next(sizes)
        hasher.feed(offset, view[offset : offset + n])
        offset += len(view[offset : offset + n])
    hasher.finish()


def random_sizes(seed: int, top: int) -> Iterator[int]:
    rng = random.Random(seed)
    while True:
        yield rng.choice((0, 1, 7, 4095, 4096, 4097, rng.randrange(1, top)))


def write_bmap(
    path: Path,
    ranges: list[str],
    *,
    image_size: int = 10 * 4096,
    block_size: int = 4096,
    blocks: int | None = None,
    mapped: int | str | None = None,
    version: str = "2.0",
    checksum_type: str = "sha256",
    own_checksum: bool = True,
    before_root: str = "",
    drop: tuple[str, ...] = (),
) -> Path:
    """A bmap as bmaptool writes it (its own checksum computed the same way), with RANGES
    as the texts of its Range elements, which may carry attributes: 'chksum="..."> 1-2'.
    Everything else is consistent unless given otherwise."""
    if blocks is None:
        blocks = -(-image_size // block_size)
    if mapped is None:
        mapped = 0
        for r in ranges:
            first, _, last = r.rpartition(">")[2].strip().partition("-")
            mapped += int(last or first) - int(first) + 1
    old = version in ("1.0", "1.1", "1.2", "1.3")
    width = len(hashlib.new(checksum_type).hexdigest())
    own_tag = "BmapFileSHA1" if old else "BmapFileChecksum"
    fields = {
        "ImageSize": str(image_size),
        "BlockSize": str(block_size),
        "BlocksCount": str(blocks),
        "MappedBlocksCount": str(mapped),
        "ChecksumType": "" if old else checksum_type,
        own_tag: "0" * width if own_checksum else "",
    }
    xml = f'<?xml version="1.0" ?>\n{before_root}<!-- a bmap -->\n<bmap version="{version}">\n'
    for tag, value in fields.items():
        if value and tag not in drop:
            xml += f"    <{tag}> {value} </{tag}>\n"
    if "BlockMap" not in drop:
        xml += "    <BlockMap>\n"
        for r in ranges:
            xml += f"        <Range{' ' if '>' in r else '>'}{r} </Range>\n"
        xml += "    </BlockMap>\n"
    xml += "</bmap>\n"
    if own_checksum and own_tag not in drop:
        digest = hashlib.new(checksum_type, xml.encode()).hexdigest()
        xml = xml.replace("0" * width, digest, 1)
    path.write_text(xml)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------ images and their bmaps


@pytest.fixture(scope="module")
def sparse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sparse image with data at a few offsets, some not block-aligned, one in its
    last (partial) block; its bmap beside it (sparse.img.bmap) by bmaptool create."""
    need("truncate", "dd", "bmaptool")
    d = tmp_path_factory.mktemp("bmap-sparse")
    image = d / "sparse.img"
    sh("truncate", "-s", str(SPARSE_SIZE), str(image))
    rng = random.Random(7)
    for i, (offset, length) in enumerate(SPARSE_WRITES):
        chunk = d / f"chunk{i}"
        chunk.write_bytes(rng.randbytes(length))
        dd = ["dd", f"if={chunk}", f"of={image}", "conv=notrunc", "oflag=seek_bytes"]
        sh(*dd, f"seek={offset}", "status=none")
    bmaptool_create(image)
    return image


@pytest.fixture(scope="module")
def ext4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 MiB sparse file made an ext4 by mkfs.ext4 -d with a few files; its bmap by
    bmaptool create."""
    need("truncate", "mkfs.ext4", "bmaptool")
    d = tmp_path_factory.mktemp("bmap-ext4")
    tree = d / "tree"
    (tree / "sub").mkdir(parents=True)
    rng = random.Random(8)
    (tree / "big").write_bytes(rng.randbytes(5 * MiB + 17))
    (tree / "small").write_bytes(rng.randbytes(300_001))
    (tree / "sub" / "note.txt").write_text("hello\n")
    image = d / "ext4.img"
    sh("truncate", "-s", "64M", str(image))
    sh("mkfs.ext4", "-q", "-F", "-d", str(tree), str(image))
    bmaptool_create(image)
    return image


@pytest.fixture(scope="module")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bmaptool's test.image, decompressed."""
    path = tmp_path_factory.mktemp("bmap-data") / "test.image"
    path.write_bytes(gzip.decompress((DATA / "test.image.gz").read_bytes()))
    return path


# ------------------------------------------------------------ reading what bmaptool wrote


@pytest.mark.parametrize("which", ["sparse", "ext4"])
def test_reads_the_ranges_bmaptool_created(which: str, request: pytest.FixtureRequest) -> None:
    image: Path = request.getfixturevalue(which)
    bmap_path = image.with_name(image.name + ".bmap")
    bmap = read_bmap(str(bmap_path))
    size = image.stat().st_size
    text = bmap_path.read_text()

    assert bmap.path == str(bmap_path)
    assert bmap.version == "2.0"
    assert bmap.checksum_type == "sha256"
    assert bmap.image_size == size
    assert bmap.block_size == int(re.findall(r"<BlockSize> (\d+) ", text)[0])
    assert bmap.blocks == -(-size // bmap.block_size)
    bs = bmap.block_size

    # The ranges are those in the text, with their checksums, in bytes.
    expected = [
        BmapRange(first * bs, min((last + 1) * bs, size) - first * bs, checksum)
        for first, last, checksum in ranges_in_text(text)
    ]
    assert list(bmap.ranges) == expected
    assert all(r.checksum is not None and len(r.checksum) == 64 for r in bmap.ranges)
    assert bmap.mapped_blocks == int(re.findall(r"<MappedBlocksCount> (\d+) ", text)[0])
    assert bmap.mapped_blocks == sum(-(-r.length // bs) for r in bmap.ranges)

    # ... and they are the blocks of the image that hold data.
    mapped = {b for r in bmap.ranges for b in range(r.first // bs, -(-r.end // bs))}
    assert mapped == blocks_of(data_extents(image), bs)
    assert bmap.mapped_bytes == sum(r.length for r in bmap.ranges)
    assert bmap.to_dict() == {
        "path": str(bmap_path),
        "version": "2.0",
        "image_size": size,
        "block_size": bs,
        "mapped_bytes": bmap.mapped_bytes,
        "ranges": len(bmap.ranges),
        "checksum_type": "sha256",
    }
    if which == "sparse":
        # The last range ends at the image's end, inside its last block.
        assert bmap.ranges[-1].end == size
        assert size % bs != 0
        assert len(bmap.ranges) == len(SPARSE_WRITES)


@pytest.mark.parametrize("which", ["sparse", "ext4"])
def test_range_hasher_passes_the_real_image(which: str, request: pytest.FixtureRequest) -> None:
    image: Path = request.getfixturevalue(which)
    bmap = read_bmap(str(image) + ".bmap")
    hasher = RangeHasher(bmap, str(image))
    feed_file(hasher, image)
    assert hasher.checked == len(bmap.ranges)
    assert hasher.position == bmap.image_size

    # In chunks of every odd size, spanning ranges and holes.
    data = image.read_bytes()
    hasher = RangeHasher(bmap, str(image))
    feed_bytes(hasher, data, random_sizes(1, 3 * bmap.block_size))
    assert hasher.checked == len(bmap.ranges)


@pytest.mark.parametrize("version", VERSIONS)
def test_reads_bmaptools_test_data(version: str, test_image: Path) -> None:
    """bmaptool's own bmaps of each format version; the image matches their checksums
    (sha1 in 1.2 and 1.3, sha256 in 1.4 and 2.0)."""
    path = DATA / f"test.image.bmap.v{version}"
    bmap = read_bmap(str(path))
    text = path.read_text()
    assert bmap.version == version
    assert bmap.image_size == test_image.stat().st_size == 821752
    assert (bmap.block_size, bmap.blocks, bmap.mapped_blocks) == (4096, 201, 117)
    assert bmap.checksum_type == ("sha1" if version in ("1.2", "1.3") else "sha256")
    assert [(r.first // 4096, (r.end - 1) // 4096, r.checksum) for r in bmap.ranges] == (
        ranges_in_text(text)
    )
    assert len(bmap.ranges) == 48
    assert bmap.mapped_bytes == 117 * 4096

    hasher = RangeHasher(bmap, "test.image")
    feed_bytes(hasher, test_image.read_bytes(), random_sizes(2, 50_000))
    assert hasher.checked == 48


def test_all_versions_give_the_same_map() -> None:
    maps = [read_bmap(str(DATA / f"test.image.bmap.v{v}")) for v in VERSIONS]
    assert len({tuple((r.first, r.length) for r in m.ranges) for m in maps}) == 1
    assert maps[2].ranges == maps[3].ranges  # 1.4 and 2.0 are the same format


# ------------------------------------------------------------ a flipped byte


def test_flipped_byte_is_caught_at_its_range_as_bmaptool_does(sparse: Path, tmp_path: Path) -> None:
    bmap = read_bmap(str(sparse) + ".bmap")
    target = bmap.ranges[1]
    flip_at = target.first + 5000
    bad = tmp_path / "flipped.img"
    shutil.copyfile(sparse, bad)
    with open(bad, "r+b") as f:
        f.seek(flip_at)
        byte = f.read(1)
        f.seek(flip_at)
        f.write(bytes([byte[0] ^ 0xFF]))

    hasher = RangeHasher(bmap, str(bad))
    with pytest.raises(Refused) as info:
        feed_file(hasher, bad, chunk=MiB)
    e = info.value
    assert exit_code_of(e) == EXIT_REFUSED
    assert e.offset == target.first
    assert hasher.checked == 1  # the first range passed
    actual = sha256(bad.read_bytes()[target.first : target.end])
    assert str(e) == (
        f"{bad}: does not match its bmap {bmap.path}: the range at bytes "
        f"{target.first}-{target.end - 1} has sha256 {actual}, the bmap says {target.checksum}"
    )
    assert hasher.position == MiB  # raised by the chunk at MiB, which completed the range

    # bmaptool copy refuses the same range, with the same checksum.
    done = subprocess.run(
        ["bmaptool", "copy", "--bmap", bmap.path, str(bad), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C"),
    )
    assert done.returncode != 0
    bs = bmap.block_size
    first_block, last_block = target.first // bs, (target.end - 1) // bs
    assert f"checksum mismatch for blocks range {first_block}-{last_block}" in done.stderr
    assert f"calculated {actual}" in done.stderr


def test_flipped_byte_in_a_hole_is_not_the_bmaps_business(sparse: Path) -> None:
    bmap = read_bmap(str(sparse) + ".bmap")
    data = bytearray(sparse.read_bytes())
    hole = bmap.ranges[0].end + 10
    assert not mapped_parts(bmap.ranges, hole, 1)
    data[hole] ^= 1
    hasher = RangeHasher(bmap, "x")
    feed_bytes(hasher, bytes(data), iter(lambda: 65536, 0))
    assert hasher.checked == len(bmap.ranges)


def test_flipped_byte_in_bmaptools_test_image_for_every_version(test_image: Path) -> None:
    data = bytearray(test_image.read_bytes())
    data[45 * 4096 + 1] ^= 0x40  # block 45 is a range of its own
    for version in VERSIONS:
        bmap = read_bmap(str(DATA / f"test.image.bmap.v{version}"))
        hasher = RangeHasher(bmap, "test.image")
        with pytest.raises(Refused, match=rf"the range at bytes {45 * 4096}-{46 * 4096 - 1} has"):
            feed_bytes(hasher, bytes(data), iter(lambda: 3 * 4096 + 5, 0))


def test_hasher_image_shorter_longer_or_out_of_order(sparse: Path) -> None:
    bmap = read_bmap(str(sparse) + ".bmap")
    data = sparse.read_bytes()

    short = RangeHasher(bmap, "short.img")
    short.feed(0, memoryview(data)[: 5 * MiB + 5000])  # inside the third range
    with pytest.raises(BadImage) as info:
        short.finish()
    assert exit_code_of(info.value) == EXIT_FAILED
    r = bmap.ranges[2]
    assert str(info.value) == (
        f"short.img: ends at byte {5 * MiB + 5000}, but its bmap {bmap.path} maps bytes "
        f"{r.first}-{r.end - 1}; the image is truncated or the bmap is not its own"
    )

    long = RangeHasher(bmap, "long.img")
    with pytest.raises(Refused, match=r"says the image is .* but it is longer; wrong bmap"):
        long.feed(0, data + b"\0")

    skipping = RangeHasher(bmap, "x")
    skipping.feed(0, data[:100])
    with pytest.raises(InternalError):
        skipping.feed(200, data[200:300])

    # Without checksums, ranges are only tracked; bytes alone (not a memoryview) do too.
    unsummed = tuple(BmapRange(r.first, r.length, None) for r in bmap.ranges)
    plain = dataclasses.replace(bmap, ranges=unsummed)
    hasher = RangeHasher(plain)
    hasher.feed(0, bytes(len(data)))
    hasher.finish()
    assert hasher.checked == 0


def test_hasher_on_a_bmap_with_no_ranges(tmp_path: Path) -> None:
    bmap = read_bmap(str(write_bmap(tmp_path / "b", [])))
    assert bmap.ranges == () and bmap.mapped_bytes == 0
    hasher = RangeHasher(bmap, "empty")
    hasher.feed(0, bytes(bmap.image_size))
    hasher.finish()


# ------------------------------------------------------------ the bmap file's own checksum


def flip(hex_digit: str) -> str:
    return "f" if hex_digit == "0" else "0"


def test_tampered_bmap_is_bad(sparse: Path, tmp_path: Path) -> None:
    text = Path(str(sparse) + ".bmap").read_text()
    first, last, _ = ranges_in_text(text)[1]
    cases = {
        # a range moved by one block
        "range": text.replace(f"> {first}-{last} <", f"> {first + 1}-{last} <"),
        # a range's checksum changed
        "chksum": re.sub(r'chksum="(.)', lambda m: 'chksum="' + flip(m[1]), text, count=1),
        # the file's own checksum changed
        "own": re.sub(r"<BmapFileChecksum> (.)", lambda m: m[0][:-1] + flip(m[1]), text),
    }
    for name, tampered in cases.items():
        assert tampered != text, name
        path = tmp_path / f"{name}.bmap"
        path.write_text(tampered)
        with pytest.raises(BadImage, match="the bmap file is damaged or was edited") as info:
            read_bmap(str(path))
        assert exit_code_of(info.value) == EXIT_FAILED
        assert str(info.value).startswith(f"{path}: ")
        assert "\n" not in str(info.value)

    v13 = (DATA / "test.image.bmap.v1.3").read_text()
    path = tmp_path / "v13.bmap"
    path.write_text(v13.replace("> 3-5 <", "> 3-6 <"))
    with pytest.raises(BadImage, match=r"its sha1 is [0-9a-f]{40}, the file says e235f7cd"):
        read_bmap(str(path))


def test_without_own_checksum_is_read(tmp_path: Path) -> None:
    path = write_bmap(tmp_path / "b", ["0-1", "5"], own_checksum=False)
    bmap = read_bmap(str(path))
    assert [(r.first, r.length) for r in bmap.ranges] == [(0, 8192), (5 * 4096, 4096)]
    assert all(r.checksum is None for r in bmap.ranges)


def test_made_up_bmap_with_checksums(tmp_path: Path) -> None:
    """write_bmap makes what bmaptool accepts; read_bmap and RangeHasher agree."""
    rng = random.Random(3)
    image = bytearray(10 * 4096 - 100)
    image[4096 : 3 * 4096] = rng.randbytes(2 * 4096)
    image[9 * 4096 :] = rng.randbytes(len(image) - 9 * 4096)
    sums = [sha256(bytes(image[4096 : 3 * 4096])), sha256(bytes(image[9 * 4096 :]))]
    path = write_bmap(
        tmp_path / "made.bmap",
        [f'chksum="{sums[0]}"> 1-2', f'chksum="{sums[1]}"> 9'],
        image_size=len(image),
    )
    bmap = read_bmap(str(path))
    assert bmap.ranges == (
        BmapRange(4096, 8192, sums[0]),
        BmapRange(9 * 4096, len(image) - 9 * 4096, sums[1]),
    )
    feed_bytes(RangeHasher(bmap, "made"), bytes(image), random_sizes(4, 9000))
    # Upper-case hex (which bmaptool would not match) is read as lower case.
    upper = write_bmap(
        tmp_path / "upper.bmap", [f'chksum="{sums[0].upper()}"> 1-2'], image_size=len(image)
    )
    assert read_bmap(str(upper)).ranges[0].checksum == sums[0]

    need("bmaptool")
    (tmp_path / "made.img").write_bytes(image)
    sh("bmaptool", "copy", "--bmap", str(path), str(tmp_path / "made.img"), str(tmp_path / "o"))
    assert (tmp_path / "o").read_bytes() == image


# ------------------------------------------------------------ refusals


BAD_BMAPS: dict[str, tuple[dict[str, object], str]] = {
    "overlapping": ({"ranges": ["0-3", "3-4"]}, r"blocks 3-4 overlaps or comes before"),
    "out of order": ({"ranges": ["5-6", "1-2"]}, r"blocks 1-2 overlaps or comes before"),
    "past the end": ({"ranges": ["0", "8-10"]}, r"blocks 8-10 goes past the image's end"),
    "backwards": ({"ranges": ["4-2"]}, r"blocks 4-2 ends before it starts"),
    "range text": ({"ranges": ["1..2"], "mapped": 2}, r"a <Range> reads '1..2'"),
    "huge range number": ({"ranges": ["1" * 30], "mapped": 1}, r"a <Range> reads"),
    "major 3": ({"version": "3.0"}, r"format version 3.0 is not supported"),
    "major 0": ({"version": "0.9"}, r"format version 0.9 is not supported"),
    "version text": ({"version": "2"}, r"its format version is '2'"),
    "no ImageSize": ({"drop": ("ImageSize",)}, r"no <ImageSize>"),
    "no BlockSize": ({"drop": ("BlockSize",)}, r"no <BlockSize>"),
    "no BlocksCount": ({"drop": ("BlocksCount",)}, r"no <BlocksCount>"),
    "no MappedBlocksCount": ({"drop": ("MappedBlocksCount",)}, r"no <MappedBlocksCount>"),
    "no ChecksumType": ({"drop": ("ChecksumType",)}, r"no <ChecksumType>"),
    "no BlockMap": ({"drop": ("BlockMap",)}, r"no <BlockMap>"),
    "unknown checksum": ({"checksum_type": "md5"}, r"unknown checksum type 'md5'"),
    "mapped count": ({"mapped": 7}, r"<MappedBlocksCount> says 7 but its ranges hold 3"),
    "blocks count": ({"blocks": 11}, r"11 blocks of 4096 bytes do not make an image of 40960"),
    "zero image": ({"image_size": 0, "ranges": []}, r"an image size of 0 bytes"),
    "huge image": ({"image_size": 1 << 60, "ranges": []}, r"an image size of"),
    "tiny blocks": ({"block_size": 1}, r"a block size of 1 bytes"),
    "size text": ({"mapped": "lots"}, r"<MappedBlocksCount> is 'lots', not a number"),
    "range checksum": ({"ranges": ['chksum="abc"> 1']}, r"blocks 1-1 has checksum 'abc', not a"),
    "doctype": (
        {"before_root": '<!DOCTYPE bmap [<!ENTITY a "aaaa">]>\n'},
        r"a markup declaration \('<!DOCTYPE",
    ),
    "billion laughs": (
        {
            "before_root": "<!DOCTYPE lolz [\n"
            + '<!ENTITY lol "lol">\n'
            + "".join(
                f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n'
                for i in range(1, 10)
            )
            + "]>\n"
        },
        r"a markup declaration",
    ),
}


@pytest.mark.parametrize("case", list(BAD_BMAPS))
def test_bad_bmap_is_bad_image(case: str, tmp_path: Path) -> None:
    kw, message = BAD_BMAPS[case]
    ranges = kw.pop("ranges", ["0-1", "4"])
    path = write_bmap(tmp_path / "x.bmap", ranges, **kw)  # type: ignore[arg-type]
    with pytest.raises(BadImage, match=message) as info:
        read_bmap(str(path))
    assert str(info.value).startswith(f"{path}: not a usable bmap file: ")
    assert "\n" not in str(info.value)
    assert info.value.path == str(path)
    assert exit_code_of(info.value) == EXIT_FAILED


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"this is not xml\n", "not well-formed XML"),
        (b"<bmap version='2.0'><ImageSize>1</ImageSize>", "not well-formed XML"),
        (b"<notbmap/>", "its root element is <notbmap>, not <bmap>"),
        (b"\x1f\x8b\x08\x00" + bytes(100), "not UTF-8 text (byte 1)"),
        (b"<bmap version='2.0'>\0</bmap>", "not text (a NUL byte at 20)"),
        (b"<bmap version='2.0'>" + b"<a>" * 20 + b"</a>" * 20 + b"</bmap>", "nested more than"),
        # UTF-16 cannot hide a declaration: the encoding declared is not believed.
        (
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE b [<!ENTITY a "x">]><bmap/>'.encode(
                "utf-16"
            ),
            "not UTF-8 text (byte 0)",
        ),
        (
            b"<?xml version='1.0'?><bmap version='2.0'><ImageSize>1</ImageSize>"
            b"<ImageSize>2</ImageSize></bmap>",
            "more than one <ImageSize>",
        ),
        (b"<bmap version='2.0'></bmap><junk/>", "not well-formed XML"),
    ],
)
def test_not_a_bmap_is_bad_image(content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / "x.bmap"
    path.write_bytes(content)
    with pytest.raises(BadImage, match=re.escape(message)):
        read_bmap(str(path))


def test_too_large_or_too_many_ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from usbwriter.sources import bmap as module

    path = write_bmap(tmp_path / "x.bmap", [f"{2 * i}" for i in range(300)], image_size=1 << 30)
    assert read_bmap(str(path)).mapped_blocks == 300
    monkeypatch.setattr(module, "MAX_RANGES", 100)
    with pytest.raises(BadImage, match="more than 200 elements"):
        read_bmap(str(path))
    monkeypatch.setattr(module, "MAX_BMAP_BYTES", 1000)
    with pytest.raises(BadImage, match="is too large"):
        read_bmap(str(path))


def refused_quickly(path: str) -> UsbWriterError:
    """read_bmap(PATH)'s error, which must come at once (a FIFO must not block)."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            read_bmap(path)
        except BaseException as e:
            caught.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), f"read_bmap({path}) blocked"
    assert len(caught) == 1 and isinstance(caught[0], UsbWriterError), caught
    return caught[0]


def test_missing_fifo_directory_socket_are_usage_errors(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.bmap"
    os.mkfifo(fifo)
    folder = tmp_path / "dir.bmap"
    folder.mkdir()
    sock_path = tmp_path / "sock.bmap"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        expected = {
            tmp_path / "missing.bmap": "no such file or device",
            fifo: "is a FIFO (named pipe), not a bmap file",
            folder: "is a directory, not a bmap file",
            sock_path: "is a socket, not a bmap file",
            Path("/dev/null"): "is a character device, not a bmap file",
        }
        for path, message in expected.items():
            e = refused_quickly(str(path))
            assert isinstance(e, BadInput), (path, e)
            assert exit_code_of(e) == EXIT_USAGE
            assert str(e) == f"{path}: {message}" or str(e).startswith(f"{path}: {message}")
    finally:
        sock.close()


def test_permission_denied_is_a_usage_error() -> None:
    """As root this runs as nobody (root reads any file), in a folder nobody may enter."""
    base = Path(tempfile.mkdtemp(prefix="usbw-bmap-"))
    try:
        path = write_bmap(base / "x.bmap", ["0"])
        path.chmod(0)
        code = (
            "import sys\n"
            "from usbwriter.errors import BadInput\n"
            "from usbwriter.sources.bmap import read_bmap\n"
            "try:\n"
            "    read_bmap(sys.argv[1])\n"
            "except BadInput as e:\n"
            "    print('BadInput', e)\n"
        )
        argv = [sys.executable, "-c", code, str(path)]
        if os.geteuid() == 0:
            os.chmod(base, 0o755)
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert p.stdout.startswith("BadInput") and "permission denied" in p.stdout, p
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------ finding and sizes


@pytest.mark.parametrize(
    ("image", "present", "found"),
    [
        ("disk.img", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.xz", ["disk.img.xz.bmap", "disk.img.bmap"], "disk.img.xz.bmap"),
        ("disk.img.xz", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.gz", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.bz2", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.zst", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.lz4", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.zip", ["disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.xz", ["disk.bmap", "disk.img.gz.bmap"], None),
        ("disk.img", ["disk.bmap"], None),
        ("disk.iso", [], None),
        ("disk.img.xz", ["dir:disk.img.xz.bmap", "disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.xz", ["dir:disk.img.xz.bmap"], None),
        ("disk.img.xz", ["link:disk.img.xz.bmap"], "disk.img.xz.bmap"),
        ("disk.img.xz", ["dangling:disk.img.xz.bmap", "disk.img.bmap"], "disk.img.bmap"),
        ("disk.img.xz", ["fifo:disk.img.bmap"], None),
        (".xz", ["/.bmap"], None),
    ],
)
def test_find_bmap(image: str, present: list[str], found: str | None, tmp_path: Path) -> None:
    (tmp_path / "real.bmap").write_text("x")
    for entry in present:
        kind, _, name = entry.rpartition(":")
        path = tmp_path / name.lstrip("/")
        if kind == "dir":
            path.mkdir()
        elif kind == "link":
            path.symlink_to(tmp_path / "real.bmap")
        elif kind == "dangling":
            path.symlink_to(tmp_path / "nowhere")
        elif kind == "fifo":
            os.mkfifo(path)
        else:
            path.write_text("x")
    result = find_bmap(str(tmp_path / image))
    assert result == (None if found is None else str(tmp_path / found))


def test_find_bmap_beside_the_real_image(sparse: Path) -> None:
    assert find_bmap(str(sparse)) == str(sparse) + ".bmap"


def test_the_image_size_a_bmap_gives_is_checked_as_the_format_records_it(sparse: Path) -> None:
    """gzip records the size modulo 4 GiB, zstd and lz4 the first frame's: a correct bmap
    of a 5 GiB image beside its .img.gz is not refused; a wrong size is."""
    from usbwriter.jobs import Request, decide
    from usbwriter.jobs.model import ImageFacts
    from usbwriter.sources import SourceInfo

    bmap = dataclasses.replace(read_bmap(str(sparse) + ".bmap"), image_size=5 << 30)
    cases = {
        ("gzip", (5 << 30) % (1 << 32), "about"): True,
        ("gzip", ((5 << 30) + 512) % (1 << 32), "about"): False,
        ("zstd", 1 << 30, "at least"): True,
        ("zstd", 6 << 30, "at least"): False,
        ("xz", 5 << 30, "exact"): True,
        ("xz", (5 << 30) - 512, "exact"): False,
    }
    for (fmt, size, kind), fits in cases.items():
        info = SourceInfo("x.img." + fmt, fmt, 1 << 20, size, "header", size_is=kind)
        assert info.may_be(5 << 30) is fits, (fmt, size, kind)
        image = ImageFacts("x.img", "/x.img", "file", size=size, source=info)
        target = _stick_facts()
        plan = decide(Request("x.img", "/dev/sda"), image, target, None, bmap=bmap)
        refused = [b for b in plan.blockers if "its bmap" in b.message]
        assert bool(refused) is not fits, (fmt, size, kind, plan.blockers)
        if refused:
            assert exit_code_of(refused[0].error) == EXIT_REFUSED


def _stick_facts() -> TargetFacts:
    from tests.unit.test_plan import stick

    return stick()


# ------------------------------------------------------------ mapped_parts


def test_mapped_parts_cases() -> None:
    ranges = (BmapRange(0, 100, None), BmapRange(100, 50, None), BmapRange(300, 10, None))
    assert mapped_parts(ranges, 0, 1000) == [(0, 150), (300, 10)]  # touching parts joined
    assert mapped_parts(ranges, 120, 200) == [(120, 30), (300, 10)]
    assert mapped_parts(ranges, 150, 150) == []
    assert mapped_parts(ranges, 305, 100) == [(305, 5)]
    assert mapped_parts(ranges, 310, 100) == []
    assert mapped_parts(ranges, 50, 0) == []
    assert mapped_parts((), 0, 100) == []


def test_mapped_parts_against_a_bytemap() -> None:
    rng = random.Random(5)
    for _ in range(200):
        size = rng.randrange(1, 3000)
        ranges: list[BmapRange] = []
        pos = 0
        while pos < size:
            pos += rng.choice((0, rng.randrange(1, 200)))
            length = min(rng.randrange(1, 300), size - pos)
            if length > 0:
                ranges.append(BmapRange(pos, length, None))
            pos += max(length, 1)
        mapped = bytearray(size)
        for r in ranges:
            mapped[r.first : r.end] = b"\1" * r.length
        for _ in range(20):
            offset = rng.randrange(0, size)
            length = rng.randrange(0, size - offset + 1)
            parts = mapped_parts(tuple(ranges), offset, length)
            got = bytearray(length)
            for start, n in parts:
                assert n > 0 and offset <= start and start + n <= offset + length
                got[start - offset : start - offset + n] = b"\1" * n
            assert got == mapped[offset : offset + length]
            # joined: no two parts touch
            assert all(a[0] + a[1] < b[0] for a, b in itertools.pairwise(parts))


def test_a_bmap_of_many_ranges_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """250,000 ranges (a 24 MB file): the ranges are kept compactly and no element tree
    is built; the process's peak stays far below what objects per range would take."""
    n, bs = 250_000, 4096
    digest = hashlib.sha256(b"x").hexdigest()
    head = (
        f'<?xml version="1.0" ?>\n<bmap version="2.0">\n<ImageSize> {2 * n * bs} </ImageSize>\n'
        f"<BlockSize> {bs} </BlockSize>\n<BlocksCount> {2 * n} </BlocksCount>\n"
        f"<MappedBlocksCount> {n} </MappedBlocksCount>\n<ChecksumType> sha256 </ChecksumType>\n"
        "<BlockMap>\n"
    )
    body = "".join(f'<Range chksum="{digest}"> {2 * i} </Range>\n' for i in range(n))
    path = tmp_path / "many.bmap"
    path.write_text(head + body + "</BlockMap>\n</bmap>\n")
    code = (  # VmHWM, the peak of this program (ru_maxrss would count the forked parent)
        "import sys\n"
        "from usbwriter.sources.bmap import read_bmap\n"
        "b = read_bmap(sys.argv[1])\n"
        "assert len(b.ranges) == 250000 and b.ranges[-1].checksum is not None\n"
        "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM:')][0]\n"
        "print(int(hwm.split()[1]) // 1024)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    peak_mib = int(done.stdout)
    assert peak_mib < 150, f"peak {peak_mib} MiB"

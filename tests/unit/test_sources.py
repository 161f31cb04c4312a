"""usbwriter.sources without devices: formats by their magic bytes, the sizes the formats
record (xz index, zstd and lz4 frame headers, gzip trailer, zip entry), and the image's
bytes read through ``open_image(...).stream()``, checked against each format's own tool,
with the xz and zstd tools and with the library decoders that stand in for them."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import blake3
import pytest

from usbwriter.errors import BadImage
from usbwriter.sources import COMPRESSED, detect_format, open_image
from usbwriter.sources.formats import xz_size
from usbwriter.sources.streams import DecoderStream, ToolStream

MiB = 1 << 20
SIZE = 3 * MiB + 4321  # not a multiple of anything the formats care about


def sh(cmd: str) -> None:
    subprocess.run(["bash", "-c", cmd], check=True, env=dict(os.environ, LC_ALL="C"))


REAL_WHICH = shutil.which  # the tests hide xz and zstd from usbwriter, not from themselves


def need(*tools: str) -> None:
    missing = [t for t in tools if REAL_WHICH(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (scripts/lib/setup.sh installs it)")


def make_image(path: Path, size: int, seed: int) -> Path:
    """Random 256 KiB runs and zero runs in turn."""
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(256 << 10) if len(out) // (256 << 10) % 2 == 0 else bytes(256 << 10)
    path.write_bytes(out[:size])
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the images a.img and b.img (and a+b: their concatenation)."""
    d = tmp_path_factory.mktemp("sources")
    a = make_image(d / "a.img", SIZE, 1)
    b = make_image(d / "b.img", MiB + 17, 2)
    (d / "ab.img").write_bytes(a.read_bytes() + b.read_bytes())
    return d


#: id -> (tools needed, bash making {d}/out from {d}/a.img, format, the image it holds)
FILES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "xz": (("xz",), "xz -1 -c {d}/a.img > {out}", "xz", "a"),
    "xz-T0-blocks": (
        ("xz",),
        "xz -T0 -1 --block-size=512KiB -c {d}/a.img > {out}",
        "xz",
        "a",
    ),
    "xz-two-streams": (
        ("xz",),
        "xz -1 -c {d}/a.img > {out} && xz -1 -c {d}/b.img >> {out}",
        "xz",
        "ab",
    ),
    "xz-padded": (("xz",), "xz -1 -c {d}/a.img > {out} && head -c 4 /dev/zero >> {out}", "xz", "a"),
    "xz-two-streams-padded": (
        ("xz",),
        "xz -1 -c {d}/a.img > {out} && head -c 12 /dev/zero >> {out} && "
        "xz -1 -c {d}/b.img >> {out} && head -c 8 /dev/zero >> {out}",
        "xz",
        "ab",
    ),
    "gzip": (("gzip",), "gzip -c {d}/a.img > {out}", "gzip", "a"),
    "gzip-two-members": (
        ("gzip",),
        "gzip -c {d}/a.img > {out} && gzip -c {d}/b.img >> {out}",
        "gzip",
        "ab",
    ),
    "pigz": (("pigz",), "pigz -c {d}/a.img > {out}", "gzip", "a"),
    "bzip2": (("bzip2",), "bzip2 -c {d}/a.img > {out}", "bzip2", "a"),
    "bzip2-two-streams": (
        ("bzip2",),
        "bzip2 -c {d}/a.img > {out} && bzip2 -c {d}/b.img >> {out}",
        "bzip2",
        "ab",
    ),
    "zstd": (("zstd",), "zstd -q -c {d}/a.img > {out}", "zstd", "a"),
    "zstd-stdin": (("zstd",), "zstd -q -c < {d}/a.img > {out}", "zstd", "a"),
    "zstd-T0": (("zstd",), "zstd -q -T0 -c {d}/a.img > {out}", "zstd", "a"),
    "zstd-two-frames": (
        ("zstd",),
        "zstd -q -c {d}/a.img > {out} && zstd -q -c {d}/b.img >> {out}",
        "zstd",
        "ab",
    ),
    "lz4": (("lz4",), "lz4 -q -c {d}/a.img > {out}", "lz4", "a"),
    "lz4-content-size": (("lz4",), "lz4 -q --content-size -c {d}/a.img > {out}", "lz4", "a"),
    "lz4-two-frames-sized": (
        ("lz4",),
        "lz4 -q --content-size -c {d}/a.img > {out} && lz4 -q --content-size -c {d}/b.img >> {out}",
        "lz4",
        "ab",
    ),
    "lz4-two-frames": (
        ("lz4",),
        "lz4 -q -c {d}/a.img > {out} && lz4 -q -c {d}/b.img >> {out}",
        "lz4",
        "ab",
    ),
    "zip": (("zip",), "cd {d} && rm -f {out} && zip -q {out} a.img", "zip", "a"),
    "zip-stored": (("zip",), "cd {d} && rm -f {out} && zip -q -0 {out} a.img", "zip", "a"),
}

#: How each format's own tool decompresses a file to stdout.
DECOMPRESS = {
    "xz": "xz -dc {f}",
    "gzip": "gzip -dc {f}",
    "bzip2": "bzip2 -dc {f}",
    "zstd": "zstd -qdc {f}",
    "lz4": "lz4 -qdc {f}",
}


def made(data: Path, name: str) -> Path:
    tools, cmd, _, _ = FILES[name]
    need(*tools)
    out = data / f"{name}.bin"
    if not out.exists():
        sh(cmd.format(d=data, out=out))
    return out


def tool_output(fmt: str, f: Path) -> bytes:
    if fmt == "zip":
        import zipfile

        with zipfile.ZipFile(f) as zf:
            (name,) = zf.namelist()
            return zf.read(name)
    return subprocess.run(
        ["bash", "-c", DECOMPRESS[fmt].format(f=f)], check=True, capture_output=True
    ).stdout


def read_stream(path: Path, member: str | None = None) -> tuple[bytes, str | None, str]:
    """(the image's bytes, the stream's file_blake3, the stream's class name)."""
    out = bytearray()
    buf = bytearray(MiB)
    view = memoryview(buf)
    rng = random.Random(5)
    with open_image(str(path), member=member) as src, src.stream() as stream:
        # Odd read sizes: the stream must fill whatever it is given.
        for n in iter(lambda: stream.readfull(view[: rng.choice((1, 4096, 65537, MiB))]), 0):
            out += view[:n]
        return bytes(out), stream.file_blake3, type(stream).__name__


@pytest.fixture(params=["tools", "library"])
def decoders(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """With the xz and zstd tools as installed, or hidden (their library stand-ins)."""
    if request.param == "library":

        def which(name: str, *a: object, **k: object) -> str | None:
            return None if os.path.basename(name) in ("xz", "zstd") else REAL_WHICH(name)

        monkeypatch.setattr(shutil, "which", which)
    yield request.param


# --- magic bytes --------------------------------------------------------------------------

MAGIC = {
    "xz": b"\xfd7zXZ\x00\x00\x04",
    "gzip": b"\x1f\x8b\x08\x00",
    "bzip2": b"BZh91AY&SY",
    "zstd": b"\x28\xb5\x2f\xfd\x04\x58",
    "lz4": b"\x04\x22\x4d\x18\x64\x40",
    "zip": b"PK\x03\x04\x14\x00",
}


@pytest.mark.parametrize("fmt", sorted(MAGIC))
def test_detect_format_by_magic(fmt: str) -> None:
    assert detect_format(MAGIC[fmt] + os.urandom(64)) == fmt


def test_every_compressed_format_has_magic() -> None:
    assert set(COMPRESSED) == set(MAGIC)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\xfd7zX",  # a magic cut short
        b"\x1f",
        b"PK\x05\x06" + bytes(18),  # an empty zip: no local header first
        bytes(512),
        b"\x33\xed\x90\x90" + bytes(508),  # an MBR's first bytes
        b"CD001",
    ],
)
def test_detect_raw(head: bytes) -> None:
    assert detect_format(head) == "raw"


@pytest.mark.parametrize("name", ["image.img.xz", "image.zst", "image.gz", "image.zip"])
def test_name_says_compressed_but_bytes_are_raw(tmp_path: Path, name: str) -> None:
    f = make_image(tmp_path / name, SIZE, 3)
    with open_image(str(f)) as src:
        assert src.info.format == "raw"
        assert not src.info.compressed
        assert src.size == SIZE
    got, file_b3, _ = read_stream(f)
    assert got == f.read_bytes()
    assert file_b3 is None


@pytest.mark.parametrize("name", sorted(FILES))
def test_detect_format_of_real_files(data: Path, name: str) -> None:
    f = made(data, name)
    with open_image(str(f)) as src:
        assert src.info.format == FILES[name][2]
        assert src.info.compressed
        assert src.file_size == f.stat().st_size


# --- the sizes formats record -------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["xz", "xz-T0-blocks", "xz-two-streams", "xz-padded", "xz-two-streams-padded"]
)
def test_xz_index_size(data: Path, name: str) -> None:
    f = made(data, name)
    expected = (data / f"{FILES[name][3]}.img").stat().st_size
    fd = os.open(f, os.O_RDONLY)
    try:
        assert xz_size(fd, f.stat().st_size) == expected
    finally:
        os.close(fd)
    with open_image(str(f)) as src:
        assert (src.size, src.info.size_from, src.info.size_exact) == (expected, "xz index", True)


def test_xz_blocks_are_several(data: Path) -> None:
    """The multi-block file really has several blocks (what -T0 decoders need)."""
    f = made(data, "xz-T0-blocks")
    out = subprocess.run(
        ["xz", "--robot", "-l", str(f)], check=True, capture_output=True, text=True
    )
    totals = next(line.split("\t") for line in out.stdout.splitlines() if line.startswith("totals"))
    assert int(totals[2]) > 1


@pytest.mark.parametrize(
    ("what", "damage"),
    [
        ("truncated", lambda b: b[: len(b) // 2]),
        ("padding not a multiple of 4", lambda b: b + bytes(3)),
        ("footer cut", lambda b: b[:-1]),
        ("index size field damaged", lambda b: b[:-8] + bytes([b[-8] ^ 0x01]) + b[-7:]),
    ],
)
def test_xz_index_damaged(
    data: Path, tmp_path: Path, what: str, damage: Callable[[bytes], bytes]
) -> None:
    f = made(data, "xz-two-streams")
    bad = tmp_path / "bad.img.xz"
    bad.write_bytes(damage(f.read_bytes()))
    with pytest.raises(BadImage) as e:
        open_image(str(bad)).close()
    assert str(bad) in str(e.value) and "xz" in str(e.value)


@pytest.mark.parametrize(
    ("name", "size", "size_from"),
    [
        ("zstd", SIZE, "zstd frame header"),
        ("zstd-T0", SIZE, "zstd frame header"),
        ("zstd-stdin", None, ""),
        ("lz4-content-size", SIZE, "lz4 frame header"),
        ("lz4", None, ""),
        ("bzip2", None, ""),
        ("zip", SIZE, "zip entry"),
        ("zip-stored", SIZE, "zip entry"),
    ],
)
def test_recorded_size(data: Path, name: str, size: int | None, size_from: str) -> None:
    with open_image(str(made(data, name))) as src:
        assert src.size == size
        assert src.info.size_from == size_from
        # A zstd or lz4 header gives its own frame's size: more frames may follow.
        frames = size_from in ("zstd frame header", "lz4 frame header")
        assert src.info.size_is == ("at least" if frames else "exact")


@pytest.mark.parametrize(
    "name",
    [
        "zstd-two-frames",
        "lz4-two-frames-sized",
        "lz4-two-frames",  # frames made without --content-size: unknown is right
    ],
)
def test_several_frames_size_is_a_lower_bound_or_unknown(data: Path, name: str) -> None:
    whole = SIZE + MiB + 17
    with open_image(str(made(data, name))) as src:
        assert src.size is None or (src.info.size_is == "at least" and src.size <= whole)
        assert not src.info.surely_larger_than(whole)


def test_pzstd_skippable_frame_is_zstd(data: Path) -> None:
    need("pzstd")
    f = data / "pzstd.zst"
    sh(f"pzstd -q -p 2 -c {data}/a.img > {f}")
    assert f.read_bytes()[:4] == b"\x50\x2a\x4d\x18"  # a skippable frame
    with open_image(str(f)) as src:
        assert src.info.format == "zstd"


@pytest.mark.parametrize(
    ("name", "image"), [("gzip", "a"), ("pigz", "a"), ("gzip-two-members", "b")]
)
def test_gzip_trailer(data: Path, name: str, image: str) -> None:
    """ISIZE of the last member: an estimate (exact for one member under 4 GiB)."""
    with open_image(str(made(data, name))) as src:
        assert src.size == (data / f"{image}.img").stat().st_size
        assert (src.info.size_from, src.info.size_exact) == ("gzip trailer", False)


def test_zip_members(data: Path, tmp_path: Path) -> None:
    need("zip")
    f = tmp_path / "two.zip"
    sh(f"cd {data} && zip -q {f} a.img b.img")
    with open_image(str(f)) as src:
        assert (src.info.member, src.size, src.info.members) == (None, None, ("a.img", "b.img"))
    with open_image(str(f), member="b.img") as src:
        assert (src.info.member, src.size) == ("b.img", MiB + 17)
    got, file_b3, _ = read_stream(f, member="b.img")
    assert got == (data / "b.img").read_bytes()
    assert file_b3 == blake3.blake3(f.read_bytes()).hexdigest()


# --- the image's bytes --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FILES))
def test_stream_equals_the_tools_decompression(
    data: Path, name: str, decoders: str, request: pytest.FixtureRequest
) -> None:
    f = made(data, name)
    fmt = FILES[name][2]
    got, file_b3, kind = read_stream(f)
    assert got == tool_output(fmt, f)
    assert got == (data / f"{FILES[name][3]}.img").read_bytes()
    assert file_b3 == blake3.blake3(f.read_bytes()).hexdigest()
    if fmt in ("xz", "zstd"):
        assert kind == (ToolStream if decoders == "tools" else DecoderStream).__name__
    else:
        assert kind == DecoderStream.__name__


def test_tools_hidden_through_path(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATH without xz and zstd (links to everything else in /usr/bin) gives the library."""
    files = {name: made(data, name) for name in ("xz-two-streams", "zstd-stdin")}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for p in Path("/usr/bin").iterdir():
        if p.name not in ("xz", "zstd"):
            (bin_dir / p.name).symlink_to(p)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert shutil.which("xz") is None and shutil.which("zstd") is None
    for name, f in files.items():
        got, _, kind = read_stream(f)
        assert kind == DecoderStream.__name__
        assert got == (data / f"{FILES[name][3]}.img").read_bytes()


def flip_middle(f: Path, dst: Path, fmt: str) -> None:
    """One byte flipped from the middle on, at the first place the tool calls damage."""
    data = f.read_bytes()
    for offset in range(len(data) // 2, len(data), 4093):
        trial = bytearray(data)
        trial[offset] ^= 0x55
        dst.write_bytes(trial)
        try:
            if tool_output(fmt, dst) != tool_output(fmt, f):
                return
        except Exception:
            return
    raise AssertionError("no damage found")


@pytest.mark.parametrize(
    ("name", "how", "decoders"),
    [
        ("xz", "corrupt", "tools"),
        ("xz", "corrupt", "library"),
        ("xz-T0-blocks", "corrupt", "library"),
        ("zstd", "corrupt", "tools"),
        ("zstd", "corrupt", "library"),
        ("zstd", "truncated", "tools"),
        ("zstd", "truncated", "library"),
        ("zstd-stdin", "truncated", "tools"),
        ("zstd-stdin", "truncated", "library"),
        ("gzip", "corrupt", "library"),
        ("gzip", "truncated", "library"),
        ("bzip2", "corrupt", "library"),
        ("bzip2", "truncated", "library"),
        ("lz4", "corrupt", "library"),
        ("lz4", "truncated", "library"),
        ("zip", "corrupt", "library"),
    ],
    indirect=["decoders"],
)
def test_damaged_stream_is_bad_image(
    data: Path, tmp_path: Path, name: str, how: str, decoders: str
) -> None:
    """Reading a damaged or truncated file to its end raises BadImage naming the file
    (a truncated xz or zip is refused by open_image already: its index is gone)."""
    f = made(data, name)
    fmt = FILES[name][2]
    bad = tmp_path / f"{how}-{f.name}"
    if how == "corrupt":
        flip_middle(f, bad, fmt)
    else:
        bad.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(BadImage) as e:
        read_stream(bad)
    assert str(bad) in str(e.value)

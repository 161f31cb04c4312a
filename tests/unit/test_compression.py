"""The format registry (usbwriter.compression) is the one place formats are known: every
entry's suffixes are recognised wherever a name is looked at (find_bmap, the app's image
filter and its suggested names, backup's output naming), and a real file made by the
format's own tool is recognised by its magic bytes, sized and decoded as its entry says.
A backup written by each writable format is read back as that format."""

from __future__ import annotations

import importlib
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from usbwriter.cli import epilog
from usbwriter.cli.backup import DESCRIPTION
from usbwriter.compression import FORMATS, SUFFIXES, WRITABLE, Format, by_magic
from usbwriter.outputs import Output, file_word, format_of
from usbwriter.sources import detect_format, open_image
from usbwriter.sources.bmap import find_bmap
from usbwriter.sources.streams import DecoderStream, ToolStream, open_stream
from usbwriter.tui.format import is_compressed, is_image_name
from usbwriter.tui.screens.drive_jobs import format_words
from usbwriter.tui.suggest import image_stem

#: How each format's own tool makes {out} from {src}: a new entry needs a line here.
MAKE = {
    "zstd": "zstd -q -c {src} > {out}",
    "xz": "xz -1 -c {src} > {out}",
    "gzip": "gzip -c {src} > {out}",
    "bzip2": "bzip2 -c {src} > {out}",
    "lz4": "lz4 -q --content-size -c {src} > {out}",
    "zip": "cd {dir} && zip -q {out} {name}",
}
#: ...and, for a format backup writes, gets the image back from it on stdout.
UNMAKE = {"zstd": "zstd -qdc {f}", "xz": "xz -dc {f}", "gzip": "gzip -dc {f}"}

PAIRS = [(f, s) for f in FORMATS for s in f.suffixes]


def ids(value: object) -> str:
    return value.name if isinstance(value, Format) else str(value)


def sh(cmd: str) -> bytes:
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(["bash", "-c", cmd], check=True, capture_output=True, env=env).stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 KiB and a bit: random runs and zero runs."""
    path = tmp_path_factory.mktemp("registry") / "disk.img"
    rng = random.Random(17)
    path.write_bytes((rng.randbytes(64 << 10) + bytes(64 << 10)) * 2 + rng.randbytes(50001))
    return path


def make(fmt: Format, image: Path, folder: Path) -> Path:
    tool = MAKE[fmt.name].split(" && ")[-1].split()[0]
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed (scripts/lib/setup.sh installs it)")
    out = folder / f"{image.name}{fmt.suffix}"
    sh(MAKE[fmt.name].format(src=image, out=out, dir=image.parent, name=image.name))
    return out


def read_all(path: Path, *, tools: bool) -> tuple[bytes, str]:
    """The image's bytes through the format's tool or its library decoder."""
    with open_image(str(path)) as src:
        stream = open_stream(src.fd, src.info) if tools else DecoderStream(src.fd, src.info, None)
        with stream:
            out = bytearray()
            buf = memoryview(bytearray(1 << 20))
            while n := stream.readfull(buf):
                out += buf[:n]
            return bytes(out), type(stream).__name__


# --- names -----------------------------------------------------------------------------


def test_the_registry_holds_one_vocabulary() -> None:
    names = [f.name for f in FORMATS]
    assert sorted(names) == sorted(["xz", "gzip", "bzip2", "zstd", "lz4", "zip"])
    assert len(set(SUFFIXES)) == len(SUFFIXES)
    assert all(s == s.lower() and s.startswith(".") for s in SUFFIXES)
    assert len({f.magic for f in FORMATS}) == len(FORMATS)
    assert [f.name for f in WRITABLE] == ["zstd", "xz", "gzip"]


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f.decode_error], ids=ids)
def test_decode_errors_name_exceptions(fmt: Format) -> None:
    assert fmt.decode_error is not None
    module, name = fmt.decode_error
    assert issubclass(getattr(importlib.import_module(module), name), Exception)


@pytest.mark.parametrize(("fmt", "suffix"), PAIRS, ids=ids)
def test_find_bmap_takes_off_every_suffix(tmp_path: Path, fmt: Format, suffix: str) -> None:
    (tmp_path / "disk.img.bmap").write_text("<bmap/>")
    assert find_bmap(str(tmp_path / f"disk.img{suffix}")) == str(tmp_path / "disk.img.bmap")


@pytest.mark.parametrize(("fmt", "suffix"), PAIRS, ids=ids)
def test_the_app_lists_and_names_every_suffix(fmt: Format, suffix: str) -> None:
    for name in (f"disk.img{suffix}", f"DISK.ISO{suffix.upper()}", f"disk{suffix}"):
        assert is_image_name(name), name
        assert is_compressed(f"/dl/{name}"), name
    assert not is_image_name(f"notes.txt{suffix}")
    assert image_stem(f"/dl/debian-12.iso{suffix}") == "debian-12"


@pytest.mark.parametrize(("fmt", "suffix"), PAIRS, ids=ids)
def test_backup_names_its_output_by_every_writable_suffix(fmt: Format, suffix: str) -> None:
    want = fmt.name if fmt.writable else "raw"
    assert format_of(f"/b/disk.img{suffix}") == want
    assert format_of(f"/b/DISK.IMG{suffix.upper()}") == want


def test_backup_receipts_keep_their_format_words() -> None:
    """A backup receipt's "format" field and its text, and the app's confirmation, say
    what they always said."""
    assert {f.name: file_word(f.name) for f in WRITABLE} == {
        "zstd": "zst",
        "xz": "xz",
        "gzip": "gz",
    }
    assert file_word("raw") == "raw"
    words = [format_words(fmt) for fmt in ("raw", *(f.name for f in WRITABLE))]
    assert words == ["raw image", "zstd-compressed", "xz-compressed", "gzip-compressed"]


def test_the_help_names_every_writable_suffix() -> None:
    listed = "|".join(f.suffix for f in WRITABLE)
    assert f"usbwriter backup DEVICE -o IMAGE[{listed}]  read" in epilog()
    assert f"({', '.join(f.suffix for f in WRITABLE)})" in DESCRIPTION


# --- real files ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS, ids=ids)
def test_a_real_file_is_the_entry_by_its_magic(image: Path, tmp_path: Path, fmt: Format) -> None:
    made = make(fmt, image, tmp_path)
    head = made.read_bytes()[:64]
    assert head.startswith(fmt.magic)
    assert by_magic(head) is fmt
    assert detect_format(head) == fmt.name
    with open_image(str(made)) as src:
        info = src.info
    assert (info.format, info.compressed) == (fmt.name, True)
    if fmt.read_size is None and not fmt.members:
        assert (info.size, info.size_from) == (None, "")
    else:
        size = image.stat().st_size
        assert (info.size, info.size_from, info.size_is) == (size, fmt.size_from, fmt.size_is)
        assert info.may_be(size)


@pytest.mark.parametrize("fmt", FORMATS, ids=ids)
def test_a_real_file_decodes_by_its_entry(image: Path, tmp_path: Path, fmt: Format) -> None:
    made = make(fmt, image, tmp_path)
    got, kind = read_all(made, tools=False)
    assert (got, kind) == (image.read_bytes(), "DecoderStream")
    if fmt.decode_tool:
        got, kind = read_all(made, tools=True)
        assert (got, kind) == (image.read_bytes(), ToolStream.__name__)


@pytest.fixture(params=["tools", "library"])
def compressors(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The compressing tools as installed, or hidden (the library compressors)."""
    if request.param == "library":
        real = shutil.which
        tools = {argv[0] for f in WRITABLE for argv in f.compress_tools}

        def which(name: str, *a: object, **k: object) -> str | None:
            return None if os.path.basename(name) in tools else real(name)

        monkeypatch.setattr(shutil, "which", which)
    yield request.param


@pytest.mark.parametrize("fmt", WRITABLE, ids=ids)
def test_a_backup_output_is_read_back_as_its_format(
    image: Path, tmp_path: Path, fmt: Format, compressors: str
) -> None:
    path = tmp_path / f"backup.img{fmt.suffix}"
    data = image.read_bytes()
    with Output(str(path), fmt=format_of(str(path))) as out:
        assert (out._proc is not None) == (compressors == "tools")
        out.write(memoryview(data))
        out.finish()
        out.commit()
    assert detect_format(path.read_bytes()[:64]) == fmt.name
    assert sh(UNMAKE[fmt.name].format(f=path)) == data
    got, _ = read_all(path, tools=False)
    assert got == data

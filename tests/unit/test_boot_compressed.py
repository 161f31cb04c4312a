"""Compressed images: the report is that of the image inside, read from its first part;
what lies past that part is listed as not read, never taken for missing or damaged."""

from __future__ import annotations

import bz2
import json
import lzma
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from tests.helpers.images import build_image
from usbwriter.boot import BootReport, inspect_image, render_text
from usbwriter.boot.text import NOT_READ_HEAD
from usbwriter.errors import BadInput

MiB = 1 << 20
COPIES = {"grub-hybrid-xz": "xz", "grub-hybrid-zst": "zstd", "grub-hybrid-gz": "gzip"}


def same_verdict(a: BootReport, b: BootReport) -> None:
    assert (a.boot, a.image_kind, a.for_hardware) == (b.boot, b.image_kind, b.for_hardware)


@pytest.fixture(autouse=True)
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files go to a directory of this test's, checked empty afterwards."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.fixture(autouse=True)
def nothing_left_behind(private_tmp: Path) -> object:
    yield None
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("name", COPIES)
def test_compressed_copies_of_the_hybrid_iso(name: str) -> None:
    raw = inspect_image(build_image("grub-hybrid"))
    packed_path = build_image(name)
    r = inspect_image(packed_path)
    same_verdict(r, raw)
    assert (r.boot.bios, r.boot.uefi) == ("yes", "yes")
    assert r.size == raw.size and r.problems == ()
    assert r.gpt is not None and r.gpt.backup_ok is True
    c = r.compression
    assert c is not None and c.format == COPIES[name]
    assert c.file_size == packed_path.stat().st_size and c.whole and c.decompressed == raw.size
    assert r.not_read == ()  # the whole image fit in what was decompressed
    text = render_text(r)
    assert text.splitlines()[0].startswith(
        f"{packed_path}: ISO 9660 image, 4.2 MiB, {COPIES[name]}-compressed (a "
    )
    assert "Read:         the whole image (4.2 MiB), decompressed" in text
    assert NOT_READ_HEAD not in text


@pytest.mark.parametrize("name", COPIES)
def test_past_the_part_read_is_noted_not_damaged(name: str) -> None:
    """Read only the first 4 MiB of the 4.2 MiB image: the backup GPT at its end is not read,
    which is a note, not a damaged GPT, and the verdict stands."""
    raw = inspect_image(build_image("grub-hybrid"))
    r = inspect_image(build_image(name), decompress_limit=4 * MiB)
    same_verdict(r, raw)
    assert r.problems == ()
    assert r.gpt is not None and r.gpt.primary_ok and r.gpt.backup_ok is None
    # gzip's trailer holds the size modulo 4 GiB, a zstd frame header the first frame's: not
    # taken for the size of an image read in part
    complete = "whether the image is complete (its exact size is not recorded)"
    assert r.not_read == ("the backup GPT (at the image's end)",) + (
        (complete,) if COPIES[name] != "xz" else ()
    )
    c = r.compression
    assert c is not None and not c.whole and c.decompressed == 4 * MiB
    assert c.image_size == raw.size
    assert c.size_is == {"xz": "exact", "zstd": "at least", "gzip": "about"}[COPIES[name]]
    assert r.size == (raw.size if COPIES[name] == "xz" else None)
    text = render_text(r)
    assert f"{NOT_READ_HEAD}\n  - the backup GPT (at the image's end)" in text
    assert "backup not read" in text
    assert "the first 4.0 MiB, decompressed; the rest was not read" in text
    d = json.loads(json.dumps(r.to_dict()))
    assert d["not_read"] == list(r.not_read)
    assert d["compression"]["format"] == COPIES[name] and d["compression"]["whole"] is False


@pytest.mark.parametrize("limit", [64 << 10, 256 << 10, 1 * MiB, 2 * MiB, 3 * MiB, 4 * MiB])
def test_any_cut_gives_the_verdict_or_unknown_never_a_false_no(limit: int) -> None:
    for raw_name, packed in (("grub-hybrid", "grub-hybrid-xz"), ("ubuntu-style", None)):
        raw = inspect_image(build_image(raw_name))
        path = build_image(packed) if packed else _xz(build_image(raw_name))
        r = inspect_image(path, decompress_limit=limit)
        assert r.boot.bios in (raw.boot.bios, "unknown"), r.boot.reasons
        assert r.boot.uefi in (raw.boot.uefi, "unknown"), r.boot.reasons
        assert r.problems == (), r.problems
        assert r.iso is not None and not r.iso.truncated
        unknown = [x for x in r.boot.reasons if "which is all that was decompressed" in x]
        assert bool(unknown) == ("unknown" in (r.boot.bios, r.boot.uefi))
        assert r.not_read, "a cut inside the image leaves something not read"


def _xz(path: Path) -> Path:
    """PATH compressed with xz -T0 (as distributions do), beside the test's files."""
    out = Path(tempfile.gettempdir()).parent / f"{path.name}.xz"
    if not out.exists():
        with open(out, "wb") as f:
            subprocess.run(["xz", "-T0", "-c", str(path)], stdout=f, check=True)
    return out


def test_an_esp_past_the_part_read_makes_uefi_unknown() -> None:
    """Ubuntu-style ISOs append their ESP at the end: cut before it, UEFI is not known."""
    r = inspect_image(_xz(build_image("ubuntu-style")), decompress_limit=1 * MiB)
    assert (r.boot.bios, r.boot.uefi) == ("yes", "unknown")
    assert r.boot.reasons[1] == (
        "UEFI: GPT partition 2 (EFI system partition) starts past the first 1 MiB of the "
        "compressed image, which is all that was decompressed; it was not read."
    )
    assert "GPT partition 2 (EFI system partition) at byte 1,249,280" in r.not_read
    assert "UEFI (x86-64): unknown (not read without decompressing everything)" in render_text(r)


def test_size_not_recorded_bzip2(tmp_path: Path) -> None:
    iso = build_image("grub-hybrid").read_bytes()
    path = tmp_path / "x.iso.bz2"
    path.write_bytes(bz2.compress(iso))
    whole = inspect_image(path)
    assert whole.size == len(iso) and whole.compression is not None
    assert whole.compression.size_from == "decompressed" and whole.compression.whole
    part = inspect_image(path, decompress_limit=1 * MiB)
    assert part.size is None and part.compression is not None
    assert part.compression.image_size is None
    assert part.iso is not None and not part.iso.truncated and part.problems == ()
    assert "whether the image is complete (its exact size is not recorded)" in part.not_read
    assert part.compression.size_is == "unknown" and part.compression.size_from == ""
    assert "size unknown" in render_text(part).splitlines()[0]


def test_zip_members(tmp_path: Path) -> None:
    iso = build_image("grub-hybrid")
    one = tmp_path / "one.zip"
    with zipfile.ZipFile(one, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(iso, "grub.iso")
    r = inspect_image(one)
    assert r.compression is not None and r.compression.member == "grub.iso"
    assert (r.boot.bios, r.boot.uefi) == ("yes", "yes")
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as z:
        z.write(iso, "grub.iso")
        z.writestr("README", "hello")
    with pytest.raises(BadInput, match="holds several files"):
        inspect_image(two)
    assert inspect_image(two, member="grub.iso").image_kind == "iso"


def test_lz4(tmp_path: Path) -> None:
    lz4_frame = pytest.importorskip("lz4.frame")
    path = tmp_path / "x.img.lz4"
    path.write_bytes(lz4_frame.compress(build_image("raw-gpt-esp").read_bytes()))
    r = inspect_image(path)
    assert r.compression is not None and r.compression.format == "lz4"
    assert (r.image_kind, r.boot.uefi) == ("pc-disk", "yes")


def test_compressed_board_image_and_its_first_partition_not_decompressed() -> None:
    image = build_image("raw-pi")
    raw = inspect_image(image)
    packed = _xz(image)
    r = inspect_image(packed)
    same_verdict(r, raw)
    assert r.compression is not None and r.compression.decompressed == 64 * MiB
    assert not r.compression.whole and r.size == 96 * MiB and r.problems == ()
    # cut before the boot partition (4 MiB): what the disk is for is not known
    cut = inspect_image(packed, decompress_limit=2 * MiB)
    assert (cut.image_kind, cut.boot.bios, cut.boot.uefi) == ("unknown-disk", "no", "unknown")
    assert cut.for_hardware == "not known: its first partition was not decompressed"
    assert "MBR partition 1 (type 0x0c) at byte 4,194,304" in cut.not_read


def test_inspect_json_on_a_compressed_image() -> None:
    packed = _xz(build_image("raw-pi"))
    p = subprocess.run(
        [sys.executable, "-m", "usbwriter", "inspect", str(packed), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
        env=dict(os.environ, LC_ALL="C"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["image_kind"] == "board:raspberry-pi" and d["for_hardware"] == "a Raspberry Pi"
    assert d["compression"] == {
        "format": "xz", "file_size": packed.stat().st_size, "image_size": 96 * MiB,
        "size_from": "xz index", "size_is": "exact", "member": None, "decompressed": 64 * MiB,
        "whole": False,
    }  # fmt: skip
    assert d["boot"]["bios"] == "no" and d["boot"]["uefi"] == "no"
    assert d["size"] == 96 * MiB


def test_job_facts_of_a_compressed_image_are_those_of_the_image_inside(tmp_path: Path) -> None:
    from usbwriter.jobs import Request, plan

    packed = _xz(build_image("raw-pi"))
    board = plan(Request(str(packed), str(tmp_path / "out.img"), to_file=True))
    assert board.ready, board.blockers
    assert board.boot is not None and board.boot.compression == "xz"
    assert board.boot.image_kind == "board:raspberry-pi"
    assert any("this image is for a Raspberry Pi; it will not boot a PC" in w.message
               for w in board.warnings)  # fmt: skip
    data = tmp_path / "data.iso.xz"
    data.write_bytes(lzma.compress(build_image("data-only").read_bytes()))
    refused = plan(Request(str(data), str(tmp_path / "out.img"), to_file=True))
    assert not refused.ready and refused.needs_confirmation_only
    assert "no boot records (a data disc)" in refused.blockers[0].message
    assert "--force" in refused.blockers[0].message
    forced = plan(Request(str(data), str(tmp_path / "out.img"), to_file=True, force=True))
    assert forced.ready


def test_the_app_shows_the_same_words() -> None:
    """The boot panel's rows (usbwriter.tui.format, no Textual) for a compressed board image."""
    from usbwriter.tui.format import boot_details, verdict_words

    packed = _xz(build_image("raw-pi"))
    report = inspect_image(packed)
    rows = dict(boot_details(json.loads(json.dumps(report.to_dict()))))
    assert rows["For"] == "a Raspberry Pi: not a PC"
    text = render_text(report)
    assert "xz-compressed (a " in rows["Compressed"] and "96.0 MiB (from the xz index)" in text
    assert rows["Compressed"].endswith(
        "read: the first 64.0 MiB, decompressed; the rest was not read"
    )
    assert "Not read" not in rows
    cut = inspect_image(_xz(build_image("ubuntu-style")), decompress_limit=1 * MiB)
    rows = dict(boot_details(json.loads(json.dumps(cut.to_dict()))))
    assert rows["Not read"].startswith("the backup GPT (at the image's end); ")
    assert verdict_words("unknown") == "not known without decompressing the whole image"

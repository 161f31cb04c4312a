"""Damaged, truncated and foreign inputs: a one-line BadImage or a report that says what is
broken, never a traceback. Each damage is made on purpose to a real image."""

from __future__ import annotations

import gzip
import lzma
import os
import random
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.images import build_image
from usbwriter.boot import BootReport, inspect_image, iso9660, render_text
from usbwriter.errors import BadImage


def patched(src: Path, dst: Path, edits: dict[int, bytes]) -> Path:
    data = bytearray(src.read_bytes())
    for off, b in edits.items():
        data[off : off + len(b)] = b
    dst.write_bytes(bytes(data))
    return dst


def bad_image(path: Path) -> BadImage:
    with pytest.raises(BadImage) as ei:
        inspect_image(path)
    msg = str(ei.value)
    assert str(path) in msg and "\n" not in msg
    return ei.value


def check_report(r: BootReport) -> None:
    assert r.boot.bios in ("yes", "no")
    assert r.boot.uefi in ("yes", "firmware-dependent", "no")
    render_text(r)
    r.to_dict()


def test_missing_directory_empty_short(tmp_path: Path) -> None:
    assert "cannot open" in str(bad_image(tmp_path / "nope.iso"))
    assert "cannot open" in str(bad_image(tmp_path))
    (tmp_path / "empty.iso").write_bytes(b"")
    assert "empty" in str(bad_image(tmp_path / "empty.iso"))
    (tmp_path / "short.iso").write_bytes(b"\x55\xaa" * 50)
    assert "too short" in str(bad_image(tmp_path / "short.iso"))


def test_garbage_zeros_and_compressed(tmp_path: Path) -> None:
    rnd = tmp_path / "random.img"
    rnd.write_bytes(random.Random(1).randbytes(1 << 20))
    assert "not a disk or ISO image" in str(bad_image(rnd))
    zeros = tmp_path / "zeros.img"
    zeros.write_bytes(bytes(1 << 20))
    assert "all zero" in str(bad_image(zeros))
    # compressed: the image inside is inspected, and judged like the raw one
    (tmp_path / "random.img.xz").write_bytes(lzma.compress(rnd.read_bytes()))
    msg = str(bad_image(tmp_path / "random.img.xz"))
    assert "the image in the xz file" in msg and "not a disk or ISO image" in msg
    iso = build_image("data-only").read_bytes()
    (tmp_path / "x.iso.gz").write_bytes(gzip.compress(iso[:100_000]))
    cut = inspect_image(tmp_path / "x.iso.gz")
    assert cut.compression is not None and cut.compression.whole
    assert cut.iso is not None and cut.iso.truncated and cut.size == 100_000
    # compressed twice: said so, not taken for an image
    (tmp_path / "x.iso.gz.xz").write_bytes(lzma.compress(gzip.compress(iso)))
    assert "gzip-compressed data" in str(bad_image(tmp_path / "x.iso.gz.xz"))
    # damaged compressed data: one line naming the file
    packed = bytearray(lzma.compress(rnd.read_bytes()))
    (tmp_path / "cut.img.xz").write_bytes(packed[: len(packed) // 2])
    assert "not a valid xz file" in str(bad_image(tmp_path / "cut.img.xz"))
    packed[len(packed) // 2] ^= 0xFF
    (tmp_path / "flipped.img.xz").write_bytes(packed)
    assert "xz data damaged" in str(bad_image(tmp_path / "flipped.img.xz"))


@pytest.mark.parametrize("name", ["grub-hybrid", "data-md5", "raw-gpt-esp", "windows-like"])
def test_truncated_everywhere(name: str, tmp_path: Path) -> None:
    src = build_image(name).read_bytes()
    cuts = sorted(
        {512, 1024, 4096, 32768, 34816, 36864, 40960, 65536, len(src) // 3, len(src) // 2,
         len(src) - 4096, len(src) - 1}
    )  # fmt: skip
    for cut in cuts:
        p = tmp_path / f"cut{cut}"
        p.write_bytes(src[:cut])
        try:
            r = inspect_image(p)
        except BadImage as e:
            assert "\n" not in str(e)
            continue
        check_report(r)
        if r.iso is not None and r.iso.volume_bytes > cut:
            assert r.iso.truncated and any("truncated" in x for x in r.problems)


def test_primary_gpt_damaged_backup_used(tmp_path: Path) -> None:
    src = build_image("grub-hybrid")
    p = patched(src, tmp_path / "a.iso", {512 + 56: b"\xde\xad"})  # disk GUID, CRC now wrong
    r = inspect_image(p)
    assert r.gpt is not None and not r.gpt.header_crc_ok and r.gpt.backup_ok
    assert any("backup GPT is good" in x for x in r.problems)
    assert r.boot.uefi == "yes"  # firmware falls back to the backup GPT


def test_both_gpts_damaged(tmp_path: Path) -> None:
    src = build_image("grub-hybrid")
    data = src.read_bytes()
    backup_lba = struct.unpack_from("<Q", data, 512 + 32)[0]
    p = patched(src, tmp_path / "b.iso", {512 + 56: b"\xde", backup_lba * 512 + 56: b"\xde"})
    r = inspect_image(p)
    assert r.gpt is not None and not r.gpt.primary_ok and r.gpt.backup_ok is False
    # no GPT to read, so only the El Torito EFI image is left
    assert r.boot.uefi == "firmware-dependent"
    assert any("GPT is damaged" in x for x in r.boot.reasons)


def test_gpt_entries_crc(tmp_path: Path) -> None:
    src = build_image("raw-gpt-esp")
    data = src.read_bytes()
    entries_lba = struct.unpack_from("<Q", data, 512 + 72)[0]
    name_off = entries_lba * 512 + 56
    p = patched(src, tmp_path / "c.img", {name_off: "X".encode("utf-16-le")})
    r = inspect_image(p)
    assert r.gpt is not None and r.gpt.header_crc_ok and not r.gpt.entries_crc_ok
    assert r.boot.uefi == "yes"  # the backup's entries are intact


def test_mbr_code_zeroed(tmp_path: Path) -> None:
    p = patched(build_image("grub-hybrid"), tmp_path / "d.iso", {8: bytes(432)})
    r = inspect_image(p)
    assert r.boot.bios == "no" and r.mbr is not None and not r.mbr.boot_code
    assert r.boot.uefi == "yes"


def test_grub_points_past_the_end(tmp_path: Path) -> None:
    p = patched(build_image("grub-hybrid"), tmp_path / "e.iso", {0x1B0: struct.pack("<Q", 10**9)})
    r = inspect_image(p)
    assert r.mbr is not None and r.mbr.loader == "grub2" and r.mbr.loader_target_ok is False
    assert r.boot.bios == "no" and "points at" in r.boot.reasons[0]


def test_isohybrid_points_at_nothing(tmp_path: Path) -> None:
    p = patched(build_image("syslinux-isohybrid"), tmp_path / "f.iso", {0x1B0: b"\x40\0\0\0"})
    r = inspect_image(p)
    assert r.mbr is not None and r.mbr.loader == "isohybrid" and not r.mbr.loader_target_ok
    assert r.boot.bios == "no"


def test_chainloader_needs_active_partition(tmp_path: Path) -> None:
    p = patched(build_image("raw-mbr-fat"), tmp_path / "g.img", {446: b"\x00"})
    r = inspect_image(p)
    assert r.boot.bios == "no" and "no partition is marked active" in r.boot.reasons[0]
    assert r.boot.uefi == "yes"


def test_overlapping_mbr_partitions(tmp_path: Path) -> None:
    src = build_image("raw-mbr-fat")
    entry = bytes(4) + b"\x83" + bytes(3) + struct.pack("<II", 4096, 4096)
    r = inspect_image(patched(src, tmp_path / "h.img", {462: entry}))
    assert any("overlap" in x for x in r.boot.reasons)
    assert r.boot.uefi == "no"


def _replace_loader(img: Path, offset: int, edit: Callable[[bytearray], None]) -> None:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    target = f"{img}@@{offset}"
    data = bytearray(
        subprocess.run(["mcopy", "-n", "-i", target, "::/EFI/BOOT/BOOTX64.EFI", "-"],
                       check=True, capture_output=True, env=env).stdout
    )  # fmt: skip
    edit(data)
    tmp = img.with_suffix(".efi")
    tmp.write_bytes(bytes(data))
    subprocess.run(["mcopy", "-o", "-n", "-i", target, str(tmp), "::/EFI/BOOT/BOOTX64.EFI"],
                   check=True, capture_output=True, env=env)  # fmt: skip


@pytest.mark.skipif(shutil.which("mcopy") is None, reason="needs mtools")
def test_bootx64_that_is_not_x64(tmp_path: Path) -> None:
    img = tmp_path / "i.img"
    shutil.copy(build_image("raw-gpt-esp"), img)

    def to_ia32(b: bytearray) -> None:
        pe = struct.unpack_from("<I", b, 0x3C)[0]
        b[pe + 4 : pe + 6] = struct.pack("<H", 0x014C)

    _replace_loader(img, 1 << 20, to_ia32)
    r = inspect_image(img)
    assert r.boot.uefi == "no"
    assert any("is not an x64 program (ia32)" in x for x in r.boot.reasons)


@pytest.mark.skipif(shutil.which("mcopy") is None, reason="needs mtools")
def test_bootx64_that_is_not_pe(tmp_path: Path) -> None:
    img = tmp_path / "j.img"
    shutil.copy(build_image("raw-gpt-esp"), img)

    def garble(b: bytearray) -> None:
        b[0:2] = b"ZM"

    _replace_loader(img, 1 << 20, garble)
    r = inspect_image(img)
    assert r.boot.uefi == "no"
    assert [ld.arch for v in r.efi for ld in v.loaders] == ["not-pe"]


def test_catalog_validation_broken(tmp_path: Path) -> None:
    src = build_image("eltorito-bios-uefi")
    r0 = inspect_image(src)
    assert r0.eltorito is not None
    off = r0.eltorito.catalog_lba * 2048
    r = inspect_image(patched(src, tmp_path / "k.iso", {off + 28: b"\x00\x00"}))
    assert r.eltorito is not None and not r.eltorito.validation_ok
    assert any("validation entry" in x for x in r.problems)
    assert len(r.eltorito.entries) == 2


def test_catalog_beyond_the_end(tmp_path: Path) -> None:
    src = build_image("eltorito-bios-only")
    data = bytearray(src.read_bytes())
    data[17 * 2048 + 0x47 : 17 * 2048 + 0x4B] = struct.pack("<I", 0x7FFFFFFF)
    (tmp_path / "l.iso").write_bytes(bytes(data))
    r = inspect_image(tmp_path / "l.iso")
    assert r.eltorito is not None and not r.eltorito.entries
    assert r.boot.bios == "no" and r.boot.uefi == "no"


def test_volume_descriptor_loop_is_bounded(tmp_path: Path) -> None:
    """Supplementary descriptors without a terminator for the rest of the file."""
    src = build_image("data-only").read_bytes()
    svd = bytearray(src[16 * 2048 : 17 * 2048])
    svd[0] = 2
    data = bytearray(src[: 16 * 2048]) + bytes(src[16 * 2048 : 17 * 2048]) + svd * 200
    (tmp_path / "m.iso").write_bytes(bytes(data))
    r = inspect_image(tmp_path / "m.iso")
    assert any("no terminator" in x for x in r.problems)


def test_apple_map_with_huge_count(tmp_path: Path) -> None:
    src = build_image("grub-hybrid")
    r = inspect_image(patched(src, tmp_path / "n.iso", {2048 + 4: b"\xff\xff\xff\xff"}))
    assert r.apple_partition_map is not None and len(r.apple_partition_map.partitions) <= 64


def test_gpt_with_absurd_entry_count(tmp_path: Path) -> None:
    src = build_image("raw-gpt-esp")
    data = bytearray(src.read_bytes())
    data[512 + 80 : 512 + 84] = struct.pack("<I", 0xFFFFFFFF)
    hdr = data[512 : 512 + 92]
    hdr[16:20] = b"\0\0\0\0"
    data[512 + 16 : 512 + 20] = struct.pack("<I", zlib.crc32(bytes(hdr)) & 0xFFFFFFFF)
    (tmp_path / "o.img").write_bytes(bytes(data))
    r = inspect_image(tmp_path / "o.img")
    assert r.gpt is not None and any("implausible" in x for x in r.gpt.problems)
    assert r.boot.uefi == "yes"  # from the backup


def test_large_files_are_summed_over_extents() -> None:
    """Files over 4 GiB are stored as several extents under one name (ISO level 3): the
    walker's entry holds them all, and the report counts its whole size."""
    from usbwriter.iso.contents import Contents, Entry

    part = 0xFFFFF800
    top = Entry((), "dir", 0, None, None)
    wim = Entry(("SOURCES", "INSTALL.WIM"), "file", 2 * part + 1000, None, None, None,
                ((100 * 2048, part), (200 * 2048, part), (300 * 2048, 1000)))  # fmt: skip
    small = Entry(("SOURCES", "SMALL.TXT"), "file", 10, None, None, None, ((400 * 2048, 10),))
    folder = Entry(("SOURCES",), "dir", 2048, None, None)
    contents = Contents("x.iso", "iso9660", top)
    for e in (top, folder, wim, small):
        contents.by_path[e.parts] = e
    tree = iso9660.tree_of(contents)
    assert [(f.path, f.size) for f in tree.large_files] == [
        ("/SOURCES/INSTALL.WIM", 2 * part + 1000)
    ]
    assert tree.extent_paths[400] == ("/SOURCES/SMALL.TXT", 10)
    assert tree.extent_paths[100] == ("/SOURCES/INSTALL.WIM", 2 * part + 1000)


def test_block_device(loop: Callable[..., str]) -> None:
    src = build_image("grub-hybrid")
    dev = loop(0, backing=src, read_only=True)
    r = inspect_image(dev)
    assert r.path == dev and r.size == src.stat().st_size
    assert (r.boot.bios, r.boot.uefi) == ("yes", "yes")


ALTMBR = Path("/usr/lib/syslinux/mbr/altmbr.bin")


@pytest.mark.skipif(not ALTMBR.exists(), reason="needs syslinux's altmbr.bin (syslinux-common)")
def test_altmbr_boots_the_partition_it_names(tmp_path: Path) -> None:
    src = build_image("raw-mbr-fat")
    code = ALTMBR.read_bytes()[:439]
    ok = inspect_image(patched(src, tmp_path / "p.img", {0: code, 439: b"\x01", 446: b"\0"}))
    assert ok.mbr is not None and ok.mbr.loader == "syslinux-altmbr"
    assert ok.boot.bios == "yes"
    bad = inspect_image(patched(src, tmp_path / "q.img", {0: code, 439: b"\x03"}))
    assert bad.boot.bios == "no" and "no such partition" in bad.boot.reasons[0]

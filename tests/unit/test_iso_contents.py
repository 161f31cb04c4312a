"""`usbwriter ls`: the files inside ISOs built by xorriso, genisoimage and pycdlib,
raw and compressed, against the tree they were made of and what xorriso and isoinfo
list; bad inputs give one line and the right exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.isotrees import (
    comparable,
    compress,
    genisoimage_iso,
    listing_of,
    run,
    tool,
    udf_iso,
    xorriso_iso,
)
from usbwriter.errors import BadImage
from usbwriter.iso.contents import IsoImage


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C.UTF-8")
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def ls_json(image: Path, *args: str) -> list[dict[str, Any]]:
    p = usbwriter("ls", str(image), *args, "--json")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    return [json.loads(line) for line in p.stdout.splitlines()]


def one_line_error(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stderr)
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, err


def without_link_times(d: dict[str, Any]) -> dict[str, Any]:
    """xorriso records its own time for symlinks, not the link's."""
    return {
        p: {k: v for k, v in e.items() if not (e["type"] == "symlink" and k == "mtime")}
        for p, e in d.items()
    }


def test_xorriso_rock_ridge_listing_is_the_tree(tree: Path, rr_iso: Path) -> None:
    got = comparable(ls_json(rr_iso, "-R"))
    assert without_link_times(got) == without_link_times(listing_of(tree))


def test_xorriso_and_isoinfo_list_the_same_files(rr_iso: Path) -> None:
    ours = {e["path"] for e in ls_json(rr_iso, "-R")}
    found = run([tool("xorriso"), "-indev", str(rr_iso), "-find", "/"]).stdout.splitlines()
    xorriso = {line.strip("'") for line in found if line.startswith("'")} - {"/"}
    isoinfo = set(run([tool("isoinfo"), "-R", "-f", "-i", str(rr_iso)]).stdout.splitlines())
    assert ours == xorriso == isoinfo


def test_genisoimage_deep_folders_are_in_place_without_rr_moved(tree: Path) -> None:
    iso = genisoimage_iso(tree, tree.parent / "g.iso")
    got = comparable(ls_json(iso, "-R"))
    want = listing_of(tree)
    # cdrkit records the inode's change time in Rock Ridge's modify slot: dates differ
    strip = {p: {k: v for k, v in e.items() if k != "mtime"} for p, e in got.items()}
    assert strip == {p: {k: v for k, v in e.items() if k != "mtime"} for p, e in want.items()}
    assert "/rr_moved" not in got and "/a/b/c/d/e/f/g/h/i/j/deep.txt" in got


def test_text_output_is_like_ls_l(rr_iso: Path) -> None:
    p = usbwriter("ls", str(rr_iso), "/docs")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("lrwxrwxrwx ")
    assert lines[0].endswith(" /docs/dangling -> nowhere/at/all")
    readme = next(line for line in lines if line.endswith("/docs/readme.md"))
    assert readme.startswith("-rw-r----- ") and " 1000 " in readme
    assert "2020-09-" in readme


def test_path_selects_a_folder_or_one_file(rr_iso: Path) -> None:
    assert [e["path"] for e in ls_json(rr_iso, "/boot")] == ["/boot/empty", "/boot/grub"]
    assert [e["path"] for e in ls_json(rr_iso, "boot/grub/")] == ["/boot/grub/grub.cfg"]
    (one,) = ls_json(rr_iso, "/big.bin")
    assert one["type"] == "file" and one["size"] == 1048580


def test_joliet_only_and_plain_iso9660(tree: Path) -> None:
    joliet = xorriso_iso(tree, tree.parent / "j.iso", "--norock", "-J", "-joliet-long")
    got = comparable(ls_json(joliet, "-R"), modes=False)
    want = listing_of(tree)
    files = {p: e["size"] for p, e in want.items() if e["type"] == "file"}
    assert {p: e["size"] for p, e in got.items() if e["type"] == "file"} == files
    assert all(e["mode"] is None for e in ls_json(joliet, "-R"))
    plain = xorriso_iso(tree, tree.parent / "p.iso", "--norock", "-iso-level", "3")
    entries = ls_json(plain, "-R")
    names = {e["path"] for e in entries}
    assert "/BIG.BIN" in names and "/BOOT/GRUB/GRUB.CFG" in names
    assert not any(";" in n for n in names)
    (one,) = ls_json(plain, "/boot/grub/grub.cfg")  # plain names match regardless of case
    assert one["size"] == len(b"set timeout=5\nmenuentry 'x' {}\n")


def test_udf_only_image_lists_udf_names(tree: Path) -> None:
    iso = udf_iso(tree, tree.parent / "u.iso")
    got = comparable(ls_json(iso, "-R"), modes=False)
    want = listing_of(tree)

    def shape(d: dict[str, Any]) -> dict[str, Any]:
        return {p: (e["type"], e["size"], e["target"]) for p, e in d.items()}

    assert shape(got) == shape(want)


@pytest.mark.parametrize("fmt", ["xz", "zst", "gz", "zip"])
def test_compressed_images_list_the_same(rr_iso: Path, fmt: str, tmp_path: Path) -> None:
    copy = tmp_path / "c.iso"
    copy.write_bytes(rr_iso.read_bytes())
    packed = compress(copy, fmt)
    assert ls_json(packed, "-R") == ls_json(rr_iso, "-R")


def test_damaged_images_are_bad_image_one_line(rr_iso: Path, tmp_path: Path) -> None:
    junk = tmp_path / "random.bin"
    junk.write_bytes(os.urandom(256 * 1024))
    one_line_error(usbwriter("ls", str(junk)), 1, str(junk), "not an ISO 9660 image")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:  # a disk image: an MBR with one partition, no ISO
        f.truncate(4 << 20)
        f.seek(446)
        f.write(bytes([0x80, 0, 2, 0, 0x83, 0, 0, 0]) + (1).to_bytes(4, "little"))
        f.write((8191).to_bytes(4, "little"))
        f.seek(510)
        f.write(b"\x55\xaa")
    one_line_error(usbwriter("ls", str(disk)), 1, str(disk), "not an ISO 9660 image")
    cut = tmp_path / "cut.iso"
    data = rr_iso.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    one_line_error(usbwriter("ls", "-R", str(cut)), 1, str(cut), "truncated")
    head = tmp_path / "head.iso"
    head.write_bytes(data[: 17 * 2048])  # the volume descriptor, no directories
    one_line_error(usbwriter("ls", str(head)), 1, str(head))


def test_bad_inputs_are_usage_errors(rr_iso: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.iso"
    one_line_error(usbwriter("ls", str(missing)), 2, str(missing), "no such file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_line_error(usbwriter("ls", str(fifo)), 2, str(fifo), "FIFO")
    one_line_error(usbwriter("ls", str(tmp_path)), 2, str(tmp_path), "directory")
    one_line_error(usbwriter("ls", str(rr_iso), "/no/such"), 2, "/no/such")


def test_crafted_extent_past_the_end_is_bad_image(rr_iso: Path, tmp_path: Path) -> None:
    """A file record pointing far past the image's end: refused, not read."""
    data = bytearray(rr_iso.read_bytes())
    with IsoImage(str(rr_iso)) as iso:
        entry = iso.contents.lookup("/docs/readme.md")
    lba = entry.extents[0][0] // 2048
    needle = lba.to_bytes(4, "little") + lba.to_bytes(4, "big")
    at = data.find(needle)
    assert at > 0
    absurd = 0x7FFFFFF0
    data[at : at + 8] = absurd.to_bytes(4, "little") + absurd.to_bytes(4, "big")
    bad = tmp_path / "absurd.iso"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="past the image's end"):
        IsoImage(str(bad)).close()
    one_line_error(usbwriter("ls", "-R", str(bad)), 1, str(bad))


def test_crafted_directory_loop_is_bad_image(tmp_path: Path) -> None:
    """A folder whose record points back at the root: refused, no hang."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"x")
    iso = xorriso_iso(src, tmp_path / "l.iso", "--norock", "-iso-level", "3")
    data = bytearray(iso.read_bytes())
    root_lba = int.from_bytes(data[16 * 2048 + 156 + 2 : 16 * 2048 + 156 + 6], "little")
    with IsoImage(str(iso)) as img:
        assert img.contents.namespace == "iso9660"
    # the SUB record in the root folder: point its extent at the root folder itself
    root = root_lba * 2048
    at = data.find(b"SUB", root, root + 2048)
    rec = at - 33
    data[rec + 2 : rec + 10] = root_lba.to_bytes(4, "little") + root_lba.to_bytes(4, "big")
    looped = tmp_path / "loop.iso"
    looped.write_bytes(bytes(data))
    p = usbwriter("ls", "-R", str(looped))
    one_line_error(p, 1, str(looped), "loop")


def test_ls_says_which_files_share_their_bytes(tmp_path: Path) -> None:
    """Five names for one 17 MiB extent and a record overlapping it: the listing's sizes
    add up to far more than the image holds; ls says so."""
    from tests.helpers.shared_extents import shared_extent_iso

    iso = shared_extent_iso(tmp_path / "s.iso", pad=1 << 20, shared=17 << 20, links=4)
    p = usbwriter("ls", str(iso))
    assert p.returncode == 0, p.stderr
    assert p.stderr == (
        "usbwriter: note: 6 files share their bytes in the image (hard links, or a crafted "
        "image): 86.0 MiB listed, 17.0 MiB stored; extract writes each in full\n"
    )
    p = usbwriter("ls", str(iso), "/a.bin")
    assert p.returncode == 0 and p.stderr == ""

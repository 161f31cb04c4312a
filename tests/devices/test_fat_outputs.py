"""Backups, extracted files and built ISOs land on FAT and exFAT drives, the usual
format of the drive a user keeps them on. Those file systems have no hard links and no
``RENAME_NOREPLACE`` through FUSE (``link`` is EPERM, ``renameat2`` EINVAL), and FAT
keeps no modes (``fchmod`` is ENOSYS). This kernel has no vfat or exfat driver, so the
drives are mounted with exfat-fuse and fusefat, the user-space drivers Debian ships."""

from __future__ import annotations

import contextlib
import filecmp
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file, run
from tests.helpers.isotrees import make_tree, xorriso_iso
from usbwriter.placing import place_new

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*USBWRITER, *args], capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def mounted(kind: str, loop: LoopFactory, tmp_path: Path) -> Iterator[Path]:
    """The mount point of a 64 MiB exFAT or FAT loop drive, through FUSE."""
    dev = loop(64 * MiB)
    mnt = tmp_path / "drive"
    mnt.mkdir()
    if kind == "exfat":
        run(["mkfs.exfat", dev])
        run(["mount.exfat-fuse", dev, str(mnt)])
    else:
        run(["mkfs.vfat", dev])
        run(["fusefat", "-o", "rw+", dev, str(mnt)])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


@pytest.fixture(params=["exfat", "fat"])
def fat_drive(request: pytest.FixtureRequest, loop: LoopFactory, tmp_path: Path) -> Iterator[Path]:
    with mounted(request.param, loop, tmp_path) as mnt:
        yield mnt


@pytest.fixture
def exfat_drive(loop: LoopFactory, tmp_path: Path) -> Iterator[Path]:
    with mounted("exfat", loop, tmp_path) as mnt:
        yield mnt


def test_place_new_keeps_a_file_made_meanwhile(fat_drive: Path) -> None:
    (fat_drive / "tmp").write_bytes(b"new")
    (fat_drive / "name").write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        place_new(str(fat_drive / "tmp"), str(fat_drive / "name"))
    assert (fat_drive / "name").read_bytes() == b"theirs"
    assert (fat_drive / "tmp").read_bytes() == b"new"
    place_new(str(fat_drive / "tmp"), str(fat_drive / "other"))
    assert (fat_drive / "other").read_bytes() == b"new"
    assert not (fat_drive / "tmp").exists()


def test_backup_onto_the_drive(fat_drive: Path, loop: LoopFactory, tmp_path: Path) -> None:
    backing = random_file(tmp_path / "src.img", 8 * MiB, seed=7)
    src = loop(8 * MiB, backing=backing)
    out = fat_drive / "stick.img"
    p = usbwriter("backup", src, "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert filecmp.cmp(out, backing, shallow=False)
    assert sorted(os.listdir(fat_drive)) == ["stick.img"]
    again = usbwriter("backup", src, "-o", str(out))
    assert again.returncode == 4 and "exists" in again.stderr, again.stderr


# FAT holds no symlinks: a tree of files and folders.
TREE = {
    "boot/grub/grub.cfg": b"set timeout=5\n",
    "EFI/BOOT/BOOTX64.EFI": os.urandom(3 * MiB + 5),
    "docs/read me.txt": b"hello\n",
    "empty": None,
}


def test_extract_onto_the_drive(fat_drive: Path, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", TREE)
    iso = xorriso_iso(tree, tmp_path / "t.iso")
    out = fat_drive / "files"
    p = usbwriter("extract", str(iso), "-o", str(out))
    assert p.returncode == 0, p.stderr
    for rel, content in TREE.items():
        assert (out / rel).is_dir() if content is None else (out / rel).read_bytes() == content
    (tree / "docs" / "read me.txt").write_bytes(b"changed\n")
    second = usbwriter("extract", str(iso), "-o", str(out))
    assert second.returncode == 0 and "exists; kept" in second.stderr, second.stderr
    assert (out / "docs" / "read me.txt").read_bytes() == b"hello\n"


def test_mkiso_onto_the_drive(exfat_drive: Path, tmp_path: Path) -> None:
    """exFAT only: fusefat cannot write past a file's end (EPERM), which pycdlib does
    when it lays out an image; the kernel's vfat can."""
    tree = make_tree(tmp_path / "tree", TREE)
    made = exfat_drive / "built.iso"
    m = usbwriter("mkiso", str(tree), "-o", str(made))
    assert m.returncode == 0, m.stderr
    listing = usbwriter("ls", "-R", str(made))
    assert listing.returncode == 0 and "BOOTX64.EFI" in listing.stdout, listing.stderr
    assert os.listdir(exfat_drive) == ["built.iso"]


def test_names_exfat_cannot_hold_are_reported(exfat_drive: Path, tmp_path: Path) -> None:
    """':' is no part of an exFAT name, and README and readme are one name there: the
    first fails with a word on the name, the second is kept as existing; the rest is
    extracted and the exit code says something failed."""
    tree = make_tree(
        tmp_path / "tree",
        {"a:b.txt": b"a\n", "README": b"upper\n", "readme": b"lower\n", "ok.txt": b"ok\n"},
    )
    iso = xorriso_iso(tree, tmp_path / "names.iso")
    out = exfat_drive / "files"
    p = usbwriter("extract", str(iso), "-o", str(out))
    assert p.returncode == 1, p.stderr
    assert f"failed /a:b.txt: {out}/a:b.txt: the file system there does not take this name" in (
        p.stderr
    )
    assert "exists; kept" in p.stderr
    assert (out / "ok.txt").read_bytes() == b"ok\n"
    assert sorted(os.listdir(out)) in (["README", "ok.txt"], ["ok.txt", "readme"])

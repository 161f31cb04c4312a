"""restore's label rules, checked before anything changes, and the mkfs tools agree."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from usbwriter.errors import BadInput
from usbwriter.jobs.restore import check_label

FAT_REFUSED = list('*?.,;:/\\|+=<>[]"')
EXFAT_REFUSED = list('"*/:<>?\\|')


@pytest.mark.parametrize(
    ("fs", "label", "stored"),
    [
        ("fat32", "USB", "USB"),
        ("fat32", "my stick", "MY STICK"),  # upper-cased, as Windows stores it
        ("fat32", "ABCDEFGHIJK", "ABCDEFGHIJK"),
        ("fat32", "A-B_C!#$%&'", "A-B_C!#$%&'"),
        ("fat32", "(A)@^`{}~", "(A)@^`{}~"),
        ("exfat", "ABCDEFGHIJK", "ABCDEFGHIJK"),
        ("exfat", "ééééééééééé", "ééééééééééé"),
        ("exfat", "Backup 2024", "Backup 2024"),
        ("exfat", "\U0001f600" * 5, "\U0001f600" * 5),  # 10 UTF-16 units
        ("ext4", "ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),
        ("ext4", "é" * 8, "é" * 8),  # 16 bytes
        ("ext4", "a*b?c:d", "a*b?c:d"),
    ],
)
def test_labels_taken(fs: str, label: str, stored: str) -> None:
    assert check_label(fs, label) == stored


@pytest.mark.parametrize(
    ("fs", "label", "why"),
    [
        ("exfat", "ABCDEFGHIJKL", "exfat labels are 1 to 11 characters"),
        ("exfat", "FIFTEEN_CHARS_X", "exfat labels are 1 to 11 characters"),
        ("exfat", "\U0001f600" * 6, "exfat labels are 1 to 11 characters"),
        ("fat32", "ABCDEFGHIJKL", "fat32 labels are 1 to 11 characters"),
        ("fat32", "", "fat32 labels are 1 to 11 characters"),
        ("fat32", " USB", "cannot start with a space"),
        ("fat32", "Stick é", "ASCII"),
        ("fat32", "A\tB", "control character"),
        ("exfat", "A\x7fB", "control character"),
        ("ext4", "A\nB", "control character"),
        ("ext4", "ABCDEFGHIJKLMNOPQ", "ext4 labels are 1 to 16 bytes"),
        ("ext4", "é" * 8 + "A", "ext4 labels are 1 to 16 bytes"),
    ]
    + [("fat32", f"A{c}B", "not allowed in a fat32 label") for c in FAT_REFUSED]
    + [("exfat", f"A{c}B", "not allowed in an exfat label") for c in EXFAT_REFUSED],
)
def test_labels_refused(fs: str, label: str, why: str) -> None:
    with pytest.raises(BadInput) as caught:
        check_label(fs, label)
    assert caught.value.exit_code == 2
    assert why in caught.value.message


def _mkfs(fs: str, label: str, image: Path) -> subprocess.CompletedProcess[str]:
    argv = {
        "fat32": ["mkfs.vfat", "-F", "32", "-n"],
        "exfat": ["mkfs.exfat", "-L"],
        "ext4": ["mkfs.ext4", "-F", "-q", "-L"],
    }[fs]
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    return subprocess.run([*argv, label, str(image)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("label", [f"A{c}B" for c in FAT_REFUSED] + [" AB", "A\tB"])
def test_mkfs_vfat_refuses_what_restore_refuses(label: str, tmp_path: Path) -> None:
    if shutil.which("mkfs.vfat") is None:
        pytest.skip("mkfs.vfat is not installed")
    assert _mkfs("fat32", label, tmp_path / "fat.img").returncode != 0


def test_mkfs_exfat_refuses_twelve_characters(tmp_path: Path) -> None:
    if shutil.which("mkfs.exfat") is None:
        pytest.skip("mkfs.exfat is not installed")
    assert _mkfs("exfat", "ABCDEFGHIJKL", tmp_path / "x.img").returncode != 0
    assert _mkfs("exfat", "\U0001f600" * 6, tmp_path / "x.img").returncode != 0
    assert _mkfs("exfat", "\U0001f600" * 5, tmp_path / "x.img").returncode == 0


@pytest.mark.parametrize(
    ("fs", "label"),
    [
        ("fat32", "A-B_C!#$%&'"),
        ("fat32", "(A)@^`{}~"),
        ("exfat", "ééééééééééé"),
        ("ext4", "é" * 8),
    ],
)
def test_mkfs_takes_what_restore_takes(fs: str, label: str, tmp_path: Path) -> None:
    if shutil.which({"fat32": "mkfs.vfat", "exfat": "mkfs.exfat", "ext4": "mkfs.ext4"}[fs]) is None:
        pytest.skip("mkfs is not installed")
    image = tmp_path / "fs.img"
    stored = check_label(fs, label)
    done = _mkfs(fs, stored, image)
    assert done.returncode == 0, done.stderr
    assert "truncated" not in done.stderr and "Warning" not in done.stderr
    probe = subprocess.run(
        ["blkid", "-o", "value", "-s", "LABEL", str(image)], capture_output=True, text=True
    )
    assert probe.stdout.rstrip("\n") == stored

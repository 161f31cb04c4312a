"""The TUI's pure helpers: names, completion, boot-report rows, column widths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tui.recorded import REPORTS
from usbwriter.progress import Progress
from usbwriter.tui.format import (
    boot_details,
    is_compressed,
    is_image_name,
    start_folder,
    verdict_of,
)
from usbwriter.tui.messages import JobProgress
from usbwriter.tui.widgets.drive_table import fit_widths
from usbwriter.tui.widgets.image_picker import complete_path


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("debian.iso", True),
        ("DEBIAN.ISO", True),
        ("raspios.img.xz", True),
        ("disk.raw", True),
        ("fw.img.gz", True),
        ("arch.iso.zst", True),
        ("notes.txt", False),
        ("archive.tar.gz", False),
        ("iso", False),
    ],
)
def test_image_names(name: str, image: bool) -> None:
    assert is_image_name(name) is image


def test_compressed() -> None:
    assert is_compressed("/x/a.img.xz") and not is_compressed("/x/a.iso")


def test_completion(tmp_path: Path) -> None:
    (tmp_path / "Downloads").mkdir()
    (tmp_path / "debian.iso").touch()
    (tmp_path / "debian.txt").touch()
    (tmp_path / ".hidden.iso").touch()
    assert complete_path(f"{tmp_path}/Dow") == f"{tmp_path}/Downloads/"
    assert complete_path(f"{tmp_path}/deb") == f"{tmp_path}/debian.iso"
    assert complete_path(f"{tmp_path}/x") is None
    assert complete_path(f"{tmp_path}/") in (f"{tmp_path}/Downloads/", f"{tmp_path}/debian.iso")
    assert complete_path("") is None


def test_start_folder(tmp_path: Path) -> None:
    assert start_folder({"HOME": str(tmp_path)}) == Path.cwd()
    (tmp_path / "Downloads").mkdir()
    assert start_folder({"HOME": str(tmp_path)}) == tmp_path / "Downloads"


def test_boot_rows_from_recorded_reports() -> None:
    rows = dict(boot_details(REPORTS["grub-hybrid"]))
    assert rows["Volume"].startswith("ISOIMAGE")
    assert "BIOS /boot/grub/i386-pc/eltorito.img" in rows["El Torito"]
    assert "protective MBR with boot code" in rows["Partitions"]
    assert "EFI system partition" in rows["Partitions"]
    assert rows["EFI loaders"].startswith("x64, ia32 in GPT partition")
    assert verdict_of(REPORTS["grub-hybrid"])[:2] == ("yes", "yes")
    bios_only = dict(boot_details(REPORTS["eltorito-bios-only"]))
    assert bios_only["Partitions"] == "none" and bios_only["EFI loaders"] == "none found"


def test_boot_rows_survive_odd_reports() -> None:
    odd = json.loads(json.dumps(REPORTS["grub-hybrid"]))
    odd.update(iso=None, eltorito=None, mbr=None, gpt=None, efi=[], problems=["GPT header bad"])
    rows = dict(boot_details(odd))
    assert rows["Partitions"] == "none" and rows["Problems"] == "GPT header bad"
    assert dict(boot_details({}))["Image"].startswith("disk image")


def test_fit_widths() -> None:
    natural = {"path": 12, "vendor": 8, "model": 14, "size": 9, "bus": 6, "serial": 20,
               "mounts": 20, "status": 40}  # fmt: skip
    assert fit_widths(natural, 200) == natural
    fitted = fit_widths(natural, 100)
    assert sum(fitted.values()) <= 100
    assert fitted["status"] >= 20 and fitted["size"] == 9 and fitted["path"] == 12


def test_progress_messages_coalesce_per_phase() -> None:
    def msg(phase: str, done: int) -> JobProgress:
        return JobProgress(Progress(phase, done, 10, 1.0, 0.1))

    assert msg("write", 1).can_replace(msg("write", 2))
    assert not msg("write", 9).can_replace(msg("verify", 1))

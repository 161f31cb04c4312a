"""An ISO made by grub-mkrescue, extracted by `usbwriter extract` and built again by
`usbwriter mkiso`: GRUB's eltorito.img, which carries the boot info table the first
disc wrote into it, is still recognised (a boot info table, 4 sectors loaded, GRUB's
hybrid MBR code), and mkiso names the EFI partition by the number fdisk shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.images import build_image

GRUB_ELTORITO = "boot/grub/i386-pc/eltorito.img"
GRUB_EFI = "efi.img"  # where grub-mkrescue puts its EFI image
pytestmark = pytest.mark.skipif(
    shutil.which("fdisk") is None or shutil.which("xorriso") is None,
    reason="needs fdisk and xorriso",
)


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C.UTF-8", SOURCE_DATE_EPOCH="1700000000")
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("remaster") / "tree"
    p = usbwriter("extract", str(build_image("grub-hybrid")), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert (out / GRUB_ELTORITO).is_file() and (out / GRUB_EFI).is_file()
    return out


def test_an_extracted_grub_eltorito_img_is_recognised(extracted: Path, tmp_path: Path) -> None:
    iso = tmp_path / "again.iso"
    p = usbwriter("mkiso", str(extracted), "-o", str(iso), "--boot-bios", GRUB_ELTORITO,
                  "--boot-efi", GRUB_EFI, "--hybrid", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "warning" not in p.stderr, p.stderr
    made = json.loads(p.stdout)
    bios = made["boot"][0]
    assert bios["platform"] == "bios" and bios["image"] == GRUB_ELTORITO
    # as grub-mkrescue makes it: no emulation, a boot info table, 4 sectors loaded
    assert (bios["emulation"], bios["boot_info_table"], bios["load_sectors"]) == ("none", True, 4)
    assert (made["hybrid"]["bios"], made["hybrid"]["uefi"]) == (True, True), made["hybrid"]
    assert (made["stick"]["bios"], made["stick"]["uefi"]) == ("yes", "yes"), made["stick"]
    # the table written now, not the first disc's: bytes 8-11 the primary volume
    # descriptor's block, 12-15 the image's own block
    record = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    lba = next(int(line.split()[-1]) for line in record.splitlines()
               if line.startswith("El Torito boot img :   1"))  # fmt: skip
    with open(iso, "rb") as f:
        f.seek(lba * 2048 + 8)
        table = f.read(8)
    assert int.from_bytes(table[:4], "little") == 16
    assert int.from_bytes(table[4:], "little") == lba


def test_the_efi_partition_is_named_as_fdisk_numbers_it(extracted: Path, tmp_path: Path) -> None:
    for options, bios in (([ "--boot-bios", GRUB_ELTORITO, "--boot-efi", GRUB_EFI], True),
                          (["--boot-efi", GRUB_EFI], False)):  # fmt: skip
        iso = tmp_path / f"{bios}.iso"
        p = usbwriter("mkiso", str(extracted), "-o", str(iso), *options, "--hybrid")
        assert p.returncode == 0, p.stderr
        fdisk = subprocess.run(["fdisk", "-l", str(iso)], capture_output=True, text=True,
                               check=True, env=dict(os.environ, LC_ALL="C")).stdout  # fmt: skip
        number = next(line.split()[0].removeprefix(str(iso)) for line in fdisk.splitlines()
                      if line.startswith(str(iso)) and "EFI" in line)  # fmt: skip
        assert number == ("2" if bios else "1"), fdisk
        assert f"the EFI image as partition {number}" in p.stdout, p.stdout
        report = usbwriter("inspect", str(iso))
        assert f"MBR partition {number} (type 0xef)" in report.stdout, report.stdout


def test_a_folder_with_boot_images_and_no_boot_option_is_told(
    extracted: Path, tmp_path: Path
) -> None:
    """Without --boot-bios or --boot-efi the image made does not boot: mkiso says so
    and gives the options for the boot images it sees in the folder."""
    iso = tmp_path / "plain.iso"
    p = usbwriter("mkiso", str(extracted), "-o", str(iso))
    assert p.returncode == 0, p.stderr
    assert f"--boot-bios {GRUB_ELTORITO} --boot-efi {GRUB_EFI}" in p.stderr, p.stderr
    assert "will not boot" in p.stderr

"""`usbwriter mkiso --hybrid` against real firmware.

A folder with isolinux (BIOS) and a GRUB EFI image (UEFI), each printing a marker on the
serial port, is made into an ISO by mkiso; `usbwriter inspect --json` says what a stick
holding it boots on; usbwriter writes it to a loop device, which qemu boots as a USB
stick with SeaBIOS and with OVMF. It must boot exactly on the firmware the report says
yes for, and the report must agree with what mkiso said it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.mkiso_boot import (
    BIOS_IMAGE,
    EFI_IMAGE,
    GRUB_BIOS_IMAGE,
    bootable_tree,
    grub_bios_tree,
    missing_tools,
)
from tests.helpers.qemuboot import BootOutcome, boot_stick, qemu_available

pytestmark = [
    pytest.mark.boot,
    pytest.mark.root,
    pytest.mark.skipif(qemu_available() is not None, reason=str(qemu_available())),
    pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}"),
]

NAME = "mkiso-hybrid"
STICK_SLACK = 16 << 20

# (options, BIOS verdict, UEFI verdict, what mkiso says a stick boots on)
CASES: dict[str, tuple[list[str], str, str, dict[str, bool] | None]] = {
    "bios-and-uefi": (
        ["--boot-bios", BIOS_IMAGE, "--boot-efi", EFI_IMAGE, "--hybrid"],
        "yes", "yes", {"bios": True, "uefi": True},
    ),
    "uefi-only": (
        ["--boot-efi", EFI_IMAGE, "--hybrid"],
        "no", "yes", {"bios": False, "uefi": True},
    ),
    # El Torito only: no MBR, so BIOS does not boot the stick; OVMF reads El Torito
    "not-hybrid": (
        ["--boot-bios", BIOS_IMAGE, "--boot-efi", EFI_IMAGE],
        "no", "firmware-dependent", None,
    ),
}  # fmt: skip


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C.UTF-8", SOURCE_DATE_EPOCH="1700000000")
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, timeout=180, env=env, check=False,
    )  # fmt: skip


def write_and_boot(iso: Path, loop: Callable[..., str]) -> tuple[BootOutcome, BootOutcome]:
    """ISO written by usbwriter to a loop device, booted as a USB stick with SeaBIOS and
    with OVMF at once."""
    dev = loop(iso.stat().st_size + STICK_SLACK)
    p = usbwriter("--image", str(iso), "--device", dev, "--yes")
    assert p.returncode == 0, p.stderr
    with ThreadPoolExecutor(max_workers=2) as pool:
        bios_f = pool.submit(boot_stick, dev, "bios")
        uefi_f = pool.submit(boot_stick, dev, "uefi")
        return bios_f.result(), uefi_f.result()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bootable_tree(tmp_path_factory.mktemp("mkiso-boot"), NAME)


@pytest.mark.parametrize("case", list(CASES))
def test_hybrid_iso_boots_where_the_report_says(
    case: str, tree: Path, tmp_path: Path, loop: Callable[..., str]
) -> None:
    options, want_bios, want_uefi, want_hybrid = CASES[case]
    iso = tmp_path / f"{case}.iso"
    p = usbwriter("mkiso", str(tree), "-o", str(iso), *options, "--json")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    assert [e.get("platform") for e in made["boot"] if "platform" in e] == [
        p for p, opt in (("bios", "--boot-bios"), ("uefi", "--boot-efi")) if opt in options
    ]
    if want_hybrid is None:
        assert made["hybrid"] is None
    else:
        assert {k: made["hybrid"][k] for k in ("bios", "uefi")} == want_hybrid
        if not want_hybrid["bios"]:
            assert "UEFI only" in made["hybrid"]["summary"]

    p = usbwriter("inspect", str(iso), "--json")
    assert p.returncode == 0, p.stderr
    verdict = json.loads(p.stdout)["boot"]
    why = "\n".join(verdict["reasons"])
    assert (verdict["bios"], verdict["uefi"]) == (want_bios, want_uefi), why
    assert (made["stick"]["bios"], made["stick"]["uefi"]) == (want_bios, want_uefi)

    bios, uefi = write_and_boot(iso, loop)

    tail = "\n".join(bios.log.splitlines()[-15:])
    if verdict["bios"] == "yes":
        assert bios.marker == f"USBW-MARK {NAME} pc", f"SeaBIOS did not boot:\n{why}\n{tail}"
    else:
        assert not bios.booted, f"the report says no BIOS boot, but it booted:\n{why}"
    tail = "\n".join(uefi.log.splitlines()[-15:])
    if verdict["uefi"] in ("yes", "firmware-dependent"):
        assert uefi.marker == f"USBW-MARK {NAME} efi", f"OVMF did not boot:\n{why}\n{tail}"
    else:
        assert not uefi.booted, f"the report says no UEFI boot, but it booted:\n{why}"


@pytest.mark.parametrize("loader", ["isolinux", "grub"])
def test_bios_boot_image_boots_from_the_disc(loader: str, tree: Path, tmp_path: Path) -> None:
    """As a CD/DVD (El Torito, no MBR) under SeaBIOS: isolinux.bin and GRUB's
    eltorito.img both find the rest of themselves through the boot info table mkiso
    writes, and GRUB reads its grub.cfg, the volume's last file, through its 32 KiB
    disk cache: the padding after it keeps that read on the medium."""
    if loader == "grub":
        folder, image, name = (
            grub_bios_tree(tmp_path / "g", "mkiso-grub"),
            GRUB_BIOS_IMAGE,
            "mkiso-grub",
        )
    else:
        folder, image, name = tree, BIOS_IMAGE, NAME
    iso = tmp_path / f"{loader}.iso"
    p = usbwriter("mkiso", str(folder), "-o", str(iso), "--boot-bios", image, "--json")
    assert p.returncode == 0, p.stderr
    entry = json.loads(p.stdout)["boot"][0]
    assert (entry["boot_info_table"], entry["load_sectors"]) == (True, 4), entry
    outcome = boot_stick(iso, "bios", disc=True)
    tail = "\n".join(outcome.log.splitlines()[-15:])
    assert outcome.marker == f"USBW-MARK {name} pc", f"SeaBIOS did not boot the disc:\n{tail}"


def test_grub_hybrid_stick_boots_on_bios_and_uefi(tmp_path: Path, loop: Callable[..., str]) -> None:
    """GRUB for BIOS (eltorito.img) and for UEFI (the EFI image) with --hybrid: the MBR
    holds GRUB's boot_hybrid code pointing at the core image, which mkiso tells where
    the rest of it lies (as xorriso's --grub2-boot-info does). Written to a stick, it
    boots on SeaBIOS and OVMF, as the report says."""
    name = "mkiso-grub-hybrid"
    folder = grub_bios_tree(tmp_path / "g", name, efi=True)
    iso = tmp_path / "grub-hybrid.iso"
    p = usbwriter("mkiso", str(folder), "-o", str(iso), "--boot-bios", GRUB_BIOS_IMAGE,
                  "--boot-efi", EFI_IMAGE, "--hybrid", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    assert (made["hybrid"]["bios"], made["hybrid"]["uefi"]) == (True, True), made["hybrid"]
    assert (made["stick"]["bios"], made["stick"]["uefi"]) == ("yes", "yes"), made["stick"]
    bios, uefi = write_and_boot(iso, loop)
    assert bios.marker == f"USBW-MARK {name} pc", "\n".join(bios.log.splitlines()[-15:])
    assert uefi.marker == f"USBW-MARK {name} efi", "\n".join(uefi.log.splitlines()[-15:])


def test_an_extracted_grub_iso_built_again_boots(tmp_path: Path, loop: Callable[..., str]) -> None:
    """Remastering: the grub-mkrescue test image extracted by usbwriter and built again
    by mkiso with its own boot images (GRUB's eltorito.img, still carrying the first
    disc's boot info table, and efi.img) boots as a stick on SeaBIOS and OVMF, and as a
    disc on SeaBIOS."""
    from tests.helpers.images import build_image

    source = build_image("grub-hybrid")
    folder = tmp_path / "tree"
    p = usbwriter("extract", str(source), "-o", str(folder))
    assert p.returncode == 0, p.stderr
    iso = tmp_path / "again.iso"
    p = usbwriter("mkiso", str(folder), "-o", str(iso), "--boot-bios", GRUB_BIOS_IMAGE,
                  "--boot-efi", "efi.img", "--hybrid", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    assert (made["boot"][0]["boot_info_table"], made["boot"][0]["load_sectors"]) == (True, 4)
    assert (made["stick"]["bios"], made["stick"]["uefi"]) == ("yes", "yes"), made["stick"]
    want = "USBW-MARK grub-hybrid"
    bios, uefi = write_and_boot(iso, loop)
    assert bios.marker == f"{want} pc", "\n".join(bios.log.splitlines()[-15:])
    assert uefi.marker == f"{want} efi", "\n".join(uefi.log.splitlines()[-15:])
    disc = boot_stick(iso, "bios", disc=True)
    assert disc.marker == f"{want} pc", "\n".join(disc.log.splitlines()[-15:])

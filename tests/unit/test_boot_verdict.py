"""The verdict from facts built by hand: no image, no file, no I/O."""

from __future__ import annotations

import builtins
import os
import subprocess
from dataclasses import replace
from typing import Any

import pytest

from usbwriter.boot.kind import classify
from usbwriter.boot.model import (
    BoardSigns,
    BootPartition,
    EfiLoader,
    EfiVolume,
    ElTorito,
    ElToritoEntry,
    Gpt,
    GptPartition,
    Mbr,
    MbrPartition,
)
from usbwriter.boot.verdict import Facts, decide

BOOTX64 = EfiLoader("/EFI/BOOT/BOOTX64.EFI", "x64", 0x8664, 4096, True, False)
BOOTIA32 = EfiLoader("/EFI/BOOT/BOOTIA32.EFI", "ia32", 0x14C, 4096, True, False)


@pytest.fixture(autouse=True)
def no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deciding must not open a file or run a program."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"I/O while deciding: {args!r}")

    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def part(index: int, start: int, *, type: int = 0x0C, bootable: bool = False) -> MbrPartition:
    return MbrPartition(index, 0x80 if bootable else 0, bootable, type, "FAT32", start, 2048)


def mbr(
    loader: str | None,
    parts: tuple[MbrPartition, ...] = (),
    *,
    target: int | None = None,
    target_ok: bool | None = None,
) -> Mbr:
    protective = any(p.type == 0xEE for p in parts)
    return Mbr(
        signature=True,
        boot_code=loader is not None,
        loader=loader,
        loader_name={"dos-mbr": "DOS/Windows MBR", "grub2": "GRUB"}.get(loader or "", loader),
        loader_target=target,
        loader_target_ok=target_ok,
        disk_signature=0,
        partitions=parts,
        protective=protective,
        hybrid=protective and any(p.type not in (0, 0xEE) for p in parts),
    )


def gpt(*parts: GptPartition) -> Gpt:
    return Gpt(512, True, True, True, True, "guid", 34, 100_000, parts, ())


def gpt_part(index: int, first: int, *, esp: bool = False, legacy: bool = False) -> GptPartition:
    return GptPartition(
        index, "t", "EFI system partition" if esp else "data", "g", "", first, first + 2047,
        first * 512, 2048 * 512, 4 if legacy else 0, esp, legacy,
    )  # fmt: skip


def volume(source: str, via: Any, *loaders: EfiLoader, esp: bool = True) -> EfiVolume:
    return EfiVolume(source, via, 1 << 20, 1 << 20, esp, True, None, loaders)


def facts(**kw: Any) -> Facts:
    base = Facts(
        mbr=None,
        gpt=None,
        gpt_used=False,
        mbr_table_problem=None,
        eltorito=None,
        efi=(),
        windows_installer=False,
        windows_evidence=None,
        superfloppy=False,
        boot_sectors=frozenset(),
        altmbr_partition=None,
    )
    return replace(base, **kw)


def test_no_signature_boots_nowhere() -> None:
    x86 = ElToritoEntry(1, 0, "x86", 0, True, "none", 0, 0, 4, 30, 30 * 2048, None, None)
    v = decide(facts(iso=True, eltorito=ElTorito(20, True, (x86,), ())))
    assert (v.bios, v.uefi) == ("no", "no")
    assert v.reasons[0].startswith("BIOS: sector 0 has no boot signature")
    assert v.reasons[-1] == "UEFI: no EFI loader anywhere in the image."


def test_grub_hybrid_boots_both_and_notes_no_active_partition() -> None:
    m = mbr("grub2", (part(1, 0, type=0xCD), part(2, 100, type=0xEF)),
            target=2048 * 512, target_ok=True)  # fmt: skip
    v = decide(facts(mbr=m, efi=(volume("MBR partition 2 (type 0xef)", "mbr", BOOTX64),)))
    assert (v.bios, v.uefi) == ("yes", "yes")
    assert "loads GRUB's core image from sector 2,048" in v.reasons[0]
    assert v.reasons[-1].startswith("Note: no MBR partition is marked active")


def test_grub_pointing_nowhere_does_not_boot_bios() -> None:
    m = mbr("grub2", target=4096 * 512, target_ok=False)
    v = decide(facts(mbr=m))
    assert v.bios == "no"
    assert "where GRUB's core image is not" in v.reasons[0]


@pytest.mark.parametrize(
    ("boot_sectors", "bios"), [(frozenset({2048}), "yes"), (frozenset(), "no")]
)
def test_chainloader_boots_the_active_partition_if_it_has_a_boot_sector(
    boot_sectors: frozenset[int], bios: str
) -> None:
    m = mbr("dos-mbr", (part(1, 2048, bootable=True),))
    v = decide(facts(mbr=m, boot_sectors=boot_sectors))
    assert v.bios == bios
    assert v.reasons[0].startswith("BIOS: the MBR carries DOS/Windows MBR, which boots the active")


def test_chainloader_without_an_active_partition() -> None:
    v = decide(facts(mbr=mbr("dos-mbr", (part(1, 2048),)), boot_sectors=frozenset({2048})))
    assert v.bios == "no"
    assert "no partition is marked active" in v.reasons[0]


def test_altmbr_boots_the_partition_byte_439_names() -> None:
    m = mbr("syslinux-altmbr", (part(1, 2048), part(2, 8192)))
    on = decide(facts(mbr=m, altmbr_partition=2, boot_sectors=frozenset({8192})))
    assert on.bios == "yes"
    assert "active partition 2 (FAT32)" in on.reasons[0]
    missing = decide(facts(mbr=m, altmbr_partition=3, boot_sectors=frozenset({2048, 8192})))
    assert missing.bios == "no"
    assert "which boots partition 3, and there is no such partition" in missing.reasons[0]
    unknown = decide(facts(mbr=m, altmbr_partition=None))
    assert "which boots partition ?, and there is no such partition" in unknown.reasons[0]


def test_gptmbr_boots_a_legacy_bios_bootable_partition_with_a_boot_sector() -> None:
    m = mbr("syslinux-gptmbr", (part(1, 1, type=0xEE),))
    g = gpt(gpt_part(1, 2048, esp=True), gpt_part(2, 8192, legacy=True))
    yes = decide(facts(mbr=m, gpt=g, gpt_used=True, boot_sectors=frozenset({8192})))
    assert yes.bios == "yes"
    assert "GPT partition 2 (marked legacy BIOS bootable)" in yes.reasons[0]
    no = decide(facts(mbr=m, gpt=g, gpt_used=True, boot_sectors=frozenset({2048})))
    assert no.bios == "no"


def test_eltorito_only_efi_is_firmware_dependent() -> None:
    entry = ElToritoEntry(2, 1, "efi", 0xEF, True, "none", 0, 0, 0, 40, 40 * 2048, None, None)
    et = ElTorito(20, True, (entry,), ())
    v = decide(facts(eltorito=et, efi=(volume("El Torito entry 2", "eltorito", BOOTX64),)))
    assert v.uefi == "firmware-dependent"
    assert "only in the El Torito entry 2 EFI image" in v.reasons[-1]


def test_uefi_needs_an_x64_loader() -> None:
    v = decide(facts(efi=(volume("GPT partition 1 (EFI system partition)", "gpt", BOOTIA32),)))
    assert v.uefi == "no"
    assert "has loaders only for ia32, not for x64" in v.reasons[1]


def test_a_gpt_behind_a_non_protective_mbr_is_ignored() -> None:
    v = decide(facts(mbr=mbr(None, (part(1, 2048),)), gpt=gpt(gpt_part(1, 2048, esp=True))))
    assert v.uefi == "no"
    assert any("not a protective MBR" in r for r in v.reasons)


def test_windows_installer_comes_first_and_never_boots_uefi_from_el_torito() -> None:
    efi = (volume("El Torito entry 2", "eltorito", BOOTX64),)
    v = decide(facts(iso=True, efi=efi, windows_installer=True, windows_evidence="UDF file system"))
    assert (v.bios, v.uefi) == ("no", "no")
    assert v.reasons[0].startswith("This is a Windows installer image (UDF file system).")


# ---- a compressed image read in part: "unknown", never a "no" it cannot show ------------------

PART = 64 << 20  # what was decompressed


def test_grub_core_past_the_part_read_is_unknown() -> None:
    m = mbr("grub2", target=PART + 512, target_ok=None)
    v = decide(facts(mbr=m, decompressed=PART))
    assert v.bios == "unknown"
    assert v.reasons[0] == (
        "BIOS: the MBR carries GRUB boot code, which loads GRUB's core image from sector "
        "131,073, past the first 64 MiB of the compressed image, which is all that was "
        "decompressed; whether it is there was not read."
    )


def test_active_partition_past_the_part_read_is_unknown() -> None:
    m = mbr("dos-mbr", (part(1, 200_000, bootable=True),))
    v = decide(facts(mbr=m, decompressed=PART, boot_sectors_unread=frozenset({200_000})))
    assert v.bios == "unknown" and "that partition starts past the first 64 MiB" in v.reasons[0]


def test_an_esp_past_the_part_read_is_unknown_unless_another_boots() -> None:
    unread = replace(volume("GPT partition 2 (EFI system partition)", "gpt"), fat=False,
                     unread=True)  # fmt: skip
    v = decide(facts(efi=(unread,), decompressed=PART))
    assert v.uefi == "unknown"
    assert "GPT partition 2 (EFI system partition) starts past the first 64 MiB" in v.reasons[-1]
    found = volume("GPT partition 1 (EFI system partition)", "gpt", BOOTX64)
    assert decide(facts(efi=(found, unread), decompressed=PART)).uefi == "yes"
    not_read = replace(BOOTX64, arch="not-read")
    cut = volume("GPT partition 1 (EFI system partition)", "gpt", not_read)
    assert decide(facts(efi=(cut,), decompressed=PART)).uefi == "unknown"


def test_a_damaged_primary_gpt_whose_backup_was_not_read_is_unknown() -> None:
    g = replace(gpt(), primary_ok=False, backup_ok=None, problems=("GPT header fails its CRC",))
    v = decide(facts(gpt=g, decompressed=PART, gpt_backup_unread=True))
    assert v.uefi == "unknown" and "backup GPT" in v.reasons[-1]


# ---- what the image is for -------------------------------------------------------------------


def board(*files: str, spl: str | None = None, unread: bool = False) -> BoardSigns:
    p = BootPartition("MBR partition 1 (type 0x0c)", 1 << 20, None if unread else "fat",
                      tuple(files), unread=unread)  # fmt: skip
    name = {"allwinner": "Allwinner SPL (eGON.BT0)"}.get(spl or "")
    return BoardSigns(spl, 8192 if spl else None, name, (p,))


DATA = mbr(None, (part(1, 2048),))


@pytest.mark.parametrize(
    ("kw", "kind", "words"),
    [
        ({"board": board("/bootcode.bin", "/config.txt")}, "board:raspberry-pi",
         "a Raspberry Pi"),
        ({"board": board("/config.txt")}, "data-disk", "a data disk"),
        ({"board": board(spl="allwinner")}, "board:u-boot",
         "a board booting with U-Boot (Allwinner SPL)"),
        ({"board": board("/boot/boot.scr")}, "board:u-boot",
         "a board booting with U-Boot (boot/boot.scr)"),
        ({"board": board(unread=True), "decompressed": PART}, "unknown-disk",
         "not known: its first partition was not decompressed"),
        ({"board": board()}, "data-disk", "a data disk"),
    ],
)  # fmt: skip
def test_classify_disks(kw: dict[str, Any], kind: str, words: str) -> None:
    f = facts(mbr=DATA, **kw)
    v = decide(f)
    assert (v.bios, v.uefi) == ("no", "no")
    assert classify(f, v.bios, v.uefi)[:2] == (kind, words)
    assert classify(f, v.bios, v.uefi)[2] == v.reasons[0]


def test_a_board_that_also_boots_a_pc_is_a_pc_disk() -> None:
    f = facts(mbr=DATA, board=board("/start4.elf"),
              efi=(volume("MBR partition 1 (type 0x0c)", "mbr", BOOTX64, esp=False),))  # fmt: skip
    v = decide(f)
    assert v.uefi == "yes" and classify(f, v.bios, v.uefi)[:2] == ("pc-disk", "a PC (UEFI)")

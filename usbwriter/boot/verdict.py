"""The verdict: will a stick holding this image, written raw, boot on BIOS and on UEFI?

The rules follow what firmware does with a USB disk (see docs/boot-report.md):
- BIOS reads sector 0, checks 0x55AA and runs the first 440 bytes. It never looks at
  El Torito on a disk: that is for CD/DVD drives only.
- UEFI reads the partition table (a GPT behind a protective MBR, else the MBR), mounts
  the FAT file systems it finds and runs \\EFI\\BOOT\\BOOTX64.EFI on x86-64. Reading an
  El Torito EFI image from a disk is an EDK2 (OVMF) extra that many PCs lack.

A compressed image is read from its first part only: where what decides a verdict lies
past that part, the verdict is "unknown", never a "no" it cannot show.

What the image is for is said by ``usbwriter.boot.kind.classify``.

The verdict is a pure function of Facts: everything it needs is read from the image
beforehand (usbwriter.boot.report); nothing here reads the image.
"""

from __future__ import annotations

from dataclasses import dataclass

from usbwriter.boot.kind import classify, past
from usbwriter.boot.mbr import CHAINLOADERS
from usbwriter.boot.model import (
    BiosVerdict,
    BoardSigns,
    EfiVolume,
    ElTorito,
    Gpt,
    GrubCore,
    Mbr,
    MbrPartition,
    UefiVerdict,
    Verdict,
)

SECTOR = 512


@dataclass(frozen=True)
class Facts:
    """What was read from the image, all the verdict looks at."""

    mbr: Mbr | None
    gpt: Gpt | None
    gpt_used: bool  # the firmware would read the GPT (protective MBR, valid table)
    mbr_table_problem: str | None
    eltorito: ElTorito | None
    efi: tuple[EfiVolume, ...]
    windows_installer: bool
    windows_evidence: str | None
    superfloppy: bool
    # the first LBAs of the partitions BIOS boot code could chainload (the MBR's, the GPT's
    # legacy BIOS bootable ones) whose first sector is a boot sector (0x55AA and code)
    boot_sectors: frozenset[int]
    altmbr_partition: int | None  # byte 439 of sector 0: the partition altmbr.bin boots
    # A compressed image read in part: how much was decompressed (None: the whole image
    # was read), the chainload candidates' first LBAs past that, whether a backup GPT the
    # firmware would fall back on lies past it
    decompressed: int | None = None
    boot_sectors_unread: frozenset[int] = frozenset()
    gpt_backup_unread: bool = False
    iso: bool = False  # an ISO 9660 or UDF volume
    board: BoardSigns | None = None  # read for disk images (not ISOs)
    grub: GrubCore | None = None  # GRUB's core image the MBR loads, when read


def _fmt_off(off: int) -> str:
    return f"byte {off:,}" if off % SECTOR else f"sector {off // SECTOR:,}"


def bios_verdict(f: Facts) -> tuple[BiosVerdict, list[str]]:
    mbr = f.mbr
    eltorito_bios = f.eltorito is not None and any(e.platform == "x86" for e in f.eltorito.entries)
    cd_only = (
        " Its El Torito BIOS entry is only used when the image is a CD/DVD, not a USB disk."
        if eltorito_bios
        else ""
    )
    if mbr is None or not mbr.signature:
        return "no", [
            "BIOS: sector 0 has no boot signature (0x55AA), so BIOS will not boot "
            "the stick." + cd_only
        ]
    kind, name = mbr.loader, mbr.loader_name or "boot code"
    if kind is None:
        return "no", ["BIOS: the MBR holds no boot code, so BIOS has nothing to run." + cd_only]
    if kind in ("vbr-not-bootable", "not-bootable-stub"):
        return "no", [f"BIOS: sector 0 is a {name}." + cd_only]
    if kind in ("grub2", "isohybrid"):
        what = "GRUB's core image" if kind == "grub2" else "isolinux.bin"
        where = _fmt_off(mbr.loader_target) if mbr.loader_target is not None else "nowhere"
        if mbr.loader_target_ok and kind == "grub2":
            chained = _grub_chain(f.grub, name, where)
            if chained is not None:
                return chained
        if mbr.loader_target_ok:
            return "yes", [
                f"BIOS: the MBR carries {name} boot code, which loads {what} "
                f"from {where} of the image."
            ]
        if mbr.loader_target_ok is None and mbr.loader_target is not None:
            return "unknown", [
                f"BIOS: the MBR carries {name} boot code, which loads {what} from {where}, "
                f"{past(f)}; whether it is there was not read."
            ]
        return "no", [
            f"BIOS: the MBR carries {name} boot code, but it points at {where}, "
            f"where {what} is not (broken or truncated image)."
        ]
    if kind in CHAINLOADERS:
        return _chainload(f, mbr, name)
    if kind == "syslinux-gptmbr":
        parts = [p for p in (f.gpt.partitions if f.gpt else ()) if p.legacy_bios_bootable]
        for p in parts:
            if p.first_lba in f.boot_sectors:
                return "yes", [
                    f"BIOS: the MBR carries {name}, which boots GPT partition "
                    f"{p.index} (marked legacy BIOS bootable)."
                ]
        for p in parts:
            if p.first_lba in f.boot_sectors_unread:
                return "unknown", [
                    f"BIOS: the MBR carries {name}, which boots GPT partition {p.index}; "
                    f"that partition starts {past(f)}."
                ]
        return "no", [
            f"BIOS: the MBR carries {name}, but no GPT partition marked legacy "
            "BIOS bootable holds a boot sector."
        ]
    if kind in ("vbr", "syslinux-vbr"):
        return "yes", [f"BIOS: sector 0 is a {name}; BIOS runs it as the disk's boot code."]
    return "yes", [
        "BIOS: the MBR holds boot code of a kind usbwriter does not recognise; "
        "BIOS will run it, but what it loads next could not be checked."
    ]


def _grub_chain(g: GrubCore | None, name: str, where: str) -> tuple[BiosVerdict, list[str]] | None:
    """The verdict when GRUB's built-in configuration chains a file (ntldr /bootmgr, as
    a file-copy stick has it); None: the plain GRUB words apply."""
    if g is None or g.chains is None or not g.chains.startswith("/") or g.found is None:
        return None
    run = f"{g.command} {g.chains}"
    if g.found:
        return "yes", [
            f"BIOS: GRUB chains {g.chains.lstrip('/')}: the MBR carries {name} boot code, "
            f"which loads GRUB's core image from {where}; its built-in configuration runs "
            f"'{run}', and {g.chains} is on {g.found_on}."
        ]
    return "no", [
        f"BIOS: the MBR carries {name} boot code whose built-in configuration runs "
        f"'{run}', but {g.chains} is not on any FAT partition of the disk, so GRUB "
        "stops with an error."
    ]


def _chainload(f: Facts, mbr: Mbr, name: str) -> tuple[BiosVerdict, list[str]]:
    if mbr.loader == "syslinux-altmbr":  # boots the partition numbered in byte 439
        number = f.altmbr_partition
        active = [p for p in mbr.partitions if p.index == number and p.type != 0]
        if not active:
            return "no", [
                f"BIOS: the MBR carries {name}, which boots partition "
                f"{'?' if number is None else number}, and there is no such partition."
            ]
    else:
        active = [p for p in mbr.partitions if p.bootable and p.type != 0]
    if not active:
        return "no", [
            f"BIOS: the MBR carries {name}, which boots the active partition, "
            "and no partition is marked active."
        ]
    p: MbrPartition = active[0]
    if p.start_lba in f.boot_sectors:
        return "yes", [
            f"BIOS: the MBR carries {name}, which boots the active partition "
            f"{p.index} ({p.type_name}); it holds a boot sector."
        ]
    if p.start_lba in f.boot_sectors_unread:
        return "unknown", [
            f"BIOS: the MBR carries {name}, which boots the active partition {p.index}; "
            f"that partition starts {past(f)}."
        ]
    return "no", [
        f"BIOS: the MBR carries {name}, which boots the active partition "
        f"{p.index}, but that partition has no boot sector."
    ]


def _loader_x64(v: EfiVolume) -> bool:
    return any(ld.arch == "x64" and ld.removable_path for ld in v.loaders)


def _maybe_x64(v: EfiVolume) -> bool:
    """A volume past the part decompressed, or an x64-named loader whose bytes are."""
    return v.unread or any(
        ld.arch == "not-read" and ld.path.upper() == "/EFI/BOOT/BOOTX64.EFI" for ld in v.loaders
    )


def _describe_unread(f: Facts, v: EfiVolume) -> str:
    if v.unread:
        return f"{v.source} starts {past(f)}; it was not read"
    return f"{v.source}: \\EFI\\BOOT\\BOOTX64.EFI lies {past(f)}; it was not read"


def _describe_missing(v: EfiVolume) -> str:
    if v.error:
        return f"{v.source}: {v.error}"
    if not v.fat:
        return f"{v.source} holds no FAT file system"
    archs = sorted({ld.arch for ld in v.loaders if ld.removable_path})
    wrong = [ld for ld in v.loaders if ld.path.upper() == "/EFI/BOOT/BOOTX64.EFI"]
    if wrong:
        return f"{v.source}: \\EFI\\BOOT\\BOOTX64.EFI is not an x64 program ({wrong[0].arch})"
    if archs:
        return (
            f"{v.source} has loaders only for {', '.join(archs)}, not for x64 "
            "(x86-64 PCs need BOOTX64.EFI)"
        )
    return f"{v.source} has no \\EFI\\BOOT\\BOOTX64.EFI"


def uefi_verdict(f: Facts) -> tuple[UefiVerdict, list[str]]:
    reasons: list[str] = []
    disk = [v for v in f.efi if v.via != "eltorito"]
    eltorito = [v for v in f.efi if v.via == "eltorito"]
    unread = [v for v in f.efi if _maybe_x64(v)]
    if unread and not any(_loader_x64(v) for v in disk):
        reasons += [f"UEFI: {_describe_unread(f, v)}." for v in unread]
        for v in eltorito:
            if _loader_x64(v):
                reasons.append(
                    f"UEFI: an x64 loader is in the {v.source} EFI image, which EDK2-based "
                    "firmware (OVMF) boots from a USB disk and many PCs do not."
                )
        return "unknown", reasons
    if f.gpt_backup_unread and not any(_loader_x64(v) for v in disk):
        return "unknown", [
            "UEFI: the primary GPT is damaged and the backup GPT, which firmware falls "
            f"back on, lies {past(f)}; it was not read."
        ]
    for v in disk:
        if _loader_x64(v):
            if v.via == "disk":
                where = (
                    "the whole disk is one FAT file system (no partition table), which "
                    "firmware reads like a partition, and it"
                )
            elif v.esp_type:
                where = v.source
            else:
                where = (
                    f"{v.source}, a FAT partition not typed as an ESP (firmware reads FAT "
                    "partitions on removable disks all the same),"
                )
            reasons.append(f"UEFI: {where} holds \\EFI\\BOOT\\BOOTX64.EFI for x64.")
            return "yes", reasons
    if f.mbr_table_problem:
        reasons.append(
            f"UEFI: the MBR partition table is invalid for UEFI firmware ({f.mbr_table_problem})."
        )
    if f.gpt is not None and not f.gpt_used:
        if f.gpt.sector_size != SECTOR:
            reasons.append(
                f"UEFI: the GPT is laid out for {f.gpt.sector_size}-byte sectors; "
                "USB sticks use 512-byte sectors, so firmware will not find it."
            )
        elif f.mbr is not None and not f.mbr.protective:
            reasons.append(
                "UEFI: the GPT is ignored because the MBR is not a protective MBR (no 0xEE entry)."
            )
        elif not f.gpt.primary_ok:
            reasons.append("UEFI: the GPT is damaged (" + "; ".join(f.gpt.problems) + ").")
    for v in disk:
        reasons.append("UEFI: " + _describe_missing(v) + ".")
    if not disk and not f.superfloppy:
        reasons.append(
            "UEFI: no partition a firmware would read holds a FAT file system "
            "(no EFI system partition)."
        )
    for v in eltorito:
        if _loader_x64(v):
            reasons.append(
                f"UEFI: an x64 loader (\\EFI\\BOOT\\BOOTX64.EFI) is only in the {v.source} EFI "
                "image. EDK2-based firmware (OVMF) boots that from a USB disk; many PCs "
                "look only at partitions and will not."
            )
            return "firmware-dependent", reasons
    for v in eltorito:
        reasons.append("UEFI: " + _describe_missing(v) + ".")
    if not f.efi:
        reasons.append("UEFI: no EFI loader anywhere in the image.")
    return "no", reasons


def decide(f: Facts) -> Verdict:
    """The verdict from the facts alone: no I/O."""
    bios, bios_reasons = bios_verdict(f)
    uefi, uefi_reasons = uefi_verdict(f)
    reasons = bios_reasons + uefi_reasons
    mbr = f.mbr
    direct = mbr is not None and mbr.loader in ("grub2", "isohybrid", "unknown")
    if bios == "yes" and mbr is not None and direct and not any(p.bootable for p in mbr.partitions):
        reasons.append(
            "Note: no MBR partition is marked active; a few older PC BIOSes "
            "skip USB disks without one."
        )
    if f.windows_installer:
        evidence = f" ({f.windows_evidence})" if f.windows_evidence else ""
        reasons.insert(
            0,
            f"This is a Windows installer image{evidence}. Written raw to a USB stick it "
            "will not boot: Windows Setup needs a stick with a FAT32 or NTFS partition "
            "and the image's files copied onto it.",
        )
        if uefi == "firmware-dependent":
            uefi = "no"
    why = classify(f, bios, uefi)[2]
    if why:
        reasons.insert(0, why)
    return Verdict(bios, uefi, tuple(reasons))

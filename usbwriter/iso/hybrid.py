"""The first sector of a hybrid ISO: an MBR that lets a USB stick holding the ISO boot.

- UEFI: partition entry 2 (type 0xEF) covers the El Torito EFI image's extent, so the
  firmware finds an EFI system partition, mounts its FAT and runs BOOTX64.EFI.
- BIOS: when the El Torito BIOS image is isolinux.bin, syslinux's isohybrid MBR code
  (isohdpfx.bin) loads it from the sector recorded at byte 432. When it is GRUB's
  eltorito.img, GRUB's boot_hybrid.img does the same from the 64-bit sector number
  at byte 432 (the image's second 2048-byte block, its diskboot sector), and the image
  is told where the rest of itself lies at its byte 2548, as xorriso's
  --grub2-boot-info does. Partition entry 1 is active and covers the whole image
  (type 0x00 beside an ESP, so that UEFI firmware, which rejects overlapping
  partitions, ignores it; 0x17 otherwise, as isohybrid does).
- Without a BIOS loader the MBR holds a short program that prints that the stick boots
  on UEFI only and halts, rather than nothing for BIOS to jump into.

This is what syslinux's `isohybrid -u` writes, without the GPT (the MBR is enough for
UEFI firmware) and with no random fields: the disk signature is given.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SECTOR = 512
ISOHDPFX = "/usr/lib/ISOLINUX/isohdpfx.bin"  # Debian's isolinux package
GRUB_HYBRID = "/usr/lib/grub/i386-pc/boot_hybrid.img"  # Debian's grub-pc-bin package
#: in GRUB's eltorito.img: the first sector of the rest of the image (its diskboot
#: blocklist), as a 64-bit 512-byte sector number
GRUB_BLOCKLIST = 2548
ISOLINUX_SIGNATURE = bytes.fromhex("fbc07870")  # at 0x40 of isolinux.bin (hybrid-capable)
GEOMETRY_HEADS, GEOMETRY_SECTORS = 64, 32  # isohybrid's default geometry

# cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7c00; sti; cld; mov si,0x7c20;
# 1: lodsb; test al,al; jz 2f; mov ah,0x0e; mov bx,7; int 0x10; jmp 1b; 2: hlt; jmp 2b
_UEFI_ONLY_CODE = bytes.fromhex("fa31c08ed88ed0bc007cfbfcbe207cac84c07409b40ebb0700cd10ebf2f4ebfd")
UEFI_ONLY_MESSAGE = b"This is not a bootable disk on BIOS: boot it with UEFI.\r\n\x00"


@dataclass(frozen=True)
class HybridLayout:
    """Where the boot images lie in the ISO, in 2048-byte blocks and bytes."""

    iso_size: int  # bytes
    bios_extent: int | None  # the BIOS boot image's first block, when a stick can boot it
    efi_extent: int | None  # the EFI image's first block
    efi_size: int  # bytes
    disk_signature: int
    bios_loader: str = "isolinux"  # or "grub": which MBR code bios_extent is for


def isolinux_hybrid_capable(head: bytes) -> bool:
    """Whether a BIOS boot image is isolinux.bin that an isohybrid MBR can load."""
    return len(head) >= 0x44 and head[0x40:0x44] == ISOLINUX_SIGNATURE


#: GRUB's cdboot.img, the head of an i386-pc-eltorito core image: "call +0; jmp 0x40",
#: then the 56 bytes a boot info table is written into, zero until then
GRUB_CDBOOT_HEAD = bytes.fromhex("e80000eb3b")


def grub_eltorito(head: bytes) -> bool:
    """Whether a BIOS boot image is GRUB's El Torito core image (cdboot.img first)."""
    return head[:5] == GRUB_CDBOOT_HEAD and not any(head[8:64])


def needs_boot_info_table(head: bytes) -> bool:
    """Whether a BIOS boot image finds itself on the disc through a boot info table
    (bytes 8-63 patched with its place and length): isolinux.bin and GRUB's
    eltorito.img do; other images would be damaged by one."""
    return isolinux_hybrid_capable(head) or grub_eltorito(head)


def read_isohdpfx(path: str = ISOHDPFX) -> bytes | None:
    """syslinux's isohybrid MBR code (432 bytes), or None when it is not installed."""
    try:
        with open(path, "rb") as f:
            code = f.read(433)
    except OSError:
        return None
    return code if len(code) == 432 else None


def read_grub_hybrid(path: str = GRUB_HYBRID) -> bytes | None:
    """GRUB's hybrid MBR code (the 432 bytes before its sector field), or None when it
    is not installed."""
    try:
        with open(path, "rb") as f:
            code = f.read(SECTOR + 1)
    except OSError:
        return None
    return code[:432] if len(code) == SECTOR else None


def grub_boot_info(extent: int) -> bytes:
    """What goes at GRUB_BLOCKLIST of eltorito.img at block EXTENT: the 512-byte
    sector after its diskboot sector."""
    return struct.pack("<Q", extent * 4 + 5)


def _chs(lba: int) -> bytes:
    """Cylinder/head/sector of an LBA in isohybrid's geometry (capped at cylinder 1023)."""
    cyl, rest = divmod(lba, GEOMETRY_HEADS * GEOMETRY_SECTORS)
    head, sect = divmod(rest, GEOMETRY_SECTORS)
    if cyl > 1023:
        cyl, head, sect = 1023, GEOMETRY_HEADS - 1, GEOMETRY_SECTORS - 1
    return bytes((head, (sect + 1) | ((cyl >> 2) & 0xC0), cyl & 0xFF))


def _entry(active: bool, ptype: int, start: int, count: int) -> bytes:
    end = start + max(count, 1) - 1
    return (
        bytes((0x80 if active else 0,))
        + _chs(start)
        + bytes((ptype,))
        + _chs(end)
        + struct.pack("<II", start, count)
    )


def hybrid_mbr(layout: HybridLayout, code: bytes | None) -> bytes:
    """The 512-byte first sector. CODE is the BIOS code for layout.bios_loader
    (isohdpfx.bin, or boot_hybrid.img's first 432 bytes); it is used only when
    layout.bios_extent is set."""
    mbr = bytearray(SECTOR)
    entries: dict[int, bytes] = {}
    bios = layout.bios_extent is not None and code is not None
    if bios:
        assert code is not None and layout.bios_extent is not None
        mbr[0:432] = code
        if layout.bios_loader == "grub":  # the diskboot sector, after cdboot's 2048 bytes
            struct.pack_into("<Q", mbr, 432, layout.bios_extent * 4 + 4)
        else:  # isolinux.bin's first 512-byte sector
            struct.pack_into("<I", mbr, 432, layout.bios_extent * 4)
        ptype = 0x00 if layout.efi_extent is not None else 0x17
        entries[1] = _entry(True, ptype, 0, -(-layout.iso_size // SECTOR))
    else:
        code = _UEFI_ONLY_CODE + UEFI_ONLY_MESSAGE
        mbr[0 : len(code)] = code
    if layout.efi_extent is not None:
        count = -(-layout.efi_size // SECTOR)
        entries[2 if bios else 1] = _entry(False, 0xEF, layout.efi_extent * 4, count)
    struct.pack_into("<I", mbr, 440, layout.disk_signature)
    for index, raw in entries.items():
        off = 446 + 16 * (index - 1)
        mbr[off : off + 16] = raw
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)

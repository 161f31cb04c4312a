"""A small bootable folder for `usbwriter mkiso`, built with the same tools and markers
as the project's test images (scripts/make_images.py):

    tree = bootable_tree(work, "mkiso-hybrid")
    # tree/isolinux/isolinux.bin  prints "USBW-MARK mkiso-hybrid pc" on the serial port
    # tree/boot/efi.img           a FAT image whose EFI/BOOT/BOOTX64.EFI (GRUB) prints
    #                             "USBW-MARK mkiso-hybrid efi"
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helpers.images import make_images

BIOS_IMAGE = "isolinux/isolinux.bin"
GRUB_BIOS_IMAGE = "boot/grub/i386-pc/eltorito.img"
GRUB_ELTORITO_MODULES = (
    "biosdisk part_msdos iso9660 normal configfile echo serial terminal test halt"
)
EFI_IMAGE = "boot/efi.img"
TOOLS = ("grub-mkstandalone", "grub-mkimage", "mkfs.vfat", "mmd", "mcopy")
FILES = ("/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/modules/bios/cat.c32")


def missing_tools() -> list[str]:
    """What this machine lacks to build the tree."""
    return [t for t in TOOLS if shutil.which(t) is None] + [
        f for f in FILES if not Path(f).exists()
    ]


def bootable_tree(work: Path, name: str) -> Path:
    """A folder holding isolinux (BIOS) and a FAT EFI image (UEFI) that print markers."""
    work.mkdir(parents=True, exist_ok=True)
    tree: Path = make_images.isolinux_tree(work, name)
    efi: Path = make_images.efi_fat(work, name)
    (tree / "boot").mkdir(exist_ok=True)
    shutil.copy(efi, tree / EFI_IMAGE)
    (tree / "README.txt").write_text(f"usbwriter mkiso test tree {name}\n")
    return tree


def grub_bios_tree(work: Path, name: str, *, efi: bool = False) -> Path:
    """A folder whose boot/grub/i386-pc/eltorito.img (GRUB's El Torito core image, which
    finds itself through a boot info table) reads boot/grub/grub.cfg and prints
    "USBW-MARK NAME pc" on the serial port; with EFI, also boot/efi.img as in
    bootable_tree."""
    work.mkdir(parents=True, exist_ok=True)
    root: Path = make_images.grub_tree(work, name)
    image = root / GRUB_BIOS_IMAGE
    image.parent.mkdir(parents=True)
    make_images.run(["grub-mkimage", "-O", "i386-pc-eltorito", "-p", "/boot/grub",
                     "-o", str(image), *GRUB_ELTORITO_MODULES.split()])  # fmt: skip
    if efi:
        shutil.copy(make_images.efi_fat(work, name), root / EFI_IMAGE)
    return root

"""What an image is for, from the facts read beforehand: an ISO, a PC disk, a board's
disk image (a Raspberry Pi's boot files, a U-Boot SPL or boot script), a plain data
disk. Pure, like the verdict it completes (usbwriter.boot.verdict)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from usbwriter.boot.boards import raspberry_pi_files, u_boot_files
from usbwriter.boot.gpt import BIOS_BOOT_GUID
from usbwriter.boot.mbr import EXTENDED_TYPES
from usbwriter.boot.model import ImageKind

if TYPE_CHECKING:
    from usbwriter.boot.verdict import Facts

#: UEFI architectures other than x86-64, as people know them
ARCH_WORDS = {
    "ia32": "a PC with 32-bit UEFI firmware (ia32)",
    "aa64": "a 64-bit ARM computer with UEFI firmware (aa64)",
    "arm": "a 32-bit ARM computer with UEFI firmware",
    "riscv64": "a RISC-V computer with UEFI firmware",
    "loongarch64": "a LoongArch computer with UEFI firmware",
    "ia64": "an Itanium computer",
}
NOT_PC = "it will not boot a PC"


def past(f: Facts) -> str:
    """'past the first 64 MiB decompressed'."""
    n = f.decompressed or 0
    size = f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n:,} bytes"
    return f"past the first {size} of the compressed image, which is all that was decompressed"


def _boots_pc(bios: str, uefi: str) -> bool:
    return bios == "yes" or uefi in ("yes", "firmware-dependent")


def _pc_words(bios: str, uefi: str) -> str:
    firmware = [
        name
        for name, ok in (("BIOS", bios == "yes"), ("UEFI", uefi in ("yes", "firmware-dependent")))
        if ok
    ]
    return f"a PC ({' and '.join(firmware)})" if firmware else "a PC"


def _other_archs(f: Facts) -> list[str]:
    """The architectures of the removable-media loaders, x64 left out, in a fixed order."""
    archs = {ld.arch for v in f.efi for ld in v.loaders if ld.removable_path and ld.arch != "x64"}
    return [a for a in ARCH_WORDS if a in archs]


def _iso_boot_records(f: Facts) -> bool:
    """An ISO with anything a firmware may boot: El Torito entries, an MBR with boot code
    or partitions, a GPT."""
    if f.eltorito is not None and f.eltorito.entries:
        return True
    if f.mbr is not None and f.mbr.signature and (f.mbr.boot_code or f.mbr.partitions):
        return True
    return f.gpt is not None


def _pc_intent(f: Facts) -> bool:
    """Made to boot a PC, even if it will not: PC boot code in sector 0, an EFI system
    partition, a BIOS boot partition."""
    mbr = f.mbr
    if mbr is not None and mbr.loader not in (None, "vbr-not-bootable", "not-bootable-stub"):
        return True
    if any(v.esp_type and v.via != "eltorito" for v in f.efi):
        return True
    return f.gpt is not None and any(p.type_guid == BIOS_BOOT_GUID for p in f.gpt.partitions)


def _list_words(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _table_words(f: Facts) -> str:
    """'an MBR with 2 partitions (FAT32 (LBA), Linux)'."""
    if f.gpt is not None and (f.gpt_used or not (f.mbr and f.mbr.partitions)):
        names = [p.name or p.type_name for p in f.gpt.partitions]
        table = "a GPT"
    elif f.mbr is not None and f.mbr.partitions:
        names = [
            p.type_name
            for p in f.mbr.partitions
            if p.type not in (0, 0xEE) and p.type not in EXTENDED_TYPES
        ]
        table = "an MBR partition table"
    elif f.superfloppy:
        return "one file system over the whole disk (no partition table)"
    else:
        return "no partition table"
    if not names:
        return f"{table} with no partitions"
    plural = "s" if len(names) != 1 else ""
    return f"{table} with {len(names)} partition{plural} ({', '.join(names[:6])})"


def classify(f: Facts, bios: str, uefi: str) -> tuple[ImageKind, str, str | None]:
    """(image kind, what it is for in words, a reason to show first or None).

    Pure, like the verdict: an ISO; a disk that boots a PC (or was made to); a board's
    disk image (a Raspberry Pi's boot files, a U-Boot SPL or boot script, EFI loaders
    only for another architecture); else a data disk.
    """
    if f.iso:
        if f.windows_installer:
            return "iso", "a Windows installer DVD (its files belong on a stick, copied)", None
        if not _iso_boot_records(f):
            return (
                "data-iso",
                "a data disc (nothing to boot)",
                "This is an ISO image with no boot records (a data disc): written to a stick "
                "it boots nothing.",
            )
        if _boots_pc(bios, uefi) or "unknown" in (bios, uefi):
            return "iso", _pc_words(bios, uefi), None
        archs = _other_archs(f)
        if archs:
            return "iso", ARCH_WORDS[archs[0]], None
        return "iso", "a CD or DVD (its boot records are for optical drives)", None
    if _boots_pc(bios, uefi):
        return "pc-disk", _pc_words(bios, uefi), None
    board = f.board
    parts = board.partitions if board is not None else ()
    for part in parts:
        rpi = raspberry_pi_files(part.files)
        if part.fs == "fat" and any(not name.endswith("/config.txt") for name in rpi):
            files = _list_words([name.lstrip("/") for name in rpi[:5]])
            return (
                "board:raspberry-pi",
                "a Raspberry Pi",
                f"This image is for a Raspberry Pi: {part.source} is a FAT file system "
                f"with {files} (the Raspberry Pi's boot files). Written to a card or stick "
                f"it starts a Raspberry Pi; {NOT_PC}.",
            )
    if board is not None and board.spl_name is not None:
        return (
            "board:u-boot",
            f"a board booting with U-Boot ({board.spl_name.split(' (')[0]})",
            f"This image is for a board booting with U-Boot: an {board.spl_name} at byte "
            f"{board.spl_offset or 0:,}, where the board's boot ROM loads it from; {NOT_PC}.",
        )
    for part in parts:
        scripts = u_boot_files(part.files)
        if scripts:
            return (
                "board:u-boot",
                f"a board booting with U-Boot ({scripts[0].lstrip('/')})",
                f"This image is for a board booting with U-Boot: {part.source} holds "
                f"{_list_words([s.lstrip('/') for s in scripts[:3]])}, which U-Boot's "
                f"distro boot reads; {NOT_PC}.",
            )
    archs = _other_archs(f)
    if archs and archs[0] != "ia32":
        words = ARCH_WORDS[archs[0]]
        return (
            "board:uefi",
            words,
            f"This image is for {words}: its only EFI loaders are for "
            f"{_list_words(archs)}; {NOT_PC}.",
        )
    if archs or _pc_intent(f):
        return "pc-disk", ARCH_WORDS["ia32"] if archs else "a PC", None
    unread = [p for p in parts if p.unread]
    if unread:
        return (
            "unknown-disk",
            "not known: its first partition was not decompressed",
            f"What this disk image is for is not known: {unread[0].source} starts "
            f"{past(f)}; it has no PC boot code.",
        )
    if "unknown" in (bios, uefi):
        return "pc-disk", "a PC", None
    return (
        "data-disk",
        "a data disk",
        f"This is a data disk image: {_table_words(f)}, but no boot code, no EFI loader "
        f"and no board's boot files; {NOT_PC}.",
    )

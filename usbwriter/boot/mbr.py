"""The first sector read directly: MBR partition entries, the boot code's kind, and an
Apple partition map (which hybrid ISOs may carry beside the MBR)."""

from __future__ import annotations

from dataclasses import dataclass

from usbwriter.boot.model import ApmPartition, AppleMap, Gpt, Mbr, MbrPartition
from usbwriter.boot.reader import ImageReader, clean_text, u16be, u32be, u32le, u64le

SECTOR = 512

MBR_TYPES = {
    0x00: "empty",
    0x01: "FAT12",
    0x04: "FAT16 <32M",
    0x05: "extended",
    0x06: "FAT16",
    0x07: "NTFS/exFAT",
    0x0B: "FAT32",
    0x0C: "FAT32 (LBA)",
    0x0E: "FAT16 (LBA)",
    0x0F: "extended (LBA)",
    0x11: "hidden FAT12",
    0x14: "hidden FAT16 <32M",
    0x16: "hidden FAT16",
    0x17: "hidden NTFS/IFS",
    0x1B: "hidden FAT32",
    0x1C: "hidden FAT32 (LBA)",
    0x1E: "hidden FAT16 (LBA)",
    0x27: "Windows recovery",
    0x82: "Linux swap",
    0x83: "Linux",
    0x85: "Linux extended",
    0x8E: "Linux LVM",
    0x96: "ISO 9660 (CHRP)",
    0xA5: "FreeBSD",
    0xA6: "OpenBSD",
    0xA8: "Apple UFS",
    0xA9: "NetBSD",
    0xAF: "Apple HFS/HFS+",
    0xCD: "ISO 9660 (xorriso)",
    0xDA: "non-FS data",
    0xEE: "GPT protective",
    0xEF: "EFI system partition",
    0xFD: "Linux RAID",
}
EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})

# Strings that identify boot code in the first 440 bytes, most specific first.
# (id, name for people, needles that must all be present)
LOADERS: tuple[tuple[str, str, tuple[bytes, ...]], ...] = (
    ("grub2", "GRUB", (b"GRUB \x00", b"Geom\x00", b"Hard Disk\x00", b"Read\x00")),
    ("isohybrid", "syslinux isohybrid", (b"isolinux.bin missing or corrupt",)),
    ("syslinux-gptmbr", "syslinux gptmbr.bin", (b"Missing OS", b"Multiple active partitions\r")),
    ("syslinux-mbr", "syslinux mbr.bin", (b"Missing operating system.", b"Multiple active")),
    ("syslinux-altmbr", "syslinux altmbr.bin", (b"Missing operating system.", b"load error")),
    ("dos-mbr", "DOS/Windows MBR", (b"Invalid partition table", b"operating system")),
    ("dos-mbr", "DOS/Windows MBR", (b"Invalid partition table",)),
)
# Boot code that loads the active partition's first sector (or the partition altmbr names)
CHAINLOADERS = frozenset({"syslinux-mbr", "syslinux-altmbr", "dos-mbr"})
NOT_BOOTABLE_MESSAGES = (
    b"This is not a bootable disk",
    b"Non-system disk",
    b"Invalid system disk",
    b"not a bootable",
)
ISOLINUX_HYBRID_SIGNATURE = bytes.fromhex("fbc07870")  # at 0x40 of isolinux.bin


@dataclass(frozen=True)
class BootSector:
    """What kind of boot sector sector 0 is, beside the MBR proper."""

    fat: bool  # a FAT BPB: the whole device is one FAT file system ("superfloppy")
    ntfs: bool
    exfat: bool


def code_present(b: bytes) -> bool:
    """Whether the first 440 bytes hold boot code (more than an APM header or stray bytes)."""
    code = b[:440]
    if code[:2] == b"ER":  # Apple driver descriptor map header: "ER", block size, jump
        code = code[8:]
    return sum(1 for x in code if x) >= 32 and len(set(code)) > 4


def fat_bpb_ok(b: bytes) -> bool:
    """A plausible FAT BIOS parameter block (boot sector of a FAT file system)."""
    if len(b) < 512 or b[510:512] != b"\x55\xaa" or b[0] not in (0xEB, 0xE9):
        return False
    bps = b[11] | (b[12] << 8)
    spc = b[13]
    reserved = b[14] | (b[15] << 8)
    nfats = b[16]
    total16 = b[19] | (b[20] << 8)
    total32 = u32le(b, 32)
    return (
        bps in (512, 1024, 2048, 4096)
        and spc in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved >= 1
        and 1 <= nfats <= 4
        and (total16 or total32) > 0
    )


def fat_size(b: bytes) -> int:
    """The FAT file system's size in bytes from its BPB (b must pass fat_bpb_ok)."""
    bps = b[11] | (b[12] << 8)
    total = b[19] | (b[20] << 8) or u32le(b, 32)
    return bps * total


def classify_boot_sector(b: bytes) -> BootSector:
    return BootSector(
        fat=fat_bpb_ok(b) and b[3:11] not in (b"NTFS    ", b"EXFAT   "),
        ntfs=b[3:11] == b"NTFS    ",
        exfat=b[3:11] == b"EXFAT   ",
    )


def parse_partitions(b: bytes) -> tuple[MbrPartition, ...]:
    parts = []
    for i in range(4):
        e = b[446 + 16 * i : 446 + 16 * (i + 1)]
        ptype = e[4]
        start = u32le(e, 8)
        count = u32le(e, 12)
        if ptype == 0 and count == 0 and start == 0:
            continue
        parts.append(
            MbrPartition(
                index=i + 1,
                status=e[0],
                bootable=e[0] == 0x80,
                type=ptype,
                type_name=MBR_TYPES.get(ptype, f"type 0x{ptype:02x}"),
                start_lba=start,
                sectors=count,
            )
        )
    return tuple(parts)


def identify_loader(b: bytes, bs: BootSector) -> tuple[str | None, str | None]:
    code = b[:440]
    if bs.fat or bs.ntfs or bs.exfat:
        fs = "FAT" if bs.fat else ("NTFS" if bs.ntfs else "exFAT")
        if any(m in b[:510] for m in NOT_BOOTABLE_MESSAGES):
            return "vbr-not-bootable", f"{fs} boot sector that only says it is not bootable"
        if bs.fat and b"SYSLINUX" in b[:512]:
            return "syslinux-vbr", "syslinux FAT boot sector"
        return "vbr", f"{fs} boot sector"
    for ident, name, needles in LOADERS:
        if all(n in code for n in needles):
            return ident, name
    if not code_present(b):
        return None, None
    if any(m in code for m in NOT_BOOTABLE_MESSAGES):
        return "not-bootable-stub", "boot code that only says the disk is not bootable"
    return "unknown", "boot code of an unknown kind"


def loader_target(r: ImageReader, b: bytes, loader: str | None) -> tuple[int | None, bool | None]:
    """Where the boot code will read its next stage from, and whether that is there."""
    if loader == "grub2":
        # boot.img keeps the core image's sector at 0x5c; the hybrid variant xorriso
        # writes (boot_hybrid.img) keeps it at 0x1b0.
        lba = u64le(b, 0x5C) or u64le(b, 0x1B0)
        if lba == 0 or lba > r.size // SECTOR:
            return (lba * SECTOR if lba else None), False
        if not r.known(lba * SECTOR, SECTOR):
            return lba * SECTOR, None  # past what was decompressed of a compressed image
        nxt = r.read(lba * SECTOR, SECTOR)
        return lba * SECTOR, len(nxt) == SECTOR and any(nxt)
    if loader == "isohybrid":
        lba = u32le(b, 0x1B0)  # isolinux.bin's 512-byte sector
        off = lba * SECTOR
        if not r.known(off, 0x44):
            return off, None
        head = r.read(off, 0x44)
        return off, len(head) == 0x44 and head[0x40:0x44] == ISOLINUX_HYBRID_SIGNATURE
    return None, None


def boot_sector_at(r: ImageReader, lba: int) -> bool:
    """Whether the sector at lba is a boot sector: 0x55AA and code, what a chainloader runs."""
    b = r.read_exact(lba * SECTOR, SECTOR)
    return b is not None and b[510:512] == b"\x55\xaa" and any(b[:440])


def chain_candidates(mbr: Mbr | None, gpt: Gpt | None) -> frozenset[int]:
    """The first LBAs of the partitions the MBR's boot code may chainload: every MBR
    entry for mbr.bin, altmbr.bin and DOS MBRs; the GPT's legacy BIOS bootable ones for
    gptmbr.bin."""
    if mbr is None:
        return frozenset()
    if mbr.loader in CHAINLOADERS:
        return frozenset(p.start_lba for p in mbr.partitions if p.type != 0)
    if mbr.loader == "syslinux-gptmbr" and gpt is not None:
        return frozenset(p.first_lba for p in gpt.partitions if p.legacy_bios_bootable)
    return frozenset()


def chained_boot_sectors(r: ImageReader, mbr: Mbr | None, gpt: Gpt | None) -> frozenset[int]:
    """Of the partitions the MBR's boot code may chainload, the first LBAs whose sector
    is a boot sector."""
    return frozenset(lba for lba in chain_candidates(mbr, gpt) if boot_sector_at(r, lba))


def chained_unread(r: ImageReader, mbr: Mbr | None, gpt: Gpt | None) -> frozenset[int]:
    """Of those partitions, the first LBAs past what was decompressed of the image."""
    return frozenset(lba for lba in chain_candidates(mbr, gpt) if not r.known(lba * SECTOR, SECTOR))


def altmbr_partition(r: ImageReader) -> int | None:
    """Byte 439 of sector 0: the partition number syslinux altmbr.bin boots."""
    b = r.read(439, 1)
    return b[0] if b else None


def read_mbr(r: ImageReader) -> tuple[Mbr | None, BootSector | None]:
    b = r.read_exact(0, SECTOR)
    if b is None:
        return None, None
    signature = b[510:512] == b"\x55\xaa"
    bs = classify_boot_sector(b)
    if not signature:
        return None, bs
    parts = () if (bs.fat or bs.ntfs or bs.exfat) else parse_partitions(b)
    loader, name = identify_loader(b, bs)
    target, ok = loader_target(r, b, loader)
    protective = any(p.type == 0xEE for p in parts)
    return (
        Mbr(
            signature=signature,
            boot_code=code_present(b),
            loader=loader,
            loader_name=name,
            loader_target=target,
            loader_target_ok=ok,
            disk_signature=u32le(b, 440),
            partitions=parts,
            protective=protective,
            hybrid=protective and any(p.type not in (0, 0xEE) for p in parts),
        ),
        bs,
    )


def mbr_partitions_valid(mbr: Mbr, disk_sectors: int | None) -> str | None:
    """Why a UEFI firmware (EDK2's rules) would reject this MBR's table, or None.

    disk_sectors None means "a stick at least as large as any partition".
    """
    used = [p for p in mbr.partitions if p.type != 0 and p.sectors != 0]
    for i, p in enumerate(used):
        end = p.start_lba + p.sectors - 1
        if disk_sectors is not None and end >= disk_sectors:
            return f"partition {p.index} ends past the end of the disk"
        for q in used[i + 1 :]:
            qend = q.start_lba + q.sectors - 1
            if p.start_lba <= qend and q.start_lba <= end:
                return f"partitions {p.index} and {q.index} overlap"
    return None


def read_apm(r: ImageReader) -> AppleMap | None:
    """An Apple partition map: "ER" driver descriptor at 0, "PM" entries from block 1."""
    ddm = r.read_exact(0, 8)
    if ddm is None or ddm[:2] != b"ER":
        return None
    block = u16be(ddm, 2)
    if block not in (512, 1024, 2048, 4096):
        return None
    first = r.read_exact(block, 512)
    if first is None or first[:2] != b"PM":
        return None
    count = min(u32be(first, 4), 64)
    parts = []
    for i in range(count):
        e = r.read_exact(block * (i + 1), 512)
        if e is None or e[:2] != b"PM":
            break
        parts.append(
            ApmPartition(
                index=i + 1,
                name=clean_text(e[16:48]),
                type=clean_text(e[48:80]),
                start_block=u32be(e, 8),
                blocks=u32be(e, 12),
            )
        )
    return AppleMap(block_size=block, partitions=tuple(parts)) if parts else None

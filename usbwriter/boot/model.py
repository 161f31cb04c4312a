"""The boot report's data: frozen dataclasses, turned into JSON-able dicts by `as_json`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

# "unknown" only for a compressed image whose deciding parts lie past what was decompressed
BiosVerdict = Literal["yes", "no", "unknown"]
UefiVerdict = Literal["yes", "firmware-dependent", "no", "unknown"]
Via = Literal["gpt", "mbr", "eltorito", "disk"]
#: What the image is for: "iso", "data-iso" (an ISO with no boot records), "pc-disk",
#: "board:raspberry-pi", "board:u-boot", "board:uefi" (a disk whose only EFI loaders are
#: for another architecture), "data-disk"; "unknown-disk" when a compressed image's first
#: partition lies past the part decompressed. (A file that is none raises NotADiskImage.)
ImageKind = str


def as_json(value: Any) -> Any:
    """Dataclasses, tuples and lists to plain dicts and lists (JSON-able)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Verdict:
    """How the image boots once written raw to a USB stick, per firmware."""

    bios: BiosVerdict
    uefi: UefiVerdict
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class LargeFile:
    path: str
    size: int


@dataclass(frozen=True)
class IsoMd5:
    """An implantisomd5 checksum found in the primary volume descriptor."""

    expected: str  # hex MD5 as implanted
    skip_sectors: int
    checked: bool  # False when checking was not asked for
    computed: str | None
    matches: bool | None
    note: str | None = None


@dataclass(frozen=True)
class IsoVolume:
    """The ISO 9660 primary volume descriptor and what else the volume carries."""

    system_id: str
    volume_id: str
    volume_set_id: str
    publisher_id: str
    preparer_id: str
    application_id: str
    creation_date: str | None  # ISO 8601
    modification_date: str | None
    block_size: int
    volume_blocks: int
    volume_bytes: int
    truncated: bool  # the file is shorter than the volume says
    joliet: bool
    rock_ridge: bool
    rock_ridge_version: str | None
    udf: bool
    udf_revision: str | None  # "NSR02" (UDF 1.0x) or "NSR03" (UDF 2.x)
    files_over_4gib: tuple[LargeFile, ...]
    tree_read: bool  # whether the file tree could be read (paths, sizes)
    isomd5: IsoMd5 | None


@dataclass(frozen=True)
class ElToritoEntry:
    index: int  # 1 = the initial/default entry
    section: int  # 0 for the initial entry, then 1.. for each section header
    platform: str  # "x86", "efi", "powerpc", "mac", "other"
    platform_id: int
    bootable: bool
    emulation: str  # "none", "floppy-1.2M", "floppy-1.44M", "floppy-2.88M", "hard-disk"
    load_segment: int
    system_type: int
    sector_count: int  # in 512-byte virtual sectors, as the catalog says
    load_rba: int  # in 2048-byte blocks
    offset: int  # bytes into the image
    path: str | None  # where the boot image sits in the file tree, if it does
    size: int | None  # the boot image's size from the file tree or its FAT header


@dataclass(frozen=True)
class ElTorito:
    catalog_lba: int
    validation_ok: bool
    entries: tuple[ElToritoEntry, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class MbrPartition:
    index: int  # 1..4
    status: int
    bootable: bool  # status 0x80
    type: int
    type_name: str
    start_lba: int
    sectors: int


@dataclass(frozen=True)
class Mbr:
    signature: bool  # 0x55AA at byte 510
    boot_code: bool  # the first 440 bytes hold code
    loader: str | None  # a short id: grub2, isohybrid, syslinux-mbr, dos-mbr, fat-vbr, ...
    loader_name: str | None  # for people
    loader_target: int | None  # byte offset of what the boot code loads, when known
    loader_target_ok: bool | None
    disk_signature: int
    partitions: tuple[MbrPartition, ...]
    protective: bool  # has a 0xEE entry (GPT follows)
    hybrid: bool  # 0xEE beside other (non-empty) entries


@dataclass(frozen=True)
class GrubCore:
    """GRUB's core image that the MBR's boot code loads, and what its built-in
    configuration chains (file-copy sticks: ntldr /bootmgr)."""

    offset: int  # bytes into the image
    config: str | None  # the built-in configuration (None: none, or not readable)
    prefix: str | None  # where GRUB looks for its modules and grub.cfg
    command: str | None  # the command that chains another loader: ntldr, chainloader
    chains: str | None  # what it chains: "/bootmgr", "+1"
    found: bool | None  # the chained file is on a FAT partition (None: not checked)
    found_on: str | None  # "MBR partition 1 (type 0x0c)"
    problem: str | None  # why the configuration, or the chained file, could not be read


@dataclass(frozen=True)
class GptPartition:
    index: int
    type_guid: str
    type_name: str
    guid: str
    name: str
    first_lba: int
    last_lba: int
    offset: int  # bytes
    size: int  # bytes
    attributes: int
    esp: bool
    legacy_bios_bootable: bool


@dataclass(frozen=True)
class Gpt:
    sector_size: int
    primary_ok: bool  # header signature, CRC and entry-array CRC all good
    header_crc_ok: bool
    entries_crc_ok: bool
    backup_ok: bool | None  # None: the backup lies beyond the file (or was not decompressed)
    disk_guid: str
    first_usable_lba: int
    last_usable_lba: int
    partitions: tuple[GptPartition, ...]
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ApmPartition:
    index: int
    name: str
    type: str
    start_block: int
    blocks: int


@dataclass(frozen=True)
class AppleMap:
    block_size: int
    partitions: tuple[ApmPartition, ...]


@dataclass(frozen=True)
class EfiLoader:
    path: str  # as found in the FAT, e.g. /EFI/BOOT/BOOTX64.EFI
    # x64, ia32, aa64, arm, riscv64, loongarch64, unknown, not-pe; "not-read" when its
    # bytes lie past the part of a compressed image that was decompressed
    arch: str
    machine: int | None  # the PE/COFF machine field
    size: int
    removable_path: bool  # \EFI\BOOT\BOOT<ARCH>.EFI matching its own architecture
    signed: bool  # carries an Authenticode certificate table


@dataclass(frozen=True)
class EfiVolume:
    """A FAT file system a UEFI firmware may read loaders from."""

    source: str  # for people: "GPT partition 2 (EFI system partition)", "El Torito entry 2"
    via: Via
    offset: int
    size: int
    esp_type: bool  # typed as an ESP (GPT C12A7328-..., MBR 0xEF) or an El Torito EFI image
    fat: bool
    error: str | None
    loaders: tuple[EfiLoader, ...] = field(default=())
    # a compressed image read in part: the volume starts past what was decompressed (so
    # whether it is FAT is not known), or it runs on past it (files there were not seen)
    unread: bool = False
    complete: bool = True


@dataclass(frozen=True)
class Compression:
    """A compressed image file: the report is of the image inside, from its first part."""

    format: str  # xz, gzip, bzip2, zstd, lz4, zip
    file_size: int  # the compressed file
    image_size: int | None  # decompressed; None when the file does not record it
    size_from: str  # "xz index", "zstd frame header", "decompressed" (it ended early)...
    size_is: str  # "exact", "at least" (zstd, lz4 frames), "about" (gzip), "unknown"
    member: str | None  # zip: the file inside the archive
    decompressed: int  # bytes of the image decompressed and read
    whole: bool  # the whole image was read (it ends within what was decompressed)


@dataclass(frozen=True)
class BootPartition:
    """A partition a board's boot ROM or boot loader reads its files from."""

    source: str  # "MBR partition 1 (type 0x0c)"
    offset: int
    fs: str | None  # "fat", "ext", None (neither, or not read)
    files: tuple[str, ...]  # the board boot files found there (paths, lower case)
    error: str | None = None  # why its files could not be read (no tool, damaged...)
    unread: bool = False  # it starts past the part of a compressed image decompressed


@dataclass(frozen=True)
class BoardSigns:
    """What marks a disk image as one for a single-board computer, not a PC."""

    spl: str | None  # "allwinner" (eGON.BT0), "rockchip" (idbloader), None
    spl_offset: int | None
    spl_name: str | None  # for people: "Allwinner SPL (eGON.BT0)"
    partitions: tuple[BootPartition, ...]


@dataclass(frozen=True)
class BootReport:
    path: str
    size: int | None  # the image's (decompressed); None when only decompressing tells
    kind: Literal["iso9660", "udf", "disk"]
    boot: Verdict
    iso: IsoVolume | None
    eltorito: ElTorito | None
    mbr: Mbr | None
    gpt: Gpt | None
    apple_partition_map: AppleMap | None
    efi: tuple[EfiVolume, ...]
    windows_installer: bool
    problems: tuple[str, ...]
    image_kind: ImageKind = "iso"
    for_hardware: str = ""  # what the image is for, in words: "a Raspberry Pi"
    board: BoardSigns | None = None
    compression: Compression | None = None
    not_read: tuple[str, ...] = ()  # what lies past the part of a compressed image read
    grub: GrubCore | None = None  # GRUB's core image the MBR loads, when read

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; its "boot" key holds "bios", "uefi" and "reasons"."""
        d: dict[str, Any] = as_json(self)
        return d

"""inspect_image: read an image's boot records into facts, decide the verdict, build the report.

Everything is read directly from the image with bounded reads (ISO 9660 volume
descriptors, El Torito catalog, MBR, GPT, Apple partition map); pycdlib reads the file
tree and mtools reads FAT file systems. All reading is done before `verdict.decide`,
which sees only the facts. Unreadable or unrecognisable input raises BadImage with a
one-line message; damaged structures are reported, never raised.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Literal

from usbwriter.boot import fat, iso9660
from usbwriter.boot.eltorito import read_eltorito
from usbwriter.boot.gpt import read_gpt
from usbwriter.boot.mbr import (
    EXTENDED_TYPES,
    BootSector,
    altmbr_partition,
    chained_boot_sectors,
    mbr_partitions_valid,
    read_apm,
    read_mbr,
)
from usbwriter.boot.model import (
    BootReport,
    EfiLoader,
    EfiVolume,
    ElTorito,
    Gpt,
    IsoVolume,
    Mbr,
    Via,
)
from usbwriter.boot.reader import ImageReader
from usbwriter.boot.text import render_text
from usbwriter.boot.verdict import Facts, decide
from usbwriter.errors import BadImage

__all__ = ["inspect_image", "render_text"]

log = logging.getLogger(__name__)

MAX_EFI_VOLUMES = 16
WINDOWS_FILES = ("/sources/install.wim", "/sources/install.esd", "/sources/install.swm")
COMPRESSED_MAGIC = (
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"PK\x03\x04", "zip"),
    (b"\x04\x22\x4d\x18", "lz4"),
)


def inspect_image(path: str | os.PathLike[str], *, verify_checksum: bool = True) -> BootReport:
    """Read the image's boot records and decide how it boots from a USB stick.

    verify_checksum=False skips hashing the image for an implantisomd5 checksum.
    Raises BadImage for unreadable or unrecognisable input.
    """
    name = os.fspath(path)
    try:
        f = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as e:
        raise BadImage(f"{name}: cannot open: {e.strerror or e}") from e
    with f:
        r = ImageReader(name, f)
        if r.size == 0:
            raise BadImage(f"{name}: the file is empty")
        if r.size < 512:
            raise BadImage(f"{name}: too short for a disk or ISO image ({r.size} bytes)")
        return _inspect(r, verify_checksum)


def _inspect(r: ImageReader, verify_checksum: bool) -> BootReport:
    problems: list[str] = []
    descs = iso9660.read_descriptors(r)
    problems += descs.problems
    mbr, bs = read_mbr(r)
    gpt = read_gpt(r)
    apm = read_apm(r)
    superfloppy = bool(bs and (bs.fat or bs.ntfs or bs.exfat))
    if descs.pvd is None and descs.udf_revision is None and not (mbr or gpt or apm):
        raise BadImage(_unrecognised(r))
    if gpt:
        problems += [f"GPT: {p}" for p in gpt.problems]

    iso: IsoVolume | None = None
    eltorito: ElTorito | None = None
    tree = iso9660.Tree()
    if descs.pvd is not None:
        pvd = iso9660.parse_pvd(descs.pvd)
        tree = iso9660.read_tree(r, pvd)
        problems += tree.problems
        iso = _iso_volume(r, descs, pvd, tree, verify_checksum, problems)
        if descs.boot_record is not None:
            eltorito = read_eltorito(r, descs.boot_record)
            if eltorito is not None:
                problems += [f"El Torito: {p}" for p in eltorito.problems]
                eltorito = _resolve_entries(r, eltorito, tree)

    gpt_used = _gpt_used(mbr, gpt)
    table_problem = None
    if mbr is not None and mbr.signature and not gpt_used and mbr.partitions:
        table_problem = mbr_partitions_valid(mbr, None)
    efi = _efi_volumes(r, mbr, bs, gpt, gpt_used, table_problem, eltorito)

    windows, evidence = _windows_installer(iso, tree, mbr)
    facts = Facts(
        mbr=mbr,
        gpt=gpt,
        gpt_used=gpt_used,
        mbr_table_problem=table_problem,
        eltorito=eltorito,
        efi=efi,
        windows_installer=windows,
        windows_evidence=evidence,
        superfloppy=superfloppy,
        boot_sectors=chained_boot_sectors(r, mbr, gpt),
        altmbr_partition=altmbr_partition(r) if mbr is not None else None,
    )
    verdict = decide(facts)
    kind: Literal["iso9660", "udf", "disk"] = (
        "iso9660" if descs.pvd is not None else ("udf" if descs.udf_revision else "disk")
    )
    return BootReport(
        path=r.path,
        size=r.size,
        kind=kind,
        boot=verdict,
        iso=iso,
        eltorito=eltorito,
        mbr=mbr,
        gpt=gpt,
        apple_partition_map=apm,
        efi=efi,
        windows_installer=windows,
        problems=tuple(problems),
    )


def _unrecognised(r: ImageReader) -> str:
    head = r.read(0, 16)
    for magic, fmt in COMPRESSED_MAGIC:
        if head.startswith(magic):
            return f"{r.path}: {fmt}-compressed data; decompress it to inspect the image inside"
    if not any(r.read(0, 64 << 10)):
        return f"{r.path}: not a disk or ISO image: its first 64 KiB are all zero"
    return f"{r.path}: not a disk or ISO image: no ISO 9660 volume, partition table or boot sector"


def _iso_volume(
    r: ImageReader,
    descs: iso9660.Descriptors,
    pvd: iso9660.PvdFields,
    tree: iso9660.Tree,
    verify_checksum: bool,
    problems: list[str],
) -> IsoVolume:
    assert descs.pvd is not None
    block = pvd.block_size if pvd.block_size in (512, 1024, 2048) else 2048
    if pvd.block_size != 2048:
        problems.append(f"ISO 9660: unusual logical block size {pvd.block_size}")
    volume_bytes = pvd.volume_blocks * block
    truncated = volume_bytes > r.size
    if truncated:
        problems.append(
            f"ISO 9660: the volume is {volume_bytes:,} bytes but the file has only "
            f"{r.size:,}: the image is truncated (an incomplete download?)"
        )
    md5 = iso9660.check_isomd5(
        r, descs.pvd_offset, volume_bytes, descs.pvd[883 : 883 + 512], verify_checksum
    )
    if md5 is not None and md5.matches is False:
        problems.append("implantisomd5: the image does not match its embedded checksum")
    # The descriptor's own fields, as parsed; the root directory record stays behind.
    descriptor = {
        k: v for k, v in dataclasses.asdict(pvd).items() if k not in ("root_extent", "root_size")
    }
    return IsoVolume(
        **descriptor,
        volume_bytes=volume_bytes,
        truncated=truncated,
        joliet=descs.joliet,
        rock_ridge=tree.rock_ridge,
        rock_ridge_version=tree.rock_ridge_version,
        udf=descs.udf_revision is not None,
        udf_revision=descs.udf_revision,
        files_over_4gib=tuple(tree.large_files),
        tree_read=tree.read,
        isomd5=md5,
    )


def _resolve_entries(r: ImageReader, et: ElTorito, tree: iso9660.Tree) -> ElTorito:
    entries = []
    for e in et.entries:
        path, size = tree.extent_paths.get(e.load_rba, (None, None))
        if size is None and e.platform == "efi":
            size = fat.fat_region(r, e.offset)
        entries.append(dataclasses.replace(e, path=path, size=size))
    return dataclasses.replace(et, entries=tuple(entries))


def _gpt_used(mbr: Mbr | None, gpt: Gpt | None) -> bool:
    """Whether UEFI firmware reads this GPT: a protective 0xEE entry from LBA 1, 512-byte
    sectors (a stick's), and a good primary or backup table."""
    if gpt is None or mbr is None or gpt.sector_size != 512:
        return False
    protective = any(p.type == 0xEE and p.start_lba == 1 for p in mbr.partitions)
    return protective and (gpt.primary_ok or bool(gpt.partitions))


def _efi_volumes(
    r: ImageReader,
    mbr: Mbr | None,
    bs: BootSector | None,
    gpt: Gpt | None,
    gpt_used: bool,
    table_problem: str | None,
    eltorito: ElTorito | None,
) -> tuple[EfiVolume, ...]:
    # (source, via, offset, declared size, typed as ESP)
    cands: list[tuple[str, Via, int, int, bool]] = []
    if gpt_used and gpt is not None:
        for gp in gpt.partitions:
            label = "EFI system partition" if gp.esp else (gp.name or gp.type_name)
            cands.append((f"GPT partition {gp.index} ({label})", "gpt", gp.offset, gp.size, gp.esp))
    elif mbr is not None and mbr.signature and not table_problem:
        for mp in mbr.partitions:
            if mp.type in (0, 0xEE) or mp.type in EXTENDED_TYPES or mp.sectors == 0:
                continue
            cands.append(
                (
                    f"MBR partition {mp.index} (type 0x{mp.type:02x})",
                    "mbr",
                    mp.start_lba * 512,
                    mp.sectors * 512,
                    mp.type == 0xEF,
                )
            )
    if not cands and bs is not None and bs.fat:
        cands.append(("the whole disk", "disk", 0, r.size, False))
    if eltorito is not None:
        for e in eltorito.entries:
            if e.platform == "efi":
                cands.append(
                    (f"El Torito entry {e.index}", "eltorito", e.offset, e.size or 0, True)
                )
    volumes = []
    seen: dict[tuple[int, int], tuple[tuple[EfiLoader, ...], str | None]] = {}
    for source, via, offset, _size, esp_type in cands[:MAX_EFI_VOLUMES]:
        size = fat.fat_region(r, offset)
        if size is None:
            if esp_type:
                volumes.append(EfiVolume(source, via, offset, 0, esp_type, False, None))
            continue
        if (offset, size) not in seen:
            seen[offset, size] = fat.efi_loaders(r, offset, size)
        loaders, error = seen[offset, size]
        volumes.append(EfiVolume(source, via, offset, size, esp_type, True, error, loaders))
    return tuple(volumes)


def _windows_installer(
    iso: IsoVolume | None, tree: iso9660.Tree, mbr: Mbr | None
) -> tuple[bool, str | None]:
    """A Windows installer disc: UDF with Windows Setup's files, and no hybrid boot code."""
    if iso is None or not iso.udf:
        return False, None
    if mbr is not None and mbr.boot_code:
        return False, None
    for name in WINDOWS_FILES:
        if name in tree.udf_names:
            return True, f"UDF file system with {name[1:]}"
    if "/bootmgr" in tree.udf_names and "/sources/boot.wim" in tree.udf_names:
        return True, "UDF file system with bootmgr and sources/boot.wim"
    if "MICROSOFT" in (iso.publisher_id + iso.preparer_id).upper():
        return True, "UDF file system published by Microsoft"
    return False, None

"""inspect_image: read an image's boot records into facts, decide the verdict, build the report.

Everything is read directly from the image with bounded reads (ISO 9660 volume
descriptors, El Torito catalog, MBR, GPT, Apple partition map); pycdlib reads the file
tree, mtools reads FAT file systems and debugfs ext ones (boards.py). All reading is done
before `verdict.decide`, which sees only the facts. Unreadable or unrecognisable input
raises BadImage with a one-line message; damaged structures are reported, never raised.

A compressed image is inspected from its first part, decompressed (compressed.py); what
the report would need from past that part is listed under ``not_read`` and never taken
for missing or damaged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Literal

from usbwriter.boot import fat, grub, iso9660
from usbwriter.boot.boards import read_boards
from usbwriter.boot.compressed import DECOMPRESS_LIMIT, decompressed
from usbwriter.boot.eltorito import catalog_lba, read_eltorito
from usbwriter.boot.gpt import ESP_GUID, read_gpt
from usbwriter.boot.kind import classify
from usbwriter.boot.mbr import (
    EXTENDED_TYPES,
    BootSector,
    altmbr_partition,
    chained_boot_sectors,
    chained_unread,
    mbr_partitions_valid,
    read_apm,
    read_mbr,
)
from usbwriter.boot.model import (
    BootReport,
    Compression,
    EfiLoader,
    EfiVolume,
    ElTorito,
    Gpt,
    GrubCore,
    IsoMd5,
    IsoVolume,
    Mbr,
    Via,
)
from usbwriter.boot.reader import ImageReader
from usbwriter.boot.text import render_text
from usbwriter.boot.verdict import Facts, decide
from usbwriter.errors import BadImage
from usbwriter.iso.source import RawBytes
from usbwriter.sources import detect_format

__all__ = ["NotADiskImage", "inspect_image", "render_text"]

log = logging.getLogger(__name__)

MAX_EFI_VOLUMES = 16
# MBR types and GPT types a FAT file system is found under (firmware reads FAT anywhere,
# but a partition past the part of a compressed image read counts only if typed so)
FAT_MBR_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0x11, 0x14, 0x16, 0x1B, 0x1C,
                           0x1E, 0xEF})  # fmt: skip
FAT_GPT_TYPES = frozenset({ESP_GUID, "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7"})


class NotADiskImage(BadImage):
    """The file holds no ISO 9660 or UDF volume, partition table or boot sector."""


WINDOWS_FILES = ("/sources/install.wim", "/sources/install.esd", "/sources/install.swm")


@dataclass(frozen=True)
class Inspected:
    """A report, and the file it was made of as it was then: the regular file's device,
    inode, size, modification and change times, and the zip member read."""

    key: tuple[object, ...] | None  # None: a block device, which may change unseen
    verified: bool  # the implanted checksum was checked (verify_checksum)
    report: BootReport


_known: ContextVar[tuple[Inspected, ...]] = ContextVar("usbwriter_boot_known", default=())


def _file_key(name: str, member: str | None) -> tuple[object, ...] | None:
    try:
        st = os.stat(name)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (name, member, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def inspect_once(
    path: str | os.PathLike[str], *, member: str | None = None, verify_checksum: bool = True
) -> Inspected:
    """inspect_image, with what identifies the file read (taken before reading it), to
    hand on with ``reports_known``."""
    name = os.fspath(path)
    key = _file_key(name, member)
    report = inspect_image(name, member=member, verify_checksum=verify_checksum)
    return Inspected(key, verify_checksum, report)


@contextlib.contextmanager
def reports_known(reports: Iterable[Inspected]) -> Iterator[None]:
    """Within (in this thread), ``inspect_image`` answers with one of REPORTS for the
    file it was made of while that file is unchanged, instead of reading it again: the
    app inspects an image once and its plans reuse the report."""
    token = _known.set((*_known.get(), *reports))
    try:
        yield
    finally:
        _known.reset(token)


def inspect_image(
    path: str | os.PathLike[str],
    *,
    verify_checksum: bool = True,
    member: str | None = None,
    decompress_limit: int = DECOMPRESS_LIMIT,
) -> BootReport:
    """Read the image's boot records and decide how it boots from a USB stick.

    A compressed file (xz, gzip, bzip2, zstd, lz4, zip: MEMBER names the file in a zip
    holding several) is inspected from the first DECOMPRESS_LIMIT bytes of the image
    inside. verify_checksum=False skips hashing the image for an implantisomd5 checksum.
    Raises BadImage for unreadable or unrecognisable input (NotADiskImage when it is
    readable but not a disk or ISO image).
    """
    name = os.fspath(path)
    if decompress_limit == DECOMPRESS_LIMIT and _known.get():
        key = _file_key(name, member)
        for known in _known.get():
            if key is not None and known.key == key and (known.verified or not verify_checksum):
                log.debug("%s: the boot report made before is used (the file is unchanged)", name)
                return known.report
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise BadImage(f"{name}: cannot open: {e.strerror or e}") from e
    try:
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise BadImage(f"{name}: cannot open: Is a directory")
            size = st.st_size if stat.S_ISREG(st.st_mode) else os.lseek(fd, 0, os.SEEK_END)
        except OSError as e:
            raise BadImage(f"{name}: cannot seek: {e.strerror or e}") from e
        r = RawBytes(name, fd, size)
        if r.size == 0:
            raise BadImage(f"{name}: the file is empty")
        fmt = detect_format(r.read(0, 16)) if stat.S_ISREG(st.st_mode) else "raw"
        if fmt == "raw":
            if r.size < 512:
                raise BadImage(f"{name}: too short for a disk or ISO image ({r.size} bytes)")
            return _inspect(r, verify_checksum)
    finally:
        os.close(fd)
    with decompressed(name, member=member, limit=decompress_limit) as (inner, compression):
        if inner.size_known and inner.size < 512:
            raise BadImage(
                f"{name}: the image in the {fmt} file is too short for a disk or ISO image "
                f"({inner.size} bytes)"
            )
        return _inspect(inner, verify_checksum, compression)


def _inspect(
    r: ImageReader, verify_checksum: bool, compression: Compression | None = None
) -> BootReport:
    problems: list[str] = []
    not_read: dict[str, None] = {}  # what lies past the part of a compressed image read
    descs = iso9660.read_descriptors(r)
    problems += descs.problems
    mbr, bs = read_mbr(r)
    gpt = read_gpt(r)
    apm = read_apm(r)
    superfloppy = bool(bs and (bs.fat or bs.ntfs or bs.exfat))
    if descs.pvd is None and descs.udf_revision is None and not (mbr or gpt or apm):
        raise NotADiskImage(_unrecognised(r, compression))
    if gpt:
        problems += [f"GPT: {p}" for p in gpt.problems]
        if r.partial and gpt.backup_ok is None:
            not_read["the backup GPT (at the image's end)"] = None

    iso: IsoVolume | None = None
    eltorito: ElTorito | None = None
    tree = iso9660.Tree()
    if descs.pvd is not None:
        pvd = iso9660.parse_pvd(descs.pvd)
        missed = r.missed
        tree = iso9660.read_tree(r, pvd)
        if r.missed > missed:  # some of the tree lies past what was decompressed
            not_read["part of the ISO file tree (paths and sizes from there are missing)"] = None
            tree.problems = [p for p in tree.problems if "could not be" not in p]
        problems += tree.problems
        iso = _iso_volume(r, descs, pvd, tree, verify_checksum, problems, not_read)
        if descs.boot_record is not None:
            eltorito = _read_eltorito(r, descs.boot_record, not_read)
            if eltorito is not None:
                problems += [f"El Torito: {p}" for p in eltorito.problems]
                eltorito = _resolve_entries(r, eltorito, tree)

    gpt_used = _gpt_used(mbr, gpt)
    table_problem = None
    if mbr is not None and mbr.signature and not gpt_used and mbr.partitions:
        table_problem = mbr_partitions_valid(mbr, None)
    efi = _efi_volumes(r, mbr, bs, gpt, gpt_used, table_problem, eltorito, not_read)
    if mbr is not None and mbr.loader_target is not None and mbr.loader_target_ok is None:
        not_read[f"what the MBR's boot code loads, at byte {mbr.loader_target:,}"] = None
    unread_chain = chained_unread(r, mbr, gpt)
    for lba in sorted(unread_chain):
        not_read[f"the boot sector of the partition at sector {lba:,}"] = None
    is_iso = descs.pvd is not None or descs.udf_revision is not None
    board = None if is_iso else read_boards(r, mbr, gpt)

    windows, evidence = _windows_installer(iso, tree, mbr)
    grub_core = _grub_core(r, mbr, table_problem)
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
        decompressed=r.limit if r.partial else None,
        boot_sectors_unread=unread_chain,
        gpt_backup_unread=bool(
            r.partial and gpt is not None and not gpt.primary_ok and gpt.backup_ok is None
        ),
        iso=is_iso,
        board=board,
        grub=grub_core,
    )
    verdict = decide(facts)
    image_kind, for_hardware, _ = classify(facts, verdict.bios, verdict.uefi)
    kind: Literal["iso9660", "udf", "disk"] = (
        "iso9660" if descs.pvd is not None else ("udf" if descs.udf_revision else "disk")
    )
    return BootReport(
        path=r.path,
        size=r.size if r.size_known else None,
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
        image_kind=image_kind,
        for_hardware=for_hardware,
        board=board,
        compression=compression,
        not_read=tuple(not_read),
        grub=grub_core,
    )


def _grub_core(r: ImageReader, mbr: Mbr | None, table_problem: str | None) -> GrubCore | None:
    """GRUB's core image that the MBR's boot.img loads, its built-in configuration and,
    when that chains a file, whether the file is on one of the MBR's FAT partitions
    (the active one first). None when the MBR holds no GRUB or its core is not there."""
    if mbr is None or mbr.loader != "grub2" or not mbr.loader_target_ok:
        return None
    at = mbr.loader_target
    if at is None:
        return None
    starts = [p.start_lba * 512 for p in mbr.partitions if p.start_lba * 512 > at]
    n = min([grub.MAX_CORE, *(s - at for s in starts)])
    if not r.known(at, n):
        return None
    try:
        core = grub.read_core(r.read(at, n))
        target = grub.chain_target(core.config) if core.config else None
    except Exception as e:  # never let a hostile core image stop the report
        log.debug("GRUB core image at %d: %s", at, e)
        return GrubCore(at, None, None, None, None, None, None, "GRUB's core image is damaged")
    command, chains = target if target else (None, None)
    found = found_on = None
    problem = core.problem
    if chains is not None and chains.startswith("/") and not table_problem:
        parts = sorted(mbr.partitions, key=lambda p: not p.bootable)
        for p in parts[:4]:
            off = p.start_lba * 512
            if p.type in (0, 0xEE) or p.type in EXTENDED_TYPES or not r.known(off, 512):
                continue
            size = fat.fat_region(r, off)
            if size is None:
                continue
            if not r.known(off, size):  # files past the part decompressed were not seen
                found, problem = None, f"MBR partition {p.index} was not read to its end"
                break
            has = fat.has_file(r, off, chains)
            if has:
                found, found_on = True, f"MBR partition {p.index} (type 0x{p.type:02x})"
                break
            if has is None:
                problem = f"MBR partition {p.index}'s FAT file system could not be read"
                found = None
                break
            found = False
    return GrubCore(at, core.config, core.prefix, command, chains, found, found_on, problem)


def _unrecognised(r: ImageReader, compression: Compression | None = None) -> str:
    head = r.read(0, 16)
    inside = f" (the image in the {compression.format} file)" if compression else ""
    fmt = detect_format(head)
    if fmt != "raw":  # compressed twice
        return f"{r.path}{inside}: {fmt}-compressed data inside; not a disk or ISO image"
    if not any(r.read(0, 64 << 10)):
        return f"{r.path}{inside}: not a disk or ISO image: its first 64 KiB are all zero"
    return (
        f"{r.path}{inside}: not a disk or ISO image: no ISO 9660 volume, partition table "
        "or boot sector"
    )


def _read_eltorito(
    r: ImageReader, boot_record: bytes, not_read: dict[str, None]
) -> ElTorito | None:
    lba = catalog_lba(boot_record)
    if lba is not None and not r.known(lba * iso9660.BLOCK, iso9660.BLOCK):
        not_read[f"the El Torito boot catalog at byte {lba * iso9660.BLOCK:,}"] = None
        return None
    return read_eltorito(r, boot_record)


def _iso_volume(
    r: ImageReader,
    descs: iso9660.Descriptors,
    pvd: iso9660.PvdFields,
    tree: iso9660.Tree,
    verify_checksum: bool,
    problems: list[str],
    not_read: dict[str, None],
) -> IsoVolume:
    assert descs.pvd is not None
    if pvd.block_size in (512, 1024):  # allowed, but unusual on a 2048-byte sector
        problems.append(f"ISO 9660: unusual logical block size {pvd.block_size}")
    volume_bytes = pvd.volume_bytes
    truncated = r.size_known and volume_bytes > r.size
    if truncated:
        problems.append(
            f"ISO 9660: the volume is {volume_bytes:,} bytes but the file has only "
            f"{r.size:,}: the image is truncated (an incomplete download?)"
        )
    elif not r.size_known:
        not_read["whether the image is complete (its exact size is not recorded)"] = None
    appdata = descs.pvd[883 : 883 + 512]
    md5 = iso9660.check_isomd5(
        r, descs.pvd_offset, volume_bytes, appdata, verify_checksum and not r.partial
    )
    if md5 is not None and r.partial:
        md5 = IsoMd5(md5.expected, md5.skip_sectors, False, None, None, "not read")
        not_read["the image's implanted MD5 checksum (it covers the whole image)"] = None
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
    not_read: dict[str, None],
) -> tuple[EfiVolume, ...]:
    # (source, via, offset, declared size, typed as ESP, typed as FAT)
    cands: list[tuple[str, Via, int, int, bool, bool]] = []
    if gpt_used and gpt is not None:
        for gp in gpt.partitions:
            label = "EFI system partition" if gp.esp else (gp.name or gp.type_name)
            cands.append(
                (f"GPT partition {gp.index} ({label})", "gpt", gp.offset, gp.size, gp.esp,
                 gp.type_guid in FAT_GPT_TYPES)
            )  # fmt: skip
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
                    mp.type in FAT_MBR_TYPES,
                )
            )
    if not cands and bs is not None and bs.fat:
        cands.append(("the whole disk", "disk", 0, r.size, False, True))
    if eltorito is not None:
        for e in eltorito.entries:
            if e.platform == "efi":
                cands.append(
                    (f"El Torito entry {e.index}", "eltorito", e.offset, e.size or 0, True, True)
                )
    volumes = []
    seen: dict[tuple[int, int], tuple[tuple[EfiLoader, ...], str | None]] = {}
    for source, via, offset, declared, esp_type, fat_typed in cands[:MAX_EFI_VOLUMES]:
        if not r.known(offset, 512):  # past the part of a compressed image read
            not_read[f"{source} at byte {offset:,}"] = None
            if fat_typed:
                volumes.append(
                    EfiVolume(source, via, offset, declared, esp_type, False, None, unread=True)
                )
            continue
        size = fat.fat_region(r, offset)
        if size is None:
            if esp_type:
                volumes.append(EfiVolume(source, via, offset, 0, esp_type, False, None))
            continue
        if (offset, size) not in seen:
            seen[offset, size] = fat.efi_loaders(r, offset, size)
        loaders, error = seen[offset, size]
        complete = r.known(offset, size)
        if not complete:
            loaders = tuple(
                dataclasses.replace(ld, arch="not-read") if ld.arch == "not-pe" else ld
                for ld in loaders
            )
            not_read[f"{source} past byte {r.limit:,} (files stored there were not seen)"] = None
            for ld in loaders:
                if ld.arch == "not-read":
                    not_read[f"{ld.path} in {source}"] = None
            if error is not None:  # its FAT lies past the part read
                volumes.append(
                    EfiVolume(source, via, offset, size, esp_type, True, None, unread=True,
                              complete=False)
                )  # fmt: skip
                continue
        volumes.append(
            EfiVolume(source, via, offset, size, esp_type, True, error, loaders, complete=complete)
        )
    _partitions_past(r, mbr, gpt, gpt_used, not_read)
    return tuple(volumes)


def _partitions_past(
    r: ImageReader, mbr: Mbr | None, gpt: Gpt | None, gpt_used: bool, not_read: dict[str, None]
) -> None:
    """Note the partitions that start past the part of a compressed image read."""
    if not r.partial:
        return
    if gpt is not None and (gpt_used or mbr is None or not mbr.partitions):
        for gp in gpt.partitions:
            if not r.known(gp.offset, 512):
                label = "EFI system partition" if gp.esp else (gp.name or gp.type_name)
                not_read[f"GPT partition {gp.index} ({label}) at byte {gp.offset:,}"] = None
    elif mbr is not None:
        for mp in mbr.partitions:
            if mp.type not in (0, 0xEE) and not r.known(mp.start_lba * 512, 512):
                source = f"MBR partition {mp.index} (type 0x{mp.type:02x})"
                if f"{source} at byte {mp.start_lba * 512:,}" not in not_read:
                    not_read[f"{source} at byte {mp.start_lba * 512:,} ({mp.type_name})"] = None


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

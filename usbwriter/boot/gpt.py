"""GUID partition table: header and entry-array CRCs, partitions, the ESP."""

from __future__ import annotations

import uuid
import zlib

from usbwriter.boot.model import Gpt, GptPartition
from usbwriter.boot.reader import ImageReader, u32le, u64le

ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
BIOS_BOOT_GUID = "21686148-6449-6e6f-744e-656564454649"
GPT_TYPES = {
    ESP_GUID: "EFI system partition",
    BIOS_BOOT_GUID: "BIOS boot partition",
    "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Microsoft basic data",
    "e3c9e316-0b5c-4db8-817d-f92df00215ae": "Microsoft reserved",
    "de94bba4-06d1-4d40-a16a-bfd50179d6ac": "Windows recovery",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap",
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
    "48465300-0000-11aa-aa11-00306543ecac": "Apple HFS+",
    "7c3457ef-0000-11aa-aa11-00306543ecac": "Apple APFS",
    "024dee41-33e7-11d3-9d69-0008c781f39f": "MBR partition scheme",
    "516e7cb4-6ecf-11d6-8ff8-00022d09712b": "FreeBSD data",
}
MAX_ENTRIES_BYTES = 1 << 20  # 1 MiB of entries is far beyond any real table (128 x 128)
ATTR_LEGACY_BIOS_BOOTABLE = 1 << 2


def guid_str(b: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(b)))


def _header(r: ImageReader, lba: int, sector: int) -> tuple[bytes | None, bool, str | None]:
    """(header bytes, header CRC ok, problem) for a GPT header at lba."""
    h = r.read_exact(lba * sector, sector)
    if h is None or h[:8] != b"EFI PART":
        return None, False, None
    size = u32le(h, 12)
    if not 92 <= size <= sector:
        return h, False, f"GPT header at LBA {lba} has an impossible size ({size})"
    crc = u32le(h, 16)
    calc = zlib.crc32(h[:16] + b"\0\0\0\0" + h[20:size]) & 0xFFFFFFFF
    if crc != calc:
        return h, False, f"GPT header at LBA {lba} fails its CRC"
    if u64le(h, 24) != lba:
        return h, False, f"GPT header at LBA {lba} says it sits at LBA {u64le(h, 24)}"
    return h, True, None


def _entries(r: ImageReader, h: bytes, sector: int) -> tuple[bytes | None, bool, str | None]:
    start = u64le(h, 72)
    count = u32le(h, 80)
    esize = u32le(h, 84)
    if esize < 128 or esize % 8 or count == 0 or count * esize > MAX_ENTRIES_BYTES:
        return None, False, f"GPT entry array is implausible ({count} entries of {esize} bytes)"
    raw = r.read_exact(start * sector, count * esize)
    if raw is None:
        return None, False, "GPT entry array lies beyond the end of the image"
    ok = zlib.crc32(raw) & 0xFFFFFFFF == u32le(h, 88)
    return raw, ok, None if ok else "GPT entry array fails its CRC"


def _partitions(raw: bytes, count: int, esize: int, sector: int) -> tuple[GptPartition, ...]:
    parts = []
    for i in range(min(count, len(raw) // esize)):
        e = raw[i * esize : i * esize + 128]
        if not any(e[:16]):
            continue
        tguid = guid_str(e[0:16])
        first, last = u64le(e, 32), u64le(e, 40)
        attrs = u64le(e, 48)
        name = e[56:128].decode("utf-16-le", "replace").split("\0", 1)[0]
        name = "".join(c for c in name if c.isprintable())
        parts.append(
            GptPartition(
                index=i + 1,
                type_guid=tguid,
                type_name=GPT_TYPES.get(tguid, "unknown type"),
                guid=guid_str(e[16:32]),
                name=name,
                first_lba=first,
                last_lba=last,
                offset=first * sector,
                size=max(0, last - first + 1) * sector,
                attributes=attrs,
                esp=tguid == ESP_GUID,
                legacy_bios_bootable=bool(attrs & ATTR_LEGACY_BIOS_BOOTABLE),
            )
        )
    return tuple(parts)


def read_gpt(r: ImageReader) -> Gpt | None:
    """The GPT at LBA 1 for 512- or 4096-byte sectors (or its backup), or None if absent."""
    for sector in (512, 4096):
        h, hok, hprob = _header(r, 1, sector)
        if h is not None:
            break
    else:
        return None
    problems = [hprob] if hprob else []
    raw, eok, eprob = (None, False, None)
    if hok:
        raw, eok, eprob = _entries(r, h, sector)
        if eprob:
            problems.append(eprob)
    backup_ok: bool | None = None
    alt = u64le(h, 32) if hok else (r.size // sector) - 1
    if not r.known(alt * sector, sector):
        pass  # past what was decompressed of a compressed image: not read (None)
    elif alt > 1 and (alt + 1) * sector <= r.size:
        bh, bok, _ = _header(r, alt, sector)
        if bh is not None and bok:
            braw, beok, _ = _entries(r, bh, sector)
            backup_ok = beok
            if not (hok and eok) and braw is not None and beok:
                problems.append("the primary GPT is damaged; the backup GPT is good")
                h, raw = bh, braw
        else:
            backup_ok = False
    use = h
    parts = _partitions(raw, u32le(use, 80), u32le(use, 84), sector) if raw else ()
    return Gpt(
        sector_size=sector,
        primary_ok=hok and eok,
        header_crc_ok=hok,
        entries_crc_ok=eok,
        backup_ok=backup_ok,
        disk_guid=guid_str(use[56:72]),
        first_usable_lba=u64le(use, 40),
        last_usable_lba=u64le(use, 48),
        partitions=parts,
        problems=tuple(problems),
    )

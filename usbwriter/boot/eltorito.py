"""El Torito boot catalog: the validation entry, the initial entry and every section."""

from __future__ import annotations

from usbwriter.boot.model import ElTorito, ElToritoEntry
from usbwriter.boot.reader import ImageReader, u16le, u32le

BLOCK = 2048
ENTRY = 32
MAX_CATALOG_BYTES = 16 * BLOCK  # a catalog this long holds over 1000 entries
MAX_ENTRIES = 256
EL_TORITO_ID = b"EL TORITO SPECIFICATION"
PLATFORMS = {0x00: "x86", 0x01: "powerpc", 0x02: "mac", 0xEF: "efi"}
EMULATION = {0: "none", 1: "floppy-1.2M", 2: "floppy-1.44M", 3: "floppy-2.88M", 4: "hard-disk"}


def catalog_lba(boot_record: bytes) -> int | None:
    """The catalog's block from an El Torito boot record volume descriptor."""
    if boot_record[7 : 7 + len(EL_TORITO_ID)] != EL_TORITO_ID:
        return None
    return u32le(boot_record, 0x47)


def _entry(e: bytes, index: int, section: int, platform_id: int) -> ElToritoEntry:
    media = e[1] & 0x0F
    rba = u32le(e, 8)
    return ElToritoEntry(
        index=index,
        section=section,
        platform=PLATFORMS.get(platform_id, "other"),
        platform_id=platform_id,
        bootable=e[0] == 0x88,
        emulation=EMULATION.get(media, f"unknown ({media})"),
        load_segment=u16le(e, 2),
        system_type=e[4],
        sector_count=u16le(e, 6),
        load_rba=rba,
        offset=rba * BLOCK,
        path=None,
        size=None,
    )


def read_eltorito(r: ImageReader, boot_record: bytes) -> ElTorito | None:
    lba = catalog_lba(boot_record)
    if lba is None:
        return None
    problems: list[str] = []
    cat = r.read(lba * BLOCK, MAX_CATALOG_BYTES)
    if len(cat) < 2 * ENTRY:
        return ElTorito(lba, False, (), ("the boot catalog lies beyond the end of the image",))
    val = cat[:ENTRY]
    words = sum(u16le(val, i) for i in range(0, ENTRY, 2)) & 0xFFFF
    validation_ok = val[0] == 1 and val[30:32] == b"\x55\xaa" and words == 0
    if not validation_ok:
        problems.append("the boot catalog's validation entry is damaged")
    entries = [_entry(cat[ENTRY : 2 * ENTRY], 1, 0, val[1])]
    if cat[ENTRY] not in (0x88, 0x00):
        problems.append("the initial boot entry has an unknown boot indicator")
    pos = 2 * ENTRY
    section = 0
    more = True
    while more and pos + ENTRY <= len(cat) and len(entries) < MAX_ENTRIES:
        head = cat[pos : pos + ENTRY]
        if head[0] not in (0x90, 0x91):
            break  # no further section headers (zero padding ends the catalog)
        section += 1
        more = head[0] == 0x90
        platform_id = head[1]
        count = u16le(head, 2)
        pos += ENTRY
        for _ in range(count):
            if pos + ENTRY > len(cat) or len(entries) >= MAX_ENTRIES:
                problems.append("a boot catalog section runs past the catalog's end")
                more = False
                break
            e = cat[pos : pos + ENTRY]
            pos += ENTRY
            if e[0] not in (0x88, 0x00):
                problems.append(f"section {section} has an entry with an unknown indicator")
                more = False
                break
            entries.append(_entry(e, len(entries) + 1, section, platform_id))
            # extension entries (0x44) follow an entry whose bit 5 of media type is set
            while pos + ENTRY <= len(cat) and cat[pos] == 0x44:
                pos += ENTRY
    return ElTorito(lba, validation_ok, tuple(entries), tuple(problems))

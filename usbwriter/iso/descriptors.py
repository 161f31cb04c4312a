"""The one parser of an ISO's volume descriptor set (ECMA-119 8, from sector 16) and of
the UDF volume recognition sequence after it; the boot report, `ls`, extraction and a
disc's backup all size the volume with ``volume_bytes``.

The descriptors are fixed-layout sectors read directly (``ImageBytes.read_exact``). The
set is read up to its terminator (type 255), at most ``MAX_VDS`` sectors: the first
primary descriptor (type 1) counts, as does the first boot record (type 0); a
supplementary one (type 2) with a Joliet escape marks Joliet. A logical block size other
than 512, 1024 or 2048 (the sizes ISO 9660 allows on a 2048-byte sector) is taken as
2048, and said so in ``problems``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from usbwriter.errors import BadImage
from usbwriter.iso.source import ImageBytes

SECTOR = 2048
VD_START = 16
VD_OFFSET = VD_START * SECTOR  # the first volume descriptor
MAX_VDS = 64
BLOCK_SIZES = (512, 1024, 2048)
JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")


def clean_text(b: bytes, encoding: str = "ascii") -> str:
    """Bytes from an image to a printable one-line string (control characters dropped)."""
    s = b.decode(encoding, "replace")
    s = "".join(c for c in s if c.isprintable())  # drops control and bidi characters
    return s.strip(" \x00")


def _u16(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def _u32(b: bytes, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def iso_date(b: bytes) -> str | None:
    """A 17-byte dec-datetime to ISO 8601, None when unset or malformed."""
    digits = b[:16]
    if not digits.isdigit() or digits == b"0" * 16:
        return None
    y, mo, d = int(digits[0:4]), int(digits[4:6]), int(digits[6:8])
    h, mi, s = int(digits[8:10]), int(digits[10:12]), int(digits[12:14])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    tz = int.from_bytes(b[16:17], "little", signed=True) * 15
    sign = "+" if tz >= 0 else "-"
    return (
        f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}"
        f"{sign}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"
    )


@dataclass(frozen=True)
class PvdFields:
    system_id: str
    volume_id: str
    volume_set_id: str
    publisher_id: str
    preparer_id: str
    application_id: str
    creation_date: str | None
    modification_date: str | None
    block_size: int  # as recorded
    volume_blocks: int
    root_extent: int
    root_size: int

    @property
    def block(self) -> int:
        """The logical block size used: the one recorded if ISO 9660 allows it, else 2048."""
        return self.block_size if self.block_size in BLOCK_SIZES else SECTOR

    @property
    def volume_bytes(self) -> int:
        return self.volume_blocks * self.block


def parse_pvd(p: bytes) -> PvdFields:
    root = p[156:190]
    return PvdFields(
        system_id=clean_text(p[8:40]),
        volume_id=clean_text(p[40:72]),
        volume_set_id=clean_text(p[190:318]),
        publisher_id=clean_text(p[318:446]),
        preparer_id=clean_text(p[446:574]),
        application_id=clean_text(p[574:702]),
        creation_date=iso_date(p[813:830]),
        modification_date=iso_date(p[830:847]),
        block_size=_u16(p, 128),
        volume_blocks=_u32(p, 80),
        root_extent=_u32(root, 2),
        root_size=_u32(root, 10),
    )


@dataclass
class Descriptors:
    pvd: bytes | None = None
    pvd_offset: int = 0
    boot_record: bytes | None = None
    joliet: bool = False
    terminated: bool = False
    udf_revision: str | None = None
    first: bytes = b""  # the identifier at sector 16 ("CD001", "BEA01"...)
    problems: list[str] = field(default_factory=list)

    @property
    def fields(self) -> PvdFields | None:
        return None if self.pvd is None else parse_pvd(self.pvd)


def read_descriptors(r: ImageBytes) -> Descriptors:
    """The volume descriptor set and the UDF recognition sequence; what is damaged is said
    in ``problems``, never raised (but for read errors)."""
    d = Descriptors()
    head = r.read_exact(VD_OFFSET, 8)
    d.first = head[1:6] if head is not None else b""
    n = VD_START
    for n in range(VD_START, VD_START + MAX_VDS):
        s = r.read_exact(n * SECTOR, SECTOR)
        if s is None or s[1:6] != b"CD001":
            break
        vtype = s[0]
        if vtype == 255:
            d.terminated = True
            n += 1
            break
        if vtype == 1 and d.pvd is None:
            d.pvd, d.pvd_offset = s, n * SECTOR
        elif vtype == 0 and d.boot_record is None:
            d.boot_record = s
        elif vtype == 2 and any(e in s[88:120] for e in JOLIET_ESCAPES):
            d.joliet = True
    if d.pvd is not None and not d.terminated:
        d.problems.append("the volume descriptor set has no terminator")
    if d.pvd is not None and _u16(d.pvd, 128) not in BLOCK_SIZES:
        d.problems.append(f"ISO 9660: unusual logical block size {_u16(d.pvd, 128)}")
    # UDF volume recognition sequence: BEA01, NSR02|NSR03, TEA01 after the ISO set
    seen_bea = False
    for m in range(n, n + MAX_VDS):
        s = r.read_exact(m * SECTOR, 8)
        if s is None:
            break
        ident = s[1:6]
        if ident == b"BEA01":
            seen_bea = True
        elif ident in (b"NSR02", b"NSR03") and seen_bea:
            d.udf_revision = ident.decode()
        elif ident == b"TEA01" or ident not in (b"CD001", b"BOOT2", b"CDW02"):
            break
    return d


def volume_size(data: ImageBytes) -> int:
    """The volume's size in bytes as its primary volume descriptor records it (0 if
    there is none); BadImage when the image has no ISO 9660 volume descriptor at byte
    32768."""
    d = read_descriptors(data)
    if d.first != b"CD001":
        if d.first in (b"BEA01", b"NSR02", b"NSR03"):
            raise BadImage(
                f"{data.path}: a UDF image without an ISO 9660 volume descriptor (not supported)",
                path=data.path,
            )
        raise BadImage(
            f"{data.path}: not an ISO 9660 image (no volume descriptor at byte 32768)",
            path=data.path,
        )
    fields = d.fields
    return 0 if fields is None else fields.volume_bytes


def disc_volume_size(fd: int, block: int, path: str = "") -> int | None:
    """The ISO 9660 volume's size in bytes on the drive held by FD (maybe with
    ``O_DIRECT``: read in whole BLOCKs), or None when it holds none or cannot be read."""
    from usbwriter.errors import UsbWriterError
    from usbwriter.iso.source import AlignedBytes

    try:
        return volume_size(AlignedBytes(path, fd, block)) or None
    except (UsbWriterError, OSError):
        return None

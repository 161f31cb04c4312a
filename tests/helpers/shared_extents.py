"""ISOs whose directory records share extents, as crafted images (and hard links) do.

    iso = shared_extent_iso(tmp_path / "s.iso", pad=36 << 20, shared=17 << 20, links=4)

gives a Rock Ridge image holding `/a.bin` (PAD zero bytes, from a sparse file), then
`/s.bin` (SHARED bytes of `pattern`) and LINKS more names for the same extent
(`/s1.bin` ...), and `/part.bin`, whose record is patched to point PART_AT bytes into
`/s.bin`'s extent for PART_LEN bytes: an overlap no tool makes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib

SECTOR = 2048
PART_AT = 3 * SECTOR
PART_LEN = (1 << 20) + 5


def pattern(n: int) -> bytes:
    """N bytes in which every 512-byte block starts with its own index: misplaced bytes
    show, and the image compresses well."""
    fill = b"\x5a" * 504
    return b"".join(i.to_bytes(8, "little") + fill for i in range(n // 512 + 1))[:n]


def shared_extent_iso(path: Path, *, pad: int, shared: int, links: int) -> Path:
    sparse = path.with_name(path.name + ".pad")
    with open(sparse, "wb") as f:
        f.truncate(pad)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")
    with open(sparse, "rb") as f:
        iso.add_fp(f, pad, "/A.BIN;1", rr_name="a.bin")
        data = pattern(shared)
        iso.add_fp(io.BytesIO(data), len(data), "/S.BIN;1", rr_name="s.bin")
        for i in range(1, links + 1):
            iso.add_hard_link(
                iso_old_path="/S.BIN;1", iso_new_path=f"/S{i}.BIN;1", rr_name=f"s{i}.bin"
            )
        iso.add_fp(io.BytesIO(b"PART"), 4, "/PART.BIN;1", rr_name="part.bin")
        iso.write(str(path))
    iso.close()
    sparse.unlink()
    raw = bytearray(path.read_bytes())
    shared_lba = _lba_of(path, "/S.BIN;1")
    part_lba = _lba_of(path, "/PART.BIN;1")
    at = raw.find(_both(part_lba) + _both(4))
    assert at > 0, "the record of /part.bin"
    raw[at : at + 16] = _both(shared_lba + PART_AT // SECTOR) + _both(PART_LEN)
    path.write_bytes(bytes(raw))
    return path


def _lba_of(path: Path, iso_path: str) -> int:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        return int(iso.get_record(iso_path=iso_path).extent_location())
    finally:
        iso.close()


def _both(n: int) -> bytes:
    """N as ISO 9660 records hold it: little-endian then big-endian."""
    return n.to_bytes(4, "little") + n.to_bytes(4, "big")

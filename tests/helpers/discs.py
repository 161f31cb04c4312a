"""Optical disc images built in the test: ISO 9660 data discs and what a drive returns.

    iso = build_data_iso(tmp / "data.iso", seed=7, file_sizes=(1_234_567, 800_001))
    size = iso9660_size(iso.read_bytes())         # the volume's size, as isosize says
    pad_with_junk(iso, tmp / "disc.img", sectors=29)  # a drive that reports more

The ISO is made with pycdlib (a dependency of the project, so no tool to skip on);
its files hold pseudo-random bytes from ``seed``, so every sector differs and a
misplaced or zeroed sector changes the hash.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import pycdlib

#: An optical drive's logical sector (and ISO 9660's logical block, as built here).
CD_SECTOR = 2048
#: The primary volume descriptor is the first of the volume descriptors, at sector 16.
PVD_OFFSET = 16 * CD_SECTOR


def build_data_iso(
    path: Path, seed: int, file_sizes: Sequence[int], label: str = "USBW_DISC"
) -> Path:
    """A plain data ISO (Rock Ridge and Joliet) with one file of each size."""
    rng = random.Random(seed)
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    try:
        for i, size in enumerate(file_sizes):
            name = f"FILE{i}.BIN"
            data = rng.randbytes(size)
            iso.add_fp(
                io.BytesIO(data),
                size,
                f"/{name};1",
                rr_name=name.lower(),
                joliet_path=f"/{name.lower()}",
            )
        iso.write(str(path))
    finally:
        iso.close()
    return path


def iso9660_size(head: bytes) -> int:
    """The volume's size in bytes from its primary volume descriptor (as ``isosize``
    computes it: volume space size x logical block size); ``head`` holds at least the
    first 17 sectors."""
    pvd = head[PVD_OFFSET : PVD_OFFSET + CD_SECTOR]
    if len(pvd) < CD_SECTOR or pvd[0] != 1 or pvd[1:6] != b"CD001":
        raise ValueError("no ISO 9660 primary volume descriptor at sector 16")
    blocks = int.from_bytes(pvd[80:84], "little")
    block_size = int.from_bytes(pvd[128:130], "little")
    return blocks * block_size


def pad_with_junk(iso: Path, out: Path, sectors: int, seed: int = 0) -> Path:
    """``iso`` followed by ``sectors`` drive sectors of pseudo-random bytes: a disc whose
    drive reports an end beyond the ISO volume (as a disc written with padding does)."""
    junk = random.Random(seed).randbytes(sectors * CD_SECTOR)
    out.write_bytes(iso.read_bytes() + junk)
    return out


def sectors_of(sectors_512: Iterable[int], sector_size: int = CD_SECTOR) -> list[int]:
    """The drive sectors (of ``sector_size`` bytes) holding the given 512-byte sectors."""
    return sorted({s * 512 // sector_size for s in sectors_512})


def zero_sectors(data: bytes, sectors: Iterable[int], sector_size: int = CD_SECTOR) -> bytes:
    """``data`` with the given sectors (of ``sector_size`` bytes) filled with zeros."""
    out = bytearray(data)
    for s in sectors:
        out[s * sector_size : (s + 1) * sector_size] = bytes(sector_size)
    return bytes(out)

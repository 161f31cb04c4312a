"""What the boot report takes from an ISO's file tree, and implantisomd5.

The volume descriptors are read by the ISO toolkit's one parser (``usbwriter.iso.
descriptors``) and the file tree by its one walker (``usbwriter.iso.contents.
read_contents``), so the report names files as `ls` does; here the walk's entries become
what the report needs: the paths of El Torito boot images by their extents, files of
4 GiB or more, and the paths Windows Setup is recognised by. Whatever cannot be read is
reported, not raised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from usbwriter.boot.model import IsoMd5, LargeFile
from usbwriter.boot.reader import ImageReader
from usbwriter.errors import BadImage, Cancelled, UsbWriterError, terminal_safe
from usbwriter.iso.contents import Contents, read_contents
from usbwriter.iso.descriptors import SECTOR as BLOCK
from usbwriter.iso.descriptors import (
    Descriptors,
    PvdFields,
    parse_pvd,
    read_descriptors,
)

__all__ = [
    "BLOCK",
    "Descriptors",
    "PvdFields",
    "Tree",
    "check_isomd5",
    "parse_pvd",
    "read_descriptors",
    "read_tree",
    "root_has_susp",
    "tree_of",
]

log = logging.getLogger(__name__)

FOUR_GIB = 4 << 30
APPDATA_OFFSET = 883
APPDATA_SIZE = 512


def root_has_susp(r: ImageReader, pvd: PvdFields) -> bool:
    """Rock Ridge without pycdlib: the root's "." record carries a SUSP "SP" entry."""
    rec = r.read(pvd.root_extent * BLOCK, 256)
    if len(rec) < 34 or rec[0] < 34:
        return False
    name_len = rec[32]
    su = 33 + name_len + (1 - name_len % 2)
    return rec[su : su + 2] == b"SP" and rec[su + 4 : su + 6] == b"\xbe\xef"


# ---- the file tree ----------------------------------------------------------------------------


@dataclass
class Tree:
    """What the file tree tells: extents to paths, large files, Windows markers."""

    read: bool = False
    rock_ridge: bool = False
    rock_ridge_version: str | None = None
    extent_paths: dict[int, tuple[str, int]] = field(default_factory=dict)  # lba -> path, size
    large_files: list[LargeFile] = field(default_factory=list)
    udf_names: set[str] = field(default_factory=set)  # lower-case paths, on a UDF image
    problems: list[str] = field(default_factory=list)


def tree_of(contents: Contents, block: int = BLOCK) -> Tree:
    """The report's view of the walk: each file's first extent (in BLOCKs) to its path
    (shown as on a terminal) and size, files of 4 GiB or more, and on a UDF image every
    path in lower case."""
    tree = Tree(read=True, rock_ridge=contents.rock_ridge is not None)
    tree.rock_ridge_version = contents.rock_ridge or None
    for parts, e in contents.by_path.items():
        if not parts:
            continue
        if contents.udf:
            tree.udf_names.add(e.path.lower())
        if e.type != "file":
            continue
        path = terminal_safe(e.path)
        offset = next((off for off, n in e.extents if off >= 0 and n), None)
        if offset is not None and offset % block == 0:
            tree.extent_paths.setdefault(offset // block, (path, e.size))
        if e.size >= FOUR_GIB:
            tree.large_files.append(LargeFile(path, e.size))
    return tree


def read_tree(r: ImageReader, pvd: PvdFields) -> Tree:
    """The file tree as the one walker reads it; its failure becomes a problem. Extents
    may end past a truncated file (the report says it is truncated)."""
    bound = max(r.size, pvd.volume_bytes)
    try:
        contents = read_contents(r, bound=bound)
    except Cancelled:
        raise
    except BadImage as e:
        tree = Tree(rock_ridge=root_has_susp(r, pvd))
        why = e.message.removeprefix(f"{r.path}: ")
        tree.problems.append(f"the file tree could not be read: {why}")
        return tree
    except UsbWriterError:
        raise
    return tree_of(contents)


# ---- implantisomd5 --------------------------------------------------------------------------


def parse_isomd5(appdata: bytes) -> tuple[str, int] | None:
    """(md5 hex, skip sectors) from the PVD's application-use field, if implanted."""
    text = appdata.split(b"\0", 1)[0].decode("ascii", "replace")
    md5: str | None = None
    skip: int | None = None
    for part in text.split(";"):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key == "ISO MD5SUM" and len(value) >= 32:
            cand = value[:32].lower()
            if all(c in "0123456789abcdef" for c in cand):
                md5 = cand
        elif key == "SKIPSECTORS" and value.isdigit() and len(value) < 10:
            skip = int(value)
    if md5 is None or skip is None:
        return None
    return md5, skip


def check_isomd5(
    r: ImageReader, pvd_offset: int, volume_bytes: int, appdata: bytes, verify: bool
) -> IsoMd5 | None:
    found = parse_isomd5(appdata)
    if found is None:
        return None
    expected, skip = found
    if not verify:
        return IsoMd5(expected, skip, False, None, None, "not checked")
    end = volume_bytes - skip * BLOCK
    if end <= 0:
        return IsoMd5(expected, skip, True, None, False, "the skipped area covers the volume")
    if end > r.size:
        return IsoMd5(
            expected, skip, True, None, False, "the image is shorter than the checksummed area"
        )
    h = hashlib.md5(usedforsecurity=False)
    blank_lo, blank_hi = pvd_offset + APPDATA_OFFSET, pvd_offset + APPDATA_OFFSET + APPDATA_SIZE
    for off, chunk in _chunks(r, end):
        lo, hi = max(off, blank_lo), min(off + len(chunk), blank_hi)
        if lo < hi:
            chunk = chunk[: lo - off] + b" " * (hi - lo) + chunk[hi - off :]
        h.update(chunk)
    computed = h.hexdigest()
    return IsoMd5(expected, skip, True, computed, computed == expected)


def _chunks(r: ImageReader, end: int, step: int = 4 << 20) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off < end:
        b = r.read(off, min(step, end - off))
        if not b:
            return
        yield off, b
        off += len(b)

"""ISO 9660 volume descriptors, Joliet, Rock Ridge, UDF, the file tree and implantisomd5.

The volume descriptors and the UDF volume recognition sequence are read directly (they
are fixed-layout sectors); the file tree, Rock Ridge and UDF directories are read with
pycdlib when it accepts the image. Whatever pycdlib cannot read is reported, not raised.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from usbwriter.boot.model import IsoMd5, LargeFile
from usbwriter.boot.reader import ImageReader, clean_text, u16le, u32le

log = logging.getLogger(__name__)

BLOCK = 2048
VD_START = 16
MAX_VDS = 64
MAX_TREE_RECORDS = 200_000  # files and directories walked, at most
FOUR_GIB = 4 << 30
JOLIET_ESCAPES = (b"%/@", b"%/C", b"%/E")
APPDATA_OFFSET = 883
APPDATA_SIZE = 512


@dataclass
class Descriptors:
    pvd: bytes | None = None
    pvd_offset: int = 0
    boot_record: bytes | None = None
    joliet: bool = False
    terminated: bool = False
    udf_revision: str | None = None
    problems: list[str] = field(default_factory=list)


def read_descriptors(r: ImageReader) -> Descriptors:
    d = Descriptors()
    n = VD_START
    for n in range(VD_START, VD_START + MAX_VDS):
        s = r.read_exact(n * BLOCK, BLOCK)
        if s is None or s[1:6] != b"CD001":
            break
        vtype = s[0]
        if vtype == 255:
            d.terminated = True
            n += 1
            break
        if vtype == 1 and d.pvd is None:
            d.pvd, d.pvd_offset = s, n * BLOCK
        elif vtype == 0 and d.boot_record is None:
            d.boot_record = s
        elif vtype == 2 and any(e in s[88:120] for e in JOLIET_ESCAPES):
            d.joliet = True
    if d.pvd is not None and not d.terminated:
        d.problems.append("the volume descriptor set has no terminator")
    # UDF volume recognition sequence: BEA01, NSR02|NSR03, TEA01 after the ISO set
    seen_bea = False
    for m in range(n, n + MAX_VDS):
        s = r.read_exact(m * BLOCK, 8)
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
    block_size: int
    volume_blocks: int
    root_extent: int
    root_size: int


def parse_pvd(p: bytes) -> PvdFields:
    block = u16le(p, 128)
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
        block_size=block,
        volume_blocks=u32le(p, 80),
        root_extent=u32le(root, 2),
        root_size=u32le(root, 10),
    )


def root_has_susp(r: ImageReader, pvd: PvdFields) -> bool:
    """Rock Ridge without pycdlib: the root's "." record carries a SUSP "SP" entry."""
    rec = r.read(pvd.root_extent * BLOCK, 256)
    if len(rec) < 34 or rec[0] < 34:
        return False
    name_len = rec[32]
    su = 33 + name_len + (1 - name_len % 2)
    return rec[su : su + 2] == b"SP" and rec[su + 4 : su + 6] == b"\xbe\xef"


# ---- the file tree (pycdlib) ----------------------------------------------------------------


@dataclass
class Tree:
    """What the file tree tells: extents to paths, large files, Windows markers."""

    read: bool = False
    rock_ridge: bool = False
    rock_ridge_version: str | None = None
    extent_paths: dict[int, tuple[str, int]] = field(default_factory=dict)  # lba -> path, size
    large_files: list[LargeFile] = field(default_factory=list)
    udf_names: set[str] = field(default_factory=set)  # lower-case paths of UDF entries seen
    problems: list[str] = field(default_factory=list)


def _name(rec: Any, names: str) -> str:
    """A record's name: Rock Ridge ("rr"), Joliet ("joliet") or plain ISO 9660 ("iso")."""
    if names == "rr" and getattr(rec, "rock_ridge", None) is not None:
        try:
            nm = rec.rock_ridge.name()
            if nm:
                return clean_text(nm, "utf-8")
        except Exception:  # pycdlib raises many kinds on damaged entries
            pass
    ident = rec.file_identifier()
    s = clean_text(ident, "utf-16-be") if names == "joliet" else clean_text(ident, "ascii")
    return s.split(";", 1)[0].rstrip(".") if not rec.is_dir() else s


def _walk_iso9660(root: Any, names: str, tree: Tree) -> None:
    budget = MAX_TREE_RECORDS
    stack: list[tuple[Any, str]] = [(root, "")]
    sizes: dict[str, int] = {}
    while stack and budget > 0:
        rec, prefix = stack.pop()
        for child in getattr(rec, "children", None) or ():
            budget -= 1
            if budget <= 0:
                tree.problems.append("the file tree is too large to walk fully")
                break
            if child.is_dot() or child.is_dotdot():
                continue
            path = f"{prefix}/{_name(child, names)}"
            if child.is_dir():
                stack.append((child, path))
                continue
            size = int(child.get_data_length())
            tree.extent_paths.setdefault(int(child.extent_location()), (path, size))
            sizes[path] = sizes.get(path, 0) + size  # multi-extent files repeat the name
    for path, size in sizes.items():
        if size >= FOUR_GIB:
            tree.large_files.append(LargeFile(path, size))


def _walk_udf(iso: Any, tree: Tree) -> None:
    """UDF paths (Windows discs keep their files only there) and file extents."""
    try:
        part_start = int(iso.udf_main_descs.partitions[0].part_start_location)
    except Exception:
        part_start = None
    budget = 20_000
    stack = ["/"]
    big = tree.large_files
    while stack and budget > 0:
        d = stack.pop()
        try:
            children = list(iso.list_children(udf_path=d))
        except Exception as e:
            tree.problems.append(f"UDF directory {d} could not be read ({e})")
            continue
        for c in children:
            budget -= 1
            if c is None or budget <= 0:
                continue
            try:
                name = clean_text(c.file_identifier(), "utf-8")
            except Exception:
                continue
            if name in ("", ".", ".."):
                continue
            path = d.rstrip("/") + "/" + name
            tree.udf_names.add(path.lower())
            if c.is_dir():
                if path.count("/") < 8:
                    stack.append(path)
                continue
            try:
                size = int(c.get_data_length())
                if size >= FOUR_GIB and path.lower() not in {f.path.lower() for f in big}:
                    big.append(LargeFile(path, size))
                descs = c.alloc_descs
                if part_start is not None and descs:
                    lba = part_start + int(descs[0].log_block_num)
                    tree.extent_paths.setdefault(lba, (path, size))
            except Exception:
                pass


SYSTEM_AREA = VD_START * BLOCK


class PycdlibView:
    """An image as pycdlib sees it: a read-only file object (seek, tell, read) over
    PREAD(offset, n) of SIZE bytes, with the system area (the first 32 KiB: MBR, GPT,
    APM) read as zeros. pycdlib refuses some valid hybrid system areas it does not need;
    the boot report reads the system area itself."""

    def __init__(self, pread: Callable[[int, int], bytes], size: int) -> None:
        self.pread = pread
        self.size = size
        self.pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = max(0, min(n, self.size - self.pos))
        hidden = min(n, max(0, SYSTEM_AREA - self.pos))  # never read the system area
        b = bytes(hidden) + self.pread(self.pos + hidden, n - hidden) if n else b""
        self.pos += len(b)
        return b

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass


def read_tree(r: ImageReader, pvd: PvdFields) -> Tree:
    tree = Tree()
    try:
        import pycdlib
    except ImportError:  # pragma: no cover - a declared dependency
        tree.problems.append("pycdlib is not installed: the file tree was not read")
        return tree
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(cast(BinaryIO, PycdlibView(r.read, r.size)))  # duck-typed: seek, tell, read
    except Exception as e:  # pycdlib raises PyCdlibInvalidISO and others on damaged input
        tree.problems.append(f"the file tree could not be read: {one_line(e)}")
        tree.rock_ridge = root_has_susp(r, pvd)
        return tree
    try:
        rr = iso.has_rock_ridge()
        tree.rock_ridge = bool(rr)
        tree.rock_ridge_version = rr if isinstance(rr, str) else None
        tree.read = True
        if tree.rock_ridge or iso.joliet_vd is None:
            root, names = iso.pvd.root_directory_record(), "rr" if tree.rock_ridge else "iso"
        else:
            root, names = iso.joliet_vd.root_directory_record(), "joliet"
        _walk_iso9660(root, names, tree)
        if iso.has_udf():
            _walk_udf(iso, tree)
    except Exception as e:
        tree.problems.append(f"the file tree could not be walked fully: {one_line(e)}")
    finally:
        with contextlib.suppress(Exception):
            iso.close()
    return tree


def one_line(e: BaseException) -> str:
    """An exception of pycdlib's, in one line of at most 200 characters."""
    s = " ".join(str(e).split()) or type(e).__name__
    return s[:200]


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

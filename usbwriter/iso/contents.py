"""The files inside an ISO image, read with pycdlib: names, types, sizes, dates, modes,
symlink targets, and where each file's bytes lie in the image. The one walker: `ls`,
extraction, file-copy mode and the boot report (its El Torito paths, files over 4 GiB,
Windows Setup's files) all see the image through ``read_contents``.

Names are decided one way. One name space is read, the richest the image has: Rock
Ridge (POSIX names, modes, symlinks: its bytes are UTF-8, undecodable ones kept as
surrogates so extraction writes the bytes recorded), else UDF (Windows installers keep
their files there, large ones whole; OSTA CS0: Latin-1 or UTF-16), else Joliet (UTF-16),
else plain ISO 9660. A plain ISO 9660 name is taken as ECMA-119 records it: the version
(";1") and the one "." that separates an empty extension are removed, nothing more (a
name recorded "ABC..;1" is "ABC."); its bytes are read as Latin-1, so every byte is one
letter and no name fails to decode (d-characters are ASCII, which Latin-1 keeps).
Folder names have neither. A file of 4 GiB or more is stored in several extents; its
entry holds them all and its whole size.

Nothing here trusts the image: the walk is bounded in depth and entries, every extent
must lie inside the image, and whatever pycdlib raises on damaged data becomes one
``BadImage`` naming the file and the cause.
"""

from __future__ import annotations

import contextlib
import logging
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, cast

from usbwriter.errors import BadImage, BadInput, UsbWriterError, terminal_safe
from usbwriter.iso.descriptors import VD_OFFSET, volume_size
from usbwriter.iso.source import ImageBytes, image_bytes
from usbwriter.sources.files import ImageSource

log = logging.getLogger(__name__)

MAX_ENTRIES = 1_000_000  # more than any real disc; a crafted image stops here
MAX_DEPTH = 128
MAX_SYMLINK = 4096  # bytes of a UDF symlink's target read
ZEROS = -1  # an extent offset: the extent reads as zeros (UDF: allocated, not recorded)

TYPE_CHARS = {"dir": "d", "file": "-", "symlink": "l", "other": "?"}


@dataclass(frozen=True)
class Entry:
    """A file, folder or symlink inside the image."""

    parts: tuple[str, ...]  # the path's components from the root; () is the root
    type: str  # "file", "dir", "symlink" or "other" (a device node, FIFO or socket)
    size: int
    mtime: datetime | None
    mode: int | None  # permission bits (Rock Ridge, UDF), None when the image has none
    target: str | None = None  # a symlink's target
    extents: tuple[tuple[int, int], ...] = ()  # (byte offset in the image or ZEROS, length)

    @property
    def path(self) -> str:
        return "/" + "/".join(self.parts)

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else "/"

    @property
    def first_offset(self) -> int:
        return next((off for off, _ in self.extents if off >= 0), 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "size": self.size,
            "mtime": None if self.mtime is None else iso8601(self.mtime),
            "mode": self.mode,
            "target": self.target,
        }


def iso8601(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Contents:
    """Every entry of one name space, folders' entries sorted by name."""

    image: str
    namespace: str  # "rock ridge", "udf", "joliet" or "iso9660"
    root: Entry
    children: dict[tuple[str, ...], list[Entry]] = field(default_factory=dict)
    by_path: dict[tuple[str, ...], Entry] = field(default_factory=dict)
    rock_ridge: str | None = None  # the Rock Ridge version ("1.09"...; "" unknown), or None
    udf: bool = False  # the image has a UDF file system (whether or not its names are read)

    def find(self, path: str) -> Entry | None:
        """The entry at PATH ("/", "boot/grub", "/EFI/BOOT/"), None if there is none.
        Plain ISO 9660 names are also matched regardless of case."""
        parts = split_path(path)
        found = self.by_path.get(parts)
        if found is None and self.namespace == "iso9660":
            folded = tuple(p.upper() for p in parts)
            found = self.by_path.get(folded)
        return found

    def lookup(self, path: str) -> Entry:
        """The entry at PATH; BadInput (exit 2) naming it when the image has none."""
        found = self.find(path)
        if found is None:
            raise BadInput(f"{self.image}: no {path} inside the image", path=self.image)
        return found

    def walk(self, entry: Entry) -> Iterator[Entry]:
        """ENTRY's descendants, each folder's entries before the next folder's deeper ones
        (pre-order: an entry, then what it holds)."""
        stack = [iter(self.children.get(entry.parts, ()))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                continue
            yield nxt
            if nxt.type == "dir":
                stack.append(iter(self.children.get(nxt.parts, ())))

    def select(self, path: str, recursive: bool) -> list[Entry]:
        """What `ls PATH` shows: a folder's entries (all below it with RECURSIVE), or the
        one file."""
        entry = self.lookup(path)
        if entry.type != "dir":
            return [entry]
        if recursive:
            return list(self.walk(entry))
        return list(self.children.get(entry.parts, ()))


def split_path(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p not in ("", "."))


@dataclass(frozen=True)
class Sharing:
    """Files whose bytes lie where another file's lie in the image (or their own, twice):
    hard links share an extent; a crafted image may name one extent many times, so
    that its files add up to far more than the image holds."""

    files: int = 0
    listed: int = 0  # their sizes added up
    stored: int = 0  # the bytes the image holds for them

    def note(self) -> str:
        """'6 files share their bytes in the image (...)'; '' when none do."""
        if not self.files:
            return ""
        from usbwriter.units import human_size

        return (
            f"{self.files} files share their bytes in the image (hard links, or a crafted "
            f"image): {human_size(self.listed)} listed, {human_size(self.stored)} stored"
        )


def sharing(entries: Iterable[Entry]) -> Sharing:
    """Which of ENTRIES' files share bytes in the image: one sweep over their extents
    in the order of their offsets."""
    files = [e for e in entries if e.type == "file"]
    spans = sorted(
        (off, off + n, i) for i, e in enumerate(files) for off, n in e.extents if off >= 0 and n
    )
    marked: set[int] = set()
    reach, holder = -1, -1  # the furthest end so far, and whose extent it is
    for start, end, i in spans:
        if start < reach:  # overlaps the holder's extent (which starts no later)
            marked.update((i, holder))
        if end > reach:
            reach, holder = end, i
    if not marked:
        return Sharing()
    stored, reach = 0, -1
    for start, end, i in spans:
        if i in marked and end > reach:
            stored += end - max(start, reach)
            reach = end
    return Sharing(len(marked), sum(files[i].size for i in marked), stored)


# ---- pycdlib's view of the image ----------------------------------------------------------


def one_line(e: BaseException) -> str:
    """An exception of pycdlib's, in one line of at most 200 characters."""
    s = " ".join(str(e).split()) or type(e).__name__
    return s[:200]


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
        hidden = min(n, max(0, VD_OFFSET - self.pos))  # never read the system area
        b = bytes(hidden) + self.pread(self.pos + hidden, n - hidden) if n else b""
        self.pos += len(b)
        return b

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        pass


# ---- dates, modes, names -----------------------------------------------------------------


def _utc(y: int, mo: int, d: int, h: int, mi: int, s: int, offset_min: int) -> datetime | None:
    try:
        local = datetime(y, mo, d, h, mi, s, tzinfo=UTC)
    except (ValueError, OverflowError):
        return None
    try:
        return local - timedelta(minutes=offset_min)
    except OverflowError:
        return None


def _record_date(date: Any) -> datetime | None:
    """A DirectoryRecordDate (7 bytes) or VolumeDescriptorDate (17 bytes) in UTC."""
    if date is None:
        return None
    if hasattr(date, "years_since_1900"):
        return _utc(
            1900 + date.years_since_1900,
            date.month,
            date.day_of_month,
            date.hour,
            date.minute,
            date.second,
            15 * date.gmtoffset,
        )
    if hasattr(date, "dayofmonth"):
        if not date.year:
            return None
        return _utc(
            date.year,
            date.month,
            date.dayofmonth,
            date.hour,
            date.minute,
            date.second,
            15 * date.gmtoffset,
        )
    return None


def _udf_date(ts: Any) -> datetime | None:
    if ts is None:
        return None
    tz = int(ts.tz) & 0xFFF
    offset = tz - 0x1000 if tz & 0x800 else tz  # 12-bit signed minutes; -2047: unknown
    if offset == -2047:
        offset = 0
    return _utc(ts.year, ts.month, ts.day, ts.hour, ts.minute, ts.second, offset)


def _udf_mode(perms: int) -> int:
    """UDF permissions (five bits each for other, group, owner) as POSIX bits."""
    other, group, owner = perms & 7, (perms >> 5) & 7, (perms >> 10) & 7
    return (owner << 6) | (group << 3) | other


def _text(b: bytes, encoding: str) -> str:
    if encoding == "utf-8":
        return b.decode("utf-8", "surrogateescape")  # the bytes come back on extraction
    return b.decode(encoding, "replace")


def _tf(rr: Any) -> Any:
    for entries in (rr.dr_entries, rr.ce_entries):
        tf = getattr(entries, "tf_record", None) if entries is not None else None
        if tf is not None and tf.modification_time is not None:
            return tf.modification_time
    return None


# ---- the walk ------------------------------------------------------------------------------


class _Walk:
    def __init__(self, image: str, limit: int, block_size: int, data: ImageBytes) -> None:
        self.image = image
        self.limit = limit  # no extent may end past this
        self.block_size = block_size
        self.data = data
        self.count = 0
        self.contents: Contents | None = None

    def bad(self, why: str) -> BadImage:
        return BadImage(f"{self.image}: {why}", path=self.image)

    def counted(self, depth: int) -> None:
        self.count += 1
        if self.count > MAX_ENTRIES:
            raise self.bad(f"more than {MAX_ENTRIES} entries (a crafted or damaged image)")
        if depth > MAX_DEPTH:
            raise self.bad(f"folders nested more than {MAX_DEPTH} deep (a crafted image)")

    def extent(self, path: str, offset: int, length: int) -> tuple[int, int]:
        if length < 0 or offset < 0 or offset + length > self.limit:
            raise self.bad(
                f"truncated or damaged: {path} ends at byte {offset + max(length, 0)}, past the "
                f"image's end ({self.limit} bytes)"
            )
        return offset, length


def _name(rec: Any, names: str) -> str:
    """A directory record's name in the name space NAMES (see the module's text)."""
    if names == "rr" and rec.rock_ridge is not None:
        nm = rec.rock_ridge.name()
        if nm:
            return _text(nm, "utf-8")
    ident = rec.file_identifier()
    s = _text(ident, "utf-16-be") if names == "joliet" else _text(ident, "latin-1")
    if not rec.is_dir():
        s = s.split(";", 1)[0]
        if s.endswith(".") and s != "." and s != "..":
            s = s[:-1]
    return s


def _is_rr_moved(rec: Any, names: str, parts: tuple[str, ...]) -> bool:
    """The folder genisoimage moves deep folders into (each child has a Rock Ridge RE):
    those folders are listed where they belong, and this folder not at all."""
    if names != "rr" or parts or not rec.is_dir():
        return False
    kids = [c for c in rec.children if not (c.is_dot() or c.is_dotdot())]
    return bool(kids) and all(
        c.rock_ridge is not None and c.rock_ridge.relocated_record() for c in kids
    )


def _iso_entry(walk: _Walk, rec: Any, names: str, parts: tuple[str, ...]) -> tuple[Entry, Any]:
    """The entry for a directory record, and the record whose children it holds."""
    rr = rec.rock_ridge if names == "rr" else None
    mode: int | None = None
    mtime = _record_date(getattr(rec, "date", None))
    target: str | None = None
    holder = rec
    if rr is not None:
        if rr.child_link_record_exists() and rr.cl_to_moved_dr is not None:
            holder = rr.cl_to_moved_dr  # a relocated deep folder: its real record
            rr = holder.rock_ridge or rr
            mtime = _record_date(getattr(holder, "date", None))
        with contextlib.suppress(Exception):
            mode = int(rr.get_file_mode())
        tf = _tf(rr)
        if tf is not None:
            mtime = _record_date(tf) or mtime
        if rr.is_symlink():
            target = _text(rr.symlink_path(), "utf-8")
    path = "/" + "/".join(parts)
    if holder.is_dir():
        kind = "dir"
    elif target is not None or (mode is not None and stat.S_ISLNK(mode)):
        kind = "symlink"
        target = target or ""
    elif mode is not None and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        kind = "other"
    else:
        kind = "file"
    perms = None if mode is None else stat.S_IMODE(mode)
    if kind == "symlink":
        size = len((target or "").encode("utf-8", "surrogateescape"))
        return Entry(parts, kind, size, mtime, perms, target), holder
    if kind == "dir":
        return Entry(parts, kind, int(holder.data_length), mtime, perms), holder
    extents: list[tuple[int, int]] = []
    chunk = rec
    for _ in range(1 << 16):
        length = int(chunk.data_length)
        if length:
            offset = int(chunk.extent_location()) * walk.block_size
            extents.append(walk.extent(path, offset, length))
        chunk = chunk.data_continuation
        if chunk is None:
            break
    size = sum(n for _, n in extents) if kind == "file" else 0
    return Entry(
        parts, kind, size, mtime, perms, None, tuple(extents) if kind == "file" else ()
    ), rec


def _walk_iso(walk: _Walk, root: Any, names: str, contents: Contents) -> None:
    stack: list[tuple[Any, tuple[str, ...]]] = [(root, ())]
    while stack:
        rec, parts = stack.pop()
        kids = rec.children or []
        continued = {id(c.data_continuation) for c in kids if c.data_continuation is not None}
        entries: list[Entry] = []
        for child in kids:
            if child.is_dot() or child.is_dotdot() or id(child) in continued:
                continue
            if child.is_associated_file():
                continue
            rr = child.rock_ridge if names == "rr" else None
            if rr is not None and child.is_dir() and rr.relocated_record():
                continue  # listed where its Rock Ridge CL places it
            walk.counted(len(parts) + 1)
            name = _name(child, names)
            if _is_rr_moved(child, names, parts):
                continue
            entry, holder = _iso_entry(walk, child, names, (*parts, name))
            entries.append(entry)
            if entry.type == "dir":
                stack.append((holder, entry.parts))
        _add_folder(contents, parts, entries)


def _udf_extents(walk: _Walk, fe: Any, path: str, part_start: int) -> list[tuple[int, int]]:
    left = int(fe.get_data_length())
    out: list[tuple[int, int]] = []
    bs = walk.block_size
    for ad in fe.alloc_descs:
        if left <= 0:
            break
        raw = int(ad.extent_length)
        kind, length = raw >> 30, raw & 0x3FFFFFFF
        length = min(length, left)
        if type(ad).__name__ == "UDFInlineAD":
            out.append(walk.extent(path, int(ad.log_block_num) * bs + int(ad.offset), length))
        elif kind == 0:
            offset = (part_start + int(ad.log_block_num)) * bs
            out.append(walk.extent(path, offset, length))
        elif kind in (1, 2):
            out.append((ZEROS, length))
        else:
            raise walk.bad(f"{path}: UDF allocation extents continued elsewhere (not supported)")
        left -= length
    if left > 0:
        raise walk.bad(f"truncated or damaged: {path}: its UDF extents hold less than its size")
    return out


def _udf_target(walk: _Walk, fe: Any, path: str, part_start: int) -> str:
    """A UDF symlink's target from its path components (ECMA-167 4/14.16)."""
    data = b"".join(
        walk.data.pread(off, n) if off >= 0 else bytes(n)
        for off, n in _udf_extents(walk, fe, path, part_start)
    )[:MAX_SYMLINK]
    parts: list[str] = []
    absolute = False
    i = 0
    while i + 4 <= len(data):
        ctype, n = data[i], data[i + 1]
        ident = data[i + 4 : i + 4 + n]
        i += 4 + n
        if ctype in (1, 2):
            absolute, parts = True, []
        elif ctype == 3:
            parts.append("..")
        elif ctype == 4:
            parts.append(".")
        elif ctype == 5 and ident:
            enc = "utf-16-be" if ident[0] == 16 else "latin-1"
            parts.append(_text(ident[1:], enc))
    return ("/" if absolute else "") + "/".join(parts)


def _walk_udf(walk: _Walk, iso: Any, contents: Contents) -> None:
    part_start = int(iso.udf_main_descs.partitions[0].part_start_location)
    stack: list[tuple[Any, tuple[str, ...]]] = [(iso.udf_root, ())]
    while stack:
        fe, parts = stack.pop()
        entries: list[Entry] = []
        for fi in list(fe.fi_descs.values()):
            if fi.is_parent() or fi.file_entry is None:
                continue
            walk.counted(len(parts) + 1)
            child = fi.file_entry
            name = _text(bytes(fi.fi), fi.encoding or "latin-1")
            cparts = (*parts, name)
            path = "/" + "/".join(cparts)
            mtime = _udf_date(getattr(child, "mod_time", None))
            mode = _udf_mode(int(child.perms))
            if child.is_dir():
                entries.append(Entry(cparts, "dir", int(child.get_data_length()), mtime, mode))
                stack.append((child, cparts))
            elif child.is_symlink():
                target = _udf_target(walk, child, path, part_start)
                size = len(target.encode("utf-8", "surrogateescape"))
                entries.append(Entry(cparts, "symlink", size, mtime, mode, target))
            elif child.is_file():
                extents = tuple(_udf_extents(walk, child, path, part_start))
                size = sum(n for _, n in extents)
                entries.append(Entry(cparts, "file", size, mtime, mode, None, extents))
            else:
                entries.append(Entry(cparts, "other", 0, mtime, mode))
        _add_folder(contents, parts, entries)


def _add_folder(contents: Contents, parts: tuple[str, ...], entries: list[Entry]) -> None:
    entries.sort(key=lambda e: e.name)
    kept: list[Entry] = []
    for e in entries:
        if e.parts in contents.by_path:  # a duplicate name (crafted): the first one counts
            log.debug("%s: %s appears twice; the second is ignored", contents.image, e.path)
            continue
        contents.by_path[e.parts] = e
        kept.append(e)
    contents.children[parts] = kept


def read_contents(data: ImageBytes, *, bound: int | None = None) -> Contents:
    """Every entry of DATA's richest name space; BadImage when it is not a readable ISO.
    No extent may end past BOUND (default: the image's end, or the volume's while the
    image's size is not known)."""
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    path = data.path
    vol = volume_size(data)
    real = data.size if data.size_known else None
    view_size = max(real or 0, vol)
    limit = bound if bound is not None else (real if real is not None else view_size)
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(cast(BinaryIO, PycdlibView(data.pread, view_size)))  # duck-typed
    except UsbWriterError:
        raise
    except PyCdlibException as e:
        raise BadImage(f"{path}: not a readable ISO 9660 image: {one_line(e)}", path=path) from e
    except (Exception, RecursionError) as e:
        raise BadImage(
            f"{path}: a damaged ISO 9660 image ({type(e).__name__}: {one_line(e)})", path=path
        ) from e
    try:
        walk = _Walk(path, limit, int(iso.logical_block_size), data)
        root: Any
        rr = iso.has_rock_ridge()
        udf = bool(iso.has_udf())
        if rr:
            namespace, names, root = "rock ridge", "rr", iso.pvd.root_directory_record()
        elif udf and iso.udf_root is not None:
            namespace, names, root = "udf", "udf", iso.udf_root
        elif iso.has_joliet() and iso.joliet_vd is not None:
            namespace, names, root = "joliet", "joliet", iso.joliet_vd.root_directory_record()
        else:
            namespace, names, root = "iso9660", "iso", iso.pvd.root_directory_record()
        root_date = _udf_date(root.mod_time) if names == "udf" else _record_date(root.date)
        top = Entry((), "dir", 0, root_date, None)
        version = rr if isinstance(rr, str) else ("" if rr else None)
        contents = Contents(path, namespace, top, rock_ridge=version, udf=udf)
        contents.by_path[()] = top
        if names == "udf":
            _walk_udf(walk, iso, contents)
        else:
            _walk_iso(walk, root, names, contents)
        log.debug("%s: %d entries (%s)", path, len(contents.by_path) - 1, namespace)
        return contents
    except UsbWriterError:
        raise
    except (Exception, RecursionError) as e:
        raise BadImage(
            f"{path}: a damaged ISO 9660 image ({type(e).__name__}: {one_line(e)})", path=path
        ) from e
    finally:
        with contextlib.suppress(Exception):
            iso.close()


class IsoImage:
    """An open ISO (raw or compressed): its contents and random access to its bytes."""

    def __init__(
        self, path: str, *, member: str | None = None, cancel: threading.Event | None = None
    ) -> None:
        from usbwriter.sources import open_image

        self.path = path
        self.src: ImageSource = open_image(path, member=member)
        try:
            self.data = image_bytes(self.src, cancel)
            self.contents = read_contents(self.data)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        data = getattr(self, "data", None)
        if data is not None:
            data.close()
        self.src.close()

    def __enter__(self) -> IsoImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def mode_string(e: Entry) -> str:
    """'drwxr-xr-x' as ls -l shows it; '?' for permissions the image does not record."""
    head = TYPE_CHARS.get(e.type, "?")
    if e.mode is None:
        return head + "?" * 9
    return head + stat.filemode(e.mode)[1:]


def text_line(e: Entry) -> str:
    """One `ls -l`-like line: mode, size, date (UTC), path, and a symlink's target."""
    when = "????-??-?? ??:??:??" if e.mtime is None else e.mtime.strftime("%Y-%m-%d %H:%M:%S")
    line = f"{mode_string(e)} {e.size:>12} {when} {printable(e.path)}"
    if e.type == "symlink":
        line += f" -> {printable(e.target or '')}"
    return line


def printable(s: str) -> str:
    """S for a terminal: undecodable bytes and control characters shown as '?'."""
    return terminal_safe(s)

"""Build an ISO 9660 image from a folder with pycdlib: Rock Ridge, Joliet, UDF when needed,
El Torito boot entries and a hybrid MBR; reproducible under SOURCE_DATE_EPOCH.

    result = build_iso(BuildRequest(folder, output, ...), progress=cb, cancel=event, warn=cb)

Names: Rock Ridge keeps the real names, modes, uid/gid 0 and mtimes, and symlinks as
symlinks; the ISO 9660 (level 3) names are upper-case d-characters derived from the real
names, truncated, with a counter where two would be equal; Joliet names are the real
names with the characters Joliet forbids replaced, cut to 64 UTF-16 units, with a counter
where two would be equal ignoring case. Directories deeper than eight levels are moved
under /.rr_moved in the ISO 9660 tree (Rock Ridge readers show them in place; the empty
.rr_moved folder is what ECMA-119's depth limit costs, as with mkisofs -hide-rr-moved).

Reproducible: entries are added in sorted order; pycdlib reads the clock and the random
module for dates and for the UDF volume set identifier, and those reads are answered, for
the building thread only, with the time being recorded (SOURCE_DATE_EPOCH or now for the
volume, each file's mtime clamped to SOURCE_DATE_EPOCH) in UTC and a generator seeded from
SOURCE_DATE_EPOCH (usbwriter.iso.pinned). The hybrid MBR (usbwriter.iso.hybrid) has no
random field. Names: usbwriter.iso.names.

The files read: the folder is held by a descriptor from the scan to the end of the write,
and every file is reached through it without following a link (SourceTree); pycdlib gets
file objects of ours (SourceFile), never a name it would open itself. A file must be, when
its bytes are read, the inode the scan saw, still a regular file: otherwise the build is
refused (Refused, exit 4: "changed since it was scanned"). It must give exactly its scanned
size and keep its modification time: a file that shrank, grew or was modified meanwhile,
or a pseudo file of /proc or /sys whose reads do not match its size, stops the build
(BadImage, exit 1), naming it; the partial image is removed. Files are opened one at a
time, so a folder of any size needs a few descriptors.

The file made: created with 0666 less the umask, or 0600 less the umask when anything in
the folder (the folder itself included) is not readable by everyone, so that the image
does not let others read what the folder kept from them (BuildResult.private_because).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import secrets
import stat
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from usbwriter.checksums.hashing import hash_file
from usbwriter.errors import (
    BadImage,
    BadInput,
    Cancelled,
    InternalError,
    Refused,
    UsbWriterError,
    os_error,
)
from usbwriter.iso.hybrid import (
    GRUB_BLOCKLIST,
    GRUB_HYBRID,
    ISOHDPFX,
    HybridLayout,
    grub_boot_info,
    grub_eltorito,
    hybrid_mbr,
    isolinux_hybrid_capable,
    needs_boot_info_table,
    read_grub_hybrid,
    read_isohdpfx,
)
from usbwriter.iso.names import iso9660_name, joliet_name, volume_label
from usbwriter.iso.pinned import pinned_clock
from usbwriter.outputs import check_output_file
from usbwriter.placing import give_name
from usbwriter.progress import Meter, ProgressCallback

log = logging.getLogger(__name__)

UDF_THRESHOLD = 4 << 30  # a file this large needs multi-extent ISO 9660: add UDF
EFI_LOAD_MAX = 0xFFFF  # El Torito sector count is 16 bits
WRITE_BLOCK = 1 << 20
RELOCATED = ("RR_MOVED", ".rr_moved")  # ISO 9660 and Rock Ridge names of the relocation dir

Warn = Callable[[str], None]


@dataclass(frozen=True)
class BuildRequest:
    folder: str
    output: str
    label: str | None = None
    udf: bool = False  # UDF even without a file of 4 GiB
    boot_bios: str | None = None  # paths relative to folder
    boot_efi: str | None = None
    hybrid: bool = False
    overwrite: bool = False
    source_date_epoch: int | None = None


@dataclass
class Entry:
    """One thing in the folder, with its names in each namespace."""

    parts: tuple[str, ...]  # real path components below the folder
    kind: str  # "file", "dir", "symlink"
    mode: int
    mtime: float
    size: int = 0
    target: str = ""
    iso: tuple[str, ...] = ()  # ISO 9660 components (files end in ";1")
    joliet: tuple[str, ...] = ()
    #: a regular file as scanned: the inode it must still be, and its modification time
    dev: int = 0
    ino: int = 0
    mtime_ns: int = 0

    @property
    def path(self) -> str:
        return "/".join(self.parts)


@dataclass
class BuildResult:
    output: str
    size: int
    label: str
    blake3: str
    files: int
    directories: int
    symlinks: int
    skipped: list[str]
    udf: bool
    source_date_epoch: int | None
    boot: list[dict[str, Any]] = field(default_factory=list)
    hybrid: dict[str, Any] | None = None
    #: with boot entries: how the image boots written to a stick, by the boot report
    #: (the one `usbwriter inspect` gives): {"bios", "uefi", "reasons"}
    stick: dict[str, Any] | None = None
    #: the image's permission bits: 0666 less the umask, or 0600 less the umask when
    #: something in the folder is not readable by everyone (private_because names it)
    mode: int = 0o644
    private_because: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "size": self.size,
            "label": self.label,
            "blake3": self.blake3,
            "files": self.files,
            "directories": self.directories,
            "symlinks": self.symlinks,
            "skipped": self.skipped,
            "udf": self.udf,
            "source_date_epoch": self.source_date_epoch,
            "boot": self.boot,
            "hybrid": self.hybrid,
            "stick": self.stick,
            "mode": f"{self.mode:04o}",
            "private_because": self.private_because,
        }


# ---- the folder --------------------------------------------------------------------------


def _clamp(mtime: float, sde: int | None) -> float:
    return mtime if sde is None or mtime <= sde else float(sde)


def _os_error(path: str, e: OSError, doing: str) -> Exception:
    """An OSError on a file of the folder: permission denied said plainly (the common
    mapping speaks of drives), the rest as usbwriter.errors maps them."""
    if isinstance(e, PermissionError):
        return BadInput(f"{path}: permission denied, cannot {doing}", path=path, errno=e.errno)
    return os_error(path, e, doing)


def _check_name(path: str, name: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput(
            f"{path}: the name is not valid UTF-8; Rock Ridge and Joliet names must be",
            path=path,
        ) from None


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a FIFO opens without waiting for a writer, a terminal does not become ours
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _open_changed(shown: str, e: OSError, scanned: bool) -> Exception:
    """An OSError opening a file or folder of the tree by the scan's name: the name no
    longer leads to what the scan saw (Refused, 4), or the usual mapping."""
    why = {
        errno.ELOOP: "a symbolic link now stands in its place or in its path",
        errno.ENOTDIR: "a folder of its path is no longer a folder",
        errno.ENOENT: "it is gone",
        errno.ENXIO: "it is now a socket or a device",
        errno.ENODEV: "it is now a device",
    }.get(e.errno or 0)
    if why is None:
        return _os_error(shown, e, "read it")
    when = "since it was scanned" if scanned else "while it was scanned"
    return Refused(f"{shown}: changed {when} ({why}); no image was made", path=shown,
                   errno=e.errno)  # fmt: skip


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link"),
                       (stat.S_ISREG, "a regular file")):  # fmt: skip
        if test(mode):
            return name
    return "a device"


def _not_public(st: os.stat_result) -> bool:
    """Not everyone may read it: a file without read for others, a folder without read
    and search for others."""
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) else 0)
    return st.st_mode & need != need


class SourceTree:
    """The folder being put into the image, held by one descriptor from the scan to the
    end of the write. Its files are reached only through that descriptor, one path
    component at a time with O_NOFOLLOW, and must then be the very inode the scan saw
    (a regular file of the scanned size and modification time): nothing a user who owns
    a folder in the tree plants after the scan (a symbolic link to a file they may not
    read, a FIFO, a folder swapped for a link) is followed, opened for long or waited on.

    Files are opened when pycdlib reads them and closed when their last byte is read,
    so a folder of any number of files needs a few descriptors (the root, the folder of
    the file being read, the file)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        try:
            self.fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise _os_error(folder, e, "read the folder") from None
        self._dir: tuple[tuple[str, ...], int] | None = None  # the last folder walked to
        self._files: list[SourceFile] = []

    def shown(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self.folder, *parts)

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._drop_dir()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _drop_dir(self) -> None:
        if self._dir is not None:
            os.close(self._dir[1])
            self._dir = None

    def _folder_of(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the folder PARTS, walked to from the root without following
        a link; kept until another folder is asked for."""
        if not parts:
            return self.fd
        if self._dir is not None and self._dir[0] == parts:
            return self._dir[1]
        self._drop_dir()
        fd = self.fd
        try:
            for name in parts:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
                if fd != self.fd:
                    os.close(fd)
                fd = nxt
        except BaseException:
            if fd != self.fd:
                os.close(fd)
            raise
        self._dir = (parts, fd)
        return fd

    def open_file(self, e: Entry) -> int:
        """A descriptor of the regular file E as scanned; Refused (4) when its name now
        leads elsewhere, BadImage (1) when its size or modification time changed."""
        shown = self.shown(e.parts)
        try:
            fd = os.open(e.parts[-1], _FILE_FLAGS, dir_fd=self._folder_of(e.parts[:-1]))
        except OSError as err:
            raise _open_changed(shown, err, scanned=True) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (e.dev, e.ino):
                now = "another file" if stat.S_ISREG(st.st_mode) else _kind(st.st_mode)
                raise Refused(
                    f"{shown}: changed since it was scanned (it is now {now}); no image was made",
                    path=shown,
                )
            _check_unchanged(shown, e, st)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def source(self, e: Entry) -> SourceFile:
        f = SourceFile(self, e)
        self._files.append(f)
        return f

    def read_head(self, e: Entry, n: int) -> bytes:
        fd = self.open_file(e)
        try:
            return os.pread(fd, n, 0)
        except OSError as err:
            raise _os_error(self.shown(e.parts), err, "read it") from None
        finally:
            os.close(fd)


def _size_changed(shown: str, e: Entry, now: int) -> BadImage:
    return BadImage(
        f"{shown}: its size changed since it was scanned ({e.size} bytes when scanned, "
        f"now {now}); no image was made",
        path=shown,
    )


def _check_unchanged(shown: str, e: Entry, st: os.stat_result) -> None:
    if st.st_size != e.size:
        raise _size_changed(shown, e, st.st_size)
    if st.st_mtime_ns != e.mtime_ns:
        raise BadImage(f"{shown}: modified since it was scanned; no image was made", path=shown)


class SourceFile:
    """A regular file of the tree as pycdlib reads it (add_fp): opened through the
    SourceTree at the first read of each pass, closed at its last byte. It gives exactly
    the scanned size: a file that ends early, reads past its size or was modified
    meanwhile stops the build (BadImage, naming it) instead of being stored padded with
    zeros, cut, or mixed."""

    mode = "rb"  # pycdlib checks for binary mode

    def __init__(self, tree: SourceTree, e: Entry) -> None:
        self.tree = tree
        self.entry = e
        self.pos = 0
        self.fd = -1

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.entry.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        e = self.entry
        want = e.size - self.pos if n < 0 else min(n, e.size - self.pos)
        if want <= 0:
            return b""
        if self.fd < 0:
            self.fd = self.tree.open_file(e)
        shown = self.tree.shown(e.parts)
        chunks: list[bytes] = []
        got = 0
        try:
            while got < want:
                chunk = os.pread(self.fd, want - got, self.pos + got)
                if not chunk:
                    raise self._ended_early(shown, self.pos + got)
                chunks.append(chunk)
                got += len(chunk)
            self.pos += got
            if self.pos >= e.size:
                self._last_byte_read(shown)
        except OSError as err:
            raise _os_error(shown, err, "read it") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _ended_early(self, shown: str, end: int) -> BadImage:
        e = self.entry
        now = os.fstat(self.fd).st_size
        if now != e.size:
            return _size_changed(shown, e, now)
        return BadImage(  # its size unchanged: a pseudo file of /sys, say
            f"{shown}: reads {end} bytes, not the {e.size} its size says, as the pseudo "
            "files of /proc and /sys do; no image was made",
            path=shown,
        )

    def _last_byte_read(self, shown: str) -> None:
        """The whole file was read: nothing may follow, and it must still be as scanned."""
        e = self.entry
        more = os.pread(self.fd, 1, e.size)
        st = os.fstat(self.fd)
        self.close()
        if more and st.st_size <= e.size:  # reads past its size, as /proc and /sys do
            raise BadImage(
                f"{shown}: reads more than its size ({e.size} bytes), as the pseudo files "
                "of /proc and /sys do; no image was made",
                path=shown,
            )
        _check_unchanged(shown, e, st)
        if more:
            raise _size_changed(shown, e, st.st_size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def scan(
    tree: SourceTree, sde: int | None, cancel: threading.Event | None, warn: Warn
) -> tuple[list[Entry], list[str], str | None]:
    """Every directory, regular file and symlink below the TREE (symlinks not followed),
    sorted, depth first; other kinds of file are skipped with a warning. The walk goes
    through folder descriptors with O_NOFOLLOW. Each regular file is opened once, to
    find an unreadable one now (BadInput naming it), to pin the inode the write must
    find again, and to refuse a pseudo file that reads more than its size (BadImage).
    Also the first thing (the folder included) not everyone may read, or None."""
    entries: list[Entry] = []
    skipped: list[str] = []
    private: list[str] = []
    if _not_public(os.fstat(tree.fd)):
        private.append(tree.folder)

    def walk(dir_fd: int, parts: tuple[str, ...]) -> None:
        here_shown = tree.shown(parts)
        try:
            with os.scandir(dir_fd) as it:
                children = sorted(it, key=lambda e: os.fsencode(e.name))
        except OSError as e:
            raise _os_error(here_shown, e, "read the folder") from None
        for child in children:
            if cancel is not None and cancel.is_set():
                raise Cancelled("mkiso: interrupted; nothing was written")
            here = (*parts, child.name)
            shown = tree.shown(here)
            _check_name(shown, child.name)
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as e:
                raise _os_error(shown, e, "stat it") from None
            mtime = _clamp(st.st_mtime, sde)
            if stat.S_ISLNK(st.st_mode):
                try:
                    target = os.readlink(child.name, dir_fd=dir_fd)
                except OSError as e:
                    raise _os_error(shown, e, "read the link") from None
                _check_name(shown, target)
                entries.append(Entry(here, "symlink", st.st_mode, mtime, target=target))
            elif stat.S_ISDIR(st.st_mode):
                try:
                    fd = os.open(child.name, _DIR_FLAGS, dir_fd=dir_fd)
                except OSError as e:
                    if isinstance(e, PermissionError):
                        raise _os_error(shown, e, "read the folder") from None
                    raise _open_changed(shown, e, scanned=False) from None
                try:
                    fst = os.fstat(fd)
                    if (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
                        raise Refused(
                            f"{shown}: changed while it was scanned; no image was made",
                            path=shown,
                        )
                    if _not_public(fst) and not private:
                        private.append(shown)
                    entries.append(Entry(here, "dir", fst.st_mode, mtime))
                    walk(fd, here)
                finally:
                    os.close(fd)
            elif stat.S_ISREG(st.st_mode):
                entries.append(_scan_file(dir_fd, here, shown, st, mtime, private))
            else:
                warn(f"{shown}: skipped, {_kind(st.st_mode)} cannot be put in an ISO")
                skipped.append("/".join(here))

    walk(tree.fd, ())
    return entries, skipped, (private[0] if private else None)


def _scan_file(
    dir_fd: int,
    here: tuple[str, ...],
    shown: str,
    st: os.stat_result,
    mtime: float,
    private: list[str],
) -> Entry:
    try:
        fd = os.open(here[-1], _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if isinstance(e, PermissionError):
            raise _os_error(shown, e, "read it") from None
        raise _open_changed(shown, e, scanned=False) from None
    try:
        fst = os.fstat(fd)
        if not stat.S_ISREG(fst.st_mode) or (fst.st_dev, fst.st_ino) != (st.st_dev, st.st_ino):
            raise Refused(f"{shown}: changed while it was scanned; no image was made",
                          path=shown)  # fmt: skip
        try:
            more = os.pread(fd, 1, fst.st_size)
        except OSError as e:
            raise _os_error(shown, e, "read it") from None
        if more:
            raise BadImage(
                f"{shown}: reads more than its size ({fst.st_size} bytes), as the pseudo "
                "files of /proc and /sys do; no image was made",
                path=shown,
            )
    finally:
        os.close(fd)
    if _not_public(fst) and not private:
        private.append(shown)
    return Entry(here, "file", fst.st_mode, mtime, size=fst.st_size, dev=fst.st_dev,
                 ino=fst.st_ino, mtime_ns=fst.st_mtime_ns)  # fmt: skip


def assign_names(entries: list[Entry], reserved_root: set[str]) -> None:
    """Fill in each entry's ISO 9660 and Joliet path, deterministically: siblings are
    named in sorted order of their real names (the order scan gives)."""
    iso_taken: dict[tuple[str, ...], set[str]] = {(): set(reserved_root)}
    joliet_taken: dict[tuple[str, ...], set[str]] = {}
    iso_dirs: dict[tuple[str, ...], tuple[str, ...]] = {(): ()}
    joliet_dirs: dict[tuple[str, ...], tuple[str, ...]] = {(): ()}
    for e in entries:
        parent = e.parts[:-1]
        name = e.parts[-1]
        iso = iso9660_name(name, e.kind == "dir", iso_taken.setdefault(parent, set()))
        jol = joliet_name(name, joliet_taken.setdefault(parent, set()))
        e.iso = (*iso_dirs[parent], iso)
        e.joliet = (*joliet_dirs[parent], jol)
        if e.kind == "dir":
            iso_dirs[e.parts] = e.iso
            joliet_dirs[e.parts] = e.joliet


# ---- checks before anything is written ---------------------------------------------------


def check_request(req: BuildRequest) -> tuple[str, str]:
    """(folder, output) as absolute paths after the refusals: folder missing or not a
    folder (BadInput, 2); output inside the folder, existing without overwrite or not a
    regular file (Refused, 4)."""
    folder = os.path.abspath(req.folder)
    try:
        st = os.stat(folder)
    except OSError as e:
        raise os_error(req.folder, e, "read the folder") from None
    if not stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{req.folder}: not a folder", path=req.folder)
    output = os.path.abspath(req.output)
    out_dir = os.path.dirname(output)
    real_folder = os.path.realpath(folder)
    real_out = os.path.join(os.path.realpath(out_dir), os.path.basename(output))
    if os.path.commonpath([real_folder, real_out]) == real_folder:
        raise Refused(
            f"{req.output}: inside the folder {req.folder}; the image would hold itself",
            path=req.output,
        )
    check_output_file(req.output, overwrite=req.overwrite)  # the rule every output follows
    return folder, output


def _boot_entry(entries: list[Entry], folder: str, rel: str, option: str) -> Entry:
    """The entry of a boot image given relative to the folder (BadInput otherwise)."""
    shown = f"{option} {rel}"
    if os.path.isabs(rel):
        raise BadInput(f"{shown}: give the path relative to the folder {folder}", path=rel)
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise BadInput(f"{shown}: outside the folder {folder}", path=rel)
    parts = tuple(norm.split("/"))
    for e in entries:
        if e.parts == parts:
            if e.kind == "symlink":
                raise BadInput(f"{shown}: a symbolic link; give the file it points to", path=rel)
            if e.kind != "file":
                raise BadInput(f"{shown}: not a regular file", path=rel)
            if e.size == 0:
                raise BadInput(f"{shown}: an empty file", path=rel)
            return e
    raise BadInput(f"{shown}: no such file in the folder {folder}", path=rel)


# ---- the build ---------------------------------------------------------------------------


#: the names boot images go by on the discs mkiso is asked to build again: isolinux,
#: GRUB (grub-mkrescue), and the EFI images of grub-mkrescue, Debian, Fedora and others
BIOS_NAMES = ("isolinux.bin", "eltorito.img")
EFI_NAMES = ("efi.img", "efiboot.img")


def _tell_boot_images(entries: list[Entry], tree: SourceTree, folder: str, warn: Warn) -> None:
    """Without --boot-bios and --boot-efi the image does not boot: when the folder holds
    boot images (an extracted disc, say), say so and give the options that use them."""

    def found(names: tuple[str, ...], fits: Callable[[Entry, bytes], bool]) -> Entry | None:
        seen = [e for e in entries if e.kind == "file" and e.parts[-1] in names and e.size]
        for e in sorted(seen, key=lambda e: (len(e.parts), e.parts)):
            if fits(e, tree.read_head(e, 512)):
                return e
        return None

    bios = found(BIOS_NAMES, lambda e, h: needs_boot_info_table(_clean_head(h, e.size)))
    efi = found(EFI_NAMES, lambda e, h: h[510:512] == b"\x55\xaa" and b"FAT" in h[0x36:0x5A])
    options = [f"--boot-{kind} {e.path}" for kind, e in (("bios", bios), ("efi", efi)) if e]
    if options:
        warn(
            f"{folder} holds boot images, but without --boot-bios or --boot-efi the image "
            f"made will not boot; to make it bootable, add: {' '.join(options)} --hybrid"
        )


def _free_name(entries: list[Entry], real: str, iso: str, joliet: str) -> tuple[str, str, str]:
    """Names for the boot catalog in the root, not used by anything in the folder."""
    roots = [e for e in entries if len(e.parts) == 1]
    reals = {e.parts[0] for e in roots}
    isos = {e.iso[0].removesuffix(";1").rstrip(".") for e in roots}
    jols = {e.joliet[0].casefold() for e in roots}
    n = 0
    r, i, j = real, iso, joliet
    while r in reals or i in isos or j.casefold() in jols:
        n += 1
        r, i, j = f"boot{n}.cat", f"BOOT{n}.CAT", f"boot{n}.cat"
    return r, i + ";1", j


def build_iso(
    req: BuildRequest,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    warn: Warn = lambda s: None,
) -> BuildResult:
    """Build the ISO req.output from req.folder (see the module's docstring)."""
    folder, output = check_request(req)
    tree = SourceTree(folder)
    try:
        return _build(req, tree, output, progress, cancel, warn)
    finally:
        tree.close()


def _build(
    req: BuildRequest,
    tree: SourceTree,
    output: str,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    warn: Warn,
) -> BuildResult:
    import pycdlib
    from pycdlib.pycdlibexception import PyCdlibException

    folder = tree.folder
    sde = req.source_date_epoch
    entries, skipped, private = scan(tree, sde, cancel, warn)
    relocation_rr = RELOCATED[1]
    if any(len(e.parts) == 1 and e.parts[0] == relocation_rr for e in entries):
        relocation_rr = ".rr_moved_"
    assign_names(entries, {RELOCATED[0]})
    bios = _boot_entry(entries, folder, req.boot_bios, "--boot-bios") if req.boot_bios else None
    efi = _boot_entry(entries, folder, req.boot_efi, "--boot-efi") if req.boot_efi else None
    if req.hybrid and bios is None and efi is None:
        raise BadInput("--hybrid needs a boot image: give --boot-efi or --boot-bios")
    if bios is None and efi is None:
        _tell_boot_images(entries, tree, req.folder, warn)
    big = [e for e in entries if e.kind == "file" and e.size >= UDF_THRESHOLD]
    udf = req.udf or bool(big)
    if big and not req.udf:
        warn(f"{big[0].path} is 4 GiB or more: adding UDF (ISO 9660 stores it in parts)")
    label = volume_label(req.label if req.label is not None else os.path.basename(folder))
    volume_time = float(sde) if sde is not None else time.time()

    iso = pycdlib.PyCdlib()
    out_dir = os.path.dirname(output)
    tmp = os.path.join(out_dir, f".{os.path.basename(output)[:200]}.{secrets.token_hex(4)}.part")
    made = False  # tmp is ours to remove
    boot_info: list[dict[str, Any]] = []
    hybrid_info: dict[str, Any] | None = None
    try:
        with pinned_clock(volume_time, sde) as set_clock:
            iso.new(
                interchange_level=3,
                joliet=3,
                rock_ridge="1.09",
                vol_ident=label,
                udf="2.60" if udf else None,
                app_ident_str="USBWRITER MKISO",
            )
            iso.set_relocated_name(RELOCATED[0], relocation_rr)
            for e in entries:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("mkiso: interrupted; nothing was written")
                set_clock(e.mtime)
                _add(iso, tree, e, udf)
            set_clock(volume_time)
            if bios is not None or efi is not None:
                boot_info = _add_eltorito(iso, entries, tree, bios, efi, udf)
            # 0666 less the umask; owner only when something in the folder is private
            want = 0o600 if private is not None else 0o666
            try:
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             want)  # fmt: skip
                made = True
            except OSError as e:
                raise os_error(tmp, e, "create") from None
            with os.fdopen(fd, "w+b") as out:
                mode = stat.S_IMODE(os.fstat(fd).st_mode)
                _write(iso, out, output, progress, cancel)
                size = out.seek(0, os.SEEK_END)
                if not udf:
                    size = _pad(out, size)
                if req.hybrid:
                    hybrid_info = _make_hybrid(iso, out, bios, efi, tree, size, sde, warn)
                out.flush()
                os.fsync(out.fileno())
        digest = hash_file(tmp, ["blake3"], progress=progress, cancel=cancel)["blake3"]
        stick = _stick_verdict(tmp, req, warn) if boot_info else None
        try:
            give_name(tmp, output, replace=req.overwrite, made_by="mkiso")
        except Refused:
            made = False  # kept under its own name, as the message says
            raise
    except PyCdlibException as e:
        raise InternalError(f"{output}: pycdlib refused the image: {e}", path=output) from e
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise BadImage(f"{output}: no space left on the device", path=output) from None
        raise os_error(output, e, "write") from None
    finally:
        if made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        with contextlib.suppress(Exception):
            iso.close()
    return BuildResult(
        output=output,
        size=size,
        label=label,
        blake3=digest,
        files=sum(e.kind == "file" for e in entries),
        directories=sum(e.kind == "dir" for e in entries),
        symlinks=sum(e.kind == "symlink" for e in entries),
        skipped=skipped,
        udf=udf,
        source_date_epoch=sde,
        boot=boot_info,
        hybrid=hybrid_info,
        stick=stick,
        mode=mode,
        private_because=private,
    )


def _stick_verdict(path: str, req: BuildRequest, warn: Warn) -> dict[str, Any] | None:
    """What the boot report says of the image just built: a boot image that does not
    boot (an EFI image with no EFI/BOOT/BOOTX64.EFI, say) is warned about by name."""
    from usbwriter.boot import inspect_image

    try:
        verdict = inspect_image(path, verify_checksum=False).boot
    except UsbWriterError as e:  # the image is made; only the verdict is missing
        warn(f"the boot report could not read the image: {e.message}")
        return None
    asked = [("BIOS", "--boot-bios", req.boot_bios, verdict.bios),
             ("UEFI", "--boot-efi", req.boot_efi, verdict.uefi)]  # fmt: skip
    for firmware, option, image, said in asked:
        if image is None or said != "no":
            continue
        why = [r.split(": ", 1)[1] for r in verdict.reasons if r.startswith(f"{firmware}: ")]
        warn(f"{option} {image}: {firmware} will not boot this image: " + " ".join(why))
    return {"bios": verdict.bios, "uefi": verdict.uefi, "reasons": list(verdict.reasons)}


def _add(iso: Any, tree: SourceTree, e: Entry, udf: bool) -> None:
    iso_path = "/" + "/".join(e.iso)
    joliet_path = "/" + "/".join(e.joliet)
    udf_path = "/" + e.path if udf else None
    if e.kind == "dir":
        iso.add_directory(
            iso_path, rr_name=e.parts[-1], joliet_path=joliet_path, file_mode=e.mode,
            udf_path=udf_path,
        )  # fmt: skip
    elif e.kind == "file":
        # a file object of ours, never a name pycdlib would open itself (following links)
        iso.add_fp(
            tree.source(e), e.size, iso_path=iso_path, rr_name=e.parts[-1],
            joliet_path=joliet_path, file_mode=e.mode, udf_path=udf_path,
        )  # fmt: skip
    else:
        kw: dict[str, Any] = {}
        if udf:
            kw = {"udf_symlink_path": udf_path, "udf_target": e.target}
        iso.add_symlink(
            symlink_path=iso_path, rr_symlink_name=e.parts[-1], rr_path=e.target,
            joliet_path=joliet_path, **kw,
        )  # fmt: skip
        # pycdlib gives every symlink mode 0555; a symlink's is 0777 (lrwxrwxrwx).
        px = iso.get_record(iso_path=iso_path).rock_ridge.dr_entries.px_record
        if px is not None:
            px.posix_file_mode = stat.S_IFLNK | 0o777


def _add_eltorito(
    iso: Any,
    entries: list[Entry],
    tree: SourceTree,
    bios: Entry | None,
    efi: Entry | None,
    udf: bool,
) -> list[dict[str, Any]]:
    real, iso_name, joliet = _free_name(entries, "boot.cat", "BOOT.CAT", "boot.cat")
    cat = {
        "bootcatfile": "/" + iso_name,
        "rr_bootcatname": real,
        "joliet_bootcatfile": "/" + joliet,
        **({"udf_bootcatfile": "/" + real} if udf else {}),
    }
    info: list[dict[str, Any]] = []
    if bios is not None:
        head = _bios_head(tree, bios)
        isolinux = isolinux_hybrid_capable(head)
        table = needs_boot_info_table(head)
        # isolinux and GRUB load the rest of themselves (4 sectors, as their own tools
        # ask); another image is loaded whole
        load = 4 if table else min(-(-bios.size // 512), EFI_LOAD_MAX)
        iso.add_eltorito(
            "/" + "/".join(bios.iso), boot_load_size=load, boot_info_table=table, **cat
        )
        info.append(
            {"platform": "bios", "image": bios.path, "emulation": "none",
             "load_sectors": load, "boot_info_table": table, "isolinux": isolinux}
        )  # fmt: skip
    if efi is not None:
        load = min(-(-efi.size // 512), EFI_LOAD_MAX)
        iso.add_eltorito(
            "/" + "/".join(efi.iso), boot_load_size=load, platform_id=0xEF, efi=True, **cat
        )
        info.append(
            {"platform": "uefi", "image": efi.path, "emulation": "none", "load_sectors": load}
        )
    info.append({"catalog": real})
    return info


#: zeros after the last file, counted in the volume, as mkisofs and xorriso add: a reader
#: that fetches ahead in large blocks (GRUB's disk cache, a CD drive's readahead) must
#: not run off the end of the medium while it reads the last file. (Not with UDF: its
#: second anchor must stay in the volume's last sector.)
PADDING = 150 * 2048


def _pad(out: Any, end: int) -> int:
    """Append PADDING and count it in the primary and supplementary (Joliet) volume
    descriptors' volume space size; the new end."""
    out.seek(end)
    out.write(bytes(PADDING))
    blocks = (end + PADDING) // 2048
    for sector in range(16, 32):
        out.seek(sector * 2048)
        head = out.read(6)
        if head[1:6] != b"CD001" or head[0] == 255:  # the set's terminator
            break
        if head[0] in (1, 2):
            out.seek(sector * 2048 + 80)
            out.write(blocks.to_bytes(4, "little") + blocks.to_bytes(4, "big"))
    return end + PADDING


class _Stop(Exception):
    pass


def _write(
    iso: Any,
    out: Any,
    output: str,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> None:
    meter: list[Meter] = []

    def on_progress(done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise _Stop
        if not meter:
            meter.append(Meter("write", total, progress))
        m = meter[0]
        m.advance(done - m.done)

    try:
        iso.write_fp(out, blocksize=WRITE_BLOCK, progress_cb=on_progress)
    except _Stop:
        raise Cancelled(f"{output}: interrupted; nothing was written", path=output) from None
    if meter:
        meter[0].finish()


def _make_hybrid(
    iso: Any,
    out: Any,
    bios: Entry | None,
    efi: Entry | None,
    tree: SourceTree,
    size: int,
    sde: int | None,
    warn: Warn,
) -> dict[str, Any]:
    """Write the hybrid MBR into the first sector; say what it holds for each firmware
    (whether a stick then boots is the boot report's to say: `_stick_verdict`)."""
    out.seek(0)
    if any(out.read(512)):
        raise InternalError(f"{out.name}: the system area is not empty")
    note = ""
    bios_extent = None
    code, loader = None, "isolinux"
    if bios is not None:
        head = _bios_head(tree, bios)
        if isolinux_hybrid_capable(head):
            code = read_isohdpfx()
            missing = f"syslinux's isohybrid MBR ({ISOHDPFX}, Debian package isolinux)"
        elif grub_eltorito(head):
            code, loader = read_grub_hybrid(), "grub"
            missing = f"GRUB's hybrid MBR ({GRUB_HYBRID}, Debian package grub-pc-bin)"
        else:
            note = (
                f"the BIOS boot image {bios.path} is neither isolinux.bin nor GRUB's "
                "eltorito.img, the ones a hybrid MBR can start; only a CD/DVD drive runs it"
            )
        if code is not None:
            bios_extent = iso.get_record(iso_path="/" + "/".join(bios.iso)).extent_location()
        elif not note:
            note = f"{missing} is not installed"
    efi_extent = None
    if efi is not None:
        efi_extent = iso.get_record(iso_path="/" + "/".join(efi.iso)).extent_location()
    seed = sde if sde is not None else int(time.time())
    layout = HybridLayout(
        iso_size=size,
        bios_extent=bios_extent,
        efi_extent=efi_extent,
        efi_size=efi.size if efi is not None else 0,
        disk_signature=random.Random(f"usbwriter-mkiso-{seed}").getrandbits(32),
        bios_loader=loader,
    )
    mbr = hybrid_mbr(layout, code)
    out.seek(0)
    out.write(mbr)
    if bios_extent is not None and loader == "grub":
        _patch_grub_boot_info(out, bios_extent)
    stick_bios, stick_uefi = bios_extent is not None, efi_extent is not None
    # the EFI image's entry, as fdisk and `usbwriter inspect` number it: 2 after the
    # whole-image entry BIOS boots from, else 1 (see hybrid_mbr)
    esp = 2 if stick_bios else 1
    if stick_uefi and not stick_bios:
        summary = f"an MBR for UEFI only: the EFI image as partition {esp}, no BIOS boot code"
    elif stick_bios and not stick_uefi:
        summary = f"an MBR for BIOS only: {loader}'s boot code, no EFI partition"
    elif stick_bios:
        summary = (
            f"an MBR for BIOS and UEFI: {loader}'s boot code, the EFI image as partition {esp}"
        )
    else:
        summary = "an MBR with neither boot code nor an EFI partition"
    text = f"{summary}; {note}" if note else summary
    if note:
        warn(f"--hybrid: {text}")
    return {"bios": stick_bios, "uefi": stick_uefi, "summary": text}


def _bios_head(tree: SourceTree, e: Entry) -> bytes:
    """The first 0x44 bytes of the BIOS boot image E as its own tool made it. An image
    taken from a disc (`usbwriter extract` of a grub-mkrescue ISO) still holds the
    boot info table that disc wrote into it: bytes 8-11 the primary volume descriptor's
    block (16), 16-19 the image's length, 24-63 zero. Those bytes are read as the zeros
    they were, so that GRUB's eltorito.img is known again (and gets a new table)."""
    return _clean_head(tree.read_head(e, 0x44), e.size)


def _clean_head(head: bytes, size: int) -> bytes:
    if (
        len(head) >= 64
        and int.from_bytes(head[8:12], "little") == 16
        and int.from_bytes(head[16:20], "little") == size
        and not any(head[24:64])
    ):
        head = head[:8] + bytes(56) + head[64:]
    return head


def _patch_grub_boot_info(out: Any, extent: int) -> None:
    """Tell GRUB's eltorito.img at block EXTENT where the rest of it lies when a stick's
    MBR starts it, and keep its boot info table's checksum (bytes 64 on, as 32-bit
    words) true to the patched bytes, as xorriso's --grub2-boot-info does."""
    start = extent * 2048
    out.seek(start + GRUB_BLOCKLIST)
    old = out.read(8)
    new = grub_boot_info(extent)
    out.seek(start + GRUB_BLOCKLIST)
    out.write(new)
    out.seek(start + 20)
    (checksum,) = struct.unpack("<I", out.read(4))
    change = sum(struct.unpack("<2I", new)) - sum(struct.unpack("<2I", old))
    out.seek(start + 20)
    out.write(struct.pack("<I", (checksum + change) & 0xFFFFFFFF))

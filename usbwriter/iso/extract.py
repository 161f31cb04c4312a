"""Copy files out of an ISO into a folder, so that nothing lands outside it.

Every folder is opened from its parent's descriptor with ``O_NOFOLLOW | O_DIRECTORY``
and every file created relative to it with ``O_CREAT | O_EXCL | O_NOFOLLOW``: a symlink
in the output folder, there before or planted during the extraction, is never
followed. Refused, each reported as skipped, the rest extracted:

- names that are empty, ``.``, ``..`` or hold ``/`` or NUL (crafted images);
- symlinks whose target is absolute, climbs out of the folder (``../../etc``), or
  climbs after descending (``a/../..``: ``a`` could be a link);
- anything reached through a symlink (or a file) already in the folder;
- existing files, unless ``overwrite`` (a folder in the way is never replaced);
- device nodes, FIFOs and sockets.

The output folder itself is reached a component at a time from a held descriptor
(``open_output``): each missing folder made with ``mkdir`` and opened relative to its
parent's descriptor with ``O_NOFOLLOW``; a symbolic link on the way is followed only
when root or the invoking user (``SUDO_UID`` under sudo) owns it, the rule the kernel's
protected_symlinks applies in shared folders; another user's link is refused (exit 4),
so a link planted where root extracts cannot send the files elsewhere. Before the first
byte, the files must fit in the output's file system (``statvfs``), or nothing is done.

A file is written under a temporary name in its folder and renamed when whole, with
its mode (without setuid and setgid) and mtime where the image records them; without
``overwrite`` the rename never replaces a file made there meanwhile. The image is read
once, forward, in the order of the extents (a compressed image is decoded once): each
run of bytes goes to every file whose extents hold it, so records sharing an extent (hard
links, or a crafted image naming one extent fifty times) cost one read, and each of
those files is written whole, on its own (no hard link: the image may give them other
modes and dates, and editing one must not change the others).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from usbwriter.errors import BadInput, Cancelled, Refused, UsbWriterError, os_error
from usbwriter.iso.contents import Contents, Entry, IsoImage, sharing, split_path
from usbwriter.outputs import KERNEL_TREES, kind_of
from usbwriter.placing import place_new
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.units import count, human_size

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_OPEN_DIRS = 256
MAX_OPEN_FILES = 64  # files written at once (only a crafted image needs more): others reopened
MAX_LINKS = 40  # symbolic links followed on the output folder's path, as the kernel's walk

EventCallback = Callable[[dict[str, Any]], None]


@dataclass
class Result:
    output: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    bytes: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    shared: int = 0  # files whose bytes the image shares with another file's

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "result",
            "output": self.output,
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "bytes": self.bytes,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "shared": self.shared,
        }


#: the end of the reason an existing file is skipped for (kept without ``overwrite``)
EXISTS = "exists; kept"


class _Skip(Exception):
    """This entry is not extracted, for the reason given."""


def unsafe_name(name: str) -> str | None:
    """Why NAME may not be a file name in the output folder, or None."""
    if name in ("", ".", ".."):
        return f"its name {name!r} is not a file name"
    if "/" in name:
        return f"its name {name!r} holds '/'"
    if "\0" in name:
        return "its name holds a NUL byte"
    return None


def unsafe_target(depth: int, target: str) -> str | None:
    """Why a symlink DEPTH folders below the output folder may not point at TARGET."""
    if not target:
        return "its target is empty"
    if "\0" in target:
        return "its target holds a NUL byte"
    if target.startswith("/"):
        return f"its target {target} is absolute (outside the output folder)"
    descended = False
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if descended:
                return (
                    f"its target {target} climbs after descending (it could leave through a link)"
                )
            depth -= 1
            if depth < 0:
                return f"its target {target} points outside the output folder"
        else:
            descended = True
    return None


def select(contents: Contents, paths: Iterable[str]) -> list[Entry]:
    """The entries to extract for PATHS (all when none): each PATH's entry and, for a
    folder, all below it; BadInput (exit 2) for a PATH the image does not hold."""
    wanted = list(paths) or ["/"]
    tops = [contents.lookup(p) for p in wanted]  # every PATH checked before any write
    seen: set[tuple[str, ...]] = set()
    out: list[Entry] = []
    for top in tops:
        for e in [top, *contents.walk(top)] if top.type == "dir" else [top]:
            if e.parts and e.parts not in seen:
                seen.add(e.parts)
                out.append(e)
    return out


# ---- the output folder ---------------------------------------------------------------------


def link_owners(environ: Mapping[str, str] | None = None) -> frozenset[int]:
    """Whose symbolic links the output folder's path may pass through: root's and the
    invoking user's (the real user; under sudo, SUDO_UID)."""
    env = os.environ if environ is None else environ
    owners = {0, os.getuid()}
    sudo = env.get("SUDO_UID", "")
    if os.geteuid() == 0 and sudo.isdigit():
        owners.add(int(sudo))
    return frozenset(owners)


def _components(path: str) -> list[str]:
    """PATH's names, last first (a stack to pop), without empty ones and '.'."""
    return [p for p in reversed(path.split("/")) if p not in ("", ".")]


def _refuse_system(output: str, fd: int, name: str = "") -> None:
    """Refused when the folder FD (or NAME in it, about to be made) is under /dev, /proc
    or /sys, wherever the path given led."""
    try:
        path = os.path.join(os.readlink(f"/proc/self/fd/{fd}"), name)
    except OSError:  # no /proc: nothing under it either
        return
    for top in KERNEL_TREES:
        if path == top or path.startswith(top + "/"):
            raise Refused(f"{output}: is under {top}, which holds devices and kernel files: "
                          "refusing to extract there", path=output)  # fmt: skip


def _owner(uid: int) -> str:
    import pwd

    try:
        return f"user {pwd.getpwuid(uid).pw_name} ({uid})"
    except KeyError:
        return f"user {uid}"


_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_output(
    output: str,
    *,
    owners: frozenset[int] | None = None,
    before_making: Callable[[int], None] | None = None,
) -> int:
    """The folder OUTPUT opened for reading, made where missing (parents too), a name at
    a time from the folder above's descriptor (see the module's text). BEFORE_MAKING is
    called once with the descriptor of the last existing folder, before the first is
    made (or with OUTPUT's own when nothing is). Something other than a folder on the way
    is BadInput (exit 2); a symbolic link not owned by one of OWNERS (default: root and
    the invoking user), or a folder under /dev, /proc or /sys, Refused (exit 4)."""
    if not output:
        raise BadInput("the output folder's name is empty")
    owners = link_owners() if owners is None else owners
    todo = _components(output)
    where = "/" if output.startswith("/") else ""
    fd = os.open(where or ".", _PATH | os.O_DIRECTORY)
    check = before_making
    links = 0
    try:
        while todo:
            name = todo.pop()
            shown = os.path.join(where, name) if where else name
            try:
                nfd = os.open(name, _PATH, dir_fd=fd)
            except FileNotFoundError:
                _refuse_system(output, fd, name)
                if check is not None:
                    check(fd)
                    check = None
                try:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                    nfd = os.open(name, _PATH, dir_fd=fd)
                except OSError as e:
                    raise os_error(shown, e, "make the folder") from None
            except OSError as e:
                raise os_error(shown, e, "open the folder") from None
            try:
                st = os.fstat(nfd)
                if stat.S_ISDIR(st.st_mode):
                    fd, nfd, where = nfd, fd, shown  # the old one closed below
                    continue
                if not stat.S_ISLNK(st.st_mode):
                    raise BadInput(f"{shown}: is {kind_of(st.st_mode)}, not a folder", path=shown)
                if st.st_uid not in owners:
                    raise Refused(
                        f"{shown}: a symbolic link owned by {_owner(st.st_uid)}, not followed "
                        "(only root's and your own are); give the folder itself",
                        path=shown,
                    )
                target = os.readlink("", dir_fd=nfd)  # the link fstat saw, not a new one
            finally:
                os.close(nfd)
            links += 1
            if links > MAX_LINKS:
                raise BadInput(f"{shown}: too many levels of symbolic links (a loop)", path=shown)
            todo.extend(_components(target))
            if target.startswith("/"):
                top = os.open("/", _PATH | os.O_DIRECTORY)
                os.close(fd)
                fd, where = top, "/"
        try:
            root = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        except OSError as e:
            raise os_error(output, e, "open the output folder") from None
    finally:
        os.close(fd)
    try:
        if not stat.S_ISDIR(os.fstat(root).st_mode):
            raise BadInput(f"{output}: is not a folder", path=output)
        _refuse_system(output, root)
        if check is not None:
            check(root)
    except BaseException:
        os.close(root)
        raise
    return root


class _Dirs:
    """Descriptors of the output folder's subfolders, opened without following links."""

    def __init__(self, root_fd: int, output: str) -> None:
        self.root_fd = root_fd
        self.output = output
        self.fds: dict[tuple[str, ...], int] = {}

    def shown(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self.output, *parts)

    def open(self, parts: tuple[str, ...]) -> int:
        """The folder at PARTS below the output folder, made if missing; _Skip if a link or
        a file is in the way."""
        if len(self.fds) >= MAX_OPEN_DIRS:
            self.close()
        fd = self.root_fd
        for i, name in enumerate(parts):
            key = parts[: i + 1]
            cached = self.fds.get(key)
            if cached is not None:
                fd = cached
                continue
            try:
                os.mkdir(name, 0o777, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise os_error(self.shown(key), e, "make the folder") from None
            try:
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)  # fmt: skip
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _Skip(self._in_the_way(fd, name, key)) from None
                raise os_error(self.shown(key), e, "open the folder") from None
            self.fds[key] = nfd
            fd = nfd
        return fd

    def _in_the_way(self, fd: int, name: str, key: tuple[str, ...]) -> str:
        try:
            st = os.lstat(name, dir_fd=fd)
        except OSError:
            return f"{self.shown(key)} is not a folder"
        if stat.S_ISLNK(st.st_mode):
            return f"{self.shown(key)} is a symbolic link (not followed)"
        return f"{self.shown(key)} is a file, not a folder"

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


def _exists(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _name_refused(shown: str) -> Iterator[None]:
    """Creating a file in a folder already open: ENOENT or EINVAL can only be about the
    name, which the output's file system does not take (':' or '?' on FAT and exFAT)."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EINVAL, errno.EILSEQ):
            raise
        raise BadInput(
            f"{shown}: the file system there does not take this name ({e.strerror})",
            path=shown,
            errno=e.errno,
        ) from None


@contextlib.contextmanager
def _unless_unsupported() -> Iterator[None]:
    """Go on where the file system keeps no such attribute (FAT through FUSE: fchmod
    is ENOSYS); the file's bytes are what counts."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
            raise


def _keep_attributes(fd: int, e: Entry, mask: int) -> None:
    """Give the open file or folder FD the mode (within MASK) and mtime of E."""
    if e.mode is not None:
        with _unless_unsupported():
            os.fchmod(fd, e.mode & mask)
    if e.mtime is not None:
        ns = int(e.mtime.timestamp()) * 1_000_000_000
        with _unless_unsupported():
            os.utime(fd, ns=(ns, ns))


def _temp_name(name: str) -> str:
    return f".{name[:200]}.usbw-{secrets.token_hex(4)}"


class Extractor:
    """One extraction: ENTRIES of ISO into OUTPUT."""

    def __init__(
        self,
        iso: IsoImage,
        output: str,
        *,
        overwrite: bool = False,
        on_event: EventCallback | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.iso = iso
        self.output = output
        self.overwrite = overwrite
        self.on_event = on_event or (lambda _e: None)
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.result = Result(output)
        self.refused: set[tuple[str, ...]] = set()

    # ---- reporting

    def skip(self, e: Entry, reason: str) -> None:
        self.result.skipped.append((e.path, reason))
        self.on_event({"event": "skipped", "path": e.path, "reason": reason})

    def fail(self, e: Entry, reason: str) -> None:
        self.result.failed.append((e.path, reason))
        self.on_event({"event": "failed", "path": e.path, "reason": reason})

    def done(self, e: Entry) -> None:
        self.on_event({"event": e.type, "path": e.path, "size": e.size})

    # ---- the steps

    def _check_names(self, entries: list[Entry]) -> list[Entry]:
        """ENTRIES without those whose names are unsafe (each reported once, what lies
        below silently with it)."""
        kept: list[Entry] = []
        for e in entries:
            if any(e.parts[:i] in self.refused for i in range(1, len(e.parts))):
                continue
            why = next((w for w in map(unsafe_name, e.parts) if w), None)
            if why is not None:
                self.refused.add(e.parts)
                self.skip(e, why)
                continue
            kept.append(e)
        return kept

    def run(self, entries: list[Entry]) -> Result:
        entries = self._check_names(entries)
        files = [e for e in entries if e.type == "file"]
        shared = sharing(files)
        self.result.shared = shared.files
        root_fd = open_output(
            self.output, before_making=lambda fd: self._check_space(fd, files, shared.note())
        )
        dirs = _Dirs(root_fd, self.output)
        try:
            self._extract(entries, dirs)
        finally:
            dirs.close()
            os.close(root_fd)
        return self.result

    def _check_space(self, fd: int, files: list[Entry], shared: str) -> None:
        """Refused (exit 4), before anything is made, when FILES cannot fit in the file
        system of the folder FD (the space an unprivileged user may fill)."""
        st = os.fstatvfs(fd)
        if not st.f_blocks:  # a file system that does not say
            return
        unit = st.f_frsize or 4096
        need = sum(-(-e.size // unit) * unit for e in files)
        free = st.f_bavail * unit
        if need <= free:
            return
        raise Refused(
            f"{self.output}: needs {human_size(need)} ({need} bytes) for {len(files)} files, "
            f"{human_size(free)} ({free} bytes) free there; nothing was extracted"
            + (f"; {shared}" if shared else ""),
            path=self.output,
        )

    def _extract(self, entries: list[Entry], dirs: _Dirs) -> None:
        folders = [e for e in entries if e.type == "dir"]
        files = [e for e in entries if e.type == "file"]
        links = [e for e in entries if e.type == "symlink"]
        meter = Meter("extract", sum(e.size for e in files), self.progress)
        made: list[Entry] = []
        for e in folders:
            if self._guard(e, lambda e=e: dirs.open(e.parts)):  # type: ignore[misc]
                made.append(e)
                self.result.dirs += 1
                self.done(e)
        _Files(self, dirs, meter).write(files)
        for e in links:
            if self._guard(e, lambda e=e: self._symlink(e, dirs)):  # type: ignore[misc]
                self.result.symlinks += 1
                self.done(e)
        for e in entries:
            if e.type == "other":
                self.skip(e, "a device node, FIFO or socket is not extracted")
        for e in sorted(made, key=lambda e: len(e.parts), reverse=True):
            self._guard(e, lambda e=e: self._folder_times(e, dirs))  # type: ignore[misc]
        meter.finish()

    def _guard(self, e: Entry, step: Callable[[], object]) -> bool:
        """Run STEP for E; a refusal or a failure is reported, and the next entry goes on."""
        if self.cancel.is_set():
            raise Cancelled("interrupted")
        try:
            step()
        except _Skip as s:
            self.skip(e, str(s))
            return False
        except Cancelled:
            raise
        except UsbWriterError as err:
            self.fail(e, err.message)
            return False
        except OSError as err:
            self.fail(e, os_error(os.path.join(self.output, *e.parts), err, "write").message)
            return False
        return True

    def _place(self, tmp: str, name: str, dfd: int, shown: str) -> None:
        """Give the finished TMP its NAME; a file made there meanwhile is kept (and a
        folder is never replaced, overwrite or not)."""
        self._check_existing(name, dfd, shown)
        if self.overwrite:
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return
        try:
            place_new(tmp, name, dir_fd=dfd)
        except FileExistsError:
            raise _Skip(f"{shown} {EXISTS}") from None

    def _check_existing(self, name: str, dfd: int, shown: str) -> None:
        st = _exists(name, dfd)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            raise _Skip(f"{shown} is a folder (not replaced)")
        if not self.overwrite:
            raise _Skip(f"{shown} {EXISTS}")

    def _symlink(self, e: Entry, dirs: _Dirs) -> None:
        why = unsafe_target(len(e.parts) - 1, e.target or "")
        if why is not None:
            raise _Skip(why)
        dfd = dirs.open(e.parts[:-1])
        name = e.parts[-1]
        self._check_existing(name, dfd, dirs.shown(e.parts))
        tmp = _temp_name(name)
        with _name_refused(dirs.shown(e.parts)):
            os.symlink(e.target or "", tmp, dir_fd=dfd)
        try:
            if e.mtime is not None:
                with _unless_unsupported():
                    ns = int(e.mtime.timestamp()) * 1_000_000_000
                    os.utime(tmp, ns=(ns, ns), dir_fd=dfd, follow_symlinks=False)
            self._place(tmp, name, dfd, dirs.shown(e.parts))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise

    def _folder_times(self, e: Entry, dirs: _Dirs) -> None:
        fd = dirs.open(e.parts)
        _keep_attributes(fd, e, 0o1777)


@dataclass(eq=False)
class _Out:
    """A file of the image, written under a temporary name until whole."""

    entry: Entry
    pieces: int = 0  # its extents not written yet
    tmp: str | None = None
    fd: int | None = None  # None while closed (too many open) or not started
    inode: tuple[int, int] = (0, 0)
    dead: bool = False  # refused or failed: the rest of its bytes are dropped


#: an extent being copied: its start and end in the image, where it goes in the file
_Piece = tuple[int, int, int, _Out]


class _Files:
    """The files of one extraction, written in one forward pass over the image: each run
    of the image's bytes is read once and written to every file that holds it."""

    def __init__(self, x: Extractor, dirs: _Dirs, meter: Meter) -> None:
        self.x, self.dirs, self.meter = x, dirs, meter
        self.outs: list[_Out] = []
        self.open: OrderedDict[_Out, None] = OrderedDict()  # least recently written first

    def write(self, files: list[Entry]) -> None:
        pieces: list[_Piece] = []
        for e in files:
            out = _Out(e)
            self.outs.append(out)
            at = 0
            for offset, length in e.extents:
                if offset >= 0 and length:  # ZEROS extents stay holes
                    pieces.append((offset, offset + length, at, out))
                    out.pieces += 1
                at += length
        pieces.sort(key=lambda p: p[0])
        try:
            for out in self.outs:
                if not out.pieces:
                    self._start(out)
                    self._finish(out)
            self._sweep(pieces)
        finally:
            for out in self.outs:
                self._drop(out)

    def _sweep(self, pieces: list[_Piece]) -> None:
        i, pos = 0, 0
        active: list[_Piece] = []
        while i < len(pieces) or active:
            if self.x.cancel.is_set():
                raise Cancelled("interrupted")
            if not active:
                pos = max(pos, pieces[i][0])
            while i < len(pieces) and pieces[i][0] <= pos:
                piece = pieces[i]
                i += 1
                self._start(piece[3])
                active.append(piece)
            active = [p for p in active if not p[3].dead]  # refused: their bytes not read
            if not active:
                continue
            end = min(pos + CHUNK, *(p[1] for p in active))
            if i < len(pieces):
                end = min(end, pieces[i][0])
            data = self._read(pos, end - pos, active)
            for start, _, at, out in active:
                if not out.dead:  # not failed by the read, nor by an earlier write
                    self._write(out, data, at + pos - start)
            pos = end
            still: list[_Piece] = []
            for piece in active:
                out = piece[3]
                if out.dead:
                    continue
                if piece[1] > pos:
                    still.append(piece)
                    continue
                out.pieces -= 1
                if not out.pieces:
                    self._finish(out)
            active = still

    def _read(self, pos: int, n: int, active: list[_Piece]) -> bytes:
        """N bytes of the image at POS; on failure, the files holding them fail."""
        try:
            b = self.x.iso.data.pread(pos, n)
        except Cancelled:
            raise
        except UsbWriterError as err:
            for p in active:
                self._fail(p[3], err.message)
            return b""
        if len(b) < n:
            cut = pos + len(b)
            for p in active:
                self._fail(p[3], f"{self.x.iso.path}: truncated: {p[3].entry.path} is cut "
                                 f"short at byte {cut} of the image")  # fmt: skip
        return b

    def _fail(self, out: _Out, why: str) -> None:
        if not out.dead:
            self.x.fail(out.entry, why)
            self._drop(out)

    def _start(self, out: _Out) -> None:
        if out.tmp is not None or out.dead:
            return
        e = out.entry

        def step() -> None:
            dfd = self.dirs.open(e.parts[:-1])
            name = e.parts[-1]
            self.x._check_existing(name, dfd, self.dirs.shown(e.parts))
            tmp = _temp_name(name)
            with _name_refused(self.dirs.shown(e.parts)):
                fd = os.open(tmp, _NEW_FILE, 0o666, dir_fd=dfd)
            out.tmp = tmp
            st = os.fstat(fd)
            out.inode = (st.st_dev, st.st_ino)
            self._hold(out, fd)

        if not self.x._guard(e, step):
            self._drop(out)

    def _hold(self, out: _Out, fd: int) -> None:
        out.fd = fd
        self.open[out] = None
        while len(self.open) > MAX_OPEN_FILES:
            oldest, _ = self.open.popitem(last=False)
            self._close(oldest)

    def _close(self, out: _Out) -> None:
        self.open.pop(out, None)
        if out.fd is not None:
            os.close(out.fd)
            out.fd = None

    def _fd(self, out: _Out) -> int:
        """OUT's descriptor, its temporary file opened again (and checked to be the one
        made) if it was closed."""
        if out.fd is not None:
            self.open.move_to_end(out)
            return out.fd
        assert out.tmp is not None
        dfd = self.dirs.open(out.entry.parts[:-1])
        fd = os.open(out.tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != out.inode:
            os.close(fd)
            shown = self.dirs.shown((*out.entry.parts[:-1], out.tmp))
            raise Refused(f"{shown}: replaced while it was written", path=shown)
        self._hold(out, fd)
        return fd

    def _write(self, out: _Out, data: bytes, at: int) -> None:
        def step() -> None:
            fd = self._fd(out)
            view = memoryview(data)
            where = at
            while view:
                w = os.pwrite(fd, view, where)
                view = view[w:]
                where += w

        if self.x._guard(out.entry, step):
            self.meter.advance(len(data))
        else:
            self._drop(out)

    def _finish(self, out: _Out) -> None:
        if out.dead or out.tmp is None:
            return
        e = out.entry
        tmp = out.tmp

        def step() -> None:
            fd = self._fd(out)
            if os.fstat(fd).st_size < e.size:  # ends in a hole
                os.ftruncate(fd, e.size)
            _keep_attributes(fd, e, 0o777)
            self._close(out)
            self.x._place(tmp, e.parts[-1], self.dirs.open(e.parts[:-1]), self.dirs.shown(e.parts))
            out.tmp = None

        if self.x._guard(e, step):
            self.x.result.files += 1
            self.x.result.bytes += e.size
            self.x.done(e)
        else:
            self._drop(out)

    def _drop(self, out: _Out) -> None:
        """OUT will not be written (failed, refused or interrupted): its temporary file
        goes."""
        out.dead = True
        self._close(out)
        if out.tmp is not None:
            with contextlib.suppress(OSError, UsbWriterError, _Skip):
                os.unlink(out.tmp, dir_fd=self.dirs.open(out.entry.parts[:-1]))
            out.tmp = None


def extract(
    iso: IsoImage,
    paths: Iterable[str],
    output: str,
    *,
    overwrite: bool = False,
    on_event: EventCallback | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Result:
    """Copy PATHS (every file when none) out of ISO into OUTPUT; see the module's text."""
    entries = select(iso.contents, paths)
    x = Extractor(
        iso, output, overwrite=overwrite, on_event=on_event, progress=progress, cancel=cancel
    )
    return x.run(entries)


def skip_kind(why: str) -> tuple[str, str]:
    """Why an entry was skipped, in the few words the headline gives it: (one, many)."""
    if why.endswith(EXISTS):
        return "already there and kept", "already there and kept"
    if why.startswith("its target"):
        return "link pointing outside the folder", "links pointing outside the folder"
    if why.startswith("its name"):
        return "unsafe name", "unsafe names"
    if why.startswith("a device node"):
        return "device node, FIFO or socket", "device nodes, FIFOs or sockets"
    if why.endswith("(not replaced)"):
        return "in the way of a folder", "in the way of folders"
    return "for another reason", "for other reasons"


def skip_reasons(skipped: list[tuple[str, str]]) -> str:
    """'2 already there and kept, 1 link pointing outside the folder': how many were
    skipped for each reason, the commonest first."""
    tally: dict[tuple[str, str], int] = {}
    for _, why in skipped:
        kind = skip_kind(why)
        tally[kind] = tally.get(kind, 0) + 1
    ranked = sorted(tally.items(), key=lambda kv: (kv[0][0] == "for another reason", -kv[1]))
    return ", ".join(count(n, *kind) for kind, n in ranked)


__all__ = [
    "Extractor",
    "Result",
    "extract",
    "select",
    "skip_reasons",
    "split_path",
    "unsafe_name",
    "unsafe_target",
]

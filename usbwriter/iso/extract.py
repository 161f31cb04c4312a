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

A file is written under a temporary name in its folder and renamed when whole, with
its mode (without setuid and setgid) and mtime where the image records them; without
``overwrite`` the rename never replaces a file made there meanwhile. Files
are copied in the order of their extents, so a compressed image decodes forward.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from usbwriter.errors import BadImage, BadInput, Cancelled, UsbWriterError, os_error
from usbwriter.iso.contents import Contents, Entry, IsoImage, split_path
from usbwriter.placing import place_new
from usbwriter.progress import Meter, ProgressCallback

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_OPEN_DIRS = 256

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
        if os.path.lexists(self.output) and not os.path.isdir(self.output):
            raise BadInput(f"{self.output}: is not a folder", path=self.output)
        try:
            os.makedirs(self.output, exist_ok=True)
        except OSError as e:
            raise os_error(self.output, e, "make the output folder") from None
        try:
            root_fd = os.open(self.output, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            if e.errno == errno.ENOTDIR:
                raise BadInput(f"{self.output}: is not a folder", path=self.output) from None
            raise os_error(self.output, e, "open the output folder") from None
        dirs = _Dirs(root_fd, self.output)
        try:
            self._extract(entries, dirs)
        finally:
            dirs.close()
            os.close(root_fd)
        return self.result

    def _extract(self, entries: list[Entry], dirs: _Dirs) -> None:
        folders = [e for e in entries if e.type == "dir"]
        files = sorted((e for e in entries if e.type == "file"), key=lambda e: e.first_offset)
        links = [e for e in entries if e.type == "symlink"]
        meter = Meter("extract", sum(e.size for e in files), self.progress)
        made: list[Entry] = []
        for e in folders:
            if self._guard(e, lambda e=e: dirs.open(e.parts)):  # type: ignore[misc]
                made.append(e)
                self.result.dirs += 1
                self.done(e)
        for e in files:
            if self._guard(e, lambda e=e: self._file(e, dirs, meter)):  # type: ignore[misc]
                self.result.files += 1
                self.result.bytes += e.size
                self.done(e)
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

    def _file(self, e: Entry, dirs: _Dirs, meter: Meter) -> None:
        dfd = dirs.open(e.parts[:-1])
        name = e.parts[-1]
        self._check_existing(name, dfd, dirs.shown(e.parts))
        tmp = _temp_name(name)
        with _name_refused(dirs.shown(e.parts)):
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o666, dir_fd=dfd)  # fmt: skip
        try:
            try:
                self._copy(e, fd, meter)
                _keep_attributes(fd, e, 0o777)
            finally:
                os.close(fd)
            self._place(tmp, name, dfd, dirs.shown(e.parts))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise

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

    def _copy(self, e: Entry, fd: int, meter: Meter) -> None:
        data = self.iso.data
        for offset, length in e.extents:
            done = 0
            while done < length:
                if self.cancel.is_set():
                    raise Cancelled("interrupted")
                n = min(CHUNK, length - done)
                b = bytes(n) if offset < 0 else data.pread(offset + done, n)
                if len(b) < n:
                    raise BadImage(
                        f"{self.iso.path}: truncated: {e.path} is cut short at byte "
                        f"{offset + done + len(b)} of the image",
                        path=self.iso.path,
                        offset=offset + done + len(b),
                    )
                view = memoryview(b)
                while view:
                    w = os.write(fd, view)
                    view = view[w:]
                done += n
                meter.advance(n)

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


__all__ = ["Extractor", "Result", "extract", "select", "split_path", "unsafe_name", "unsafe_target"]

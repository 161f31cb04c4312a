"""The app's own files (settings, crash logs), kept where only the effective user writes.

usbwriter runs as root under sudo, so every file it writes for itself must be one no
other user can redirect. The rules:

- The base directory is ``$XDG_STATE_HOME`` or ``$XDG_CONFIG_HOME`` when it is safe
  (below); otherwise ``~/.local/state`` or ``~/.config``, where ``~`` is the
  effective user's home from the password database. ``$HOME`` is not read: under
  sudo it may still be the invoking user's home.
- Safe: no existing component of the base is a symbolic link; each is owned by root
  or by the effective user, and writable by no one else unless sticky (as ``/tmp``
  is); the last one that exists (the base itself, or the directory it would be
  made in) is owned by the effective user.
- Below that, each directory (the rest of the base, then ``usbwriter``, or
  ``.local/state/usbwriter``) is created with mode 0700, opened with ``O_NOFOLLOW``,
  and must be owned by the effective user and writable by no one else.
- A file is written to a new file made by ``mkstemp`` in its directory, then renamed
  over the name, so a symbolic link at the name is replaced and never followed; a
  file is read with ``O_NOFOLLOW``.

No Textual here: the rules are tested without the app.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pwd
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

APP = "usbwriter"


class UnsafePath(Exception):
    """A directory the app will not (or cannot) write to, and why; names the path."""

    def __init__(self, path: str | os.PathLike[str], why: str) -> None:
        super().__init__(f"{os.fspath(path)}: {why}")
        self.path = os.fspath(path)
        self.why = why


def effective_home() -> Path:
    """The effective user's home, from the password database (root's, under sudo)."""
    uid = os.geteuid()
    try:
        return Path(pwd.getpwuid(uid).pw_dir)
    except KeyError:
        raise UnsafePath(f"uid {uid}", "not in the password database: no home") from None


def state_dir(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """``$XDG_STATE_HOME/usbwriter`` or ``~/.local/state/usbwriter``, created and checked."""
    return app_dir("XDG_STATE_HOME", PurePosixPath(".local/state"), environ, home)


def config_dir(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """``$XDG_CONFIG_HOME/usbwriter`` or ``~/.config/usbwriter``, created and checked."""
    return app_dir("XDG_CONFIG_HOME", PurePosixPath(".config"), environ, home)


def app_dir(
    variable: str,
    default: PurePosixPath,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The app's directory under $VARIABLE, else under HOME/DEFAULT; raises UnsafePath."""
    env = os.environ if environ is None else environ
    value = env.get(variable, "")
    if os.path.isabs(value):
        try:
            return private_dir(Path(value), PurePosixPath(APP))
        except UnsafePath as e:
            log.info("not using $%s: %s", variable, e)
    # The password database is the administrator's: its home may go through a link.
    base = Path(os.path.realpath(home if home is not None else effective_home()))
    return private_dir(base, default / APP)


def private_dir(base: Path, below: PurePosixPath) -> Path:
    """BASE/BELOW, after checking what exists of BASE and creating the rest one
    directory at a time."""
    uid = os.geteuid()
    if not base.is_absolute() or ".." in base.parts:
        raise UnsafePath(base, "not an absolute path without '..'")
    existing, missing = base, PurePosixPath()
    while not os.path.lexists(existing):
        existing, missing = existing.parent, existing.name / missing
    check_base(existing, uid)
    fd = _open_dir(str(existing), None, existing)
    try:
        _check_own_dir(fd, existing, uid, private=False)
        path = existing
        for part in (missing / below).parts:
            path = path / part
            try:
                os.mkdir(part, 0o700, dir_fd=fd)
            except FileExistsError:
                pass
            except OSError as e:
                raise UnsafePath(path, f"cannot be created: {e.strerror}") from None
            sub = _open_dir(part, fd, path)
            os.close(fd)
            fd = sub
            _check_own_dir(fd, path, uid, private=True)
    finally:
        os.close(fd)
    return path


def check_base(base: Path, uid: int) -> None:
    """Every component of BASE, from /, is a real directory no one else can change,
    and BASE is the effective user's."""
    path = Path(base.anchor)
    for part in ("", *base.parts[1:]):
        path = path / part
        try:
            st = os.lstat(path)
        except OSError as e:
            raise UnsafePath(path, e.strerror or "cannot be read") from None
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePath(path, "a symbolic link")
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePath(path, "not a directory")
        owners = (uid,) if path == base else (0, uid)
        if st.st_uid not in owners:
            raise UnsafePath(path, f"owned by uid {st.st_uid}, not by uid {uid}")
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            raise UnsafePath(path, "writable by other users")


def _open_dir(name: str, dir_fd: int | None, path: Path) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):  # Linux says ENOTDIR for a link
            try:
                link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
            except OSError:
                link = False
            raise UnsafePath(path, "a symbolic link" if link else "not a directory") from None
        raise UnsafePath(path, e.strerror or "cannot be opened") from None


def _check_own_dir(fd: int, path: Path, uid: int, *, private: bool) -> None:
    st = os.fstat(fd)
    if st.st_uid != uid:
        raise UnsafePath(path, f"owned by uid {st.st_uid}, not by uid {uid}")
    if private and st.st_mode & 0o022:
        raise UnsafePath(path, "writable by other users")


def write_private(directory: Path, name: str, text: str) -> Path:
    """Replace DIRECTORY/NAME with TEXT (mode 0600); a link at NAME is replaced, not followed."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return directory / name


def read_private(path: Path) -> str:
    """The text of the regular file PATH; a symbolic link or a FIFO there is an OSError."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return f.read().decode("utf-8")

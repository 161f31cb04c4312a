"""One exception tree; each class says whose fault it is, and one table of exit codes.

Errors carry structured fields (the path, the byte offset and the errno involved,
where known) beside a one-line message that names the file or device and the cause.
The front ends print them; ``exit_code_of`` is the one place that maps them to exit
codes (docs/cli.md has the same table).
"""

from __future__ import annotations

import errno as _errno
import os
import unicodedata
from typing import Any

# Exit codes, the same for every command (docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3
EXIT_REFUSED = 4
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "done: written and verified, verified, listed or inspected",
    EXIT_FAILED: "failed: an I/O error, a bad or truncated image, a device that failed or vanished",
    EXIT_USAGE: "usage: bad arguments; a path that is missing, a directory, a FIFO or another "
    "kind of file that is not an image or a drive; permission denied; an output path that is "
    "the wrong kind of thing (a directory where a file is wanted or a file where a folder is, "
    "a FIFO, a socket, a device node such as /dev/null, a trailing slash on a file's name, a "
    "missing folder)",
    EXIT_MISMATCH: "verification mismatch: the drive does not hold the image (first "
    "differing byte named)",
    EXIT_REFUSED: "refused for safety: system disk, something stacked on it, mounted, busy, "
    "too small, read-only, partition node, image and target overlap, a regular file as "
    "target without --to-file, no --yes without a terminal, a checksum mismatch or a bad "
    "signature, and without --force a file that is not a disk or ISO image, an ISO with "
    "no boot records, or boot records that cannot be read; an output path that is a symbolic "
    "link (never followed), an existing file without --overwrite, under /dev, /proc or /sys, "
    "on the drive being read, or a file that appeared at its name meanwhile",
    EXIT_INTERRUPTED: "interrupted: Ctrl-C, SIGTERM or SIGHUP (a closed terminal, a dropped "
    "ssh session), each cleaned up the same way, or not confirmed",
}


class UsbWriterError(Exception):
    """Base of every error usbwriter raises on purpose."""

    code = "error"
    exit_code = EXIT_FAILED
    fault = "usbwriter"  # whose fault: image, user, device, safety, interrupted, bug

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.errno = errno

    @property
    def message(self) -> str:
        """One line a terminal shows as it is: a name holding a newline or an escape
        sequence (a crafted file name, an ISO's) cannot move the cursor or recolour."""
        return terminal_safe(" ".join(str(self).split())) or self.code

    def with_note(self, note: str) -> UsbWriterError:
        """The same error, its message extended (e.g. with what was done about it)."""
        return type(self)(f"{self}; {note}", path=self.path, offset=self.offset, errno=self.errno)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "exit_code": self.exit_code,
            "fault": self.fault,
        }
        if self.path is not None:
            d["path"] = self.path
        if self.offset is not None:
            d["offset"] = self.offset
        if self.errno is not None:
            d["errno"] = _errno.errorcode.get(self.errno, str(self.errno))
        return d


def terminal_safe(s: str) -> str:
    """S with undecodable bytes and control characters (C0, DEL, C1: ESC and CSI start
    escape sequences) shown as '?', and so are the invisible format characters (Unicode
    category Cf: bidi overrides and isolates such as U+202E and U+2066..U+2069, marks
    such as U+200E and U+061C, zero-width spaces and joiners) and the line and paragraph
    separators: a name cannot read backwards or hide part of itself."""
    s = s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join("?" if _hidden(c) else c for c in s)


def _hidden(c: str) -> bool:
    o = ord(c)
    if o < 32 or 127 <= o < 160:
        return True
    return unicodedata.category(c) in ("Cf", "Zl", "Zp")


class BadImage(UsbWriterError):
    """The image is unreadable, truncated or not what it claims to be."""

    code = "bad_image"
    fault = "image"


class BadInput(UsbWriterError):
    """The caller asked for something that cannot be done (a usage error)."""

    code = "bad_input"
    exit_code = EXIT_USAGE
    fault = "user"


class DeviceFault(UsbWriterError):
    """The device failed: an I/O error, it vanished, it refused a write."""

    code = "device_fault"
    fault = "device"


class Refused(UsbWriterError):
    """usbwriter refuses for safety: system disk, mounted, too small, read-only..."""

    code = "refused"
    exit_code = EXIT_REFUSED
    fault = "safety"


class Changed(Refused):
    """Something the plan relied on changed before the run: the image, the drive, its
    mounts. Nothing was written; a face that asked may plan again and show what changed."""

    code = "changed"


class Cancelled(UsbWriterError):
    """The user interrupted the job."""

    code = "interrupted"
    exit_code = EXIT_INTERRUPTED
    fault = "interrupted"


class InternalError(UsbWriterError):
    """A bug in usbwriter."""

    code = "internal"
    fault = "bug"


def exit_code_of(error: BaseException) -> int:
    """The exit code for any exception: ours carry theirs; Ctrl-C is 130; the rest bugs."""
    if isinstance(error, UsbWriterError):
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def outcome_exit_code(outcome: object) -> int:
    """The exit code of a job's outcome: one policy for the command line and the app.
    An error carries its own (a cancel 130); several drives give the highest of theirs;
    a receipt whose read-back was made and differs gives 3; anything else done, 0."""
    if isinstance(outcome, BaseException):
        return exit_code_of(outcome)
    if isinstance(outcome, list | tuple):
        return max((outcome_exit_code(o) for o in outcome), default=EXIT_OK)
    code = getattr(outcome, "exit_code", None)
    if isinstance(code, int):  # a drive of several: its error's, or its receipt's
        return code
    if getattr(outcome, "genuine", None) is False:  # a probe: the drive is not genuine
        return EXIT_MISMATCH
    if hasattr(outcome, "verify"):  # a receipt: read back or not
        verify = outcome.verify
        failed = verify is not None and getattr(verify, "verified", True) is False
    else:  # a read-back itself (the verify command)
        failed = getattr(outcome, "verified", None) is False
    return EXIT_MISMATCH if failed else EXIT_OK


def os_error(path: str, e: OSError, doing: str, *, offset: int | None = None) -> UsbWriterError:
    """An OSError on PATH as one of ours, whose class follows the errno (one mapping for
    opening files and devices everywhere)."""
    why = e.strerror or str(e)
    kw: dict[str, Any] = {"path": path, "offset": offset, "errno": e.errno}
    if e.errno == _errno.ENOENT:
        return BadInput(f"{path}: no such file or device", **kw)
    if e.errno in (_errno.EACCES, _errno.EPERM):
        if os.geteuid() == 0:  # root refused: the file system or a lock said no
            return BadInput(f"{path}: cannot {doing}: {why}", **kw)
        return BadInput(f"{path}: permission denied (writing or reading a drive needs root)", **kw)
    if e.errno == _errno.EISDIR:
        return BadInput(f"{path}: is a directory", **kw)
    if e.errno == _errno.ELOOP:
        return _symlink_error(path, e, kw)
    if e.errno == _errno.EBUSY:
        return Refused(
            f"{path}: the device is busy (mounted, or opened by another program such as a "
            "second usbwriter); nothing was written",
            **kw,
        )
    if e.errno == _errno.EWOULDBLOCK:  # flock: another program holds the file
        return Refused(f"{path}: in use by another program (locked); nothing was changed", **kw)
    if e.errno == _errno.EROFS:
        return Refused(f"{path}: the device is read-only", **kw)
    if e.errno in (_errno.ENXIO, _errno.ENODEV, _errno.ENOMEDIUM):
        return DeviceFault(f"{path}: no such device or no medium ({why})", **kw)
    return DeviceFault(f"{path}: cannot {doing}: {why}", **kw)


def _symlink_error(path: str, e: OSError, kw: dict[str, Any]) -> UsbWriterError:
    """ELOOP: a loop of symbolic links (an input that cannot be found: BadInput), or a
    symbolic link where none is followed (O_NOFOLLOW: Refused)."""
    probe = e.filename if isinstance(e.filename, str) and e.filename else path
    if probe != path and not os.path.isabs(probe):  # relative to a folder descriptor
        return Refused(f"{path}: a symbolic link, which is never followed (or a loop)", **kw)
    shown = path if probe == path else f"{path} ({probe})"
    try:
        os.stat(probe)
    except OSError as again:
        if again.errno == _errno.ELOOP:
            return BadInput(f"{shown}: too many levels of symbolic links (a loop)", **kw)
    if os.path.islink(probe):
        return Refused(f"{shown}: is a symbolic link, which is never followed", **kw)
    return Refused(
        f"{shown}: was a symbolic link when it was opened (never followed); choose it again",
        **kw,
    )

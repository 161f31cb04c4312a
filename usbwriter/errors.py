"""One exception tree; each class says whose fault it is.

cli.py alone maps these to exit codes and prints them. Every message is one
line that names the file or device and the cause.
"""

from __future__ import annotations


class UsbWriterError(Exception):
    """Base of every error usbwriter raises on purpose."""

    code = "error"
    exit_code = 1


class BadImage(UsbWriterError):
    """The image is unreadable, truncated or not what it claims to be."""

    code = "bad_image"


class BadInput(UsbWriterError):
    """The caller asked for something that cannot be done (a usage error)."""

    code = "bad_input"
    exit_code = 2


class DeviceFault(UsbWriterError):
    """The device failed: an I/O error, it vanished, it refused a write."""

    code = "device_fault"


class Refused(UsbWriterError):
    """usbwriter refuses for safety: system disk, mounted, too small, read-only..."""

    code = "refused"
    exit_code = 4


class Cancelled(UsbWriterError):
    """The user interrupted the job."""

    code = "interrupted"
    exit_code = 130


class InternalError(UsbWriterError):
    """A bug in usbwriter."""

    code = "internal"


# Exit codes (docs/cli.md). The error classes carry theirs; a verification mismatch
# is a result, not an error, so it has only its code here.
EXIT_OK = 0
EXIT_MISMATCH = 3
EXIT_INTERRUPTED = 130

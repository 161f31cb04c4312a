"""Messages the workers post to the UI (thread-safe ``post_message``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from usbwriter.devices import Disk, DiskEvent
    from usbwriter.jobs import Plan
    from usbwriter.progress import Progress


class DisksListed(Message):
    """A fresh listing of the drives."""

    def __init__(self, disks: list[Disk]) -> None:
        super().__init__()
        self.disks = disks


class DiskChanged(Message):
    """A hot-plug event from the watcher: a drive came, went or changed."""

    def __init__(self, event: DiskEvent) -> None:
        super().__init__()
        self.event = event


class DrivesFailed(Message):
    """Listing or watching drives failed; ``error`` is the one-line cause."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ImageInspected(Message):
    """The boot report of an image (``BootReport.to_dict()``), or why there is none."""

    def __init__(
        self,
        path: str,
        size: int | None,
        report: Mapping[str, Any] | None,
        error: str | None,
        words: str = "",
    ) -> None:
        super().__init__()
        self.path = path
        self.size = size
        self.report = report
        self.error = error
        self.words = words  # the file as the summary names it ("4.2 MiB", "xz, ...")


class TargetChecked(Message):
    """The job's plan, made before the confirmation, or why it could not be made;
    ``changed``: what changed since the person last said yes (this plan is made again)."""

    def __init__(
        self, device: str, plan: Plan | None, error: str | None, changed: str | None = None
    ) -> None:
        super().__init__()
        self.device = device
        self.plan = plan
        self.error = error
        self.changed = changed


class JobProgress(Message):
    """Progress of the write or verify; a newer report of the same phase replaces it."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgress) and message.progress.phase == self.progress.phase


class JobFinished(Message):
    """The job ended: ``outcome``, what the core returned (a receipt, or several drives'
    results), or ``failure``, the error it raised (``error`` its line); ``exit_code`` is
    the outcome's by the core's one policy (usbwriter.errors.outcome_exit_code)."""

    def __init__(
        self,
        outcome: Any = None,
        failure: BaseException | None = None,
    ) -> None:
        from usbwriter.errors import Cancelled, UsbWriterError, outcome_exit_code

        super().__init__()
        self.outcome = outcome
        self.failure = failure
        self.cancelled = isinstance(failure, Cancelled)
        if failure is None:
            self.error = None
        elif isinstance(failure, UsbWriterError):
            self.error = str(failure)
        else:  # a bug: one line for the person, the details in the log
            self.error = f"internal error: {type(failure).__name__}: {failure}"
        self.exit_code = outcome_exit_code(failure if failure is not None else outcome)


class LogNotice(Message):
    """A warning logged by the core while the app runs (shown as a notification)."""

    def __init__(self, text: str, severity: str) -> None:
        super().__init__()
        self.text = text
        self.severity = severity


class JobNote(Message):
    """Something a drive job did on the way (e.g. unmounted a file system)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ContentsRead(Message):
    """The ISO's files were read (``iso`` an open ``IsoImage``), or why not."""

    def __init__(self, path: str, iso: Any, error: str | None) -> None:
        super().__init__()
        self.path = path
        self.iso = iso
        self.error = error


class ExtractFinished(Message):
    """The extraction ended: ``result`` (``usbwriter.iso.extract.Result``) or an error."""

    def __init__(self, result: Any, error: str | None = None, cancelled: bool = False) -> None:
        super().__init__()
        self.result = result
        self.error = error
        self.cancelled = cancelled


class DriveJobProgress(Message):
    """Progress of one drive of several; a newer report of the same drive and phase
    replaces it."""

    def __init__(self, device: str, progress: Progress) -> None:
        super().__init__()
        self.device = device
        self.progress = progress

    def can_replace(self, message: Message) -> bool:
        return (
            isinstance(message, DriveJobProgress)
            and message.device == self.device
            and message.progress.phase == self.progress.phase
        )


class DriveJobFailed(Message):
    """One drive of several dropped out (its head wiped); the others go on."""

    def __init__(self, device: str, text: str) -> None:
        super().__init__()
        self.device = device
        self.text = text

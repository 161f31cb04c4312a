"""Back up a drive to an image file, or restore it as a normal stick.

Each is one flow (an async worker on the main screen): the question (file, or file
system and label), the plan made in a thread (a refusal is a one-line modal, as for a
write), the confirmation naming the drive, then the job on the progress screen and its
receipt. The core does the work: ``usbwriter.jobs.backup`` and ``usbwriter.jobs.restore``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.dom import DOMNode
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import WorkerFailed

from usbwriter.errors import outcome_exit_code
from usbwriter.tui import rules, suggest
from usbwriter.tui.format import drive_line, one_line
from usbwriter.tui.messages import JobNote
from usbwriter.tui.screens.ask import AskBackupFile, RestoreOptions
from usbwriter.tui.screens.confirm import ConfirmDrive
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.progress import Job, ProgressScreen
from usbwriter.tui.screens.result import OutcomeScreen
from usbwriter.tui.widgets.drive_table import DriveTable
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import count, human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.jobs import Plan
    from usbwriter.jobs.backup import BackupPlan, BackupReceipt
    from usbwriter.jobs.restore import RestoreReceipt
    from usbwriter.progress import ProgressCallback
    from usbwriter.tui.screens.main import MainScreen
    from usbwriter.tui.services import Services

T = TypeVar("T")

FS_NAMES = {"fat32": "FAT32", "exfat": "exFAT", "ext4": "ext4"}


def format_words(fmt: str) -> str:
    """'raw image', 'zstd-compressed': a backup plan's format in words."""
    return "raw image" if fmt == "raw" else f"{fmt}-compressed"


async def in_thread(node: DOMNode, fn: Callable[[], T], description: str) -> T:
    """FN's result, run in a thread worker (the UI goes on); its exception re-raised."""
    worker = node.run_worker(
        fn, thread=True, exit_on_error=False, group="check", description=description
    )
    try:
        return await worker.wait()
    except WorkerFailed as e:
        raise e.error from None


async def checked_plan(
    main: MainScreen, disk: Disk, make: Callable[[], Plan], failed: str
) -> Plan | None:
    """The plan MAKE returns for DISK, made in a thread worker; None, with the error
    screen titled FAILED shown, when it cannot be made or refuses the drive (or the
    drive is no longer the one listed)."""

    def check() -> tuple[Plan, str | None]:
        plan = make()
        return plan, rules.plan_refusal(plan, disk)

    try:
        plan, refusal = await in_thread(main, check, f"check {disk.path}")
    except Exception as e:
        refusal, plan = one_line(e), None
    if refusal is not None or plan is None:
        main.app.push_screen(ErrorScreen(failed, refusal or "no plan"))
        return None
    return plan


def _highlighted(main: MainScreen, job: str) -> Disk | None:
    disk = main.query_one(DriveTable).highlighted()
    why = rules.drive_job_refusal(is_root=main.is_root, disk=disk, job=job)
    if why is not None:
        main.app.bell()
        main.notify(why, severity="warning", markup=False)
        return None
    return disk


def start_backup(main: MainScreen) -> None:
    """Back up the highlighted drive (asks for the file first)."""
    disk = _highlighted(main, "back up")
    if disk is not None:
        main.run_worker(
            _backup_flow(main, disk), group="drive-job", exclusive=True, exit_on_error=False
        )


def start_restore(main: MainScreen) -> None:
    """Restore the highlighted drive as a normal stick (asks for the file system first)."""
    disk = _highlighted(main, "restore")
    if disk is not None:
        main.run_worker(
            _restore_flow(main, disk), group="drive-job", exclusive=True, exit_on_error=False
        )


async def _backup_flow(main: MainScreen, disk: Disk) -> None:
    app, services = main.app, main.services
    try:
        default = suggest.backup_file(disk, date.today(), home=suggest.user_home())
    except Exception:
        default = os.path.join(os.getcwd(), f"usbwriter-backup-{suggest.slug(disk.name)}.img")
    answer = await app.push_screen_wait(AskBackupFile(disk, default))
    if answer is None:
        return
    output, replace = answer
    try:
        plan = await in_thread(
            main,
            functools.partial(services.plan_backup, disk.path, output, overwrite=replace),
            f"check the backup of {disk.path}",
        )
    except Exception as e:
        app.push_screen(ErrorScreen("Cannot back up this drive", one_line(e)))
        return
    if await app.push_screen_wait(ConfirmBackup(disk, plan)):
        app.push_screen(BackupScreen(services, disk, plan))


async def _restore_flow(main: MainScreen, disk: Disk) -> None:
    app, services = main.app, main.services
    answer = await app.push_screen_wait(RestoreOptions(disk))
    if answer is None:
        return
    fs, label = answer
    # Mounted file systems are unmounted (after the confirmation, which names them)
    # when the job runs, as for a write.
    plan = await checked_plan(
        main,
        disk,
        lambda: services.plan_restore(disk.path, unmount=True),
        "Cannot restore this drive",
    )
    if plan is None:
        return
    if await app.push_screen_wait(ConfirmRestore(disk, fs, label, plan)):
        main.relist_on_resume = True
        app.push_screen(RestoreScreen(services, disk, plan.confirmed(), fs, label))


# ---- the confirmations


class ConfirmBackup(ConfirmDrive):
    """Read DISK into PLAN's file? Nothing on the drive is changed."""

    QUESTION = "Back up this drive?"
    BUTTON = "Back up"
    DESTRUCTIVE = False

    def __init__(self, disk: Disk, plan: BackupPlan) -> None:
        super().__init__(disk)
        self.plan = plan

    def lead(self) -> str:
        return "This drive will be read; nothing on it is changed:"

    def compose_job(self) -> ComposeResult:
        p = self.plan
        yield Static("into the image file:", classes="lead", markup=False)
        words = format_words(p.fmt)
        yield Static(
            Content.assemble((words, "bold"), f"   {p.output}"), id="confirm-image", markup=False
        )
        if p.replace and os.path.lexists(p.output):
            yield Static(
                Content.assemble(("It replaces the existing file", "bold $text-warning"), "."),
                id="confirm-warning",
                markup=False,
            )
        if p.shared_hold:
            yield Static("It is mounted read-only: it is read beside the mount.", markup=False)


class ConfirmRestore(ConfirmDrive):
    """Erase DISK and make one partition with a fresh FS file system labelled LABEL?"""

    BUTTON = "Erase and restore"

    def __init__(self, disk: Disk, fs: str, label: str, plan: Plan | None = None) -> None:
        super().__init__(disk)
        self.fs = fs
        self.label = label
        self.plan = plan

    def mounts(self) -> Sequence[tuple[str, str]]:
        """What the plan will unmount (found when the person asked), else as listed."""
        if self.plan is None:
            return super().mounts()
        return [(m.source, m.mountpoint) for m in self.plan.unmounts]

    def lead(self) -> str:
        return f"ALL DATA on {self.disk.path} will be erased:"

    def compose_job(self) -> ComposeResult:
        yield Static("and replaced by one empty partition:", classes="lead", markup=False)
        yield Static(
            Content.assemble(
                (FS_NAMES.get(self.fs, self.fs), "bold"),
                f", label {self.label}, from 1 MiB to the end of the drive",
            ),
            id="confirm-image",
            markup=False,
        )


# ---- the jobs


class BackupScreen(ProgressScreen):
    """Reads the drive into the file, then reads it again against the file."""

    STEPS = (("read", "Read"), ("verify", "Verify"))
    FAILED = "Backup failed"
    FAILED_HINT = "No image file was left. Check the drive and the free space, and try again."
    STOP_WORDS = (
        "Stop the backup?",
        "The unfinished image is removed; nothing on {device} is changed.",
    )

    def __init__(self, services: Services, disk: Disk, plan: BackupPlan) -> None:
        super().__init__(services, Job(plan.output, disk.size, disk, None))
        self.plan = plan

    def heading(self) -> Content:
        return Content.assemble(
            ("Backing up ", "bold"),
            (drive_line(self.job.disk), "bold"),
            "\ninto ",
            (self.plan.output, "bold"),
            f" ({format_words(self.plan.fmt)})",
        )

    def execute(self, progress: ProgressCallback, cancel: threading.Event) -> BackupReceipt:
        return self.services.run_backup(self.plan, verify=True, progress=progress, cancel=cancel)

    def result_screen(self, outcome: Any) -> Screen[None]:
        r: BackupReceipt = outcome
        dev = self.job.disk.path
        if r.verify is not None and r.verify.verified is False:
            return ReceiptScreen(
                "✘ The backup differs from the drive",
                False,
                f"{dev} read again differs from {r.plan.output} at byte "
                f"{r.verify.mismatch_offset}: the drive may be failing. Do not rely on this "
                "image.",
                r.to_text(),
                exit_code=outcome_exit_code(r),
            )
        head = "✔ Backed up and verified" if r.verified else "✔ Backed up"
        extra = ""
        if r.unreadable:
            total = sum(b.length for b in r.unreadable)
            head = "✔ Backed up, with unreadable parts"
            extra = f" {count(len(r.unreadable), 'unreadable range')}, {total} bytes, are zeros."
        return ReceiptScreen(
            head,
            not r.unreadable,
            f"{r.plan.output} holds {human_size(r.size)} read from {dev}.{extra}",
            r.to_text(),
            exit_code=outcome_exit_code(r),
        )


class RestoreScreen(ProgressScreen):
    """Writes the new layout, reading every byte back."""

    STEPS = (("write", "Erase and write"), ("verify", "Read back"))
    FAILED = "Restore failed"
    FAILED_HINT = "The drive may be partly erased: restore it again."
    STOP_WORDS = (
        "Stop restoring?",
        "{device} will be left partly erased; you can restore it again.",
    )

    def __init__(self, services: Services, disk: Disk, plan: Plan, fs: str, label: str) -> None:
        super().__init__(services, Job("", disk.size, disk, plan))
        self.fs = fs
        self.label = label

    def heading(self) -> Content:
        return Content.assemble(
            ("Restoring ", "bold"),
            (drive_line(self.job.disk), "bold"),
            f"\nas a normal stick: one {FS_NAMES.get(self.fs, self.fs)} partition, "
            f"label {self.label}",
        )

    def execute(self, progress: ProgressCallback, cancel: threading.Event) -> RestoreReceipt:
        assert self.job.plan is not None
        return self.services.run_restore(
            self.job.plan,
            fs=self.fs,
            label=self.label,
            progress=progress,
            cancel=cancel,
            notify=lambda text: self.post_message(JobNote(text)),
        )

    def result_screen(self, outcome: Any) -> Screen[None]:
        r: RestoreReceipt = outcome
        dev = self.job.disk.path
        after = (
            "It is safe to remove it."
            if r.partitions_reread
            else "Unplug it and plug it in again to use it."
        )
        return ReceiptScreen(
            "✔ Restored and verified",
            True,
            f"{dev} is a normal stick again: one {FS_NAMES.get(r.fs, r.fs)} partition, "
            f"label {r.label}. {after}",
            r.to_text(),
            exit_code=outcome_exit_code(r),
        )


class ReceiptScreen(OutcomeScreen):
    """The outcome of a backup or restore: a headline, what next, and the receipt."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "again", "Back", show=False),
        Binding("escape", "again", "Back"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self, headline: str, ok: bool, next_text: str, text: str, exit_code: int = 0
    ) -> None:
        super().__init__(exit_code)
        self.headline = headline
        self.ok = ok
        self.next_text = next_text
        self.text = text

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with Vertical(id="result-body", classes="ok" if self.ok else "failed"):
            style = "bold $text-success" if self.ok else "bold $text-error"
            yield Static(
                Content.assemble((self.headline, style)), id="result-headline", markup=False
            )
            yield Static(self.next_text, id="result-next", markup=False)
            with VerticalScroll(id="receipt-scroll"):
                yield Static(self.text, id="result-table", markup=False)
            yield from self.buttons("Back")
        yield Footer()

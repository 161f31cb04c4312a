"""The main screen: image and its boot report, the drives, and the Write button."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from usbwriter.tui import rules
from usbwriter.tui.format import drive_line, one_line
from usbwriter.tui.messages import (
    DiskChanged,
    DisksListed,
    DrivesFailed,
    ImageInspected,
    JobProgress,
    TargetChecked,
)
from usbwriter.tui.widgets.boot_panel import BootPanel
from usbwriter.tui.widgets.check_line import CheckLine
from usbwriter.tui.widgets.drive_table import DriveTable
from usbwriter.tui.widgets.image_picker import ImagePicker
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.engine.probe import ProbeResult
    from usbwriter.tui.services import Services

log = logging.getLogger(__name__)


class MainScreen(Screen[None]):
    """Image, boot report and drives together; everything else comes over it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+o", "browse", "Open image", priority=True),
        Binding("w", "write", "Write"),
        Binding("b", "browse_contents", "Contents", show=False),  # named on the report
        Binding("k", "backup", "Back up", show=False),  # named on the drives' frame
        Binding("n", "restore", "Restore", show=False),
        Binding("p", "probe", "Test drive", show=False),  # fake capacity (command palette too)
        # alt+a works from the image field too, where a is typed: the footer names it there
        Binding("a,alt+a", "toggle_all", "All disks"),
        Binding("r", "refresh", "Refresh", show=False),  # drives come and go live
        Binding("i", "focus_image", "Image", show=False),
        Binding("d", "focus_drives", "Drives", show=False),
        Binding("question_mark,f1", "app.help", "Help"),
    ]

    def __init__(
        self,
        services: Services,
        *,
        image: str | None = None,
        show_all: bool = False,
        live_updates: bool = True,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__(id="main")
        self.services = services
        self.initial_image = image
        self.show_all = show_all
        self.live_updates = live_updates
        self.cursor_blink = cursor_blink
        self.image: str | None = None
        self.image_words = ""  # the image as the summary names it
        # drives tested with p (by path, serial and size): their verdict, shown when the
        # same drive is confirmed for a write
        self.probed: dict[tuple[str, str, int], ProbeResult] = {}
        self.image_size: int | None = None
        self.report: Mapping[str, Any] | None = None
        self.image_error: str | None = None
        self.chosen: Disk | None = None
        self.is_root = services.is_root()
        self.relist_on_resume = False

    # ---- layout

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield ImagePicker(self.initial_image, cursor_blink=self.cursor_blink)
        yield BootPanel()
        yield DriveTable()
        with Horizontal(id="action-bar"):
            yield Static("", id="summary", markup=False)
            yield CheckLine(id="checking")  # in the summary's place while a plan is made
            yield Button("Write", id="write", variant="error", disabled=True)
        yield Footer()

    #: rows the rest of the screen needs: title 1, image 3, drives 6 (the header and
    #: three drives), action bar 4, footer 1
    ROWS_BESIDE_REPORT = 15
    REPORT_ROWS = 14  # the boot report's most, border included

    def fit_to_screen(self, width: int, height: int) -> None:
        """The boot report gives up rows so that three drives and the footer stay on a
        short screen: down to its frame and the two verdict lines, the rest scrolling.
        Short or narrow, it is one column with the verdict first."""
        room = height - self.ROWS_BESIDE_REPORT
        panel = self.query_one(BootPanel)
        panel.styles.max_height = max(4, min(self.REPORT_ROWS, room))
        panel.set_compact(room < self.REPORT_ROWS or width < 90)

    def on_resize(self, event: events.Resize) -> None:
        self.fit_to_screen(event.size.width, event.size.height)

    def on_mount(self) -> None:
        self.fit_to_screen(self.size.width, self.size.height)
        table = self.query_one(DriveTable)
        table.show_all = self.show_all
        self.sub_title = "" if self.is_root else "not root: writing needs sudo"
        self.refresh_drives()
        if self.live_updates and self.services.watch_disks is not None:
            self.watch_drives()
        if self.initial_image:
            self.load_image(os.path.expanduser(self.initial_image))
            table.focus()
        else:
            self.query_one("#image-path", Input).focus()
        self.update_summary()

    # ---- the image

    @on(ImagePicker.Chosen)
    def _image_chosen(self, message: ImagePicker.Chosen) -> None:
        self.load_image(message.path)
        self.query_one(DriveTable).focus()

    @on(ImagePicker.BrowseRequested)
    def _browse_requested(self) -> None:
        self.action_browse()

    def action_browse(self) -> None:
        from usbwriter.tui.format import start_folder
        from usbwriter.tui.screens.browse import FileBrowser

        def picked(path: str | None) -> None:
            if path:
                self.query_one(ImagePicker).set_path(path)
                self.load_image(path)
                self.query_one(DriveTable).focus()

        start = start_folder()
        if self.image and os.path.isdir(os.path.dirname(self.image)):
            start = type(start)(os.path.dirname(self.image))
        self.app.push_screen(FileBrowser(start), picked)

    def load_image(self, path: str) -> None:
        self.image = path
        self.image_size = None
        self.image_words = ""
        self.report = None
        self.refresh_bindings()
        self.image_error = None
        self.query_one(ImagePicker).set_path(path)
        self.query_one(BootPanel).show_loading(path)
        self.set_image_size(None)
        self.inspect(path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="inspect")
    def inspect(self, path: str) -> None:
        from usbwriter.sources import open_image

        try:
            with open_image(path) as src:
                info = src.info
        except Exception as e:
            self.post_message(ImageInspected(path, None, None, one_line(e)))
            return
        # A compressed image whose size is not recorded is at least its file's size.
        size = info.size if info.size is not None else info.file_size
        words = info.describe()
        try:
            report = self.services.inspect_image(path)
        except Exception as e:
            self.post_message(ImageInspected(path, size, None, one_line(e), words))
            return
        self.post_message(ImageInspected(path, size, report, None, words))

    def on_image_inspected(self, message: ImageInspected) -> None:
        if message.path != self.image:
            return  # an older image's report
        panel = self.query_one(BootPanel)
        self.report = message.report
        self.refresh_bindings()  # "b Contents" for an ISO
        self.image_words = message.words
        self.image_error = message.error if message.size is None else None
        if message.report is not None:
            panel.show_report(message.report)
        else:
            panel.show_error(message.error or "unknown error")
        self.set_image_size(message.size)
        if message.size is not None:
            self.refresh_drives()  # the disk holding the image is marked

    def set_image_size(self, size: int | None) -> None:
        self.image_size = size
        table = self.query_one(DriveTable)
        table.image_size = size
        if self.chosen is not None and not rules.drive_choosable(self.chosen, size):
            self.chosen = None
            table.chosen = None
        table.rebuild()
        self.update_summary()

    # ---- the drives

    @work(thread=True, exclusive=True, exit_on_error=False, group="list")
    def refresh_drives(self) -> None:
        try:
            disks = self.services.list_disks(True, self.image)
        except Exception as e:
            self.post_message(DrivesFailed(f"cannot list drives: {one_line(e)}"))
            return
        self.post_message(DisksListed(disks))

    @work(thread=True, exit_on_error=False, group="watch", description="hot-plug watcher")
    def watch_drives(self) -> None:
        worker = get_current_worker()
        assert self.services.watch_disks is not None
        try:
            for event in self.services.watch_disks(worker.cancelled_event):
                if worker.is_cancelled:
                    break
                self.post_message(DiskChanged(event))
        except Exception as e:
            self.post_message(DrivesFailed(f"live drive updates stopped: {one_line(e)}"))

    def on_disks_listed(self, message: DisksListed) -> None:
        table = self.query_one(DriveTable)
        table.set_disks(message.disks)
        if self.chosen is not None:
            now = table.disks.get(self.chosen.path)
            self.set_chosen(now if now is not None and self._keeps_choice(now) else None)
        self.update_summary()

    def on_disk_changed(self, message: DiskChanged) -> None:
        event = message.event
        table = self.query_one(DriveTable)
        if event.disk is None:
            gone = table.disks.get(event.path)
            table.drop(event.path)
            if gone is not None and rules.visible(gone, self.show_all):
                self.notify(f"{drive_line(gone)}", title="Drive removed", markup=False)
            if self.chosen is not None and self.chosen.path == event.path:
                self.set_chosen(None)
                self.notify(
                    f"The chosen drive {event.path} is gone: choose a drive again.",
                    severity="warning",
                    markup=False,
                )
        else:
            disk = event.disk
            known = disk.path in table.disks
            table.put(disk)
            if not known and rules.visible(disk, self.show_all):
                self.notify(drive_line(disk), title="Drive added", markup=False)
            if self.chosen is not None and self.chosen.path == disk.path:
                self.set_chosen(disk if self._keeps_choice(disk) else None)
            if self.image is not None:
                # Events do not know the image: list again so the drive holding the
                # image file keeps its mark.
                self.refresh_drives()
        self.update_summary()

    def on_drives_failed(self, message: DrivesFailed) -> None:
        self.notify(message.error, severity="warning", timeout=8, markup=False)

    def _keeps_choice(self, disk: Disk) -> bool:
        return self.chosen is not None and rules.keeps_choice(self.chosen, disk, self.image_size)

    @on(DataTable.RowSelected, "#drives")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.choose(str(event.row_key.value))

    @on(DriveTable.MarksChanged)
    def _marks_changed(self) -> None:
        """Marking starts from the chosen drive: it is marked too, and w writes to all."""
        table = self.query_one(DriveTable)
        if table.marked and self.chosen is not None:
            table.marked.setdefault(self.chosen.path, self.chosen)
            self.set_chosen(None)
        self.update_summary()

    def targets(self) -> list[Disk]:
        return rules.write_targets(self.chosen, self.query_one(DriveTable).marked_disks())

    def choose(self, path: str) -> bool:
        """Make PATH the target (and the only one), if it may be; otherwise say why not."""
        table = self.query_one(DriveTable)
        disk = table.disks.get(path)
        if disk is None:
            return False
        if not rules.drive_choosable(disk, self.image_size):
            self.app.bell()
            self.notify(
                f"{disk.path} cannot be chosen: {rules.drive_status(disk, self.image_size)}",
                severity="warning",
                markup=False,
            )
            return False
        table.clear_marks()
        self.set_chosen(disk)
        self.query_one("#write", Button).focus()
        return True

    def set_chosen(self, disk: Disk | None) -> None:
        self.chosen = disk
        table = self.query_one(DriveTable)
        table.chosen = disk.path if disk else None
        table.rebuild()
        self.update_summary()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        table = self.query_one(DriveTable)
        table.show_all = self.show_all
        table.rebuild()
        if self.chosen is not None and not rules.visible(self.chosen, self.show_all):
            self.set_chosen(None)
        self.notify(
            "Showing every disk" if self.show_all else "Showing removable and USB drives",
            markup=False,
        )
        self.update_summary()

    def action_refresh(self) -> None:
        self.refresh_drives()

    def action_focus_image(self) -> None:
        self.query_one("#image-path", Input).focus()

    def action_focus_drives(self) -> None:
        self.query_one(DriveTable).focus()

    # ---- summary and Write

    def not_ready(self) -> str | None:
        """Why Write cannot start now, or None."""
        targets = self.targets()
        return rules.not_ready(
            is_root=self.is_root,
            image=self.image,
            image_size=self.image_size,
            image_error=self.image_error,
            chosen=targets[0] if targets else None,
            drives_shown=len(self.query_one(DriveTable).shown()),
        )

    def update_summary(self) -> None:
        summary = self.query_one("#summary", Static)
        button = self.query_one("#write", Button)
        why = self.not_ready()
        button.disabled = why is not None
        parts: list[str | Content | tuple[str, str]] = []
        if self.image and self.image_size is not None:
            words = self.image_words or human_size(self.image_size)
            parts += [(os.path.basename(self.image), "bold"), f" ({words})"]
        else:
            parts.append(("no image", "dim"))
        parts.append("  →  ")
        targets = self.targets()
        if len(targets) > 1:
            names = ", ".join(d.path for d in targets)
            parts.append((f"{len(targets)} drives: {names}", "bold"))
        elif targets:
            parts.append((drive_line(targets[0], serial=False), "bold"))
        else:
            table = self.query_one(DriveTable)
            shown = table.shown()
            if shown:
                count = rules.choosable_count(shown, self.image_size)
                parts.append((f"no drive chosen ({count} usable)", "dim"))
            else:
                parts.append(("no USB stick or SD card", "dim"))
        if why is not None:
            style = "$text-warning" if not self.is_root else "dim"
            parts += ["\n", (why, style)]
        elif (made_for := rules.made_for(self.report)) is not None:
            parts += ["\n", (f"This image is for {made_for}; it will not boot a PC.", "dim")]
        elif not rules.will_boot(self.report):
            parts += ["\n", ("Warning: this image will not boot on BIOS or UEFI.", "$text-error")]
        elif len(targets) > 1:
            parts += ["\n", f"Press w (or the button) to write all {len(targets)} and verify each."]
        else:
            parts += ["\n", "Press w (or the button) to write and verify."]
        summary.update(Content.assemble(*parts))

    @on(Button.Pressed, "#write")
    def _write_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_write()

    def action_write(self) -> None:
        why = self.not_ready()
        if why is not None:
            self.app.bell()
            self.notify(why, severity="warning", markup=False)
            return
        targets = self.targets()
        assert targets and self.image is not None and self.image_size is not None
        if len(targets) > 1:
            from usbwriter.tui.screens.several import start_several

            start_several(self, targets)
            return
        self.checking(True)
        self.plan_write(targets[0], self.image, self.image_size)

    def checking(self, on: bool) -> None:
        """While the plan is made: a turning spinner with its step and figures in the
        summary's place; after it, the summary again (no figure of it left behind)."""
        line = self.query_one(CheckLine)
        if on:
            line.start()
        else:
            line.stop()
        self.query_one("#summary", Static).display = not on

    # Its own group: a new Write replaces a plan being made, and leaves a backup's or
    # several drives' checks alone.
    @work(thread=True, exclusive=True, exit_on_error=False, group="write-plan")
    def plan_write(self, disk: Disk, image: str, size: int, changed: str | None = None) -> None:
        """The job's plan, as the command line makes it. Mounted file systems are
        unmounted (after the confirmation, which names them) when the job runs. A drive
        that seems to hold an image of this size already is planned as a delta write."""
        from usbwriter.jobs import Request

        try:
            plan = self.services.plan(
                Request(image, disk.path, unmount=True, delta=None),
                progress=lambda p: self.post_message(JobProgress(p)),
                cancel=get_current_worker().cancelled_event,
            )
            refusal = rules.plan_refusal(plan, disk)
        except Exception as e:
            self.post_message(TargetChecked(disk.path, None, one_line(e), changed))
            return
        self.post_message(TargetChecked(disk.path, plan, refusal, changed))

    def plan_again(self, disk: Disk, changed: str) -> None:
        """The write did not start: something its plan relied on changed since the yes
        (the drive was mounted, replaced; the image changed). Plan it again and ask
        again, saying what changed."""
        if self.image is None or self.image_size is None:
            return
        self.checking(True)
        self.plan_write(disk, self.image, self.image_size, changed)

    def on_job_progress(self, message: JobProgress) -> None:
        """The plan reads a compressed image's first part for its boot report, and the
        whole file for its checksum: say which, and how far."""
        p = message.progress
        if p.phase in ("inspect", "checksum") and self.query_one(CheckLine).display:
            self.query_one(CheckLine).show(p)

    def on_target_checked(self, message: TargetChecked) -> None:
        from usbwriter.tui.screens.confirm import ConfirmWrite
        from usbwriter.tui.screens.error import ErrorScreen
        from usbwriter.tui.screens.probe import probe_key
        from usbwriter.tui.screens.progress import Job, ProgressScreen

        self.checking(False)
        targets, image, size = self.targets(), self.image, self.image_size
        disk = targets[0] if len(targets) == 1 else None
        if disk is None or image is None or size is None or disk.path != message.device:
            return
        if message.error is not None or message.plan is None:
            self.app.push_screen(
                ErrorScreen("Cannot write to this drive", message.error or "no plan")
            )
            return
        # The confirmation shows the plan (what it unmounts, an image that will not boot,
        # its checksum and warnings); saying yes is what lifts the blockers a person may
        # confirm past. The plan shown is the plan that runs.
        confirm = ConfirmWrite(
            disk,
            image,
            size,
            self.report,
            plan=message.plan,
            with_delta=self.services.with_delta,
            with_bypass=self.services.with_bypass,
            changed=message.changed,
            probed=self.probed.get(probe_key(disk)),
        )

        def confirmed(yes: bool | None) -> None:
            if yes and confirm.plan is not None:
                self.relist_on_resume = True
                plan = confirm.plan.confirmed()
                job = Job(image, size, disk, plan, self.report)
                self.app.push_screen(ProgressScreen(self.services, job))

        self.app.push_screen(confirm, confirmed)

    # ---- the ISO toolkit (screens/contents.py, screens/drive_jobs.py)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "browse_contents":
            return rules.browsable(self.report)  # in the footer only for an ISO
        return True

    def action_browse_contents(self) -> None:
        from usbwriter.tui.screens.contents import ContentsScreen

        if self.image is None or not rules.browsable(self.report):
            self.app.bell()
            self.notify(
                "Choose an ISO image first: its files can be browsed.",
                severity="warning",
                markup=False,
            )
            return
        self.app.push_screen(ContentsScreen(self.services, self.image))

    def action_backup(self) -> None:
        from usbwriter.tui.screens.drive_jobs import start_backup

        start_backup(self)

    def action_restore(self) -> None:
        from usbwriter.tui.screens.drive_jobs import start_restore

        start_restore(self)

    def action_probe(self) -> None:
        from usbwriter.tui.screens.probe import start_probe

        start_probe(self)

    def on_screen_resume(self) -> None:
        """Back from a write or a restore: the drives changed; list them again."""
        if self.relist_on_resume:
            self.relist_on_resume = False
            self.refresh_drives()

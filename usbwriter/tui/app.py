"""The Textual app: composes the screens; the work lives in them and in the core."""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Console
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from usbwriter.tui.hangup import Jobs
from usbwriter.tui.messages import LogNotice
from usbwriter.tui.screens.help import HelpScreen
from usbwriter.tui.screens.main import MainScreen
from usbwriter.tui.screens.progress import ProgressScreen
from usbwriter.tui.settings import Settings

if TYPE_CHECKING:
    from textual.theme import Theme

    from usbwriter.tui.services import Services


class UsbWriterApp(App[int]):
    """usbwriter's interactive face. Build it with the services it should use."""

    CSS_PATH = "app.tcss"
    TITLE = "usbwriter"
    SUB_TITLE = ""
    ENABLE_COMMAND_PALETTE = True
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("t", "change_theme", "Theme", show=False),
    ]

    def __init__(
        self,
        services: Services,
        *,
        image: str | None = None,
        show_all: bool = False,
        live_updates: bool = True,
        settings_path: Path | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        # Textual prints the traceback of an unhandled exception to error_console as it
        # exits; keep it for crash.report (one line on stderr, the rest in a log file).
        self._crash = io.StringIO()
        self.error_console = Console(
            file=self._crash, width=120, color_system=None, markup=False, highlight=False
        )
        self.services = services
        self.image = image
        self.show_all = show_all
        self.live_updates = live_updates
        self.cursor_blink = cursor_blink
        self.jobs = Jobs()  # the jobs on drives running now: a hangup stops them
        self.settings = Settings.load(settings_path)
        if self.settings.theme and self.settings.theme in self.available_themes:
            self.theme = self.settings.theme

    def get_default_screen(self) -> Screen[None]:
        return MainScreen(
            self.services,
            image=self.image,
            show_all=self.show_all,
            live_updates=self.live_updates,
            cursor_blink=self.cursor_blink,
        )

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, theme: Theme) -> None:
        if self.settings.theme != theme.name:
            self.settings.theme = theme.name
            self.settings.save()

    @property
    def main(self) -> MainScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, MainScreen)
        return screen

    # ---- actions and commands

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        """Quitting while writing asks to stop first; the stop ends the write cleanly."""
        job = self._job_screen()
        if job is not None and job.finished is None:
            if self.screen is job:
                job.action_stop()
            return
        # As the command line would have: 1 after a failed job, 3 after a mismatch, 130
        # after a stop (the last job's, by usbwriter.errors.outcome_exit_code).
        self.exit(return_code=self.jobs.exit_code)

    def _job_screen(self) -> ProgressScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, ProgressScreen):
                return screen
        return None

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        if isinstance(screen, MainScreen):
            yield SystemCommand("Open image", "Choose an image file to write", screen.action_browse)
            yield SystemCommand(
                "Write image",
                "Write the image to the chosen drive and verify it",
                screen.action_write,
            )
            yield SystemCommand(
                "Show all disks",
                "Show every disk (loop devices, the system disk) or only removable/USB drives",
                screen.action_toggle_all,
            )
            yield SystemCommand("Refresh drives", "List the drives again", screen.action_refresh)
            yield SystemCommand(
                "Browse contents",
                "The files inside the ISO image; extract some or all",
                screen.action_browse_contents,
            )
            yield SystemCommand(
                "Back up drive",
                "Read the highlighted drive into an image file and verify it",
                screen.action_backup,
            )
            yield SystemCommand(
                "Restore drive",
                "Erase the highlighted drive: one FAT32, exFAT or ext4 partition",
                screen.action_restore,
            )
            yield SystemCommand(
                "Test this drive",
                "Fake capacity, dropped writes, real speed (p); what is overwritten is put back",
                screen.action_probe,
            )
        if isinstance(screen, ProgressScreen):
            yield SystemCommand("Stop", "Stop writing (asks first)", screen.action_stop)
        yield SystemCommand("Help", "How to use usbwriter, and every key", self.action_help)
        yield from super().get_system_commands(screen)

    def on_log_notice(self, message: LogNotice) -> None:
        self.notify(
            message.text,
            severity="error" if message.severity == "error" else "warning",
            timeout=10,
            markup=False,
        )

    def crash_text(self) -> str:
        """The traceback of the bug that ended the app, or ''."""
        return self._crash.getvalue()

"""The interactive app (Textual). The core never imports this package.

``run_app`` is what ``usbwriter [IMAGE] [--all]`` calls.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.app import App

    from usbwriter.tui.app import UsbWriterApp


class _LogToApp(logging.Handler):
    """Warnings the core logs become notifications: stderr belongs to the screen."""

    def __init__(self, app: App[int]) -> None:
        super().__init__(level=logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        from usbwriter.tui.messages import LogNotice

        try:
            text = " ".join(record.getMessage().split())
            self.app.post_message(LogNotice(text, record.levelname.lower()))
        except Exception:  # never let logging break the app
            pass


def run_app(image: str | None = None, show_all: bool = False) -> int:
    """Run the app in this terminal; returns the exit code."""
    from usbwriter.tui.app import UsbWriterApp
    from usbwriter.tui.services import Services
    from usbwriter.tui.settings import default_path

    app = UsbWriterApp(
        Services.real(), image=image, show_all=show_all, settings_path=default_path()
    )
    return run(app)


def run(app: UsbWriterApp, *, headless: bool = False) -> int:
    """Run APP; the exit code. A bug in it ends with one line on stderr (``crash``)."""
    from usbwriter.tui import crash
    from usbwriter.tui.hangup import exit_on_hangup

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [_LogToApp(app)]
    try:
        # The terminal closed: the jobs stop as Stop stops them, then the process ends.
        # SIGTERM: the jobs stop, then the app quits as on Quit (exit 130).
        def quit(code: int) -> None:
            with suppress(RuntimeError):  # (the app's loop already ended)
                app.call_from_thread(app.exit, return_code=code)

        with exit_on_hangup(app.jobs, quit):
            app.run(headless=headless)
    finally:
        root.handlers = saved
    traceback = app.crash_text()
    if traceback:
        crash.report(traceback)
        return app.return_code or 1
    return app.return_code or 0


__all__ = ["run", "run_app"]

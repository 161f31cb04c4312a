"""Test this drive: is it what it says it is? (``p`` on the main screen.)

The flow of ``usbwriter probe``: the write's checks of the drive (a refusal is a
one-line modal), then the probe on the progress screen, then its verdict: genuine, or
fake capacity (wrap-around, dropped writes) with its real usable size, read errors, and
its speed. Nothing is asked first: every block the probe overwrites is put back (also
when it is stopped). The core does the work: ``usbwriter.jobs.probe``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from textual.app import App
from textual.content import Content
from textual.screen import Screen

from usbwriter.errors import outcome_exit_code
from usbwriter.tui import rules
from usbwriter.tui.format import drive_line
from usbwriter.tui.messages import JobNote
from usbwriter.tui.screens.drive_jobs import ReceiptScreen, checked_plan
from usbwriter.tui.screens.progress import Job, ProgressScreen
from usbwriter.tui.widgets.drive_table import DriveTable

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.engine.probe import ProbeResult
    from usbwriter.jobs import Plan
    from usbwriter.progress import ProgressCallback
    from usbwriter.tui.screens.main import MainScreen
    from usbwriter.tui.services import Services


def start_probe(main: MainScreen) -> None:
    """Test the highlighted drive."""
    disk = main.query_one(DriveTable).highlighted()
    why = rules.drive_job_refusal(is_root=main.is_root, disk=disk, job="test")
    if why is not None or disk is None:
        main.app.bell()
        main.notify(why or "no drive", severity="warning", markup=False)
        return
    main.run_worker(_probe_flow(main, disk), group="drive-job", exclusive=True, exit_on_error=False)


async def _probe_flow(main: MainScreen, disk: Disk) -> None:
    services = main.services
    plan = await checked_plan(
        main, disk, lambda: services.plan_probe(disk.path), "Cannot test this drive"
    )
    if plan is not None:
        main.app.push_screen(ProbeScreen(services, disk, plan))


class ProbeScreen(ProgressScreen):
    """Writes tagged blocks, reads them back, puts back what was there."""

    STEPS = (("probe", "Test"),)
    FAILED = "Test failed"
    FAILED_HINT = "The blocks the test overwrote were put back where they could be."
    STOP_WORDS = (
        "Stop the test?",
        "The blocks written so far are put back; nothing on {device} is changed.",
    )

    def __init__(self, services: Services, disk: Disk, plan: Plan) -> None:
        super().__init__(services, Job("", disk.size, disk, plan))

    def heading(self) -> Content:
        return Content.assemble(
            ("Testing ", "bold"),
            (drive_line(self.job.disk), "bold"),
            "\nfor fake capacity and dropped writes; every block written is put back",
        )

    def execute(self, progress: ProgressCallback, cancel: threading.Event) -> ProbeResult:
        assert self.job.plan is not None
        return self.services.run_probe(
            self.job.plan, cancel=cancel, notify=lambda text: self.post_message(JobNote(text))
        )

    def result_screen(self, outcome: Any) -> Screen[None]:
        r: ProbeResult = outcome
        dev = self.job.disk.path
        remember_probe(self.app, self.job.disk, r)
        if r.genuine:
            head = f"✔ Genuine: {r.describe().removeprefix('genuine, ')}"
            next_text = f"{dev} holds what it says. It is safe to write."
        else:
            head = f"✘ {r.describe()[0].upper()}{r.describe()[1:]}"
            next_text = (
                f"Only the first {r.usable_size} bytes of {dev} can be trusted: an image "
                "larger than that is refused before the first byte. Better: return the drive."
            )
        if r.restored is False:
            next_text += " Some blocks could not be put back as they were."
        return ReceiptScreen(
            head,
            r.genuine and r.restored is not False,
            next_text,
            r.to_text(dev),
            exit_code=outcome_exit_code(r),
        )


def probe_key(disk: Disk) -> tuple[str, str, int]:
    """A drive as far as a test of it is remembered: its path, serial and size."""
    return (disk.path, disk.serial, disk.size)


def remember_probe(app: App[Any], disk: Disk, result: ProbeResult) -> None:
    """Keep the test's verdict, shown in a write's confirmation of the same drive."""
    main = app.screen_stack[0]
    probed: dict[tuple[str, str, int], ProbeResult] | None = getattr(main, "probed", None)
    if probed is not None:
        probed[probe_key(disk)] = result

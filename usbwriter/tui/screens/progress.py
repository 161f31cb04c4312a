"""Write, then verify: progress bar, bytes, speed, ETA and a live speed graph.

The engine runs in one thread worker; it reports through ``JobProgress`` messages
(which coalesce) and one ``JobFinished``. Cancel asks once more, then sets the
``threading.Event`` the engine polls between chunks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Label, ProgressBar, Sparkline, Static

from usbwriter.errors import Changed, UsbWriterError
from usbwriter.tui.format import drive_line
from usbwriter.tui.hangup import Jobs, jobs_of
from usbwriter.tui.messages import JobFinished, JobNote, JobProgress
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import human_duration, human_rate, human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.jobs import Plan
    from usbwriter.progress import Progress, ProgressCallback
    from usbwriter.receipt import Receipt
    from usbwriter.tui.services import Services

log = logging.getLogger(__name__)

#: Seconds of speed history the graph keeps (one bar per sample).
GRAPH_SAMPLES = 90
SAMPLE_EVERY = 0.5  # seconds of engine time between graph samples

PHASES = {
    "write": "Writing",
    "inspect": "Inspecting",
    "sync": "Flushing to the drive",
    "verify": "Verifying",
    "read": "Reading",
}


@dataclass(frozen=True)
class Job:
    """One write: what, where, and the plan made and confirmed before it: what runs."""

    image: str
    image_size: int
    disk: Disk
    plan: Plan | None
    report: Mapping[str, Any] | None = None

    @property
    def delta(self) -> bool:
        """Only what differs is written (compared first)."""
        return self.plan is not None and bool(self.plan.request.delta)


def run_job(
    services: Services,
    job: Job,
    progress: Any,
    cancel: threading.Event,
    notify: Callable[[str], object] | None = None,
) -> Receipt:
    """Run the job's plan; the receipt. Blocking: call it from a worker thread."""
    if job.plan is None:
        raise UsbWriterError(f"{job.disk.path}: no plan to run")
    return services.run(job.plan, progress=progress, cancel=cancel, notify=notify)


class ProgressScreen(Screen[None]):
    """Shows the job's progress; ``start=False`` only for snapshots fed by hand.

    A drive job other than a write (backup, restore) subclasses it: its ``STEPS``
    (phase, label), ``FAILED`` title, ``heading()``, ``execute()``, ``result_screen()``
    and ``STOP_WORDS``, what Stop asks ({device} is the drive's path)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
    ]
    STEPS: ClassVar[tuple[tuple[str, str], ...]] = (("write", "Write"), ("verify", "Verify"))
    FAILED = "Writing failed"
    STOP_WORDS: ClassVar[tuple[str, str] | None] = None  # (title, body); None: a write's
    STOP_HINT = "Esc stops (it asks first)."
    FAILED_HINT = "Nothing more was written. Check the drive and try again."

    def __init__(self, services: Services, job: Job, *, start: bool = True) -> None:
        super().__init__(id="progress-screen")
        self.services = services
        self.job = job
        self.cancel_event = threading.Event()
        self.phase = self.STEPS[0][0]
        self.speeds: list[float] = []
        self._last_sample = -SAMPLE_EVERY
        self._sample_phase = ""
        self._start = start
        self.finished: JobFinished | None = None
        self.jobs = Jobs()  # the app's, once mounted: a hangup stops the job (hangup.py)

    def heading(self) -> Content:
        return Content.assemble(
            ("Writing ", "bold"),
            (self.job.image, "bold"),
            f" ({human_size(self.job.image_size)})\nto ",
            (drive_line(self.job.disk), "bold"),
            ", only what changed (compared first)" if self.job.delta else "",
        )

    def compose(self) -> ComposeResult:
        yield TitleBar()
        with Vertical(id="progress-body"):
            yield Static(self.heading(), id="progress-title", markup=False)
            yield from self.compose_steps()
            yield Label("Starting…", id="phase", markup=False)
            yield ProgressBar(total=100, show_eta=False, id="progress-bar")
            yield Static("", id="figures", markup=False)
            yield from self.compose_details()
            yield Static(self.STOP_HINT, id="progress-hint", markup=False)
        yield Footer()

    def compose_details(self) -> ComposeResult:
        """Below the figures: the speed over time."""
        yield Label("Speed", id="graph-label", markup=False)
        yield Sparkline([], id="graph")

    def compose_steps(self) -> ComposeResult:
        with Horizontal(id="steps"):
            for n, (phase, label) in enumerate(self.STEPS, 1):
                active = " active" if n == 1 else ""
                yield Label(
                    f"{n} {label}", id=f"step-{phase}", classes=f"step{active}", markup=False
                )
            yield Label(f"{len(self.STEPS) + 1} Done", id="step-done", classes="step", markup=False)

    def on_mount(self) -> None:
        self.jobs = jobs_of(self.app)
        if self._start:
            self.run()

    @work(
        thread=True,
        exit_on_error=False,
        exclusive=True,
        group="job",
        description="write and verify",
    )
    def run(self) -> None:
        try:
            with self.jobs.running(self.cancel_event):
                outcome = self.execute(self.post_message_progress, self.cancel_event)
        except UsbWriterError as e:
            self.post_message(JobFinished(failure=e))
        except Exception as e:  # a bug: one line for the user, details in the log
            log.debug("job failed", exc_info=True)
            self.post_message(JobFinished(failure=e))
        else:
            self.post_message(JobFinished(outcome))

    def execute(self, progress: ProgressCallback, cancel: threading.Event) -> Any:
        """Run the job (in the worker thread); what the core returns (its receipt)."""
        return run_job(
            self.services,
            self.job,
            progress,
            cancel,
            notify=lambda text: self.post_message(JobNote(text)),
        )

    def on_job_note(self, message: JobNote) -> None:
        """Something the job did on the way (unmounted a file system, found the drive
        equal and wrote nothing): said as it happens."""
        self.notify(message.text, markup=False)

    def post_message_progress(self, p: Progress) -> None:
        self.post_message(JobProgress(p))

    # ---- progress

    def on_job_progress(self, message: JobProgress) -> None:
        self.show(message.progress)

    def set_phase(self, phase: str) -> None:
        """Light the step PHASE belongs to ("sync" belongs to the write step)."""
        if phase == self.phase:
            return
        self.phase = phase
        phases = [name for name, _ in self.STEPS]
        if phase in phases:
            now = phases.index(phase)
            for i, name in enumerate(phases):
                step = self.query_one(f"#step-{name}")
                step.set_class(i == now, "active")
                step.set_class(i < now, "done")

    def show(self, p: Progress) -> None:
        self.set_phase(p.phase)
        stopping = " (stopping…)" if self.cancel_event.is_set() else ""
        self.query_one("#phase", Label).update(
            f"{PHASES.get(p.phase, p.phase)} {self.job.disk.path}{stopping}"
        )
        self.query_one("#progress-bar", ProgressBar).update(total=100, progress=100 * p.fraction)
        if p.phase == "sync":
            figures = "Waiting for the drive to finish writing its cache…"
        else:
            figures = (
                f"{human_size(p.done)} of {human_size(p.total)}    "
                f"{human_rate(p.rate)}    ETA {human_duration(p.eta)}    "
                f"elapsed {human_duration(p.elapsed)}"
            )
        self.query_one("#figures", Static).update(figures)
        if p.phase != "sync":
            if p.phase != self._sample_phase:
                # Each phase's graph starts from zero, so the bars read as speeds.
                self._sample_phase = p.phase
                self._last_sample = 0.0
                self.speeds = [0.0]
            if p.elapsed - self._last_sample >= SAMPLE_EVERY and p.rate > 0:
                self._last_sample = p.elapsed
                self.speeds = [*self.speeds, p.rate / 1e6][-GRAPH_SAMPLES:]
                self.query_one("#graph", Sparkline).data = self.speeds
                self.query_one("#graph-label", Label).update(
                    f"Speed (MB/s): now {p.rate / 1e6:.1f}, peak {max(self.speeds):.1f}"
                )

    # ---- the end

    def on_job_finished(self, message: JobFinished) -> None:
        message.stop()
        self.finished = message
        self.jobs.exit_code = message.exit_code  # what Quit exits with, as the CLI would
        from usbwriter.tui.screens.error import ErrorScreen

        if message.failure is None:
            self.app.switch_screen(self.result_screen(message.outcome))
            return
        if isinstance(message.failure, Changed) and self.ask_again(message.failure):
            return
        self.app.pop_screen()
        if message.cancelled:
            self.app.push_screen(ErrorScreen("Stopped", message.error or "cancelled"))
        else:
            self.app.push_screen(
                ErrorScreen(self.FAILED, message.error or "unknown error", hint=self.FAILED_HINT)
            )

    def ask_again(self, changed: Changed) -> bool:
        """A write that did not start because its plan's facts changed since the yes:
        back to the main screen, which plans again and asks again saying what changed.
        (Other drive jobs show the refusal.)"""
        from usbwriter.tui.screens.main import MainScreen

        main = self.app.screen_stack[0]
        if type(self) is not ProgressScreen or not isinstance(main, MainScreen):
            return False
        self.app.pop_screen()
        main.plan_again(self.job.disk, str(changed))
        return True

    def result_screen(self, outcome: Any) -> Screen[None]:
        from usbwriter.tui.screens.result import ResultScreen

        return ResultScreen(outcome)

    def stop_question(self) -> ModalScreen[bool]:
        from usbwriter.tui.screens.confirm import ConfirmStop

        device = self.job.disk.path
        words = self.STOP_WORDS
        if words is not None:
            words = (words[0], words[1].format(device=device))
        return ConfirmStop(self.phase, device, words=words)

    def action_stop(self) -> None:
        if self.cancel_event.is_set() or self.finished is not None:
            return

        def answer(stop: bool | None) -> None:
            if stop and self.finished is None:
                self.cancel_event.set()
                self.query_one("#progress-hint", Static).update("Stopping…")

        self.app.push_screen(self.stop_question(), answer)

    def on_unmount(self) -> None:
        self.cancel_event.set()

"""Extracting files from an ISO: progress, Stop, then what was extracted and skipped.

The core's ``extract`` runs in one thread worker; it reports progress (``JobProgress``,
which coalesce) and each file, folder, link and refusal through ``on_event``; Escape
or Stop sets the ``threading.Event`` it polls between chunks. Nothing on a drive is
changed, so stopping does not ask first.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, ProgressBar, Static

from usbwriter.errors import Cancelled
from usbwriter.tui.format import one_line
from usbwriter.tui.hangup import Jobs, jobs_of
from usbwriter.tui.messages import ExtractFinished, JobProgress
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import count, human_duration, human_rate, human_size

if TYPE_CHECKING:
    from usbwriter.iso.contents import IsoImage
    from usbwriter.tui.services import Services

log = logging.getLogger(__name__)


class Tally:
    """What the extraction did so far, from its events (kept when it is stopped)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files = 0
        self.bytes = 0
        self.skipped: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []

    def on_event(self, ev: dict[str, Any]) -> None:
        with self.lock:
            kind = ev.get("event")
            if kind == "file":
                self.files += 1
                self.bytes += int(ev.get("size") or 0)
            elif kind == "skipped":
                self.skipped.append((str(ev["path"]), str(ev["reason"])))
            elif kind == "failed":
                self.failed.append((str(ev["path"]), str(ev["reason"])))


def result_text(
    files: int,
    size: int,
    skipped: list[tuple[str, str]],
    failed: list[tuple[str, str]],
    others: str = "",
) -> str:
    """The files extracted, then each entry not written and each skipped, with why."""
    from usbwriter.iso.contents import printable

    lines = [f"{count(files, 'file')}{others} extracted, {human_size(size)}"]
    if failed:
        lines += ["", f"{count(len(failed), 'entry', 'entries')} could not be written:"]
        lines += [f"  {printable(p)}: {printable(why)}" for p, why in failed]
    if skipped:
        lines += ["", f"{count(len(skipped), 'entry', 'entries')} skipped:"]
        lines += [f"  {printable(p)}: {printable(why)}" for p, why in skipped]
    return "\n".join(lines)


def headline_words(
    files: int, skipped: list[tuple[str, str]], failed: list[tuple[str, str]], made: int = 0
) -> tuple[str, str]:
    """The result's headline and its style: a check only when nothing was skipped or
    failed; how many were skipped and why. MADE counts the folders and links made."""
    if failed:
        return (
            f"✘ {count(len(failed), 'entry', 'entries')} could not be written",
            "bold $text-error",
        )
    if skipped:
        from usbwriter.iso.extract import skip_reasons

        why = f"{count(len(skipped), 'entry', 'entries')} skipped, {skip_reasons(skipped)}"
        if not files and not made:
            return f"Nothing extracted: {why}", "bold $text-warning"
        return f"Extracted {count(files, 'file')}; {why.replace(' skipped, ', ' skipped: ', 1)}", (
            "bold $text-warning"
        )
    return f"✔ Extracted {count(files, 'file')}", "bold $text-success"


class ExtractScreen(Screen[None]):
    """Extract PATHS (everything when empty) of ISO into OUTPUT."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "stop", "Stop"),
        Binding("escape", "back", "Back"),
        Binding("o", "overwrite", "Overwrite"),
    ]
    AUTO_FOCUS = "#extract-stop"

    def __init__(
        self,
        services: Services,
        iso: IsoImage,
        paths: list[str],
        output: str,
        *,
        start: bool = True,
        overwrite: bool = False,
    ) -> None:
        super().__init__(id="extract-screen")
        self.services = services
        self.iso = iso
        self.paths = paths
        self.output = output
        self.cancel_event = threading.Event()
        self.tally = Tally()
        self.finished: ExtractFinished | None = None
        self._start = start
        self.overwrite = overwrite  # files already in OUTPUT are replaced
        self.jobs = Jobs()  # the app's, once mounted: a hangup stops the job (hangup.py)

    def compose(self) -> ComposeResult:
        what = f"{len(self.paths)} marked entries" if self.paths else "every file"
        yield TitleBar()
        with Vertical(id="progress-body"):
            yield Static(
                Content.assemble(
                    ("Extracting ", "bold"),
                    what,
                    " from ",
                    (self.iso.path, "bold"),
                    "\ninto ",
                    (self.output, "bold"),
                ),
                id="progress-title",
                markup=False,
            )
            yield Label("Starting…", id="phase", markup=False)
            yield ProgressBar(total=100, show_eta=False, id="progress-bar")
            yield Static("", id="figures", markup=False)
            with VerticalScroll(id="extract-result"):
                yield Static("", id="extract-report", markup=False)
            with Horizontal(id="result-buttons"):
                yield Button("Stop", id="extract-stop", variant="error")
                yield Button("Back", id="extract-back", variant="primary")
                yield Button("Overwrite", id="extract-overwrite")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#extract-back").display = False
        self.query_one("#extract-overwrite").display = False
        self.query_one("#extract-result").display = False
        self.jobs = jobs_of(self.app)
        if self._start:
            self.run()

    @work(thread=True, exit_on_error=False, exclusive=True, group="extract", description="extract")
    def run(self) -> None:
        try:
            with self.jobs.running(self.cancel_event):
                result = self.services.extract(
                    self.iso,
                    self.paths,
                    self.output,
                    overwrite=self.overwrite,
                    on_event=self.tally.on_event,
                    progress=lambda p: self.post_message(JobProgress(p)),
                    cancel=self.cancel_event,
                )
        except Cancelled as e:
            self.post_message(ExtractFinished(None, str(e), cancelled=True))
        except Exception as e:
            log.debug("extraction failed", exc_info=True)
            self.post_message(ExtractFinished(None, one_line(e)))
        else:
            self.post_message(ExtractFinished(result))

    def on_job_progress(self, message: JobProgress) -> None:
        p = message.progress
        stopping = " (stopping…)" if self.cancel_event.is_set() else ""
        self.query_one("#phase", Label).update(f"Extracting{stopping}")
        self.query_one("#progress-bar", ProgressBar).update(total=100, progress=100 * p.fraction)
        self.query_one("#figures", Static).update(
            f"{human_size(p.done)} of {human_size(p.total)}    {human_rate(p.rate)}    "
            f"ETA {human_duration(p.eta)}    {count(self.tally.files, 'file')}"
        )

    def on_extract_finished(self, message: ExtractFinished) -> None:
        message.stop()
        self.finished = message
        t = self.tally
        r = message.result
        if r is not None:
            head = Content.assemble(
                headline_words(r.files, r.skipped, r.failed, r.dirs + r.symlinks)
            )
            others = f", {count(r.dirs, 'folder')}, {count(r.symlinks, 'symlink')}"
            text = result_text(r.files, r.bytes, r.skipped, r.failed, others)
            self.query_one("#progress-bar", ProgressBar).update(total=100, progress=100)
        elif message.cancelled:
            head = Content.assemble(("Stopped", "bold $text-warning"))
            text = "Stopped; what was extracted before is kept.\n\n" + result_text(
                t.files, t.bytes, t.skipped, t.failed
            )
        else:
            head = Content.assemble(("✘ Extraction failed", "bold $text-error"))
            text = f"{message.error}\n\n" + result_text(t.files, t.bytes, t.skipped, t.failed)
        self.query_one("#phase", Label).update(head)
        self.query_one("#figures", Static).update(f"Into {self.output}")
        self.query_one("#extract-report", Static).update(text)
        self.query_one("#extract-result").display = True
        self.query_one("#extract-stop").display = False
        back = self.query_one("#extract-back", Button)
        back.display = True
        back.focus()
        self.query_one("#extract-overwrite").display = self.can_overwrite
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop":
            return self.finished is None
        if action == "back":
            return self.finished is not None
        if action == "overwrite":
            return self.can_overwrite
        return True

    @property
    def can_overwrite(self) -> bool:
        """Finished, with files kept because they were already in the folder."""
        from usbwriter.iso.extract import EXISTS

        r = self.finished.result if self.finished is not None else None
        return r is not None and any(why.endswith(EXISTS) for _, why in r.skipped)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "extract-back":
            self.action_back()
        elif event.button.id == "extract-overwrite":
            self.action_overwrite()
        else:
            self.action_stop()

    def action_stop(self) -> None:
        if self.finished is None and not self.cancel_event.is_set():
            self.cancel_event.set()
            self.query_one("#phase", Label).update("Stopping…")

    def action_back(self) -> None:
        if self.finished is not None:
            self.app.pop_screen()

    def action_overwrite(self) -> None:
        """The same extraction again on this screen, replacing the files it kept."""
        if not self.can_overwrite:
            return
        self.overwrite = True
        self.finished = None
        self.tally = Tally()
        self.cancel_event = threading.Event()
        self.query_one("#phase", Label).update("Starting again, overwriting…")
        self.query_one("#progress-bar", ProgressBar).update(total=100, progress=0)
        self.query_one("#figures", Static).update("")
        self.query_one("#extract-report", Static).update("")
        for hidden in ("#extract-result", "#extract-back", "#extract-overwrite"):
            self.query_one(hidden).display = False
        stop = self.query_one("#extract-stop", Button)
        stop.display = True
        stop.focus()
        self.refresh_bindings()
        self.run()

    def on_unmount(self) -> None:
        self.cancel_event.set()

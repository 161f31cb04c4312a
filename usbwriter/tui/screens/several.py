"""One image to several drives at once: the drives marked with Space, then w.

One flow (an async worker on the main screen): every drive planned as for a single
write (``plan_many``: the image's checksum taken once) and refused by the same rule; one
confirmation listing every drive; one run (``run_many``: the image read once, each
drive its own writer and read-back) with a row of progress per drive; and a result
that gives each drive its own outcome. Quit exits with the worst drive's exit code.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Label, ProgressBar, Static
from textual.worker import get_current_worker

from usbwriter.receipt import coverage_words, proof_words
from usbwriter.tui import rules
from usbwriter.tui.format import drive_name, one_line
from usbwriter.tui.messages import DriveJobFailed, DriveJobProgress, JobNote, JobProgress
from usbwriter.tui.screens.confirm import drive_card, not_bootable
from usbwriter.tui.screens.drive_jobs import in_thread
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.progress import PHASES, Job, ProgressScreen
from usbwriter.tui.screens.result import OutcomeScreen
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import human_duration, human_rate, human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.jobs import Plan
    from usbwriter.jobs.several import DriveResult
    from usbwriter.progress import Progress, ProgressCallback
    from usbwriter.receipt import Receipt
    from usbwriter.tui.screens.main import MainScreen
    from usbwriter.tui.services import Services


@dataclass(frozen=True)
class SeveralJob:
    """One image to several drives: the drives as listed and their confirmed plans."""

    image: str
    image_size: int
    disks: tuple[Disk, ...]
    plans: tuple[Plan, ...]
    report: Mapping[str, Any] | None = None


def start_several(main: MainScreen, disks: list[Disk]) -> None:
    """Plan, confirm and write the image to every drive in DISKS."""
    main.run_worker(
        _several_flow(main, disks), group="several", exclusive=True, exit_on_error=False
    )


async def _several_flow(main: MainScreen, disks: list[Disk]) -> None:
    from usbwriter.jobs import Request

    app, services = main.app, main.services
    image, size, report = main.image, main.image_size, main.report
    assert image is not None and size is not None
    paths = [d.path for d in disks]

    def check() -> tuple[list[Plan], list[str]]:
        # Mounted file systems are unmounted (after the confirmation, which names them)
        # when the job runs, as for one drive.
        plans = services.plan_many(
            Request(image, paths[0], unmount=True),
            paths,
            progress=lambda p: main.post_message(JobProgress(p)),
            cancel=get_current_worker().cancelled_event,
        )
        refusals = [
            why
            for plan, disk in zip(plans, disks, strict=True)
            if (why := rules.plan_refusal(plan, disk)) is not None
        ]
        return plans, refusals

    try:
        plans, refusals = await in_thread(main, check, f"check {len(disks)} drives")
    except Exception as e:
        plans, refusals = [], [one_line(e)]
    if refusals:
        title = "Cannot write to these drives"
        app.push_screen(ErrorScreen(title, "\n".join(refusals), hint=REFUSED_HINT))
        return
    main.update_summary()  # the checksum's progress is over
    unmounts = [[f"{m.source} on {m.mountpoint}" for m in p.unmounts] for p in plans]
    if await app.push_screen_wait(ConfirmSeveral(disks, unmounts, image, size, report)):
        job = SeveralJob(image, size, tuple(disks), tuple(p.confirmed() for p in plans), report)
        main.relist_on_resume = True
        app.push_screen(SeveralProgressScreen(services, job))


REFUSED_HINT = "Nothing was written. Unmark the drives named (Space) and write again."


# ---- the confirmation


class ConfirmSeveral(ModalScreen[bool]):
    """Erase every drive in DISKS and write IMAGE to each? Each drive is named with what
    its plan will unmount ("/dev/sdb1 on /media/x"). Cancel focused; True only for the
    explicit button."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#cancel"

    def __init__(
        self,
        disks: list[Disk],
        unmounts: list[list[str]],
        image: str,
        image_size: int,
        report: Mapping[str, Any] | None,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self.disks = disks
        self.unmounts = unmounts
        self.image = image
        self.image_size = image_size
        self.report = report

    def compose(self) -> ComposeResult:
        n = len(self.disks)
        with Vertical(id="dialog", classes="confirm"):
            yield Label(f"Erase these {n} drives?", id="dialog-title", markup=False)
            with VerticalScroll(id="dialog-body"):
                yield Static(
                    f"Everything on these {n} drives will be erased:", classes="lead", markup=False
                )
                for disk, unmounts in zip(self.disks, self.unmounts, strict=True):
                    card = drive_card(disk)
                    if unmounts:
                        mounts = ", ".join(unmounts)
                        card += Content.assemble(
                            "\n", ("Mounted: ", "bold $text-warning"), mounts, "; unmounted first."
                        )
                    yield Static(card, classes="confirm-drive-card", markup=False)
                yield Static("and each replaced by the image:", classes="lead", markup=False)
                yield Static(
                    Content.assemble((human_size(self.image_size), "bold"), f"   {self.image}"),
                    id="confirm-image",
                    markup=False,
                )
                if not rules.will_boot(self.report):
                    yield Static(not_bootable(self.report), id="confirm-warning", markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(f"Erase and write {n}", id="confirm", variant="error")
        yield Footer()  # the dialog's own keys, not the screen's below

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


# ---- the job


class SeveralProgressScreen(ProgressScreen):
    """A row per drive (phase, percent, rate) and the total over all of them."""

    FAILED = "Writing failed"
    FAILED_HINT = "The drives that were started had their first MiB wiped. Try again."
    STOP_HINT = "Esc stops every drive (it asks first)."
    STOP_WORDS = (
        "Stop writing every drive?",
        "Each drive not yet written is left unusable: its first MiB is wiped so it does not "
        "look bootable. You can write them again later.",
    )
    #: (label, key, width): None sizes a column to the drives' names.
    COLUMNS = (("Drive", "path", None), ("Model", "model", None), ("Step", "phase", 21),
               ("Done", "done", 5), ("Speed", "rate", 11))  # fmt: skip

    def __init__(self, services: Services, several: SeveralJob, *, start: bool = True) -> None:
        first = Job(several.image, several.image_size, several.disks[0], None, several.report)
        super().__init__(services, first, start=start)
        self.several = several
        self.latest: dict[str, Progress] = {}
        self.failed: set[str] = set()

    def heading(self) -> Content:
        s = self.several
        return Content.assemble(
            ("Writing ", "bold"),
            (s.image, "bold"),
            f" ({human_size(s.image_size)})\nto ",
            (f"{len(s.disks)} drives", "bold"),
            " at once: the image is read once, each drive read back on its own",
        )

    def compose_details(self) -> ComposeResult:
        """A row per drive instead of the speed graph."""
        yield DataTable(id="drive-rows", cursor_type="none", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one("#drive-rows", DataTable)
        for label, key, width in self.COLUMNS:
            table.add_column(label, key=key, width=width)
        for disk in self.several.disks:
            # Text cells: a str cell of a DataTable is read as markup, and a drive's
            # name is the drive's own (a loop device's backing file, say).
            cells = (disk.path, drive_name(disk), "waiting", "", "")
            table.add_row(*(Text(c) for c in cells), key=disk.path)
        super().on_mount()

    def execute(self, progress: ProgressCallback, cancel: threading.Event) -> list[DriveResult]:
        return self.services.run_many(
            list(self.several.plans),
            progress=lambda device, p: self.post_message(DriveJobProgress(device, p)),
            cancel=cancel,
            notify=lambda text: self.post_message(JobNote(text)),
            on_failed=lambda device, text: self.post_message(DriveJobFailed(device, text)),
        )

    def on_drive_job_progress(self, message: DriveJobProgress) -> None:
        if message.device not in self.failed:
            self.show_drive(message.device, message.progress)

    def on_drive_job_failed(self, message: DriveJobFailed) -> None:
        """A drive dropped out: its row says so at once and it leaves the total."""
        self.failed.add(message.device)
        self.latest.pop(message.device, None)
        table = self.query_one("#drive-rows", DataTable)
        if message.device in {str(k.value) for k in table.rows}:
            table.update_cell(message.device, "phase", Text("failed", style="bold red"))
            table.update_cell(message.device, "done", Text(""))
            table.update_cell(message.device, "rate", Text(""))
        self.notify(message.text, title="A drive failed; the others go on", severity="error",
                    markup=False)  # fmt: skip

    def show_drive(self, device: str, p: Progress) -> None:
        """One drive's progress in its row; the total of the phase in the bar."""
        self.latest[device] = p
        table = self.query_one("#drive-rows", DataTable)
        if device in {str(k.value) for k in table.rows}:
            rate = "" if p.phase == "sync" else human_rate(p.rate)
            table.update_cell(device, "phase", Text(PHASES.get(p.phase, p.phase)))
            table.update_cell(device, "done", Text(f"{100 * p.fraction:.0f}%", justify="right"))
            table.update_cell(device, "rate", Text(rate, justify="right"))
        self.set_phase(p.phase)
        now = [q for q in self.latest.values() if q.phase == p.phase]
        done, total = sum(q.done for q in now), sum(q.total for q in now)
        fraction = done / total if total else 0.0
        stopping = " (stopping…)" if self.cancel_event.is_set() else ""
        self.query_one("#phase", Label).update(
            f"{PHASES.get(p.phase, p.phase)} {len(now)} of {len(self.several.disks)} drives"
            f"{stopping}"
        )
        self.query_one("#progress-bar", ProgressBar).update(total=100, progress=100 * fraction)
        self.query_one("#figures", Static).update(
            f"All drives: {human_size(done)} of {human_size(total)}    "
            f"{human_rate(sum(q.rate for q in now))} in all    "
            f"elapsed {human_duration(max(q.elapsed for q in now))}"
        )

    def result_screen(self, outcome: Any) -> Screen[None]:
        results: list[DriveResult] = outcome
        return SeveralResultScreen(self.several, results)


# ---- the result


def outcome(result: DriveResult) -> tuple[bool, str]:
    """(verified, what happened to this drive) in a few words."""
    r = result.receipt
    if result.error is not None:
        return False, f"failed: {result.error.message}"
    assert r is not None
    if r.verified and r.coverage is not None and not r.coverage.spans:
        return True, "verified: it already held the image, nothing needed writing"
    if r.verified:
        return True, "written and verified"
    if r.verify is None:
        return False, "written, not verified"
    wiped = "first MiB wiped" if r.wiped_first_mib else "first MiB NOT wiped: do not boot it"
    return False, f"verification FAILED: first difference at byte {r.mismatch_offset}; {wiped}"


def drive_details(receipt: Receipt) -> list[str]:
    """Under a drive's outcome: what a delta write compared and wrote, the write's and
    the read-back's times and rates, and the drive's hash with what it equals."""
    d = receipt.to_json()
    lines = coverage_words(d["coverage"]) if receipt.coverage is not None else []
    w, v = receipt.write, receipt.verify
    times = []
    if w is not None and w.bytes_written:
        times.append(
            f"write {human_size(w.bytes_written)} in {human_duration(w.seconds)}, "
            f"{human_rate(w.rate)}"
        )
    elif w is not None:
        times.append(f"nothing written; comparing took {human_duration(w.seconds)}")
    if v is not None and v.size:
        what = f"the {human_size(v.size)} written " if receipt.coverage is not None else ""
        times.append(f"verify {what}in {human_duration(v.seconds)}, {human_rate(v.rate)}")
    if times:
        lines.append("; ".join(times))
    if receipt.verified:
        lines.append(proof_words(d))
    return lines


class SeveralResultScreen(OutcomeScreen):
    """Each drive's outcome and the overall one; Quit exits with the worst exit code."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "again", "Write another", show=False),
        Binding("escape", "again", "Write another"),
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(self, several: SeveralJob, results: list[DriveResult]) -> None:
        # the worst drive's (0 all verified, 3 a mismatch, ...)
        super().__init__(max((r.exit_code for r in results), default=0))
        self.several = several
        self.results = results

    @property
    def ok_count(self) -> int:
        return sum(1 for r in self.results if outcome(r)[0])

    def compose(self) -> ComposeResult:
        ok, n = self.ok_count, len(self.results)
        good = ok == n
        yield TitleBar()
        with Vertical(id="result-body", classes="ok" if good else "failed"):
            if good:
                head = Content.assemble(
                    (f"✔ All {n} drives written and verified", "bold $text-success")
                )
                after = "Each drive holds the image, byte for byte. It is safe to remove them."
            else:
                head = Content.assemble(
                    (f"✘ {n - ok} of {n} drives FAILED", "bold $text-error"),
                    f"; {ok} written and verified",
                )
                after = (
                    "The drives that failed do not hold the image; those that could be "
                    "had their first MiB wiped. Try them again, or another drive."
                )
            yield Static(head, id="result-headline", markup=False)
            yield Static(after, id="result-next", markup=False)
            yield Static(self.table(), id="result-table", markup=False)
            yield from self.buttons("Write another")
        yield Footer()

    def table(self) -> Content:
        by_path = {d.path: d for d in self.several.disks}
        width = max(len(r.path) for r in self.results)
        parts: list[str | Content | tuple[str, str]] = [
            ("Image", "bold"),
            f"  {self.several.image}  ({human_size(self.several.image_size)})\n",
        ]
        digest = next((r.receipt.image_blake3 for r in self.results if r.receipt), None)
        if digest:
            parts += [("Image blake3", "bold"), f" {digest}\n"]
        for r in self.results:
            verified, words = outcome(r)
            disk = by_path.get(r.path)
            name = f"  {drive_name(disk)}, {human_size(disk.size)}" if disk else ""
            mark = ("✔ ", "$text-success") if verified else ("✘ ", "$text-error")
            indent = " " * (width + 4)
            parts += [mark, (f"{r.path:<{width}}", "bold"), name, "\n", indent]
            parts += [(words, "" if verified else "$text-error"), "\n"]
            if r.receipt is not None:
                parts += [f"{indent}{line}\n" for line in drive_details(r.receipt)]
        ok, n = self.ok_count, len(self.results)
        parts.append(
            (f"{ok} of {n} drives written and verified; exit code {self.exit_code}", "bold")
        )
        return Content.assemble(*parts)

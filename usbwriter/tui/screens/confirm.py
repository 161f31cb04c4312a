"""The last question before a job on a drive: names the drive, Cancel focused."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Footer, Label, Static

from usbwriter.tui import rules
from usbwriter.tui.format import drive_name, verdict_of
from usbwriter.tui.rules import will_boot
from usbwriter.tui.widgets.toggles import TextCheckbox
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.engine.probe import ProbeResult
    from usbwriter.jobs import Plan


def drive_card(d: Disk) -> Content:
    """The drive as a confirmation names it: vendor and model; size, path, serial, bus."""
    return Content.assemble(
        (drive_name(d), "bold"),
        "\n",
        (human_size(d.size), "bold"),
        f"   {d.path}   ",
        f"serial {d.serial}" if d.serial else "no serial number",
        f"   ({d.bus})" if d.bus else "",
    )


def not_bootable(report: Mapping[str, Any] | None) -> Content:
    """What a confirmation says of an image that will not boot a PC, and why."""
    made_for = rules.made_for(report)
    head = (
        Content.assemble(
            (f"This image is for {made_for}", "bold $text-warning"),
            "; it will not boot a PC.\n",
        )
        if made_for is not None
        else Content.assemble(
            ("This image will NOT boot", "bold $text-error"),
            " from a USB stick, on BIOS or on UEFI PCs.\n",
        )
    )
    if report is None:
        return head + Content("Its boot records could not be read.")
    _, _, reasons = verdict_of(report)
    return head + Content("\n".join(f"• {r}" for r in reasons))


class ConfirmDrive(ModalScreen[bool]):
    """The last question before a job on DISK: names the drive, Cancel focused; True only
    for the explicit button. A job says what it does in ``QUESTION``, ``lead()``, ``BUTTON``
    and ``compose_job()`` (what the drive gets, or where it goes)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    AUTO_FOCUS = "#cancel"
    QUESTION = "Erase this drive?"
    BUTTON = "Erase and write"
    DESTRUCTIVE = True  # a red frame and button

    def __init__(self, disk: Disk) -> None:
        super().__init__(classes="dialog-screen")
        self.disk = disk

    def mounts(self) -> Sequence[tuple[str, str]]:
        """(device, mount point) of what will be unmounted first: as listed, unless the
        job's plan says (then what the plan found when the person asked)."""
        return self.disk.mounted

    def lead(self) -> str:
        return "Everything on this drive will be erased:"

    def compose_job(self) -> ComposeResult:
        yield from ()

    def compose_warnings(self) -> ComposeResult:
        yield from ()

    def compose_options(self) -> ComposeResult:
        yield from ()

    def compose(self) -> ComposeResult:
        d = self.disk
        with Vertical(id="dialog", classes="confirm" if self.DESTRUCTIVE else "question"):
            yield Label(self.QUESTION, id="dialog-title", markup=False)
            with VerticalScroll(id="dialog-body"):
                yield Static(self.lead(), classes="lead", markup=False)
                yield Static(drive_card(d), id="confirm-drive", markup=False)
                yield from self.compose_job()
                mounted = self.mounts()
                if mounted and self.DESTRUCTIVE:
                    mounts = ", ".join(f"{dev} on {mp}" for dev, mp in mounted)
                    yield Static(
                        Content.assemble(
                            ("Mounted: ", "bold $text-warning"),
                            mounts,
                            "; it will be unmounted first.",
                        ),
                        id="confirm-mounted",
                        markup=False,
                    )
                yield from self.compose_warnings()
                yield from self.compose_options()
            with Horizontal(id="dialog-buttons"):
                yield Button("Cancel", id="cancel", variant="primary")
                yield Button(
                    self.BUTTON, id="confirm", variant="error" if self.DESTRUCTIVE else "success"
                )
        yield Footer()  # the dialog's own keys, not the screen's below

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "confirm")

    def action_cancel(self) -> None:
        self.dismiss(False)


class ConfirmWrite(ConfirmDrive):
    """Erase DISK and write IMAGE? Shows the PLAN made when the person asked: what it
    unmounts, its checksum and its warnings; with the choice of writing only what changed
    (pre-selected when the plan suggests it). Choosing it the other way decides the plan
    again (WITH_DELTA, no I/O) and shows that one: ``plan`` is what runs."""

    DELTA = "Write only what changed (compare first)"
    #: warnings said elsewhere in the dialog: the mounts above, the boot verdict below
    SHOWN_APART = ("unmount", "boot", "confirmed")

    def __init__(
        self,
        disk: Disk,
        image: str,
        image_size: int,
        report: Mapping[str, Any] | None,
        *,
        delta: bool = False,
        plan: Plan | None = None,
        with_delta: Callable[[Plan, bool], Plan] | None = None,
        with_bypass: Callable[[Plan, tuple[str, ...]], Plan] | None = None,
        changed: str | None = None,
        probed: ProbeResult | None = None,
    ) -> None:
        super().__init__(disk)
        self.probed = probed  # the drive's test (p), if it was tested
        self.changed = changed  # what changed since the person last said yes
        self.image = image
        self.image_size = image_size
        self.report = report
        self.plan = plan  # the plan the person is shown, and that runs if they say yes
        self.with_delta = with_delta
        self.with_bypass = with_bypass
        self.suggested = plan.delta_suggested if plan is not None else delta
        self.delta = bool(plan.request.delta) if plan is not None else delta

    def mounts(self) -> Sequence[tuple[str, str]]:
        if self.plan is None:
            return super().mounts()
        return [(m.source, m.mountpoint) for m in self.plan.unmounts]

    def compose_job(self) -> ComposeResult:
        yield Static("and replaced by the image:", classes="lead", markup=False)
        yield Static(
            Content.assemble((human_size(self.image_size), "bold"), f"   {self.image}"),
            id="confirm-image",
            markup=False,
        )

    def notes(self) -> str:
        """The plan's checksum and warnings, a line each."""
        plan = self.plan
        if plan is None:
            return ""
        lines = []
        if plan.mode == "files":  # what the stick will be: its layout, the split, the boot
            from usbwriter.jobs.files import files_summary

            lines += [line.strip() for line in files_summary(plan)]
        if plan.checksum is not None:
            lines.append(f"Checksum: {plan.checksum.describe()}")
        lines += [f"• {w.message}" for w in plan.warnings if w.code not in self.SHOWN_APART]
        return "\n".join(lines)

    def compose_warnings(self) -> ComposeResult:
        if self.changed is not None:
            yield Static(
                Content.assemble(
                    ("Asked again: ", "bold $text-warning"),
                    self.changed,
                    ". What is shown here is the plan made anew.",
                ),
                id="confirm-changed",
                markup=False,
            )
        if self.probed is not None:
            r = self.probed
            yield Static(
                Content.assemble(
                    ("Tested: ", "bold" if r.genuine else "bold $text-warning"), r.describe()
                ),
                id="confirm-probe",
                markup=False,
            )
        copies_files = self.plan is not None and self.plan.mode == "files"
        if not will_boot(self.report) and not copies_files:  # (a raw write's verdict)
            yield Static(not_bootable(self.report), id="confirm-warning", markup=False)
        notes = self.notes()
        yield Static(notes, id="confirm-notes", markup=False, classes="" if notes else "-empty")

    def compose_options(self) -> ComposeResult:
        if self.plan is not None and self.plan.mode == "files":
            yield from self.compose_bypass()
            return
        yield TextCheckbox(self.DELTA, self.delta, id="delta")
        hint = "Reads the drive first, writes only the MiB blocks that differ."
        if self.suggested:
            hint += " Suggested: the drive seems to hold an image of this size."
        yield Static(hint, id="delta-hint", markup=False)

    def compose_bypass(self) -> ComposeResult:
        """A Windows installer's files are copied: Windows 11's checks that an answer
        file on the stick can skip, as Rufus offers them (--windows-bypass)."""
        from usbwriter.windows.unattend import CHOICES, WORDS

        assert self.plan is not None
        yield Static("Windows 11 options (an autounattend.xml is added):", markup=False)
        chosen = self.plan.request.windows_bypass
        for name in CHOICES:
            words = WORDS[name][0].upper() + WORDS[name][1:]
            yield TextCheckbox(words, name in chosen, id=f"bypass-{name}")

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        if self.plan is None:
            self.delta = event.value
            return
        if event.checkbox.id == "delta" and self.with_delta is not None:
            self.delta = event.value
            self.plan = self.with_delta(self.plan, event.value)
        elif self.with_bypass is not None:
            from usbwriter.windows.unattend import CHOICES

            ticked = {name for name in CHOICES if self.query_one(f"#bypass-{name}", Checkbox).value}
            chosen = tuple(name for name in CHOICES if name in ticked)
            self.plan = self.with_bypass(self.plan, chosen)
        notes = self.query_one("#confirm-notes", Static)
        notes.update(self.notes())
        notes.set_class(not self.notes(), "-empty")


class ConfirmStop(ModalScreen[bool]):
    """Cancel asks once more; 'Keep going' is focused."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "keep", "Keep going")]
    AUTO_FOCUS = "#keep"

    def __init__(self, phase: str, device: str, words: tuple[str, str] | None = None) -> None:
        super().__init__(classes="dialog-screen")
        self.phase = phase
        self.device = device
        self.words = words  # (title, body) for a job other than a write

    def compose(self) -> ComposeResult:
        if self.words is not None:
            title, body = self.words
        elif self.phase == "verify":
            title, body = (
                "Stop verifying?",
                f"{self.device} has been written; stopping now leaves it unverified.",
            )
        else:
            title, body = (
                "Stop writing?",
                f"{self.device} will be left unusable: its first MiB is wiped so it does "
                "not look bootable. You can write it again later.",
            )
        with Vertical(id="dialog", classes="confirm"):
            yield Label(title, id="dialog-title", markup=False)
            yield Static(body, markup=False)
            with Horizontal(id="dialog-buttons"):
                yield Button("Keep going", id="keep", variant="primary")
                yield Button("Stop", id="stop", variant="error")
        yield Footer()  # the dialog's own keys, not the screen's below

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "stop")

    def action_keep(self) -> None:
        self.dismiss(False)

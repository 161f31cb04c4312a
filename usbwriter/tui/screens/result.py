"""The outcome: verified (safe to remove) or where the drive differs; hashes, times, speeds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from usbwriter.errors import outcome_exit_code
from usbwriter.receipt import Receipt
from usbwriter.tui.widgets.title_bar import TitleBar


def headline_words(r: Mapping[str, Any]) -> tuple[str, str]:
    """The verified result's headline and what it means for the drive."""
    dev = r["device"].get("path", "the drive")
    cov = r.get("coverage")
    safe = "It is safe to remove the drive."
    if cov is not None and not cov["written"] and cov.get("mode") == "delta":
        return (
            "✔ Verified: nothing needed writing",
            f"{dev} already held the image: every MiB compared equal. {safe}",
        )
    if cov is not None and cov.get("mode") == "bmap":
        return (
            "✔ Written and verified",
            f"{dev} holds what the image's bmap maps, read back and checked; the rest was "
            f"left as it was. {safe}",
        )
    return "✔ Written and verified", f"{dev} holds the image, byte for byte. {safe}"


class OutcomeScreen(Screen[None]):
    """What a job ended with; two buttons: do another (back to the main screen) and
    Quit, which exits with ``exit_code`` (as the command line would)."""

    AUTO_FOCUS = "#again"

    def __init__(self, exit_code: int) -> None:
        super().__init__(id="result-screen")
        self.exit_code = exit_code

    def buttons(self, again: str) -> ComposeResult:
        with Horizontal(id="result-buttons"):
            yield Button(again, id="again", variant="primary")
            yield Button("Quit", id="quit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "quit":
            self.action_quit()
        else:
            self.action_again()

    def action_quit(self) -> None:
        self.app.exit(return_code=self.exit_code)

    def action_again(self) -> None:
        self.app.pop_screen()


class ResultScreen(OutcomeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "again", "Write another", show=False),
        Binding("escape", "again", "Write another"),
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(self, receipt: Receipt) -> None:
        # 0 when verified, 3 when the drive differs: the core's policy, as the command line
        super().__init__(outcome_exit_code(receipt))
        self.outcome = receipt
        self.receipt = receipt.to_json()

    @property
    def verified(self) -> bool:
        return bool(self.receipt.get("verified"))

    def compose(self) -> ComposeResult:
        r = self.receipt
        dev = r["device"].get("path", "the drive")
        yield TitleBar()
        with Vertical(id="result-body", classes="ok" if self.verified else "failed"):
            if self.verified:
                headline, meaning = headline_words(r)
                yield Static(
                    Content.assemble((headline, "bold $text-success")),
                    id="result-headline",
                    markup=False,
                )
                yield Static(meaning, id="result-next", markup=False)
            else:
                yield Static(
                    Content.assemble(("✘ Verification FAILED", "bold $text-error")),
                    id="result-headline",
                    markup=False,
                )
                wiped = r.get("wiped_first_mib")
                what = (
                    "Its first MiB was wiped so it does not look bootable."
                    if wiped
                    else "Its first MiB could not be wiped: do not boot from it."
                )
                yield Static(
                    f"{dev} does not hold the image: the first difference is at byte "
                    f"{r.get('mismatch_offset')}. {what} The drive may be failing or "
                    "fake-capacity: try another one.",
                    id="result-next",
                    markup=False,
                )
            rows = self.outcome.rows()  # the command line's rows too
            width = max(len(label) for label, _ in rows)
            parts: list[str | Content | tuple[str, str]] = []
            for label, text in rows:
                parts += [(f"{label:<{width}}  ", "bold"), text, "\n"]
            yield Static(Content.assemble(*parts).rstrip(), id="result-table", markup=False)
            yield from self.buttons("Write another")
        yield Footer()

"""The boot report of the chosen image: what is in it, and how it will boot."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.content import Content
from textual.widgets import Static

from usbwriter.tui.format import boot_details, verdict_of, verdict_words
from usbwriter.tui.rules import browsable

_STYLE = {
    "yes": "$text-success",
    "no": "$text-error",
    "firmware-dependent": "$text-warning",
    "unknown": "$text-warning",  # a compressed image whose deciding part was not read
}


def verdict_content(report: Mapping[str, Any], *, reasons: bool = True) -> Content:
    """'BIOS (legacy) PCs: will boot' and 'UEFI PCs: ...' lines, with the reasons."""
    bios, uefi, why = verdict_of(report)
    parts: list[str | Content | tuple[str, str]] = []
    for label, value in (("BIOS (legacy) PCs", bios), ("UEFI PCs", uefi)):
        parts += [
            (f"{label}: ", "bold"),
            (verdict_words(value), f"bold {_STYLE.get(value, '')}".strip()),
            "\n",
        ]
    if reasons:
        for reason in why:
            parts.append(f"• {reason}\n")
    return Content.assemble(*parts).rstrip()


def details_table(report: Mapping[str, Any]) -> Table:
    """Label and text in two columns; long texts wrap under their own column."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(ratio=1)
    for label, text in boot_details(report):
        table.add_row(label, Text(text))
    return table


class BootPanel(VerticalScroll):
    """Two columns: the image's structure, and the verdict per firmware. Where the screen
    is short (``compact``), one column with the verdict first; what does not fit scrolls,
    with a scroll bar that says so."""

    def __init__(self) -> None:
        super().__init__(id="boot-panel")
        self.border_title = "Boot report"
        self.report: Mapping[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="boot-columns"):
            yield Static(
                "Choose an image to see how it will boot.",
                id="boot-details",
                classes="boot-part",
                markup=False,
            )
            yield Static("", id="boot-verdict", classes="boot-part", markup=False)

    def set_compact(self, compact: bool) -> None:
        """One column, the verdict lines on top, or two side by side."""
        if compact == self.has_class("compact"):
            return
        self.set_class(compact, "compact")
        columns = self.query_one("#boot-columns")
        verdict, details = self.query_one("#boot-verdict"), self.query_one("#boot-details")
        if compact:
            columns.move_child(verdict, before=details)
        else:
            columns.move_child(verdict, after=details)
        self.scroll_home(animate=False)

    def show_loading(self, path: str) -> None:
        self.report = None
        self._set(Content.from_markup("Reading the boot records of $path …", path=path), "")

    def show_error(self, text: str) -> None:
        self.report = None
        self._set(Content.assemble(("Cannot report on this image: ", "bold $text-error"), text), "")

    def show_report(self, report: Mapping[str, Any]) -> None:
        self.report = report
        self._set(details_table(report), verdict_content(report))
        # For an ISO, a link on the frame (key b): the screen's action, no room taken.
        if browsable(report):
            self.border_subtitle = Content.from_markup(
                "[@click=screen.browse_contents]Browse contents (b)[/]"
            )

    def clear(self) -> None:
        self.report = None
        self._set("Choose an image to see how it will boot.", "")

    def _set(self, details: str | Content | Table, verdict: str | Content) -> None:
        self.border_subtitle = ""
        self.scroll_home(animate=False)
        self.query_one("#boot-details", Static).update(details)
        self.query_one("#boot-verdict", Static).update(verdict)

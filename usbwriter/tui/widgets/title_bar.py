"""The line at the top of each screen: the app's title and the screen's (or app's)
subtitle. It stands in for Textual's Header, whose title callbacks query a child that
may be gone when a screen is replaced within the same moment (a write that finishes
at once), which ended the app with an error."""

from __future__ import annotations

from typing import ClassVar

from textual.css.query import NoMatches
from textual.widgets import Static


class TitleBar(Static):
    DEFAULT_CSS: ClassVar[str] = """
    TitleBar {
        dock: top;
        width: 100%;
        height: 1;
        background: $panel;
        color: $foreground;
        content-align: center middle;
    }
    """

    def __init__(self) -> None:
        super().__init__("", markup=False)

    def on_mount(self) -> None:
        self.watch(self.app, "title", self._show)
        self.watch(self.app, "sub_title", self._show)
        self.watch(self.screen, "sub_title", self._show)

    def _show(self, _value: object = None) -> None:
        if not self.is_attached:
            return
        try:
            sub = self.screen.sub_title or self.app.sub_title
        except NoMatches:  # pragma: no cover - detached meanwhile
            return
        title = self.app.title
        self.update(f"{title} — {sub}" if sub else title)

"""One line for the slow steps before a write's confirmation.

Planning a write reads: a compressed image's first part for its boot report (seconds
for a .bz2), and the whole file for its checksum. While it works the line turns a
spinner with what is being done, then shows the step's figures as progress arrives
(``show``); once the plan is made it is cleared and hidden (``stop``), so that no figure
of a finished step stays behind the confirmation.

    line = CheckLine(id="checking")      # composed under the summary
    line.start()                          # when the plan's worker starts
    line.show(progress)                   # each JobProgress of phase inspect/checksum
    line.stop()                           # when the plan is made, refused or failed
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Static

from usbwriter.tui.format import check_words

if TYPE_CHECKING:
    from textual.timer import Timer

    from usbwriter.progress import Progress

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
WAITING = "Checking the image and the drive"


class CheckLine(Static):
    DEFAULT_CSS = """
    CheckLine {
        height: 1;
        color: $text-muted;
        display: none;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id, markup=False)
        self._frame = 0
        self._words = WAITING
        self._timer: Timer | None = None

    def start(self, words: str = WAITING) -> None:
        """Show that the plan is being made, with a turning spinner."""
        self._words = words
        self.display = True
        if self._timer is None:
            self._timer = self.set_interval(0.1, self._turn)
        self._draw()

    def show(self, p: Progress) -> None:
        """The step's words and figures, beside the spinner."""
        if self._timer is None:
            self.start()
        self._words = check_words(p)
        self._draw()

    def stop(self) -> None:
        """The plan is made (or refused, or failed): nothing more to show."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.display = False
        self.update("")

    def _turn(self) -> None:
        self._frame = (self._frame + 1) % len(SPINNER)
        self._draw()

    def _draw(self) -> None:
        self.update(f"{SPINNER[self._frame]} {self._words}")

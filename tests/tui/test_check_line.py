"""The line that shows the slow steps before a write's confirmation: which step, how
far, how long left; a spinner while no figure has come; nothing once the plan is made
(no stale "Checking the image's checksum: 68%" behind the confirmation)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from usbwriter.progress import Progress
from usbwriter.tui.format import check_words
from usbwriter.tui.widgets.check_line import CheckLine

MiB = 1 << 20


def test_check_words() -> None:
    inspect = Progress("inspect", 16 * MiB, 64 * MiB, 10e6, 1.6)
    assert check_words(inspect) == (
        "Reading the image's first 64.0 MiB for its boot report: 25%, 5.0 s left"
    )
    check = Progress("checksum", 68 * MiB, 100 * MiB, 100e6, 0.7)
    assert check_words(check) == "Checking the image's checksum: 68%, 0.3 s left"
    assert check_words(Progress("checksum", 100 * MiB, 100 * MiB, 100e6, 1.0)) == (
        "Checking the image's checksum: done"
    )


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield CheckLine(id="checking")


async def test_the_line_spins_shows_figures_and_goes() -> None:
    app = Host()
    async with app.run_test() as pilot:
        line = app.query_one(CheckLine)
        assert not line.display
        line.start()
        await pilot.pause()
        assert line.display
        first = str(line.render())
        assert "Checking the image and the drive" in first
        await pilot.pause(0.25)
        assert str(line.render()) != first  # the spinner turns: work is going on
        line.show(Progress("inspect", 16 * MiB, 64 * MiB, 10e6, 1.6))
        await pilot.pause()
        assert "boot report: 25%" in str(line.render())
        line.stop()
        await pilot.pause()
        assert not line.display and str(line.render()) == ""

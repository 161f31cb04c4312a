"""The extraction's result: its headline says how many entries were skipped and why
(never a green check when nothing was extracted), and files kept because they existed
can be overwritten from the result with one key."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from tests.tui.helpers import wait_for
from tests.tui.recorded import recorded_services
from usbwriter.iso.extract import EXISTS, Result
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.screens.extract import ExtractScreen, headline_words


def test_everything_skipped_is_not_a_success() -> None:
    text, style = headline_words(0, [("a", EXISTS), ("b", EXISTS)], [])
    assert "✔" not in text and "success" not in style, (text, style)
    assert text == "Nothing extracted: 2 entries skipped, 2 already there and kept", text


def test_some_skipped_says_how_many_and_why() -> None:
    skipped = [
        ("a", f"/out/a {EXISTS}"),
        ("dev/null", "a device node, FIFO or socket is not extracted"),
        ("l", "its target /etc/passwd is absolute (outside the output folder)"),
        ("m", f"/out/m {EXISTS}"),
    ]
    text, _ = headline_words(3, skipped, [])
    assert text == (
        "Extracted 3 files; 4 entries skipped: 2 already there and kept, "
        "1 device node, FIFO or socket, 1 link pointing outside the folder"
    ), text
    assert headline_words(1, [], [])[0] == "✔ Extracted 1 file"
    assert headline_words(1, [], [("x", "no space")])[0] == "✘ 1 entry could not be written"


async def test_overwrite_runs_the_extraction_again_replacing_what_was_kept() -> None:
    calls: list[bool] = []

    def extract(iso: Any, paths: list[str], output: str, **kw: Any) -> Result:
        calls.append(bool(kw.get("overwrite")))
        if kw.get("overwrite"):
            return Result(output, files=2, bytes=10)
        return Result(output, skipped=[("a", f"/srv/tools/a {EXISTS}"), ("b", EXISTS)])

    services = recorded_services(extract=extract)
    app = UsbWriterApp(services, show_all=True, live_updates=False, cursor_blink=False)
    iso = SimpleNamespace(path="/srv/tools.iso", close=lambda: None)
    async with app.run_test() as pilot:
        await app.push_screen(ExtractScreen(services, iso, [], "/srv/tools"))  # type: ignore[arg-type]
        screen = app.screen
        assert isinstance(screen, ExtractScreen)
        await wait_for(pilot, lambda: screen.finished is not None, "the first extraction")
        await pilot.pause()
        phase = str(screen.query_one("#phase").render())
        assert phase.startswith("Nothing extracted: 2 entries skipped"), phase
        button = screen.query_one("#extract-overwrite")
        assert button.display, "no Overwrite button"
        await pilot.press("o")
        await wait_for(pilot, lambda: calls == [False, True], "the extraction again")
        again = app.screen
        assert isinstance(again, ExtractScreen)
        await wait_for(pilot, lambda: again.finished is not None, "the second extraction")
        await pilot.pause()
        assert str(again.query_one("#phase").render()) == "✔ Extracted 2 files"
        assert not again.query_one("#extract-overwrite").display

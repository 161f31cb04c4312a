"""Test this drive in the app (p, or "Test this drive" in the command palette): the probe
runs on the progress screen and its verdict is shown; the write's refusals stand. Real
loop devices and the real core; Pilot presses the keys."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT_ONLY, random_file
from tests.tui.helpers import MiB, error_shown, wait_for
from tests.tui.test_app import highlight, make_app, table_of
from usbwriter.tui.screens.drive_jobs import ReceiptScreen
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.main import MainScreen
from usbwriter.tui.screens.probe import ProbeScreen

SIZE = (120, 40)

pytestmark = ROOT_ONLY


def _hash(dev: str) -> str:
    with open(dev, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


async def test_test_this_drive_shows_a_genuine_drive_and_keeps_its_bytes(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    dev = loop(0, backing=random_file(tmp_path / "old.img", 48 * MiB, seed=9))
    before = _hash(dev)
    app = make_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: dev in table_of(app).rows_by_key(), f"{dev} listed")
        await highlight(pilot, app, dev)
        await pilot.press("p")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ProbeScreen | ReceiptScreen), "the test"
        )
        await wait_for(pilot, lambda: isinstance(app.screen, ReceiptScreen), "the verdict", 60)
        await pilot.pause()
        headline = str(app.screen.query_one("#result-headline").render())
        text = str(app.screen.query_one("#result-table").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    assert headline == "✔ Genuine: 48.0 MiB usable"
    assert f"{dev}: genuine, 48.0 MiB usable" in text
    assert "every block overwritten was put back" in text
    assert _hash(dev) == before


async def test_a_read_only_drive_is_refused_as_a_write_refuses_it(
    loop: Callable[..., str],
) -> None:
    dev = loop(32 * MiB, read_only=True)
    app = make_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: dev in table_of(app).rows_by_key(), f"{dev} listed")
        await highlight(pilot, app, dev)
        await pilot.press("p")
        await wait_for(pilot, lambda: error_shown(app), "the refusal")
        screen = app.screen
        assert isinstance(screen, ErrorScreen)
        words = str(screen.query_one("#error-message").render())
    assert "read-only" in words


async def test_a_write_confirmation_shows_the_drive_s_test(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """Tested with p, then chosen for a write: the question shows what the test found."""
    from tests.tui.helpers import small_image
    from usbwriter.tui.screens.confirm import ConfirmWrite

    dev = loop(32 * MiB)
    app = make_app(small_image(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: dev in table_of(app).rows_by_key(), f"{dev} listed")
        await wait_for(pilot, lambda: app.main.image_size is not None, "the image")
        await highlight(pilot, app, dev)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ReceiptScreen), "the verdict", 60)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
        await highlight(pilot, app, dev)
        await pilot.press("enter", "w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the question", 60)
        await pilot.pause()
        said = str(app.screen.query_one("#confirm-probe").render())
    assert "Tested: " in said and "genuine, 32.0 MiB usable" in said, said

"""Several drives at once, and the delta re-flash: the app against real loop devices."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Checkbox

from tests.conftest import ROOT_ONLY, random_file
from tests.tui.helpers import MiB, read_device, small_image, wait_for
from tests.tui.test_app import highlight, listed_with_image, make_app, table_of
from usbwriter.jobs.suggest import delta_suggested, read_layout
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.screens.confirm import ConfirmWrite
from usbwriter.tui.screens.main import MainScreen
from usbwriter.tui.screens.result import ResultScreen
from usbwriter.tui.screens.several import (
    ConfirmSeveral,
    SeveralProgressScreen,
    SeveralResultScreen,
)
from usbwriter.tui.services import Services

pytestmark = ROOT_ONLY
SIZE = (120, 40)


async def mark(pilot: Pilot[Any], app: UsbWriterApp, *devs: str) -> None:
    for dev in devs:
        await highlight(pilot, app, dev)
        await pilot.press("space")
    await pilot.pause()


async def write_marked(pilot: Pilot[Any], app: UsbWriterApp) -> SeveralResultScreen:
    """w, check the confirmation (Cancel focused), confirm, wait for the result."""
    await pilot.press("w")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmSeveral), "the confirmation", 60)
    await pilot.pause()
    assert app.focused is not None and app.focused.id == "cancel"
    await pilot.click("#confirm")
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, SeveralProgressScreen | SeveralResultScreen),
        "the progress screen",
    )
    await wait_for(pilot, lambda: isinstance(app.screen, SeveralResultScreen), "the result", 60)
    await pilot.pause()
    result = app.screen
    assert isinstance(result, SeveralResultScreen)
    return result


async def test_three_drives_written_and_verified(loop: Callable[..., str], tmp_path: Path) -> None:
    """Space marks three drives (a read-only one refuses), w writes all, each verified."""
    image = random_file(tmp_path / "img.img", 3 * MiB + 4096)
    data = image.read_bytes()
    devs = [loop(16 * MiB) for _ in range(3)]
    read_only = loop(16 * MiB, read_only=True)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        table = table_of(app)
        await listed_with_image(pilot, app, read_only)
        await wait_for(pilot, lambda: set(devs) <= table.rows_by_key(), "the drives")
        await mark(pilot, app, read_only)
        assert not table.marked
        assert any("cannot be marked: read-only" in n.message for n in app._notifications)
        # Enter on one drive chooses it alone; marking starts from it.
        await highlight(pilot, app, devs[0])
        await pilot.press("enter")
        assert main.chosen is not None and main.chosen.path == devs[0]
        await mark(pilot, app, devs[1], devs[2])
        assert set(table.marked) == set(devs) and main.chosen is None
        assert [d.path for d in main.targets()] == sorted(devs, key=lambda p: int(p[9:]))
        summary = str(main.query_one("#summary").render())
        assert "3 drives" in summary and all(d in summary for d in devs)
        for dev in devs:
            assert str(table.get_row(dev)[0]).startswith("✔ ")
        # the confirmation lists every drive
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmSeveral), "confirmation", 60)
        await pilot.pause()
        shown = " ".join(str(s.render()) for s in app.screen.query(".confirm-drive-card"))
        assert all(dev in shown for dev in devs) and "16.0 MiB" in shown
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "back to main")
        assert set(table.marked) == set(devs)  # Cancel keeps the marks
        result = await write_marked(pilot, app)
        assert [r.exit_code for r in result.results] == [0, 0, 0]
        assert {r.path for r in result.results} == set(devs)
        assert all(r.receipt is not None and r.receipt.verified for r in result.results)
        text = str(result.query_one("#result-table").render())
        assert all(dev in text for dev in devs) and text.count("written and verified") == 4
        assert "All 3 drives written and verified" in str(
            result.query_one("#result-headline").render()
        )
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    for dev in devs:
        assert read_device(dev, len(data)) == data


async def test_a_failing_drive_among_others(
    loop: Callable[..., str], failing_loop: str, tmp_path: Path
) -> None:
    """The drive that fails is listed as failed with its error; the others are verified;
    Quit exits with the worst exit code."""
    image = random_file(tmp_path / "img.img", 12 * MiB)  # past the failing drive's 8 MiB
    data = image.read_bytes()
    good = [loop(32 * MiB) for _ in range(2)]
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        table = table_of(app)
        await listed_with_image(pilot, app, failing_loop)
        await wait_for(pilot, lambda: set(good) <= table.rows_by_key(), "the drives")
        await mark(pilot, app, good[0], failing_loop, good[1])
        result = await write_marked(pilot, app)
        by_path = {r.path: r for r in result.results}
        assert set(by_path) == {*good, failing_loop}
        for dev in good:
            assert by_path[dev].exit_code == 0
        failed = by_path[failing_loop]
        assert failed.error is not None and failed.exit_code == 1
        text = str(result.query_one("#result-table").render())
        assert f"failed: {failed.error.message}" in " ".join(text.split())
        assert "1 of 3 drives FAILED" in str(result.query_one("#result-headline").render())
        assert "Traceback" not in text
        # Said while the others were still being written, not only in the result.
        said = [n for n in app._notifications if n.title == "A drive failed; the others go on"]
        assert [n.message for n in said] == [failed.error.message]
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 1
    for dev in good:
        assert read_device(dev, len(data)) == data


async def write_one(pilot: Pilot[Any], app: UsbWriterApp, dev: str, *, tick: bool) -> ConfirmWrite:
    """Choose DEV, w; return the confirmation (ticking the delta option if TICK)."""
    await highlight(pilot, app, dev)
    await pilot.press("enter", "w")
    await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the confirmation", 60)
    await pilot.pause()
    confirm = app.screen
    assert isinstance(confirm, ConfirmWrite)
    if tick:
        await pilot.click("#delta")
        await pilot.pause()
    return confirm


async def finish(pilot: Pilot[Any], app: UsbWriterApp) -> ResultScreen:
    await pilot.click("#confirm")
    await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen), "the result", 60)
    await pilot.pause()
    result = app.screen
    assert isinstance(result, ResultScreen)
    return result


async def test_delta_rewrite_of_the_same_iso(loop: Callable[..., str], tmp_path: Path) -> None:
    """An ISO written once: written again, the option is pre-selected (the drive holds an
    ISO 9660 volume of the image's size), nothing is written and all is verified."""
    image = small_image(tmp_path)
    data = image.read_bytes()
    dev = loop(32 * MiB)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        first = await write_one(pilot, app, dev, tick=False)
        assert first.query_one("#delta", Checkbox).value is False  # an empty drive
        result = await finish(pilot, app)
        assert result.receipt["verified"] is True and "coverage" not in result.receipt
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
        disk = table_of(app).disks[dev]
        layout = read_layout(disk)
        assert layout.whole is not None and layout.whole.fstype == "iso9660"
        assert delta_suggested(layout, len(data))
        second = await write_one(pilot, app, dev, tick=False)
        assert second.query_one("#delta", Checkbox).value is True  # pre-selected
        result = await finish(pilot, app)
        r = result.receipt
        assert r["verified"] is True
        cov = r["coverage"]
        assert cov["mode"] == "delta" and cov["written"] <= MiB
        assert cov["unchanged"] >= len(data) - MiB
        text = " ".join(str(result.query_one("#result-table").render()).split())
        assert "all equal, so nothing was written" in text, text
    assert read_device(dev, len(data)) == data


async def test_delta_chosen_in_the_confirmation(loop: Callable[..., str], tmp_path: Path) -> None:
    """A raw image (no ISO, no partitions) is not pre-selected; ticking the option plans
    the write again as a delta write; one changed MiB is written back, and verified."""
    image = random_file(tmp_path / "img.img", 6 * MiB)
    data = image.read_bytes()
    dev = loop(16 * MiB)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        await write_one(pilot, app, dev, tick=False)
        await finish(pilot, app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
        with open(dev, "r+b") as f:  # one MiB block of the drive changed since
            f.seek(3 * MiB + 100)
            f.write(b"changed")
        confirm = await write_one(pilot, app, dev, tick=True)
        assert confirm.delta is True and confirm.suggested is False
        result = await finish(pilot, app)
        r = result.receipt
        assert r["verified"] is True
        assert r["coverage"]["mode"] == "delta"
        assert MiB <= r["coverage"]["written"] <= 2 * MiB  # the changed block (and the head)
        assert r["coverage"]["unchanged"] == len(data) - MiB
    assert read_device(dev, len(data)) == data


def test_services_default_to_the_core() -> None:
    """A bundle built with only the original fields gets the real several-drive calls."""
    real = Services.real()
    services = Services(
        list_disks=lambda include_all, image: [],
        watch_disks=None,
        inspect_image=lambda path: {},
        plan=real.plan,
        run=real.run,
        is_root=lambda: True,
    )
    assert services.plan_many is real.plan_many and services.run_many is real.run_many
    assert services.with_delta is real.with_delta

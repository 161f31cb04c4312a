"""The main screen's layout and words at the sizes people run it: drives and the footer's
Help and Quit always visible, an empty drive list explained, state in text, and no key
that means two things on screens that follow each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Checkbox, Input, RadioButton
from textual.widgets._footer import FooterKey

from tests.tui.helpers import wait_for
from tests.tui.recorded import DISKS, REPORTS
from tests.tui.test_markup import Feed, make_app
from usbwriter.devices import DiskEvent
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.screens.ask import AskBackupFile, RestoreOptions
from usbwriter.tui.screens.confirm import ConfirmWrite
from usbwriter.tui.screens.result import ResultScreen
from usbwriter.tui.screens.several import SeveralJob, SeveralResultScreen
from usbwriter.tui.widgets.boot_panel import BootPanel
from usbwriter.tui.widgets.drive_table import DriveTable

SIZES = [(80, 24), (100, 30), (160, 50)]
EMPTY = "No USB stick or SD card found. Plug one in, or press a to show every disk"


def image_file(tmp_path: Path) -> str:
    path = tmp_path / "grub-hybrid.iso"
    with open(path, "wb") as f:
        f.truncate(int(REPORTS["grub-hybrid"]["size"]))
    return str(path)


async def type_image(pilot: Pilot[Any], app: UsbWriterApp, path: str) -> None:
    """Type the image's path in the Image field and press Enter, as a person would."""
    await wait_for(pilot, lambda: bool(app.main.query_one(DriveTable).disks), "the drives")
    app.main.query_one("#image-path", Input).focus()
    await pilot.press(*path, "enter")
    await wait_for(pilot, lambda: app.main.image_size is not None, "the image")
    await pilot.pause()


def footer_keys(app: UsbWriterApp) -> dict[str, Any]:
    """The footer's keys by description, each with the region it is drawn in."""
    return {fk.description: fk.region for fk in app.screen.query(FooterKey)}


def summary_text(app: UsbWriterApp) -> str:
    return str(app.main.query_one("#summary").render())


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_drives_and_footer_fit(size: tuple[int, int], tmp_path: Path) -> None:
    """With an image loaded: three drive rows visible below the header, and the footer's
    Help and Quit drawn whole, inside the screen, not under another key."""
    app = make_app(watch=None)
    app.show_all = False
    async with app.run_test(size=size) as pilot:
        await type_image(pilot, app, image_file(tmp_path))
        table = app.main.query_one(DriveTable)
        assert table.row_count == 3
        rows_visible = table.scrollable_content_region.height - table.header_height
        assert rows_visible >= 3, f"{rows_visible} drive rows visible at {size}"
        keys = footer_keys(app)
        width = size[0]
        for name in ("Help", "Quit"):
            assert name in keys, f"{name} not in the footer at {size}"
            region = keys[name]
            assert region.right <= width, f"{name} cut at the right edge at {size}"
            others = [r for n, r in keys.items() if n != name]
            assert not any(region.overlaps(r) for r in others), f"{name} drawn over at {size}"


@pytest.mark.parametrize("size", SIZES[:2], ids=[f"{w}x{h}" for w, h in SIZES[:2]])
async def test_boot_report_shows_verdict_and_scrolls(size: tuple[int, int], tmp_path: Path) -> None:
    """A report taller than its room shows the verdict lines first and a scroll bar."""
    app = make_app(watch=None)
    async with app.run_test(size=size) as pilot:
        await type_image(pilot, app, image_file(tmp_path))
        panel = app.main.query_one(BootPanel)
        verdict = app.main.query_one("#boot-verdict")
        region = panel.scrollable_content_region
        assert verdict.region.y == region.y, "the verdict is not the report's first line"
        assert verdict.region.height >= 2
        needed = max(w.virtual_region_with_margin.bottom for w in panel.query(".boot-part"))
        if needed > region.height:
            assert panel.show_vertical_scrollbar, f"report cut without a scroll bar at {size}"
        panel.scroll_end(animate=False)
        await pilot.pause()
        assert panel.scroll_y == panel.max_scroll_y


async def test_empty_drive_list_says_so_and_follows_hot_plug(tmp_path: Path) -> None:
    """No stick: the status says so and how to see every disk; a stick plugged in is
    listed and the status moves on."""
    feed = Feed()
    present = [DISKS[3]]  # the system disk alone: what the listing finds, now and later
    app = make_app(watch=feed, list_disks=lambda include_all, image: list(present))
    app.show_all = False
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: bool(app.main.query_one(DriveTable).disks), "the list")
        await wait_for(
            pilot,
            lambda: any(w.group == "watch" and w.is_running for w in app.workers),
            "the watcher",
        )
        await type_image(pilot, app, image_file(tmp_path))
        assert EMPTY in summary_text(app)
        stick = DISKS[0]
        present.append(stick)
        feed.events.put(DiskEvent("add", stick, stick.path))
        table = app.main.query_one(DriveTable)
        await wait_for(pilot, lambda: stick.path in table.rows_by_key(), "the stick's row")
        await pilot.pause()
        assert EMPTY not in summary_text(app)
        assert "highlight it and press Enter" in summary_text(app)
        present.remove(stick)
        feed.events.put(DiskEvent("remove", None, stick.path))
        await wait_for(pilot, lambda: stick.path not in table.rows_by_key(), "the row to go")
        await pilot.pause()
        assert EMPTY in summary_text(app)


async def test_all_disks_key_in_footer_while_typing_an_image() -> None:
    """The image field has focus at start: the footer still names a key for every disk,
    and that key works from the field without typing into it."""
    app = make_app(watch=None)
    app.show_all = False
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: bool(app.main.query_one(DriveTable).disks), "the drives")
        field = app.main.query_one("#image-path", Input)
        assert app.focused is field
        await pilot.pause(0.2)
        bindings = {b.description: b for _, b, _, _ in app.screen.active_bindings.values()}
        assert "All disks" in bindings and bindings["All disks"].show
        assert "All disks" in footer_keys(app)
        await pilot.press(bindings["All disks"].key)
        await pilot.pause()
        assert app.main.show_all and field.value == ""


def _button_text(widget: Checkbox | RadioButton) -> str:
    return str(widget.render())[:3]


async def test_check_boxes_and_radio_buttons_show_state_in_text() -> None:
    """[x] and [ ] on every check box and radio button the app shows."""
    app = make_app(watch=None)
    disk = DISKS[0]
    report = REPORTS["grub-hybrid"]
    screens: list[Screen[Any]] = [
        ConfirmWrite(disk, "/tmp/x.iso", int(report["size"]), report),
        AskBackupFile(disk, "/tmp/backup.img"),
        RestoreOptions(disk),
    ]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: bool(app.main.query_one(DriveTable).disks), "the drives")
        for screen in screens:
            await app.push_screen(screen)
            await pilot.pause()
            toggles = list(screen.query(Checkbox)) + list(screen.query(RadioButton))
            assert toggles, f"no check box in {type(screen).__name__}"
            for toggle in toggles:
                expected = "[x]" if toggle.value else "[ ]"
                assert _button_text(toggle) == expected, f"{toggle!r}: {toggle.render()!r}"
                toggle.toggle()
                await pilot.pause()
                expected = "[x]" if toggle.value else "[ ]"
                assert _button_text(toggle) == expected, f"{toggle!r}: {toggle.render()!r}"
            app.pop_screen()
            await pilot.pause()


async def test_dialogs_show_their_own_keys() -> None:
    """A dialog's footer names its keys (Esc cancels or closes), not the main screen's
    (w Write under an "Erase this drive?" question would mean two things at once)."""
    from usbwriter.tui.screens.confirm import ConfirmStop
    from usbwriter.tui.screens.error import ErrorScreen
    from usbwriter.tui.screens.help import HelpScreen

    app = make_app(watch=None)
    disk = DISKS[0]
    report = REPORTS["grub-hybrid"]
    screens: list[tuple[Screen[Any], str]] = [
        (ConfirmWrite(disk, "/tmp/x.iso", int(report["size"]), report), "Cancel"),
        (ConfirmStop("write", disk.path), "Keep going"),
        (ErrorScreen("Cannot write", "why"), "Close"),
        (HelpScreen(), "Close"),
        (AskBackupFile(disk, "/tmp/backup.img"), "Cancel"),
        (RestoreOptions(disk), "Cancel"),
    ]
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: bool(app.main.query_one(DriveTable).disks), "the drives")
        for screen, key in screens:
            await app.push_screen(screen)
            await pilot.pause()
            keys = footer_keys(app)
            assert key in keys, f"{type(screen).__name__}: {sorted(keys)}"
            assert "Write" not in keys and "Open image" not in keys, sorted(keys)
            app.pop_screen()
            await pilot.pause()


def _one_result() -> ResultScreen:
    from tests.tui.test_snapshots import _receipt

    return ResultScreen(_receipt(True))


def _several_results() -> SeveralResultScreen:
    from usbwriter.errors import DeviceFault
    from usbwriter.jobs.several import DriveResult

    job = SeveralJob("/tmp/x.iso", int(REPORTS["grub-hybrid"]["size"]), (DISKS[0],), ())
    return SeveralResultScreen(job, [DriveResult(DISKS[0].path, None, DeviceFault("gone"))])


@pytest.mark.parametrize("make_result", [_one_result, _several_results], ids=["one", "several"])
async def test_write_another_then_n_does_not_restore(
    make_result: Callable[[], Screen[Any]],
) -> None:
    """Pressing n twice on a result screen does not open Restore on the main screen."""
    app = make_app(watch=None)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: bool(app.main.query_one(DriveTable).disks), "the drives")
        app.main.query_one(DriveTable).focus()
        await app.push_screen(make_result())
        await pilot.pause()
        await pilot.press("n", "n")
        await pilot.pause(0.3)
        assert not isinstance(app.screen, RestoreOptions), "n n opened Restore"
        await pilot.press("escape")  # Write another: back to the main screen
        await pilot.pause()
        assert app.screen is app.main

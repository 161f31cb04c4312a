"""The drive table by mouse, on recorded disks (no root, no devices): one click on a row
chooses it, once; a click on a drive that cannot be chosen says why, once."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from tests.tui.helpers import wait_for
from tests.tui.recorded import recorded_services
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.widgets.drive_table import DriveTable

SIZE = (120, 40)


def make_app() -> UsbWriterApp:
    services = recorded_services()
    return UsbWriterApp(services, show_all=True, live_updates=False, cursor_blink=False)


async def click_row(pilot: Pilot[Any], table: DriveTable, path: str) -> None:
    y = 2 + table.get_row_index(path)  # the border and the header above the rows
    await pilot.click(DriveTable, offset=(6, y))
    await pilot.pause()


async def test_one_click_chooses_a_drive_once() -> None:
    app = make_app()
    chosen: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        table = main.query_one(DriveTable)
        await wait_for(pilot, lambda: "/dev/sdb" in table.rows_by_key(), "the drives")
        await pilot.pause(0.2)
        original = main.choose

        def choose(path: str) -> bool:
            chosen.append(path)
            return original(path)

        notices: list[str] = []
        notify = app.notify

        def note(message: str, **kw: Any) -> None:
            notices.append(message)
            notify(message, **kw)

        main.choose = choose  # type: ignore[method-assign]
        app.notify = note  # type: ignore[method-assign]
        await click_row(pilot, table, "/dev/sdb")
        assert main.chosen is not None and main.chosen.path == "/dev/sdb"
        assert chosen == ["/dev/sdb"]
        # a second click on the same row chooses it again (DataTable selects), once
        await click_row(pilot, table, "/dev/sdb")
        assert chosen == ["/dev/sdb", "/dev/sdb"]
        # the read-only stick: refused once, with the reason
        await click_row(pilot, table, "/dev/sdc")
        assert chosen[2:] == ["/dev/sdc"]
        assert main.chosen is not None and main.chosen.path == "/dev/sdb"
        assert notices == ["/dev/sdc cannot be chosen: read-only"]
        # the header is not a row: nothing is chosen
        await pilot.click(DriveTable, offset=(6, 1))
        await pilot.pause()
        assert len(chosen) == 3

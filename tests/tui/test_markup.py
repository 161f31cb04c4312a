"""Names are shown as they are: a drive's model, serial or loop backing file, an image's
file name, an ISO entry's name, a folder, an error message never act as markup.

A loop device over a file named ``[reverse]X[@click=app.quit]CLICKME.img`` must not
show reversed in a notification, and clicking it must not quit the app; a name such
as ``stray[/b]close`` (a closing tag that nothing opened) must not end the app with a
markup error. Each test renders the screen as the terminal would get it and looks at
the segments: the name is there letter for letter, and no segment carries a link or a
click action other than the app's own.
"""

from __future__ import annotations

import ast
import dataclasses
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import DirectoryTree
from textual.widgets._toast import Toast

from tests.conftest import ROOT_ONLY, LoopFactory
from tests.tui.helpers import wait_for
from tests.tui.recorded import DISKS, recorded_services
from usbwriter.devices import Disk, DiskEvent
from usbwriter.errors import BadImage, DeviceFault
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.screens.ask import FolderPicker
from usbwriter.tui.screens.browse import FileBrowser
from usbwriter.tui.screens.confirm import ConfirmWrite
from usbwriter.tui.screens.contents import ContentsScreen, ContentsTree
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.extract import ExtractScreen
from usbwriter.tui.screens.several import SeveralJob, SeveralProgressScreen
from usbwriter.tui.services import Services
from usbwriter.tui.widgets.drive_table import DriveTable

SIZE = (200, 50)  # wide: every name fits on one line
ROOT = Path(__file__).resolve().parents[2]

#: A click on it would quit the app; reversed when parsed.
CLICK = "[reverse]X[@click=app.quit]CLICKME.img"
BOLD = "[b]bold[/b]"
LINK = "[link=https://x]y[/]"
#: Closing tags nothing opened: Textual and Rich raise MarkupError on them.
BROKEN = "stray[/b]close"
#: The same in a file name (no '/'): Textual's markup parser raises on it.
BROKEN_FILE = "[link=https:x]y.img"
HALF_OPEN = "half[open"

#: The click actions the app's own words carry (the boot panel's "Browse contents").
OWN_ACTIONS = {"screen.browse_contents"}


# ---- what the terminal gets


def assert_shown_plain(app: UsbWriterApp, *names: str) -> list[tuple[int, int]]:
    """Each of NAMES is on the screen letter for letter, in no style it spells (reverse,
    bold, a link, a click); no segment anywhere has a link or a foreign click action.
    Returns the cell (x, y) where each name starts."""
    strips = app.screen._compositor.render_strips()
    lines: list[str] = []
    for y, strip in enumerate(strips):
        for seg in strip:
            style = seg.style
            if style is None:
                continue
            assert not style.link, f"a link on line {y}: {seg.text!r} -> {style.link}"
            action = style.meta.get("@click")
            assert action is None or action in OWN_ACTIONS, (
                f"a click action on line {y}: {seg.text!r} -> {action!r}"
            )
        lines.append("".join(seg.text for seg in strip))
    where: list[tuple[int, int]] = []
    for name in names:
        hits = [(y, line.find(name)) for y, line in enumerate(lines) if name in line]
        assert hits, f"{name!r} is not on the screen:\n" + "\n".join(lines)
        for y, x in hits:
            # the segments over the name: none reversed, none bold as the name "asks"
            start = 0
            for seg in strips[y]:
                end = start + len(seg.text)
                if start < x + len(name) and end > x and seg.style is not None:
                    assert not seg.style.reverse, f"{name!r} is shown reversed"
                start = end
        y, x = hits[-1]  # the lowest: a notification rather than the drives' table
        where.append((cell_len(lines[y][:x]), y))
    return where


def toasts(app: UsbWriterApp) -> list[str]:
    """The text of each notification shown, before it is wrapped to the toast's width."""
    return [str(toast.render()) for toast in app.screen.query(Toast)]


def assert_notified(app: UsbWriterApp, *names: str) -> None:
    shown = toasts(app)
    for name in names:
        assert any(name in text for text in shown), f"{name!r} in no notification: {shown}"


async def click_each(pilot: Pilot[Any], app: UsbWriterApp, where: list[tuple[int, int]]) -> None:
    """Click the middle of each name shown: the app goes on."""
    for x, y in where:
        await pilot.click(offset=(x + 12, y))
        await pilot.pause()
        assert app.return_code is None, "a click on a name ended the app"


# ---- the app on recorded disks, with a watcher the test feeds


def _not_here(*args: object, **kw: object) -> Any:
    raise AssertionError("nothing is written in this test")


class Feed:
    """A drive watcher that yields what the test puts in (an exception is raised)."""

    def __init__(self) -> None:
        self.events: queue.Queue[DiskEvent | Exception] = queue.Queue()

    def __call__(self, cancel: threading.Event) -> Iterator[DiskEvent]:
        while not cancel.is_set():
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if isinstance(event, Exception):
                raise event
            yield event


def make_app(image: str | None = None, *, watch: Feed | None = None, **kw: Any) -> UsbWriterApp:
    calls: dict[str, Any] = {"watch_disks": watch, "plan": _not_here, "run": _not_here}
    return UsbWriterApp(
        recorded_services(**{**calls, **kw}),
        image=image,
        show_all=True,
        live_updates=watch is not None,
        cursor_blink=False,
    )


async def listed(pilot: Pilot[Any], app: UsbWriterApp) -> None:
    table = app.main.query_one(DriveTable)
    await wait_for(pilot, lambda: bool(table.disks), "the drives")
    if app.main.live_updates:
        await wait_for(
            pilot,
            lambda: any(w.group == "watch" and w.is_running for w in app.workers),
            "the watcher",
        )


def loop_disk(**changes: Any) -> Disk:
    """A loop device as listed (the recorded one), with CHANGES."""
    return dataclasses.replace(DISKS[4], path="/dev/loop9", name="loop9", **changes)


#: what the drive is, what the notifications say of it, and the names on the screen
DRIVES = {
    "backing file": ({"backing_file": f"/srv/{CLICK}"}, [f"loop: {CLICK}"], [CLICK]),
    "backing file that breaks markup": (
        {"backing_file": f"/srv/{BROKEN_FILE}"},
        [f"loop: {BROKEN_FILE}"],
        [BROKEN_FILE],
    ),
    "vendor, model and serial": (
        {"vendor": HALF_OPEN, "model": BOLD, "serial": LINK},
        [f"{HALF_OPEN} {BOLD}", f"serial {LINK}"],
        [BOLD, LINK],
    ),
    "model that breaks markup": ({"model": BROKEN}, [BROKEN], [BROKEN]),
}


@pytest.mark.parametrize("case", DRIVES, ids=list(DRIVES))
async def test_plugged_drive_named_as_it_is(case: str) -> None:
    """The "Drive added" and "Drive removed" notifications name the drive literally;
    clicking the name does nothing."""
    changes, notified, shown = DRIVES[case]
    disk = loop_disk(**changes)
    feed = Feed()
    app = make_app(watch=feed)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        table = app.main.query_one(DriveTable)
        feed.events.put(DiskEvent("add", disk, disk.path))
        await wait_for(pilot, lambda: disk.path in table.rows_by_key(), "the new row")
        await pilot.pause(0.2)
        assert_notified(app, *notified)
        where = assert_shown_plain(app, *shown)
        await click_each(pilot, app, where)
        app.clear_notifications()
        feed.events.put(DiskEvent("remove", None, disk.path))
        await wait_for(pilot, lambda: disk.path not in table.rows_by_key(), "the row to go")
        await pilot.pause(0.2)
        assert_notified(app, *notified)
        where = assert_shown_plain(app, *shown)
        await click_each(pilot, app, where)
    assert app.return_code is None


@pytest.mark.parametrize("name", [CLICK, BROKEN, LINK])
async def test_watcher_error_shown_as_it_is(name: str) -> None:
    feed = Feed()
    app = make_app(watch=feed)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        feed.events.put(DeviceFault(f"/run/{name}: the watcher broke"))
        await wait_for(pilot, lambda: bool(app._notifications), "the notification")
        await pilot.pause(0.2)
        assert_notified(app, f"live drive updates stopped: /run/{name}: the watcher broke")
        where = assert_shown_plain(app, name)
        await click_each(pilot, app, where)


async def test_image_error_named_as_it_is(tmp_path: Path) -> None:
    """An image that cannot be read: w says why in a notification, its name literal."""
    image = tmp_path / CLICK  # never created: "no such file"
    app = make_app(str(image))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        await wait_for(pilot, lambda: app.main.image_error is not None, "the image error")
        app.main.query_one(DriveTable).focus()
        await pilot.press("w")
        await wait_for(pilot, lambda: bool(app._notifications), "the notification")
        await pilot.pause(0.2)
        assert_notified(app, f"{image}: no such file")
        where = assert_shown_plain(app, CLICK)
        await click_each(pilot, app, where)


async def test_drive_that_cannot_be_chosen_says_why_as_it_is() -> None:
    """The reason a drive is refused (a mount point, a holder) is named literally."""
    disk = loop_disk(eligible=False, reasons=(f"in use by {BOLD} and {BROKEN}",))
    app = make_app(list_disks=lambda include_all, image: [*DISKS, disk])
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        app.main.choose(disk.path)
        await wait_for(pilot, lambda: bool(app._notifications), "the notification")
        await pilot.pause(0.2)
        assert_notified(app, f"{disk.path} cannot be chosen: in use by {BOLD} and {BROKEN}")
        assert_shown_plain(app, BOLD, BROKEN)


def fake_iso(path: str) -> Any:
    return SimpleNamespace(path=path, close=lambda: None)


@pytest.mark.parametrize("fails", [False, True], ids=["extracted", "failed"])
async def test_extract_folder_named_as_it_is(fails: bool) -> None:
    """The extraction screen's "Into FOLDER" line, the entries skipped and the error."""
    output = f"/srv/{BOLD}/{CLICK}"
    entry = f"/docs/{CLICK}"

    def extract(iso: Any, paths: list[str], out: str, **kw: Any) -> Any:
        if fails:
            raise BadImage(f"{out}: cannot read {LINK} in the image")
        skipped = [(entry, f"{BROKEN}: exists; kept")]  # as iso.extract.Result has it
        return SimpleNamespace(output=out, files=1, dirs=0, symlinks=0, bytes=5,
                               skipped=skipped, failed=[])  # fmt: skip

    app = make_app(extract=extract)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        screen = ExtractScreen(app.services, fake_iso(f"/srv/{CLICK}.iso"), [], output)
        await app.push_screen(screen)
        await wait_for(pilot, lambda: screen.finished is not None, "the extraction's end")
        await pilot.pause(0.2)
        names = [f"Into {output}", f"into {output}"]
        names += [f"{output}: cannot read {LINK}"] if fails else [entry, BROKEN]
        where = assert_shown_plain(app, *names)
        await click_each(pilot, app, where)


async def test_several_drives_rows_named_as_they_are() -> None:
    """The rows of a write to several drives name each drive's model literally."""
    disks = (
        dataclasses.replace(DISKS[0], model=CLICK),
        dataclasses.replace(DISKS[1], model=BROKEN),
        loop_disk(backing_file=f"/srv/{BROKEN_FILE}", vendor="", model=""),
    )
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        job = SeveralJob(f"/srv/{LINK}.iso", 1 << 20, disks, ())
        await app.push_screen(SeveralProgressScreen(app.services, job, start=False))
        await pilot.pause(0.2)
        where = assert_shown_plain(app, CLICK, BROKEN, f"loop: {BROKEN_FILE}", f"/srv/{LINK}.iso")
        await click_each(pilot, app, where)


async def test_confirmation_and_error_named_as_they_are() -> None:
    """The confirmation (drive card and image) and an error dialog: literal."""
    disk = dataclasses.replace(DISKS[0], model=CLICK, serial=BROKEN)
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        await app.push_screen(ConfirmWrite(disk, f"/srv/{BOLD}.iso", 1 << 20, None))
        await pilot.pause(0.2)
        where = assert_shown_plain(app, CLICK, f"serial {BROKEN}", f"/srv/{BOLD}.iso")
        await click_each(pilot, app, where[:1])
        app.pop_screen()
        await app.push_screen(ErrorScreen(f"Cannot write {HALF_OPEN}", f"{LINK}: {BROKEN}"))
        await pilot.pause(0.2)
        assert_shown_plain(app, f"Cannot write {HALF_OPEN}", f"{LINK}: {BROKEN}")


@ROOT_ONLY
async def test_real_loop_device_over_a_markup_name(loop: LoopFactory, tmp_path: Path) -> None:
    """A loop device attached while the app runs, over a file named like markup: the
    real watcher, the real listing; the notifications name the file literally and a
    click on the name does not quit."""
    backing = tmp_path / CLICK
    with open(backing, "wb") as f:
        f.truncate(24 << 20)
    real = Services.real()
    app = make_app(watch=Feed(), watch_disks=real.watch_disks, list_disks=real.list_disks)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        await pilot.pause(0.5)  # the monitor socket opens on the worker's first step
        table = app.main.query_one(DriveTable)
        dev = loop(24 << 20, backing=backing)
        await wait_for(pilot, lambda: dev in table.rows_by_key(), f"{dev} to appear")
        await wait_for(pilot, lambda: bool(toasts(app)), "the notification")
        await pilot.pause(0.2)
        assert_notified(app, f"loop: {CLICK}, 24.0 MiB, {dev}")
        await click_each(pilot, app, assert_shown_plain(app, CLICK))
        app.clear_notifications()
        loop.detach(dev)
        await wait_for(pilot, lambda: dev not in table.rows_by_key(), f"{dev} to go")
        await wait_for(pilot, lambda: bool(toasts(app)), "the notification")
        await pilot.pause(0.2)
        assert_notified(app, f"loop: {CLICK}, 24.0 MiB, {dev}")
        await click_each(pilot, app, assert_shown_plain(app, CLICK))
    assert app.return_code is None


async def test_file_and_folder_browsers_name_files_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "[b]bold["
    folder.mkdir()
    (folder / CLICK).write_bytes(b"")
    (folder / BROKEN_FILE).write_bytes(b"")
    app = make_app()
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        for browser in (FileBrowser(folder), FolderPicker(tmp_path)):
            await app.push_screen(browser)
            tree = browser.query_one(DirectoryTree)
            await wait_for(pilot, lambda: bool(tree.root.children), "the folder")  # noqa: B023
            await pilot.pause(0.2)
            # (a click on a file here chooses it, as it should: no click)
            names = [CLICK, BROKEN_FILE] if isinstance(browser, FileBrowser) else []
            assert_shown_plain(app, folder.name, *names)
            app.pop_screen()


# ---- an ISO whose names are markup, browsed and extracted (xorriso builds it)


def build_iso(folder: Path) -> Path:
    tree = folder / "tree"
    (tree / "docs").mkdir(parents=True)
    (tree / "docs" / CLICK).write_text("click\n")
    (tree / BROKEN_FILE).write_text("broken\n")
    (tree / HALF_OPEN).write_text("half\n")
    iso = folder / f"{CLICK}.iso"
    subprocess.run(
        ["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "NAMES", "-o", str(iso), str(tree)],
        check=True,
        capture_output=True,
    )
    return iso


@pytest.mark.skipif(shutil.which("xorriso") is None, reason="needs xorriso")
async def test_iso_names_browsed_and_extracted_as_they_are(tmp_path: Path) -> None:
    iso = build_iso(tmp_path)
    output = tmp_path / "[b]bold[" / "b]"  # the folder's path reads [b]bold[/b]
    output.parent.mkdir()
    app = make_app(str(iso), inspect_image=Services.real().inspect_image)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await listed(pilot, app)
        await wait_for(pilot, lambda: app.main.report is not None, "the boot report")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ContentsScreen), "the contents")
        tree = app.screen.query_one(ContentsTree)
        await wait_for(pilot, lambda: bool(tree.root.children), "the file list")
        docs = next(n for n in tree.root.children if n.data and n.data.name == "docs")
        docs.expand()
        await pilot.pause(0.2)
        where = assert_shown_plain(app, CLICK, BROKEN_FILE, HALF_OPEN, f"{iso}: 3 files")
        await click_each(pilot, app, where)
        field = app.screen.query_one("#extract-to")
        field.value = str(output)  # type: ignore[attr-defined]
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ExtractScreen), "the extraction")
        extract = app.screen
        assert isinstance(extract, ExtractScreen)
        await wait_for(pilot, lambda: extract.finished is not None, "the extraction's end")
        await pilot.pause(0.2)
        assert (output / "docs" / CLICK).read_text() == "click\n"
        where = assert_shown_plain(app, f"Into {output}", f"from {iso}")
        await click_each(pilot, app, where)
    assert app.return_code is None


# ---- every notification, Static and Label of the app says markup=False


def _calls(name: str) -> Iterator[tuple[Path, ast.Call]]:
    for path in sorted((ROOT / "usbwriter" / "tui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == name:
                yield path, node


def _markup_off(call: ast.Call) -> bool:
    return any(
        k.arg == "markup" and isinstance(k.value, ast.Constant) and k.value.value is False
        for k in call.keywords
    )


@pytest.mark.parametrize("name", ["notify", "Static", "Label"])
def test_every_text_widget_and_notification_is_plain(name: str) -> None:
    """A string given to them later (``update``, a message) is never parsed as markup."""
    parsed = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, call in _calls(name)
        if not _markup_off(call)
    ]
    assert not parsed, f"{name}(...) without markup=False: {parsed}"

"""The app, driven with Pilot against real loop devices and the real core."""

from __future__ import annotations

import dataclasses
import lzma
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Button, DirectoryTree, Input

from tests.conftest import ROOT_ONLY, random_file, run
from tests.helpers.throttle import CGROUP_ROOT
from tests.tui.helpers import MiB, error_shown, read_device, small_image, throttled, wait_for
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.messages import JobProgress
from usbwriter.tui.screens.browse import FileBrowser
from usbwriter.tui.screens.confirm import ConfirmStop, ConfirmWrite
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.help import HelpScreen
from usbwriter.tui.screens.main import MainScreen
from usbwriter.tui.screens.progress import ProgressScreen
from usbwriter.tui.screens.result import ResultScreen
from usbwriter.tui.services import Services
from usbwriter.tui.widgets.drive_table import DriveTable

pytestmark = ROOT_ONLY
SIZE = (120, 40)


def make_app(image: Path | None, **kw: object) -> UsbWriterApp:
    services = kw.pop("services", None) or Services.real()
    kw.setdefault("show_all", True)
    kw.setdefault("live_updates", False)
    return UsbWriterApp(services, image=str(image) if image else None, cursor_blink=False, **kw)  # type: ignore[arg-type]


def table_of(app: UsbWriterApp) -> DriveTable:
    return app.main.query_one(DriveTable)


async def listed_with_image(pilot: Pilot[Any], app: UsbWriterApp, dev: str) -> None:
    """Wait until DEV is in the drive table and the image has been read."""
    await wait_for(pilot, lambda: dev in table_of(app).rows_by_key(), "the listing")
    await wait_for(pilot, lambda: app.main.image_size is not None, "the image")


async def highlight(pilot: Pilot[Any], app: UsbWriterApp, dev: str) -> None:
    """Move the table's cursor to DEV with the arrow keys, as a user would."""
    table = table_of(app)
    table.focus()
    await pilot.press("ctrl+home")
    for _ in range(table.row_count):
        current = table.highlighted()
        if current is not None and current.path == dev:
            return
        await pilot.press("down")
    current = table.highlighted()
    assert current is not None and current.path == dev, f"{dev} not reached with the keys"


async def test_write_and_verify_flow(loop: Callable[..., str], tmp_path: Path) -> None:
    """Choose image, choose drive, confirm, write, verify, result."""
    image = small_image(tmp_path)
    data = image.read_bytes()
    dev = loop(32 * MiB)
    app = make_app(None)
    messages: list[Message] = []
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        main = app.main
        # 1. the image, typed into the path input
        await pilot.click("#image-path")
        await pilot.press(*str(image), "enter")
        await wait_for(pilot, lambda: main.image_size == len(data), "the image to be read")
        await wait_for(pilot, lambda: dev in table_of(app).disks, f"{dev} in the table")
        # 2. the drive
        await highlight(pilot, app, dev)
        await pilot.press("enter")
        assert main.chosen is not None and main.chosen.path == dev
        assert not app.main.query_one("#write", Button).disabled
        # 3. write: the confirmation names the drive and has Cancel focused
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the confirmation")
        await pilot.pause()
        assert app.focused is not None and app.focused.id == "cancel"
        text = str(app.screen.query_one("#confirm-drive").render())
        assert dev in text and "32.0 MiB" in text
        await pilot.press("tab", "enter")  # to "Erase and write"
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ProgressScreen | ResultScreen),
            "the progress screen",
        )
        await app.workers.wait_for_complete([w for w in app.workers if w.group == "job"])
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen), "the result")
        phases = {m.progress.phase for m in messages if isinstance(m, JobProgress)}
        assert {"write", "verify"} <= phases
        await pilot.pause()
        result = app.screen
        assert isinstance(result, ResultScreen)
        r = result.receipt
        assert r["verified"] is True
        assert r["page_cache_bypassed"] is True
        assert r["image"]["blake3"] == blake3.blake3(data).hexdigest()
        assert r["device_blake3"] == r["image"]["blake3"]
        assert r["device"]["path"] == dev
        shown = str(result.query_one("#result-next").render())
        assert "safe to remove" in shown
        # back to the main screen for another write
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    assert read_device(dev, len(data)) == data


@pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller")
async def test_cancel_mid_write(loop: Callable[..., str], tmp_path: Path) -> None:
    """Esc asks once more; Stop sets the event and the write ends within seconds."""
    image = random_file(tmp_path / "big.img", 2 * MiB)
    with open(image, "r+b") as f:
        f.truncate(160 * MiB)  # sparse tail: cheap to read, slow to write when throttled
    dev = loop(192 * MiB)
    app = make_app(image)
    with throttled(dev, 16_000_000, 400_000_000):
        async with app.run_test(size=SIZE) as pilot:
            main = app.main
            await wait_for(pilot, lambda: main.image_size is not None, "the image")
            await wait_for(pilot, lambda: dev in table_of(app).disks, f"{dev} listed")
            await highlight(pilot, app, dev)
            await pilot.press("enter", "w")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "confirm")
            await pilot.click("#confirm")
            await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen), "progress")
            progress = app.screen
            assert isinstance(progress, ProgressScreen)
            await wait_for(pilot, lambda: len(progress.speeds) >= 2, "write under way")
            # Esc asks first; "Keep going" is focused and keeps writing.
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStop), "stop question")
            await pilot.pause()
            assert app.focused is not None and app.focused.id == "keep"
            await pilot.press("enter")
            await pilot.pause()
            assert not progress.cancel_event.is_set()
            # ctrl+c and ctrl+q (quit) ask too; Esc on the question keeps going.
            for key in ("ctrl+c", "ctrl+q"):
                await pilot.press(key)
                await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStop), key)
                await pilot.press("escape")
                await wait_for(pilot, lambda: app.screen is progress, "back to progress")
            assert not progress.cancel_event.is_set()
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStop), "stop question")
            asked = time.monotonic()
            await pilot.click("#stop")
            await wait_for(pilot, lambda: error_shown(app), "stopped", 20)
            stopped = time.monotonic() - asked
            message = str(app.screen.query_one("#error-message").render())
            assert "interrupted" in message and "wiped" in message
            assert "Traceback" not in message
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, MainScreen)
    print(f"stopped {stopped:.2f} s after Stop")
    assert stopped < 5.0
    assert read_device(dev, MiB) == bytes(MiB)  # no partition table left behind


async def test_hotplug_adds_and_removes_a_row(loop: Callable[..., str], tmp_path: Path) -> None:
    """The watcher runs on real kernel events: attach and detach a loop device."""
    backing = tmp_path / "plug.img"
    with open(backing, "wb") as f:
        f.truncate(24 * MiB)
    app = make_app(None, live_updates=True)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        table = table_of(app)
        await wait_for(pilot, lambda: bool(table.disks), "the first listing")
        await wait_for(
            pilot,
            lambda: any(w.group == "watch" and w.is_running for w in app.workers),
            "the watcher",
        )
        await pilot.pause(0.5)  # the monitor socket opens on the worker's first step
        dev = loop(24 * MiB, backing=backing)
        took = await wait_for(pilot, lambda: dev in table.rows_by_key(), f"{dev} to appear")
        print(f"row for {dev} appeared {took:.2f} s after attaching")
        await highlight(pilot, app, dev)
        await pilot.press("enter")
        assert main.chosen is not None and main.chosen.path == dev
        loop.detach(dev)  # type: ignore[attr-defined]
        took = await wait_for(pilot, lambda: dev not in table.rows_by_key(), f"{dev} to go")
        print(f"row for {dev} went {took:.2f} s after detaching")
        assert main.chosen is None  # the chosen drive went with it


async def test_ineligible_drives_cannot_be_chosen(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.img", 5 * MiB)
    read_only = loop(16 * MiB, read_only=True)
    too_small = loop(4 * MiB)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        table = table_of(app)
        await wait_for(pilot, lambda: main.image_size is not None, "the image")
        await wait_for(pilot, lambda: {read_only, too_small} <= table.rows_by_key(), "both devices")
        for dev, why in ((read_only, "read-only"), (too_small, "image does not fit")):
            row = table.get_row(dev)
            assert why in str(row[-1])
            assert row[-1].style == "dim"
            await highlight(pilot, app, dev)
            await pilot.press("enter")
            await pilot.pause()
            assert main.chosen is None
            assert any(why in n.message for n in app._notifications)
        # the system disk is listed with --all and refused too
        system = [d for d in table.disks.values() if d.is_system]
        if system:
            await highlight(pilot, app, system[0].path)
            await pilot.press("enter")
            assert main.chosen is None
            assert "system disk" in str(table.get_row(system[0].path)[-1])
        await pilot.press("w")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)  # no confirmation without a drive
        assert main.query_one("#write", Button).disabled


async def test_mouse_chooses_and_writes(loop: Callable[..., str], tmp_path: Path) -> None:
    """One click on a row chooses it; the Write button and the dialog work by mouse."""
    image = random_file(tmp_path / "img.img", MiB + 1)
    dev = loop(8 * MiB)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        table = table_of(app)
        await wait_for(pilot, lambda: dev in table.rows_by_key(), "the listing")
        await wait_for(pilot, lambda: main.image_size is not None, "the image")
        await pilot.pause(0.2)  # the boot panel's final height settles the layout
        y = 2 + table.get_row_index(dev)  # border and header above the rows
        await pilot.click(DriveTable, offset=(6, y))
        await pilot.pause()
        assert main.chosen is not None and main.chosen.path == dev
        await pilot.click("#write")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the confirmation")
        await pilot.click("#cancel")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await pilot.click("#write")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the confirmation")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen), "the result")
        await pilot.pause()
        await pilot.click("#again")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    assert read_device(dev, MiB + 1) == image.read_bytes()


async def test_mismatch_is_reported(loop: Callable[..., str], tmp_path: Path) -> None:
    """A byte flipped on the device between write and verify: the real verify finds it."""
    image = random_file(tmp_path / "img.img", 3 * MiB)
    dev = loop(8 * MiB)
    offset = 2 * MiB + 12345
    real = Services.real()

    def corrupt() -> None:
        fd = os.open(dev, os.O_RDWR)
        try:
            byte = os.pread(fd, 1, offset)
            os.pwrite(fd, bytes([byte[0] ^ 0xFF]), offset)
            os.fsync(fd)
        finally:
            os.close(fd)

    def run_then_corrupt(plan: Any, **kw: Any) -> Any:
        """Flip the byte once everything is written, before the read-back."""
        show = kw["progress"]

        def progress(p: Any) -> None:
            if p.phase == "sync":
                corrupt()
            show(p)

        return real.run(plan, **(kw | {"progress": progress}))

    services = dataclasses.replace(real, run=run_then_corrupt)
    app = make_app(image, services=services)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        await highlight(pilot, app, dev)
        await pilot.press("enter", "w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "confirm")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen), "the result")
        await pilot.pause()
        result = app.screen
        assert isinstance(result, ResultScreen)
        assert result.receipt["verified"] is False
        assert result.receipt["mismatch_offset"] == offset
        assert result.receipt["wiped_first_mib"] is True
        assert "FAILED" in str(result.query_one("#result-headline").render())
        assert str(offset) in str(result.query_one("#result-next").render())
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 3
    assert read_device(dev, MiB) == bytes(MiB)


async def test_mounted_drive_is_unmounted_after_confirming(
    mounted_ext4: tuple[str, Path], tmp_path: Path
) -> None:
    image = random_file(tmp_path / "img.img", 2 * MiB)
    dev, mnt = mounted_ext4
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        assert str(mnt) in str(table_of(app).get_row(dev)[-2])
        await highlight(pilot, app, dev)
        await pilot.press("enter", "w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "confirm")
        await pilot.pause()
        shown = str(app.screen.query_one("#confirm-mounted").render())
        assert str(mnt) in shown and "unmounted first" in shown
        assert os.path.ismount(mnt)  # nothing happens before the confirmation
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen), "the result")
        result = app.screen
        assert isinstance(result, ResultScreen)
        assert result.receipt["verified"] is True
        assert result.receipt["device"]["unmounted"] == [str(mnt)]
        assert str(mnt) in str(result.query_one("#result-table").render())
        assert not os.path.ismount(mnt)
    assert read_device(dev, 2 * MiB) == image.read_bytes()


async def test_without_root_lists_and_explains(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.img", MiB)
    dev = loop(8 * MiB)
    services = dataclasses.replace(Services.real(), is_root=lambda: False)
    app = make_app(image, services=services)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await listed_with_image(pilot, app, dev)
        await highlight(pilot, app, dev)
        await pilot.press("enter", "w")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        assert main.query_one("#write", Button).disabled
        assert "needs root" in str(main.query_one("#summary").render())
        assert "sudo" in f"{app.sub_title} {main.sub_title}"


async def test_refusal_is_a_one_line_modal(loop: Callable[..., str], tmp_path: Path) -> None:
    """A drive that changes between listing and Write: refused in a modal, no traceback."""
    image = random_file(tmp_path / "img.img", MiB)
    dev = loop(8 * MiB)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await listed_with_image(pilot, app, dev)
        await highlight(pilot, app, dev)
        await pilot.press("enter")
        assert main.chosen is not None
        # another backing file behind the same node (live updates are off here)
        other = tmp_path / "other.img"
        with open(other, "wb") as f:
            f.truncate(8 * MiB)
        run(["losetup", "-d", dev])
        subprocess.run(["losetup", dev, str(other)], check=True)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), "the refusal")
        await pilot.pause()
        text = str(app.screen.query_one("#error-message").render())
        assert dev in text and "\n" not in text and "Traceback" not in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


async def test_help_palette_and_theme(loop: Callable[..., str], tmp_path: Path) -> None:
    settings = tmp_path / "tui.json"
    app = make_app(None, settings_path=settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in ("Open image", "Write image", "Show all disks", "Refresh drives", "Help",
                      "Theme"):  # fmt: skip
            assert title in titles
        app.theme = "nord"
        await pilot.pause()
    assert '"nord"' in settings.read_text()
    again = make_app(None, settings_path=settings)
    assert again.theme == "nord"


async def test_browser_and_completion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ctrl+o opens ~/Downloads, filtered to images; → completes a typed path."""
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    random_file(downloads / "alpha.img", MiB)
    (downloads / "notes.txt").write_text("not an image")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SUDO_USER", raising=False)
    app = make_app(None)
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: isinstance(app.screen, FileBrowser), "the browser")
        tree = app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) > 0, "the listing")
        assert Path(tree.path) == downloads
        assert [str(n.label) for n in tree.root.children] == ["alpha.img"]
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: main.image_size == MiB, "the image")
        assert main.image == str(downloads / "alpha.img")
        # typing: the suggestion completes the folder, then the file
        await pilot.press("i", "ctrl+a", "ctrl+k")
        await pilot.press(*f"{tmp_path}/Dow", "right", "a", "right", "enter")
        await pilot.pause()
        assert main.query_one("#image-path", Input).value == str(downloads / "alpha.img")
        await wait_for(pilot, lambda: main.image_size == MiB, "the image again")


async def test_missing_image_is_reported(tmp_path: Path) -> None:
    app = make_app(tmp_path / "nope.iso")
    async with app.run_test(size=SIZE) as pilot:
        main = app.main
        await wait_for(pilot, lambda: main.image_error is not None, "the error")
        assert "no such file" in (main.image_error or "")
        shown = str(main.query_one("#boot-details").render())
        assert "nope.iso" in shown and "Traceback" not in shown


async def test_compressed_image_is_written_decompressed(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """An .img.xz as downloaded: the summary names it, the drive gets the image inside."""
    data = small_image(tmp_path).read_bytes()
    packed = tmp_path / "stick.img.xz"
    packed.write_bytes(lzma.compress(data))
    dev = loop(32 * MiB)
    app = make_app(packed)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        assert app.main.image_words.startswith("xz: ")
        assert "4.2 MiB image" in app.main.image_words
        await highlight(pilot, app, dev)
        await pilot.press("enter", "w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "confirm")
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: isinstance(app.screen, ResultScreen), "the result")
        await pilot.pause()
        result = app.screen
        assert isinstance(result, ResultScreen)
        assert result.receipt["verified"] is True
        assert result.receipt["image"]["format"] == "xz"
        assert result.receipt["image"]["blake3"] == blake3.blake3(data).hexdigest()
    assert read_device(dev, len(data)) == data

"""The app confirms the plan made when the person asked to write, and runs that plan.

Real loop devices, real ISOs, real mounts: a mount that appears after the listing is
named in the confirmation; choosing "write only what changed" the other way shows the
plan that will run (here a bmap write) and nothing is planned after the yes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Checkbox, Static

from tests.conftest import ROOT_ONLY
from tests.tui.helpers import MiB, read_device, small_image, wait_for
from tests.tui.test_app import highlight, listed_with_image, make_app, table_of
from tests.tui.test_several import SIZE, finish, write_one
from usbwriter.tui.screens.confirm import ConfirmWrite
from usbwriter.tui.screens.main import MainScreen
from usbwriter.tui.services import Services

pytestmark = ROOT_ONLY


@pytest.fixture
def stick_to_mount(loop: Callable[..., str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A stick holding an ext4 file system, and the folder a desktop would mount it on
    (the test mounts it when it wants; it is unmounted afterwards)."""
    dev = loop(32 * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", dev], check=True, capture_output=True)
    mnt = tmp_path / "media"
    mnt.mkdir()
    try:
        yield dev, mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def text_of(confirm: ConfirmWrite, selector: str) -> str:
    return " ".join(str(confirm.query_one(selector, Static).render()).split())


async def test_a_mount_made_after_the_listing_is_named(
    stick_to_mount: tuple[str, Path], tmp_path: Path
) -> None:
    """A desktop automounts the stick a moment after it is listed: the table still says
    not mounted, but the confirmation names the mount the plan will undo."""
    image = small_image(tmp_path)
    dev, mnt = stick_to_mount
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        await highlight(pilot, app, dev)
        await pilot.press("enter")  # chosen, as listed: not mounted
        assert not table_of(app).disks[dev].mounted
        subprocess.run(["mount", dev, str(mnt)], check=True)
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the question")
        await pilot.pause()
        confirm = app.screen
        assert isinstance(confirm, ConfirmWrite)
        said = text_of(confirm, "#confirm-mounted")
        assert f"{dev} on {mnt}" in said and "unmounted first" in said, said
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
    assert mnt.is_mount()  # nothing was done: the answer was Cancel


async def test_unticking_delta_shows_the_bmap_write_that_runs(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """The drive holds the image already, so "only what changed" is pre-selected; the
    person unticks it: the confirmation now says the bmap beside the image is used, and
    that is what runs. The plan is made once per Write, never after the yes."""
    image = tmp_path / "grub.iso"
    shutil.copyfile(small_image(tmp_path), image)
    data = image.read_bytes()
    dev = loop(32 * MiB)
    real = Services.real()
    planned: list[Any] = []

    def plan(request: Any, **kw: Any) -> Any:
        planned.append(request)
        return real.plan(request, **kw)

    app = make_app(image, services=dataclasses.replace(real, plan=plan))
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        await write_one(pilot, app, dev, tick=False)
        await finish(pilot, app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), "the main screen")
        bmap = tmp_path / "grub.iso.bmap"
        subprocess.run(["bmaptool", "create", "-o", str(bmap), str(image)], check=True)
        confirm = await write_one(pilot, app, dev, tick=False)
        assert confirm.query_one("#delta", Checkbox).value is True  # suggested
        assert "mapped in" not in text_of(confirm, "#confirm-notes")
        await pilot.click("#delta")
        await pilot.pause()
        notes = text_of(confirm, "#confirm-notes")
        assert f"writing only the ranges mapped in {bmap}" in notes, notes
        assert len(planned) == 2
        result = await finish(pilot, app)
        assert result.receipt["verified"] is True
        assert result.receipt["coverage"]["mode"] == "bmap"
        assert len(planned) == 2  # nothing planned after the yes
    assert read_device(dev, len(data)) == data


async def test_a_slow_plan_turns_a_spinner_and_leaves_no_figure(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """While the plan reads the image (here its checksum, held at 40%), a spinner with
    the step and its figure stands in the summary's place; once the confirmation opens,
    no figure of that step is left on the screen behind it."""
    from usbwriter.progress import Progress
    from usbwriter.tui.widgets.check_line import CheckLine

    image = small_image(tmp_path)
    dev = loop(32 * MiB)
    real = Services.real()
    gate = threading.Event()

    def plan(request: Any, **kw: Any) -> Any:
        kw["progress"](Progress("checksum", 40, 100, 10.0, 1.0))
        gate.wait(30)
        return real.plan(request, **kw)

    app = make_app(image, services=dataclasses.replace(real, plan=plan))
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        await highlight(pilot, app, dev)
        await pilot.press("enter", "w")
        line = app.main.query_one(CheckLine)
        await wait_for(pilot, lambda: "checksum: 40%" in str(line.render()), "the spinner")
        assert line.display and not app.main.query_one("#summary", Static).display
        gate.set()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmWrite), "the question")
        assert not line.display and app.main.query_one("#summary", Static).display
        assert "40%" not in str(app.main.query_one("#summary", Static).render())


async def test_mounted_while_the_question_waits_asks_again(
    stick_to_mount: tuple[str, Path], tmp_path: Path
) -> None:
    """The stick is mounted between the plan and the yes: the write does not start
    (nothing is written), the app plans again and asks again, naming the new mount and
    saying why it asks; the second yes unmounts it and writes."""
    image = small_image(tmp_path)
    data = image.read_bytes()
    dev, mnt = stick_to_mount
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        first = await write_one(pilot, app, dev, tick=False)
        assert not first.query("#confirm-mounted")
        subprocess.run(["mount", dev, str(mnt)], check=True)
        await pilot.click("#confirm")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, ConfirmWrite) and app.screen is not first,
            "the question asked again",
            60,
        )
        again = app.screen
        assert isinstance(again, ConfirmWrite)
        said = text_of(again, "#confirm-changed")
        assert f"mounted since it was checked: {dev} on {mnt}" in said, said
        assert f"{dev} on {mnt}" in text_of(again, "#confirm-mounted")
        assert mnt.is_mount()  # nothing done yet
        result = await finish(pilot, app)
        assert result.receipt["verified"] is True
    assert not mnt.is_mount()
    assert read_device(dev, len(data)) == data


async def test_a_windows_installer_confirmation_says_what_the_stick_gets(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """The plan chose file-copy mode: the question says so and why, and what the stick
    will hold (the FAT32 partition, the files, how it boots)."""
    from tests.helpers.windows import windows_iso

    image = windows_iso("small")
    dev = loop(256 * MiB)
    app = make_app(image)
    async with app.run_test(size=SIZE) as pilot:
        await listed_with_image(pilot, app, dev)
        confirm = await write_one(pilot, app, dev, tick=False)
        notes = text_of(confirm, "#confirm-notes")
        assert not confirm.query("#delta")  # a file copy: no delta write
        assert not confirm.query("#confirm-warning")  # the raw write's "will NOT boot"
        confirm.query_one("#bypass-tpm").scroll_visible(animate=False)
        await pilot.pause()
        await pilot.click("#bypass-tpm")
        await pilot.pause()
        ticked = text_of(confirm, "#confirm-notes")
        assert confirm.plan is not None and confirm.plan.request.windows_bypass == ("tpm",)
        result = await finish(pilot, app)
        receipt = result.receipt
    assert "Mode: file copy: a Windows installer image" in notes, notes
    assert "one active FAT32 partition" in notes and "UEFI: boots from" in notes, notes
    assert "BIOS: GRUB chains bootmgr" in notes, notes
    assert "TPM" not in notes and "TPM 2.0 check bypassed" in ticked, ticked
    assert receipt["verified"] is True
    assert "autounattend.xml" in json.dumps(receipt["files"]), receipt["files"]

"""The ISO toolkit in the app: browse and extract an ISO's files, back up a drive to an
image file, restore a drive as a normal stick. Real parts: ISOs built by xorriso here,
loop devices, the real core; Pilot presses the keys."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from textual.message import Message
from textual.pilot import Pilot
from textual.widgets import Input

from tests.conftest import ROOT_ONLY, random_file, run
from tests.helpers.throttle import CGROUP_ROOT
from tests.tui.helpers import MiB, error_shown, read_device, throttled, wait_for
from tests.tui.recorded import DISKS
from tests.tui.test_app import highlight, make_app, table_of
from usbwriter.tui import rules, suggest
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.messages import JobProgress
from usbwriter.tui.screens.ask import AskBackupFile, RestoreOptions
from usbwriter.tui.screens.confirm import ConfirmStop
from usbwriter.tui.screens.contents import ContentsScreen, ContentsTree
from usbwriter.tui.screens.drive_jobs import (
    BackupScreen,
    ConfirmBackup,
    ConfirmRestore,
    ReceiptScreen,
    RestoreScreen,
)
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.extract import ExtractScreen
from usbwriter.tui.screens.main import MainScreen
from usbwriter.tui.widgets.boot_panel import BootPanel

SIZE = (120, 40)
MANUAL = 300_000  # bytes of docs/manual.pdf


# ---- the suggested paths (no app, no root)


def test_extract_folder_beside_the_image_or_in_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    image = str(tmp_path / "debian-12.iso.xz")
    assert suggest.extract_folder(image, home=home, writable=lambda d: True) == str(
        tmp_path / "debian-12"
    )
    assert suggest.extract_folder(image, home=home, writable=lambda d: False) == str(
        home / "debian-12"
    )
    (tmp_path / "debian-12").mkdir()
    assert suggest.extract_folder(image, home=home, writable=lambda d: True) == str(
        tmp_path / "debian-12-2"
    )


def test_backup_file_name() -> None:
    disk = dataclasses.replace(DISKS[0], model="Cruzer Blade/2")
    taken = {"/h/usbwriter-backup-Cruzer-Blade-2-2025-03-04.img"}
    path = suggest.backup_file(disk, date(2025, 3, 4), home=Path("/h"), exists=taken.__contains__)
    assert path == "/h/usbwriter-backup-Cruzer-Blade-2-2025-03-04-2.img"


def test_browsable_and_drive_job_refusal() -> None:
    assert rules.browsable({"kind": "iso9660"}) and rules.browsable({"kind": "udf"})
    assert not rules.browsable({"kind": "disk"}) and not rules.browsable(None)
    assert "root" in (rules.drive_job_refusal(is_root=False, disk=None, job="back up") or "")
    assert "Highlight" in (rules.drive_job_refusal(is_root=True, disk=None, job="restore") or "")


# ---- ISOs built here


def build_iso(tmp: Path, name: str = "tools.iso", *, absolute_link: bool = False) -> Path:
    """A Rock Ridge + Joliet ISO: README.TXT, boot/grub/grub.cfg, docs/{manual.pdf,
    notes.txt, readme-link -> ../README.TXT} (and docs/passwd -> /etc/passwd)."""
    tree = tmp / f"{name}.tree"
    (tree / "boot" / "grub").mkdir(parents=True)
    (tree / "docs").mkdir()
    (tree / "README.TXT").write_text("read me\n")
    (tree / "boot" / "grub" / "grub.cfg").write_text("set timeout=5\n")
    random_file(tree / "docs" / "manual.pdf", MANUAL)
    (tree / "docs" / "notes.txt").write_text("some notes\n")
    os.symlink("../README.TXT", tree / "docs" / "readme-link")
    if absolute_link:
        os.symlink("/etc/passwd", tree / "docs" / "passwd")
    iso = tmp / name
    run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "TOOLS", "-o", str(iso), str(tree)])
    return iso


async def open_contents(pilot: Pilot[Any], app: UsbWriterApp) -> ContentsScreen:
    """The image's report is in; b opens its contents, read."""
    await wait_for(pilot, lambda: app.main.report is not None, "the boot report")
    await pilot.press("b")
    await wait_for(pilot, lambda: isinstance(app.screen, ContentsScreen), "the contents")
    screen = app.screen
    assert isinstance(screen, ContentsScreen)
    tree = screen.query_one(ContentsTree)
    await wait_for(pilot, lambda: bool(tree.root.children), "the file list")
    return screen


async def extraction_report(pilot: Pilot[Any], app: UsbWriterApp) -> str:
    """Once an extraction has begun: wait for its end; its report, as shown."""
    await wait_for(pilot, lambda: isinstance(app.screen, ExtractScreen), "extraction")
    extract = app.screen
    assert isinstance(extract, ExtractScreen)
    await wait_for(pilot, lambda: extract.finished is not None, "the extraction's end")
    await pilot.pause()
    return str(extract.query_one("#extract-report").render())


def plain(label: str | Text) -> str:
    return label if isinstance(label, str) else label.plain


def labels(tree: ContentsTree) -> list[str]:
    return [str(plain(n.label)).split()[0] for n in tree.root.children]


async def test_browse_expand_mark_and_extract(tmp_path: Path, monkeypatch: Any) -> None:
    iso = build_iso(tmp_path)
    tree_dir = tmp_path / "tools.iso.tree"
    out = tmp_path / "out"
    app = make_app(iso)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.main.report is not None, "the boot report")
        await pilot.pause()
        # offered for an ISO: a link on the boot report's frame
        panel = app.main.query_one(BootPanel)
        assert "Browse contents" in str(panel.border_subtitle)
        width, height = panel.region.size
        await pilot.click(BootPanel, offset=(width - 8, height - 1))
        await wait_for(pilot, lambda: isinstance(app.screen, ContentsScreen), "the contents")
        screen = app.screen
        assert isinstance(screen, ContentsScreen)
        tree = screen.query_one(ContentsTree)
        await wait_for(pilot, lambda: bool(tree.root.children), "the file list")
        assert labels(tree) == ["README.TXT", "boot/", "docs/"]
        # the default folder: named after the image, beside it
        assert screen.query_one("#extract-to", Input).value == str(tmp_path / "tools")
        # docs/ is filled in when it is opened
        docs = tree.root.children[2]
        assert not docs.children
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: len(docs.children) == 3, "docs/ expanded")
        shown = [str(plain(n.label)) for n in docs.children]
        assert "manual.pdf" in shown[0] and "293.0 KiB" in shown[0]
        assert "notes.txt" in shown[1] and "-> ../README.TXT" in shown[2]
        await pilot.press("down", "space", "down", "space")
        assert tree.marked_paths() == ["/docs/manual.pdf", "/docs/notes.txt"]
        assert str(shown[0]) != str(plain(docs.children[0].label))  # the mark shows
        summary = str(screen.query_one("#marked-summary").render())
        assert "2 marked: 2 files" in summary
        screen.query_one("#extract-to", Input).value = str(out)
        await pilot.press("x")
        report = await extraction_report(pilot, app)
        assert "2 files" in report and "skipped" not in report
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert got == ["docs", "docs/manual.pdf", "docs/notes.txt"]
    for name in ("manual.pdf", "notes.txt"):
        assert (out / "docs" / name).read_bytes() == (tree_dir / "docs" / name).read_bytes()


async def test_extract_all_lists_what_is_skipped(tmp_path: Path) -> None:
    """A compressed ISO, everything extracted into a folder that holds one of its files
    already: the absolute symlink and the existing file are skipped, each with why."""
    iso = build_iso(tmp_path, absolute_link=True)
    packed = tmp_path / "tools.iso.xz"
    run(["xz", "-k", "-T1", str(iso)])
    out = tmp_path / "all"
    (out / "docs").mkdir(parents=True)
    (out / "docs" / "notes.txt").write_text("mine\n")
    app = make_app(packed)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_contents(pilot, app)
        screen.query_one("#extract-to", Input).value = str(out)
        await pilot.click("#extract-all")
        report = await extraction_report(pilot, app)
        extract = app.screen
        assert isinstance(extract, ExtractScreen)
        head = str(extract.query_one("#phase").render())
        assert head.startswith("Extracted 3 files; 2 entries skipped: "), head
        assert "1 already there and kept" in head, head
        assert "3 files" in report and "2 entries skipped" in report
        assert "/docs/passwd: its target /etc/passwd is absolute" in report
        assert "/docs/notes.txt: " in report and "exists" in report
        assert (out / "docs" / "notes.txt").read_text() == "mine\n"
        # Overwrite: the same extraction again, replacing the file it kept
        first = extract.finished
        await pilot.press("o")
        await wait_for(pilot, lambda: extract.finished not in (None, first), "the extraction again")
        await pilot.pause()
        again = str(extract.query_one("#extract-report").render())
        assert "1 entry skipped" in again and "absolute" in again and "exists" not in again
        assert not extract.query_one("#extract-overwrite").display
    assert (out / "docs" / "notes.txt").read_text() != "mine\n"
    assert (out / "boot" / "grub" / "grub.cfg").read_text() == "set timeout=5\n"
    assert os.readlink(out / "docs" / "readme-link") == "../README.TXT"
    assert not (out / "docs" / "passwd").exists()


# ---- backup and restore on loop devices


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The suggested backup file goes here."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv("SUDO_USER", raising=False)
    return folder


async def listed(pilot: Pilot[Any], app: UsbWriterApp, dev: str) -> None:
    await wait_for(pilot, lambda: dev in table_of(app).rows_by_key(), f"{dev} listed")
    await highlight(pilot, app, dev)


@ROOT_ONLY
async def test_backup_to_an_image_file(
    loop: Callable[..., str], tmp_path: Path, home: Path
) -> None:
    dev = loop(24 * MiB)
    data = random_file(tmp_path / "data", 24 * MiB, seed=7).read_bytes()
    with open(dev, "r+b") as f:
        f.write(data)
    app = make_app(None)
    messages: list[Message] = []
    async with app.run_test(size=SIZE, message_hook=messages.append) as pilot:
        await listed(pilot, app, dev)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AskBackupFile), "the file question")
        await pilot.pause()
        typed = app.screen.query_one("#backup-path", Input).value
        name = f"usbwriter-backup-{os.path.basename(dev)}-{date.today().isoformat()}.img"
        assert typed == str(home / name)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmBackup), "the confirmation")
        await pilot.pause()
        shown = str(app.screen.query_one("#confirm-drive").render())
        assert dev in shown and typed in str(app.screen.query_one("#confirm-image").render())
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: isinstance(app.screen, ReceiptScreen), "the result", 60)
        await pilot.pause()
        text = str(app.screen.query_one("#result-table").render())
        headline = str(app.screen.query_one("#result-headline").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    phases = {m.progress.phase for m in messages if isinstance(m, JobProgress)}
    assert {"read", "verify"} <= phases
    assert "verified" in headline
    assert "blake3" in text and "Verified" in text
    run(["cmp", typed, dev])
    assert Path(typed).read_bytes() == read_device(dev, 24 * MiB)


@ROOT_ONLY
async def test_a_backup_whose_verify_differs_then_quit_exits_3(
    loop: Callable[..., str], tmp_path: Path, home: Path
) -> None:
    """The drive's last MiB changes as the backup's verify begins (another program wrote
    to it, or the drive is failing): the result says it differs, and Quit exits 3, as
    the command line does."""
    from usbwriter.tui.services import Services

    dev = loop(24 * MiB)
    with open(dev, "r+b") as f:
        f.write(random_file(tmp_path / "data", 24 * MiB, seed=7).read_bytes())
    real = Services.real()

    def run_backup(plan: Any, **kw: Any) -> Any:
        shown = kw["progress"]
        spoilt: list[bool] = []

        def progress(p: Any) -> None:
            if p.phase == "verify" and not spoilt:
                spoilt.append(True)
                with open(dev, "r+b") as drive:  # not exclusive: the backup holds it so
                    drive.seek(23 * MiB)
                    drive.write(b"changed by another program")
                    drive.flush()
                    os.fsync(drive.fileno())
            shown(p)

        return real.run_backup(plan, **{**kw, "progress": progress})

    app = make_app(None, services=dataclasses.replace(real, run_backup=run_backup))
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, app, dev)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AskBackupFile), "the file question")
        await pilot.pause()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmBackup), "the confirmation")
        await pilot.pause()
        await pilot.click("#confirm")
        await wait_for(
            pilot, lambda: isinstance(app.screen, ReceiptScreen | ErrorScreen), "the result", 60
        )
        await pilot.pause()
        assert isinstance(app.screen, ReceiptScreen), str(
            app.screen.query_one("#error-message").render()
        )
        headline = str(app.screen.query_one("#result-headline").render())
        assert "differs" in headline, headline
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 3


@ROOT_ONLY
async def test_backup_of_a_mounted_drive_is_refused(
    mounted_ext4: tuple[str, Path], tmp_path: Path
) -> None:
    dev, _ = mounted_ext4
    app = make_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, app, dev)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AskBackupFile), "the file question")
        app.screen.query_one("#backup-path", Input).value = str(tmp_path / "b.img.zst")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorScreen), "the refusal")
        await pilot.pause()
        message = str(app.screen.query_one("#error-message").render())
    assert dev in message and "mounted read-write" in message and "\n" not in message
    assert not (tmp_path / "b.img.zst").exists()


@pytest.fixture
def used_stick(loop: Callable[..., str], tmp_path: Path) -> Iterator[str]:
    """A stick that held an ISO; its partition nodes removed afterwards."""
    dev = loop(64 * MiB)
    iso = build_iso(tmp_path, "old.iso")
    run(["dd", f"if={iso}", f"of={dev}", "bs=1M", "conv=notrunc,fsync", "status=none"])
    try:
        yield dev
    finally:
        subprocess.run(["partx", "-d", dev], check=False, capture_output=True)


@ROOT_ONLY
async def test_restore_as_fat32(used_stick: str) -> None:
    dev = used_stick
    app = make_app(None)
    async with app.run_test(size=SIZE) as pilot:
        await listed(pilot, app, dev)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, RestoreOptions), "the options")
        await pilot.pause()
        options = app.screen
        assert isinstance(options, RestoreOptions)
        assert options.chosen_fs() == "fat32"
        assert options.query_one("#restore-label", Input).value == "USB"
        await pilot.click("#next")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRestore), "the confirmation")
        await pilot.pause()
        lead = str(app.screen.query_one(".lead").render())
        assert f"ALL DATA on {dev} will be erased" in lead
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.click("#confirm")
        await wait_for(pilot, lambda: isinstance(app.screen, RestoreScreen | ReceiptScreen), "job")
        await wait_for(pilot, lambda: isinstance(app.screen, ReceiptScreen), "the result", 60)
        await pilot.pause()
        text = str(app.screen.query_one("#result-table").render())
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
    assert "fat32, label USB" in text
    part = f"{dev}p1"
    if not os.path.exists(part):
        run(["partx", "-a", dev])
    probe = run(["blkid", "-o", "export", part]).stdout
    assert "TYPE=vfat" in probe and "LABEL=USB" in probe
    run(["fsck.vfat", "-n", part])


@ROOT_ONLY
@pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller")
async def test_stop_a_backup_of_a_slow_drive(
    loop: Callable[..., str], tmp_path: Path, home: Path
) -> None:
    dev = loop(256 * MiB)
    output = tmp_path / "slow.img"
    app = make_app(None)
    with throttled(dev, 400_000_000, 8_000_000):
        async with app.run_test(size=SIZE) as pilot:
            await listed(pilot, app, dev)
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, AskBackupFile), "question")
            app.screen.query_one("#backup-path", Input).value = str(output)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmBackup), "confirm")
            await pilot.click("#confirm")
            await wait_for(pilot, lambda: isinstance(app.screen, BackupScreen), "progress")
            job = app.screen
            assert isinstance(job, BackupScreen)
            await wait_for(pilot, lambda: len(job.speeds) >= 2, "the backup under way")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmStop), "stop question")
            await pilot.pause()
            assert "Stop the backup?" in str(app.screen.query_one("#dialog-title").render())
            asked = time.monotonic()
            await pilot.click("#stop")
            await wait_for(pilot, lambda: error_shown(app), "stopped", 20)
            stopped = time.monotonic() - asked
            message = str(app.screen.query_one("#error-message").render())
    print(f"stopped {stopped:.2f} s after Stop")
    assert "interrupted" in message and "no image file was left" in message
    assert stopped < 2.0
    assert not output.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".slow.img")]

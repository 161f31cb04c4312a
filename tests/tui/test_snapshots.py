"""Snapshots of every screen at 100x30, and of the main screen at 80x24 and 160x50
(pytest-textual-snapshot).

Deterministic on any machine: the drives are disks recorded from the qemu guest and
this machine kind (tests/unit/data/udev), turned into ``Disk`` values by the real
``disk_from_info``; boot reports are recorded ``usbwriter inspect --json`` output
(tests/tui/data, see record_reports.py); the image sits at a fixed path; the cursor
does not blink; no watcher runs. Update with ``pytest tests/tui --snapshot-update``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import stat
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DirectoryTree

from tests.tui.helpers import wait_for
from tests.tui.recorded import DISKS, REPORTS
from usbwriter.devices import Disk
from usbwriter.engine.readback import VerifyResult
from usbwriter.engine.target import WriteResult
from usbwriter.progress import Progress
from usbwriter.receipt import Receipt
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.screens.browse import FileBrowser
from usbwriter.tui.screens.confirm import ConfirmStop, ConfirmWrite
from usbwriter.tui.screens.contents import ContentsScreen, ContentsTree
from usbwriter.tui.screens.error import ErrorScreen
from usbwriter.tui.screens.help import HelpScreen
from usbwriter.tui.screens.progress import Job, ProgressScreen
from usbwriter.tui.screens.result import ResultScreen
from usbwriter.tui.screens.several import ConfirmSeveral
from usbwriter.tui.services import Services
from usbwriter.tui.widgets.drive_table import DriveTable

SIZE = (100, 30)
HERE = Path(__file__).resolve().parent
FOLDER = Path("/tmp/usbwriter-snapshots/Downloads")
HYBRID = FOLDER / "grub-hybrid.iso"
BIOS_ONLY = FOLDER / "eltorito-bios-only.iso"
SnapCompare = Callable[..., bool]


@pytest.fixture(scope="module", autouse=True)
def image_folder() -> Iterator[None]:
    """Sparse stand-ins at fixed paths: only their names and sizes are shown.

    The paths are fixed (the snapshots show them) and in /tmp, and the tests may run as
    root: the top folder must be this user's, mode 0700, so nothing in it is another
    user's link; files are opened with O_NOFOLLOW all the same."""
    top = FOLDER.parent
    with contextlib.suppress(FileExistsError):
        os.mkdir(top, 0o700)
    st = os.lstat(top)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        pytest.fail(f"{top} is not a private directory of this user; remove it")
    (FOLDER / "older").mkdir(parents=True, exist_ok=True)
    names = ("debian-12.8.0-amd64-netinst.iso", "raspios-lite.img.xz", "notes.txt")
    sizes = {
        HYBRID: int(REPORTS[HYBRID.stem]["size"]),
        BIOS_ONLY: int(REPORTS[BIOS_ONLY.stem]["size"]),
    }
    for path in (*sizes, *(FOLDER / name for name in names)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.ftruncate(fd, sizes.get(path, 0))
        finally:
            os.close(fd)
    yield
    shutil.rmtree(top, ignore_errors=True)


def _not_in_snapshots(*args: object, **kw: object) -> Any:
    raise AssertionError("the engine does not run in snapshots")


def make_app(
    image: Path | None = HYBRID, *, show_all: bool = False, root: bool = True
) -> UsbWriterApp:
    services = Services(
        list_disks=lambda include_all, image: list(DISKS),
        watch_disks=None,
        inspect_image=lambda path: REPORTS[Path(path).stem],
        plan=_not_in_snapshots,
        run=_not_in_snapshots,
        is_root=lambda: root,
    )
    return UsbWriterApp(
        services,
        image=str(image) if image else None,
        show_all=show_all,
        live_updates=False,
        cursor_blink=False,
    )


async def settled(pilot: Pilot[Any]) -> None:
    """The listing and the boot report are in."""
    app = pilot.app
    assert isinstance(app, UsbWriterApp)
    main = app.main
    await wait_for(pilot, lambda: bool(main.query_one(DriveTable).disks), "the drives")
    if main.image is not None:
        await wait_for(pilot, lambda: main.image_size is not None, "the image")
    await pilot.pause()


def disk(path: str) -> Disk:
    return next(d for d in DISKS if d.path == path)


def pushing(make_screen: Callable[[], Screen[Any]]) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A run_before that lets the main screen settle, then shows MAKE_SCREEN() over it."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        await pilot.app.push_screen(make_screen())
        await pilot.pause()

    return run_before


def test_main_no_image(snap_compare: SnapCompare) -> None:
    assert snap_compare(make_app(None), terminal_size=SIZE, run_before=settled)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (160, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_sizes(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    """An image typed in and opened, the sticks listed: at every size three drives show,
    the boot report starts with its verdict (and scrolls), and the footer keeps Help and
    Quit."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        await pilot.press(*str(HYBRID), "enter")
        await settled(pilot)

    assert snap_compare(make_app(None), terminal_size=size, run_before=run_before)


def test_main_report_and_drive_chosen(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        await pilot.press("ctrl+home", "enter")  # the first drive: the SanDisk stick

    assert snap_compare(make_app(show_all=True), terminal_size=SIZE, run_before=run_before)


def test_main_not_bootable_not_root(snap_compare: SnapCompare) -> None:
    app = make_app(BIOS_ONLY, root=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=settled)


def test_file_browser(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        await pilot.app.push_screen(FileBrowser(FOLDER))
        tree = pilot.app.screen.query_one(DirectoryTree)
        await wait_for(pilot, lambda: len(tree.root.children) == 5, "the folder")
        await pilot.pause()

    assert snap_compare(make_app(None), terminal_size=SIZE, run_before=run_before)


def test_confirm(snap_compare: SnapCompare) -> None:
    run_before = pushing(
        lambda: ConfirmWrite(
            disk("/dev/sda"),
            str(HYBRID),
            int(REPORTS["grub-hybrid"]["size"]),
            REPORTS["grub-hybrid"],
        )
    )
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_confirm_not_bootable_and_mounted(snap_compare: SnapCompare) -> None:
    run_before = pushing(
        lambda: ConfirmWrite(
            disk("/dev/loop0"),
            str(BIOS_ONLY),
            int(REPORTS["eltorito-bios-only"]["size"]),
            REPORTS["eltorito-bios-only"],
        )
    )
    assert snap_compare(
        make_app(BIOS_ONLY, show_all=True), terminal_size=SIZE, run_before=run_before
    )


def test_confirm_several(snap_compare: SnapCompare) -> None:
    """Three drives marked: each named, the mounted one with what will be unmounted."""
    drives = [disk("/dev/sda"), disk("/dev/sdb"), disk("/dev/loop0")]
    unmounts = [[f"{dev} on {mp}" for dev, mp in d.mounted] for d in drives]
    run_before = pushing(
        lambda: ConfirmSeveral(
            drives,
            unmounts,
            str(HYBRID),
            int(REPORTS["grub-hybrid"]["size"]),
            REPORTS["grub-hybrid"],
        )
    )
    assert snap_compare(make_app(show_all=True), terminal_size=SIZE, run_before=run_before)


def _progress_screen(app: UsbWriterApp) -> ProgressScreen:
    size = int(REPORTS["grub-hybrid"]["size"]) * 16
    job = Job(str(HYBRID), size, disk("/dev/sda"), None, REPORTS["grub-hybrid"])
    return ProgressScreen(app.services, job, start=False)


def _feed(screen: ProgressScreen, phase: str, total: int, upto: float, rate: float) -> None:
    """Fixed samples: a speed that ramps up and wobbles, deterministic."""
    steps = 24
    for i in range(1, steps + 1):
        t = i * 0.5
        r = rate * min(1.0, 0.3 + i / 8) * (1.0 + 0.08 * ((i * 7) % 5 - 2) / 2)
        done = int(total * upto * i / steps)
        screen.show(Progress(phase, done, total, r, t))


def test_progress_writing(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, UsbWriterApp)
        await settled(pilot)
        screen = _progress_screen(app)
        await app.push_screen(screen)
        await pilot.pause()
        _feed(screen, "write", screen.job.image_size, 0.62, 31.5e6)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_progress_stop_question(snap_compare: SnapCompare) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, UsbWriterApp)
        await settled(pilot)
        screen = _progress_screen(app)
        await app.push_screen(screen)
        await pilot.pause()
        _feed(screen, "write", screen.job.image_size, 0.3, 28e6)
        await app.push_screen(ConfirmStop("write", "/dev/sda"))
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def _receipt(verified: bool) -> Receipt:
    report = REPORTS["grub-hybrid"]
    size = int(report["size"])
    digest = "3f1c1e0c7a0e4e5fb0b8d5f0f1d8a6b2c4e9a7d3b5c1f0e2d4a6b8c0e2f4a6b8"
    write = WriteResult(
        image_path=str(HYBRID),
        image_size=size,
        blake3=digest,
        device="/dev/sda",
        bytes_written=size,
        seconds=0.41,
        direct_io=True,
        partitions_reread=True,
    )
    check = VerifyResult(
        verified=verified,
        mismatch_offset=None if verified else 1_048_576 + 4_096,
        device_blake3=digest if verified else "9d0b" + digest[4:],
        expected_blake3=digest,
        size=size,
        seconds=0.12,
        page_cache_bypassed=True,
    )
    d = disk("/dev/sda")
    device = {"path": d.path, "major": d.major, "minor": d.minor, "size": d.size,
              "vendor": d.vendor, "model": d.model, "serial": d.serial, "bus": d.bus}  # fmt: skip
    receipt = Receipt(
        image_path=write.image_path,
        image_size=write.image_size,
        device=device,
        write=write,
        verify=check,
        wiped_first_mib=None if verified else True,
    )
    return receipt


def test_result_verified(snap_compare: SnapCompare) -> None:
    run_before = pushing(lambda: ResultScreen(_receipt(True)))
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_result_mismatch(snap_compare: SnapCompare) -> None:
    run_before = pushing(lambda: ResultScreen(_receipt(False)))
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_error(snap_compare: SnapCompare) -> None:
    run_before = pushing(
        lambda: ErrorScreen(
            "Writing failed",
            "error while writing bytes 8388608-12582911 of '/dev/sda': Input/output "
            "error; the first MiB was wiped, so the stick does not look bootable",
            hint="Nothing more was written. Check the drive and try again.",
        )
    )
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare: SnapCompare) -> None:
    run_before = pushing(HelpScreen)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


class FakeIso:
    """An ISO's contents built by hand (fixed names, sizes and dates): what the contents
    screen shows without reading an image."""

    def __init__(self, path: str) -> None:
        from datetime import UTC, datetime

        from usbwriter.iso.contents import Contents, Entry

        when = datetime(2024, 11, 9, 10, 30, tzinfo=UTC)
        files = {
            ("EFI",): 0, ("EFI", "BOOT"): 0, ("EFI", "BOOT", "BOOTX64.EFI"): 958_464,
            ("boot",): 0, ("boot", "grub"): 0, ("boot", "grub", "grub.cfg"): 1_204,
            ("install.amd",): 0, ("install.amd", "vmlinuz"): 8_133_024,
            ("install.amd", "initrd.gz"): 19_726_515, ("md5sum.txt",): 31_337,
            ("README.txt",): 2_874,
        }  # fmt: skip
        folders = {p[:-1] for p in files if len(p) > 1}
        root = Entry((), "dir", 0, when, 0o755)
        self.path = path
        self.contents = Contents(path, "rock ridge", root)
        self.contents.by_path[()] = root
        for parts, size in files.items():
            kind = "dir" if parts in folders else "file"
            entry = Entry(parts, kind, size if kind == "file" else 2048, when, 0o644)
            self.contents.by_path[parts] = entry
        for parts in [(), *sorted(folders)]:
            kids = [e for p, e in self.contents.by_path.items() if p and p[:-1] == parts]
            self.contents.children[parts] = sorted(kids, key=lambda e: e.name)

    def close(self) -> None:
        pass


def test_contents(snap_compare: SnapCompare) -> None:
    """The files of an ISO: a folder opened, two files marked."""
    app = make_app()
    fake: Any = FakeIso
    app.services = dataclasses.replace(app.services, open_iso=lambda path, **kw: fake(path))

    async def run_before(pilot: Pilot[Any]) -> None:
        await settled(pilot)
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ContentsScreen), "contents")
        tree = pilot.app.screen.query_one(ContentsTree)
        await wait_for(pilot, lambda: bool(tree.root.children), "the files")
        await pilot.press("down", "down", "enter", "down", "space", "down", "space")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_inputs_are_fixed() -> None:
    """The recorded inputs are what the snapshots claim to show."""
    assert [d.description for d in DISKS[:3]] == [
        "SanDisk Cruzer",
        "WD My Passport",
        "Kingston DataTraveler",
    ]
    assert DISKS[2].reasons == ("read-only",)
    assert DISKS[3].is_system and not DISKS[3].eligible
    assert REPORTS["grub-hybrid"]["boot"]["bios"] == "yes"
    assert REPORTS["eltorito-bios-only"]["boot"] == {
        **REPORTS["eltorito-bios-only"]["boot"],
        "bios": "no",
        "uefi": "no",
    }
    assert os.path.isabs(str(FOLDER))

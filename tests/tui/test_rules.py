"""The choice rules (usbwriter/tui/rules.py), on recorded disks and reports, with no app."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.tui.recorded import DISKS, REPORTS
from usbwriter.devices import Disk
from usbwriter.tui.rules import (
    choosable_count,
    drive_choosable,
    drive_fits,
    drive_status,
    keeps_choice,
    made_for,
    not_ready,
    visible,
    will_boot,
)

MiB = 1 << 20
STICK, USB_DISK, READ_ONLY, SYSTEM, LOOP = DISKS  # 64 MiB, 96 MiB, read-only, vda, loop0


def test_recorded_disks_are_the_expected_ones() -> None:
    assert [d.path for d in DISKS] == ["/dev/sda", "/dev/sdb", "/dev/sdc", "/dev/vda", "/dev/loop0"]
    assert STICK.size == 64 * MiB and STICK.eligible and not STICK.mounted
    assert LOOP.eligible and LOOP.mounted


def test_a_drive_is_choosable_when_eligible_and_the_image_fits() -> None:
    assert drive_choosable(STICK, None) and drive_choosable(STICK, 64 * MiB)
    assert not drive_choosable(STICK, 64 * MiB + 1)
    assert drive_fits(STICK, None) and not drive_fits(STICK, 65 * MiB)
    assert not drive_choosable(READ_ONLY, None) and not drive_choosable(READ_ONLY, MiB)
    assert not drive_choosable(SYSTEM, MiB)
    assert drive_choosable(LOOP, MiB)  # mounted is not a reason: it is unmounted later
    no_medium = dataclasses.replace(STICK, size=0)
    assert not drive_choosable(no_medium, None)


def test_the_status_says_why_not() -> None:
    assert drive_status(STICK, 4 * MiB) == "ready"
    assert drive_status(STICK, 100 * MiB) == "image does not fit (100.0 MiB > 64.0 MiB)"
    assert drive_status(READ_ONLY, None) == "read-only"
    assert drive_status(SYSTEM, None) == "system disk: holds /"
    assert drive_status(LOOP, None) == "ready, will unmount"
    assert drive_status(dataclasses.replace(STICK, eligible=False, reasons=()), None) == (
        "not eligible"
    )
    assert drive_status(dataclasses.replace(STICK, size=0), None) == "no medium (size 0)"


@pytest.mark.parametrize("image_size", [None, MiB, 64 * MiB, 80 * MiB, 1 << 40])
@pytest.mark.parametrize("disk", DISKS, ids=lambda d: d.path)
def test_the_status_reads_ready_exactly_when_the_drive_is_choosable(
    disk: Disk, image_size: int | None
) -> None:
    assert drive_status(disk, image_size).startswith("ready") == drive_choosable(disk, image_size)


def test_the_default_view_shows_user_drives_with_a_medium() -> None:
    assert [d.path for d in DISKS if visible(d, False)] == ["/dev/sda", "/dev/sdb", "/dev/sdc"]
    assert all(visible(d, True) for d in DISKS)
    assert not visible(dataclasses.replace(STICK, size=0), False)
    assert choosable_count(DISKS, None) == 3  # sda, sdb and the loop device
    assert choosable_count(DISKS, 80 * MiB) == 1


def test_a_choice_is_kept_only_for_the_same_medium_still_usable() -> None:
    assert keeps_choice(STICK, STICK, MiB)
    assert keeps_choice(STICK, dataclasses.replace(STICK, model="other name"), MiB)
    assert not keeps_choice(STICK, dataclasses.replace(STICK, diskseq=99), MiB)  # re-plugged
    assert not keeps_choice(STICK, dataclasses.replace(STICK, size=32 * MiB), MiB)
    assert not keeps_choice(STICK, dataclasses.replace(STICK, minor=32), MiB)
    assert not keeps_choice(STICK, STICK, 100 * MiB)  # the new image does not fit
    gone_ro = dataclasses.replace(STICK, eligible=False, reasons=("read-only",))
    assert not keeps_choice(STICK, gone_ro, MiB)


def test_will_boot_from_the_report() -> None:
    assert will_boot(REPORTS["grub-hybrid"])
    assert not will_boot(REPORTS["eltorito-bios-only"])
    assert not will_boot(None)  # no report: the boot records could not be read
    assert will_boot({"boot": {"bios": "no", "uefi": "firmware-dependent"}})
    assert will_boot({})  # a report without a verdict is not called unbootable


def why_not(**changes: Any) -> str | None:
    """not_ready for an app with everything in place, but for CHANGES."""
    args: dict[str, Any] = {
        "is_root": True,
        "image": "/x/a.iso",
        "image_size": MiB,
        "image_error": None,
        "chosen": STICK,
    }
    return not_ready(**(args | changes))


def test_not_ready_gives_the_first_missing_step() -> None:
    assert why_not() is None
    for key, words in (
        ("is_root", "needs root: quit and run 'sudo usbwriter'"),
        ("image", "Choose an image first"),
        ("image_size", "still being read"),
        ("chosen", "Choose a drive first"),
    ):
        why = why_not(**{key: False if key == "is_root" else None})
        assert why is not None and words in why, key
    # root comes first: without it nothing else helps
    assert why_not(is_root=False, image=None, chosen=None) == why_not(is_root=False)
    assert why_not(image_size=None, image_error="/x/a.iso: bad") == "/x/a.iso: bad"


def test_the_plain_modules_do_not_import_textual() -> None:
    code = (
        "import sys\n"
        "import usbwriter.tui.rules, usbwriter.tui.paths, usbwriter.tui.crash\n"
        "import usbwriter.tui.settings, usbwriter.tui.format\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_an_image_for_a_board_is_named_not_warned_about() -> None:
    board = {
        "boot": {"bios": "no", "uefi": "no", "reasons": []},
        "image_kind": "board:raspberry-pi",
        "for_hardware": "a Raspberry Pi",
    }
    assert made_for(board) == "a Raspberry Pi"
    data_iso = {"boot": {"bios": "no", "uefi": "no", "reasons": []}, "image_kind": "data-iso"}
    assert made_for(data_iso) is None and not will_boot(data_iso)
    assert made_for(REPORTS["grub-hybrid"]) is None

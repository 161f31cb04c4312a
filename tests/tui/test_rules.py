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
from usbwriter.jobs.suggest import Extent, Layout, delta_suggested, layout_of
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
    write_targets,
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


# --------------------------------------------------------------------------- delta


def test_delta_is_suggested_when_the_partitions_end_within_the_image() -> None:
    image = 100 * MiB
    hybrid = Layout((Extent(0, 90 * MiB, "iso9660"), Extent(2 * MiB, 4 * MiB, "vfat")))
    assert delta_suggested(hybrid, image)
    half = Layout((Extent(MiB, 49 * MiB, "ext4"),))  # ends at exactly half
    assert delta_suggested(half, image)
    assert not delta_suggested(Layout((Extent(MiB, 40 * MiB, "ext4"),)), image)  # too short
    # a stick formatted whole: its partition runs to the end of a bigger drive
    assert not delta_suggested(Layout((Extent(MiB, 7 * 1024 * MiB, "vfat"),)), image)
    # one partition past the image is enough to say no
    past = Layout((Extent(MiB, 60 * MiB, "ext4"), Extent(61 * MiB, 40 * MiB, "ext4")))
    assert not delta_suggested(past, image)


def test_delta_needs_every_start_to_judge_by_the_partitions() -> None:
    image = 100 * MiB
    assert not delta_suggested(Layout((Extent(None, 90 * MiB, "ext4"),)), image)
    partly = Layout((Extent(0, 60 * MiB, "ext4"), Extent(None, 10 * MiB, "ext4")))
    assert not delta_suggested(partly, image)


def test_delta_is_suggested_for_an_iso_volume_of_the_same_size_class() -> None:
    image = 100 * MiB
    for size, expected in ((100 * MiB, True), (75 * MiB, True), (125 * MiB, True),
                           (74 * MiB, False), (126 * MiB, False)):  # fmt: skip
        assert delta_suggested(Layout(whole=Extent(0, size, "iso9660")), image) is expected
        # the first partition holding the ISO (its start unknown) counts the same
        first = Layout((Extent(None, size, "iso9660"), Extent(None, MiB, "vfat")))
        assert delta_suggested(first, image) is expected
    # an ISO 9660 volume in a later partition does not count; nor another file system
    later = Layout((Extent(None, MiB, "vfat"), Extent(None, 100 * MiB, "iso9660")))
    assert not delta_suggested(later, image)
    assert not delta_suggested(Layout(whole=Extent(0, 100 * MiB, "udf")), image)


def test_delta_is_not_suggested_for_an_empty_drive_or_an_unknown_image() -> None:
    assert not delta_suggested(Layout(), 100 * MiB)
    assert not delta_suggested(Layout(whole=Extent(0, 100 * MiB, "iso9660")), None)
    assert not delta_suggested(Layout(whole=Extent(0, 0, "iso9660")), 0)


def test_layout_of_takes_the_starts_by_partition_name() -> None:
    """The recorded stick: one FAT partition from 1 MiB to its end (64 MiB)."""
    (part,) = STICK.partitions
    layout = layout_of(STICK, {part.name: MiB}, None)
    assert layout.partitions == (Extent(MiB, part.size, "vfat"),)
    assert delta_suggested(layout, 64 * MiB)  # as if a 64 MiB image had been written
    assert not delta_suggested(layout, 60 * MiB)  # the partition runs past this image
    assert layout_of(STICK, {}, None).partitions[0].start is None
    whole = Extent(0, 4 * MiB, "iso9660")
    assert layout_of(USB_DISK, {}, whole) == Layout((), whole)


def test_write_targets_are_the_marked_drives_else_the_chosen_one() -> None:
    assert write_targets(None, []) == []
    assert write_targets(STICK, []) == [STICK]
    assert write_targets(STICK, [USB_DISK, LOOP]) == [USB_DISK, LOOP]
    assert write_targets(None, [LOOP]) == [LOOP]

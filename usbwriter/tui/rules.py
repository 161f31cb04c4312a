"""What the main screen lets the user choose, and the words that say why not.

Pure functions over ``Disk``, the image size, the boot report dict and "am I root".
The screens call them to dim drives, keep or drop a choice, and enable Write; the
write itself is checked again by the core before anything is written. No Textual
here: tests/tui/test_rules.py runs them without an app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from usbwriter.tui.format import verdict_of
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.jobs import Plan


# --------------------------------------------------------------------------- drives


def visible(disk: Disk, show_all: bool) -> bool:
    """The default view shows the drives a user would flash; --all shows every disk."""
    return show_all or (disk.user_drive and disk.size > 0)


def drive_fits(disk: Disk, image_size: int | None) -> bool:
    """The image fits on the drive (or its size is not known yet)."""
    return image_size is None or image_size <= disk.size


def drive_choosable(disk: Disk, image_size: int | None) -> bool:
    """May the user pick this drive as the target (for this image)?"""
    return disk.eligible and disk.size > 0 and drive_fits(disk, image_size)


def drive_status(disk: Disk, image_size: int | None) -> str:
    """One short phrase: 'ready', why it cannot be chosen, or what to know."""
    if not disk.eligible:
        if disk.is_system:
            return "system disk: " + "; ".join(
                r.removeprefix("system disk: ") for r in disk.reasons
            )
        return "; ".join(disk.reasons) or "not eligible"
    if disk.size <= 0:
        return "no medium (size 0)"
    if not drive_fits(disk, image_size):
        assert image_size is not None
        return f"image does not fit ({human_size(image_size)} > {human_size(disk.size)})"
    if disk.mounted:
        return "ready, will unmount"
    return "ready"


def choosable_count(disks: Iterable[Disk], image_size: int | None) -> int:
    return sum(1 for d in disks if drive_choosable(d, image_size))


def keeps_choice(chosen: Disk, now: Disk, image_size: int | None) -> bool:
    """The chosen drive, listed again as NOW, stays chosen: same medium, still usable."""
    if not drive_choosable(now, image_size):
        return False
    return (chosen.major, chosen.minor, chosen.diskseq, chosen.size) == (
        now.major,
        now.minor,
        now.diskseq,
        now.size,
    )


# --------------------------------------------------------------------------- image


def made_for(report: Mapping[str, Any] | None) -> str | None:
    """What a disk image that will not boot a PC is for ("a Raspberry Pi", "a data
    disk"), when it is meant for that (written with a note, not a warning); else None."""
    if report is None or will_boot(report):
        return None
    kind = str(report.get("image_kind") or "")
    if kind.startswith("board:") or kind == "data-disk":
        return str(report.get("for_hardware") or "other hardware")
    return None


def will_boot(report: Mapping[str, Any] | None) -> bool:
    """True unless the report says it boots on neither firmware (or there is none)."""
    if report is None:
        return False
    bios, uefi, _ = verdict_of(report)
    return not (bios == "no" and uefi == "no")


# --------------------------------------------------------------------------- Write


#: what the status says while no drive is listed
NO_DRIVES = "No USB stick or SD card found. Plug one in, or press a to show every disk."


def not_ready(
    *,
    is_root: bool,
    image: str | None,
    image_size: int | None,
    image_error: str | None,
    chosen: Disk | None,
    drives_shown: int = 1,
) -> str | None:
    """Why Write cannot start now, or None."""
    if not is_root:
        return "Writing to a drive needs root: quit and run 'sudo usbwriter'."
    if image is None:
        return "Choose an image first (type its path, or ctrl+o)."
    if image_size is None:
        return image_error or "The image is still being read."
    if chosen is None and drives_shown == 0:
        return NO_DRIVES
    if chosen is None:
        return "Choose a drive first: highlight it and press Enter (Space marks several)."
    return None


def write_targets(chosen: Disk | None, marked: Sequence[Disk]) -> list[Disk]:
    """The drives w writes to: the marked ones (Space), else the chosen one (Enter)."""
    if marked:
        return list(marked)
    return [chosen] if chosen is not None else []


def plan_refusal(plan: Plan, disk: Disk) -> str | None:
    """Why the app will not write this plan: the first blocker a person may not confirm
    past, or a drive that is no longer the one listed."""
    from usbwriter.identity import identity_changes

    for blocker in plan.blockers:
        if not blocker.overridable:
            return blocker.message
    if plan.identity is not None:
        changes = identity_changes(plan.identity, disk)
        if changes:
            listed = "; ".join(changes)
            return f"{disk.path}: not the drive that was listed ({listed}); choose it again"
    return None


# --------------------------------------------------------------------------- the ISO toolkit


def browsable(report: Mapping[str, Any] | None) -> bool:
    """The image is an ISO (ISO 9660 or UDF, raw or compressed): its files can be listed."""
    return report is not None and report.get("kind") in ("iso9660", "udf")


def drive_job_refusal(*, is_root: bool, disk: Disk | None, job: str) -> str | None:
    """Why a backup or restore of the highlighted drive cannot start now, or None."""
    if not is_root:
        return f"To {job} a drive needs root: quit and run 'sudo usbwriter'."
    if disk is None:
        return f"Highlight a drive in the table first, then {job} it."
    if disk.size <= 0:
        return f"{disk.path}: no medium (size 0)"
    return None

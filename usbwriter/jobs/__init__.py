"""One write job for every front end: *plan* decides, *run* carries it out.

``plan(request)`` reads the facts (image, target, mounts, boot verdict) and decides,
changing nothing: blockers (each an error with its exit code), warnings, the exact
mounts that would be unmounted, and the target's pinned identity. ``run(plan)`` does
it on one exclusive descriptor held from the first byte to the last read-back. The
command line and the app only build a plan, show it, confirm, run it and render the
receipt.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import TYPE_CHECKING

from usbwriter.errors import UsbWriterError
from usbwriter.jobs.decide import decide, wants_files
from usbwriter.jobs.facts import check_checksum, look
from usbwriter.jobs.model import (
    Blocker,
    BootFacts,
    ImageFacts,
    Plan,
    Request,
    TargetFacts,
)
from usbwriter.jobs.write import run, verify_only
from usbwriter.progress import ProgressCallback

if TYPE_CHECKING:
    from usbwriter.sources.bmap import Bmap


_LOOK = object()  # plan(checksum=...) not given: look for the checksum


def plan(
    request: Request,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    checksum: object = _LOOK,
) -> Plan:
    """Every check that changes nothing, and the decision. The checksum of the file as
    downloaded (a full read, with PROGRESS) is taken only when nothing else refuses."""
    image, target, boot = look(
        request.image, request.device, member=request.member, progress=progress
    )
    suggested = False
    if request.delta is None:  # as the drive suggests
        suggested = suggest_delta(image, target)
        bmap = look_at_bmap(replace(request, delta=False), image)
        request = replace(request, delta=suggested)
    else:
        bmap = look_at_bmap(request, image)
    files = None
    if wants_files(request, image, boot):
        from usbwriter.jobs.files import look_at_files

        files = look_at_files(image)
    first = decide(request, image, target, boot, bmap=bmap, files=files)
    first = replace(first, delta_suggested=suggested, bmap_seen=bmap)
    if first.hard_blocked or image.kind != "file":
        return first
    from usbwriter.sources.bmap import Bmap

    checked = (
        check_checksum(
            request,
            progress=progress,
            cancel=cancel,
            bmap=bmap if isinstance(bmap, Bmap) else None,
        )
        if checksum is _LOOK
        else checksum  # already checked for another drive of the same write
    )
    last = decide(request, image, target, boot, checked, bmap=bmap, files=files)  # type: ignore[arg-type]
    return replace(last, delta_suggested=suggested, bmap_seen=bmap)


def with_delta(plan: Plan, delta: bool) -> Plan:
    """PLAN with "write only what changed" chosen the other way (in a confirmation)."""
    return with_choices(plan, delta=delta)


def with_bypass(plan: Plan, windows_bypass: tuple[str, ...]) -> Plan:
    """PLAN with other Windows 11 bypasses chosen (in a confirmation)."""
    return with_choices(plan, windows_bypass=windows_bypass)


def with_choices(
    plan: Plan, *, delta: bool | None = None, windows_bypass: tuple[str, ...] | None = None
) -> Plan:
    """PLAN with what a person chose in the confirmation: decided again from the facts
    the plan holds, nothing read again. What runs is the plan returned, shown to the
    person before they say yes."""
    request = plan.request
    if delta is not None and bool(request.delta) != delta:
        request = replace(request, delta=delta)
    if windows_bypass is not None and request.windows_bypass != windows_bypass:
        request = replace(request, windows_bypass=windows_bypass)
    if request is plan.request:
        return plan
    again = decide(
        request,
        plan.image,
        plan.target,
        plan.boot,
        plan.checksum,
        bmap=plan.bmap_seen,
        files=plan.files,
    )
    return replace(again, delta_suggested=plan.delta_suggested, bmap_seen=plan.bmap_seen)


def suggest_delta(image: ImageFacts, target: TargetFacts) -> bool:
    """Whether the drive seems to hold an image of this size already (a stick written
    before): then only what changed is written. Reads 34 KiB of the drive."""
    from usbwriter.jobs.suggest import delta_suggested, read_layout

    if target.kind != "block" or target.disk is None or image.kind != "file":
        return False
    return delta_suggested(read_layout(target.disk), image.size)


def look_at_bmap(request: Request, image: ImageFacts) -> Bmap | UsbWriterError | None:
    """The bmap given, or the one beside the image (not with --no-bmap or --delta)."""
    from usbwriter.sources.bmap import find_bmap, read_bmap

    path = request.bmap
    if path is None and not (request.no_bmap or request.delta) and image.kind == "file":
        path = find_bmap(image.path)
    if path is None:
        return None
    try:
        return read_bmap(path)
    except UsbWriterError as e:
        return e


__all__ = [
    "Blocker",
    "BootFacts",
    "ImageFacts",
    "Plan",
    "Request",
    "TargetFacts",
    "decide",
    "plan",
    "run",
    "verify_only",
    "with_bypass",
    "with_choices",
    "with_delta",
]

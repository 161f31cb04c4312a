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

from usbwriter.job.decide import decide
from usbwriter.job.facts import check_checksum, look
from usbwriter.job.model import (
    Blocker,
    BootFacts,
    ImageFacts,
    Plan,
    Request,
    TargetFacts,
)
from usbwriter.job.runner import run, verify_only
from usbwriter.progress import ProgressCallback


def plan(
    request: Request,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> Plan:
    """Every check that changes nothing, and the decision. The checksum of the file as
    downloaded (a full read, with PROGRESS) is taken only when nothing else refuses."""
    image, target, boot = look(request.image, request.device, member=request.member)
    first = decide(request, image, target, boot)
    if first.hard_blocked or image.kind != "file":
        return first
    checksum = check_checksum(request, progress=progress, cancel=cancel)
    return decide(request, image, target, boot, checksum)


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
]

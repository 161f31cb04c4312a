"""One write job for every front end: *plan* decides, *run* carries it out.

``plan(request)`` reads the facts (image, target, mounts, boot verdict) and decides,
changing nothing: blockers (each an error with its exit code), warnings, the exact
mounts that would be unmounted, and the target's pinned identity. ``run(plan)`` does
it on one exclusive descriptor held from the first byte to the last read-back. The
command line and the app only build a plan, show it, confirm, run it and render the
receipt.
"""

from __future__ import annotations

from usbwriter.job.decide import decide
from usbwriter.job.facts import look
from usbwriter.job.model import (
    Blocker,
    BootFacts,
    ImageFacts,
    Plan,
    Request,
    TargetFacts,
)
from usbwriter.job.runner import run, verify_only


def plan(request: Request) -> Plan:
    """Every check that changes nothing, and the decision."""
    image, target, boot = look(request.image, request.device, member=request.member)
    return decide(request, image, target, boot)


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

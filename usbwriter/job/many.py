"""One image to several drives: a plan for each drive, one run that writes them all.

``plan_many`` plans each drive as for a single write (the checksum of the image is
taken once and shared), and refuses two names for the same drive. ``run_many``
unmounts what each plan says, opens every drive once (O_EXCL, identity checked on the
descriptor), streams the image once to all of them (usbwriter.fanout), reads each back
on its own thread, and returns one result per drive: its receipt, or the error that
took it out. One drive failing does not stop the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace

from usbwriter.errors import BadInput, Cancelled, UsbWriterError
from usbwriter.fanout import DriveFailed, DriveProgress, Outcome, verify_many, write_many
from usbwriter.job.model import Plan, Request
from usbwriter.job.mounts import unmount_planned
from usbwriter.job.runner import open_source, open_target, receipt_for
from usbwriter.progress import ProgressCallback
from usbwriter.receipt import Receipt
from usbwriter.sources import SourceInfo
from usbwriter.writer import Target


@dataclass(frozen=True)
class DriveResult:
    path: str
    receipt: Receipt | None
    error: UsbWriterError | None

    @property
    def exit_code(self) -> int:
        from usbwriter.errors import EXIT_MISMATCH, EXIT_OK

        if self.error is not None:
            return self.error.exit_code
        assert self.receipt is not None
        if self.receipt.verify is not None and not self.receipt.verified:
            return EXIT_MISMATCH
        return EXIT_OK


def plan_many(
    request: Request,
    devices: list[str],
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> list[Plan]:
    """A plan for each device (the image's checksum computed once)."""
    from usbwriter.job import plan

    if len(set(devices)) != len(devices):
        raise BadInput("the same --device is given twice")
    if request.delta or request.bmap:
        raise BadInput("--delta and --bmap write one drive at a time; give one --device")
    request = replace(request, no_bmap=True)  # several drives are written whole
    first = plan(replace(request, device=devices[0]), progress=progress, cancel=cancel)
    plans = [first]
    for dev in devices[1:]:
        plans.append(plan(replace(request, device=dev), checksum=first.checksum))
    for i, p in enumerate(plans):
        for q in plans[:i]:
            same = p.target.kind == "block" and p.target.rdev == q.target.rdev
            if same or p.target.footprint & q.target.footprint:
                raise BadInput(
                    f"{p.target.requested} and {q.target.requested} are the same drive"
                    + ("" if same else " (one backing file under both)")
                )
    return plans


def run_many(
    plans: list[Plan],
    *,
    progress: DriveProgress | None = None,
    cancel: threading.Event | None = None,
    notify: Callable[[str], None] | None = None,
    on_failed: DriveFailed | None = None,
) -> list[DriveResult]:
    for p in plans:
        p.raise_if_blocked()
    cancel = cancel or threading.Event()
    if cancel.is_set():
        raise Cancelled("cancelled before anything was changed")
    unmounted = [unmount_planned(p.unmounts, notify=notify) if p.unmounts else () for p in plans]
    with ExitStack() as stack:
        src = stack.enter_context(open_source(plans[0].image, plans[0].checksum))
        targets: list[Target] = [stack.enter_context(open_target(p)) for p in plans]
        outcomes = write_many(
            src, targets, on_progress=progress, on_failed=on_failed, cancel=cancel
        )
        if plans[0].request.verify:
            outcomes = verify_many(
                src, outcomes, targets, on_progress=progress, on_failed=on_failed, cancel=cancel
            )
        return [
            _result(p, o, u, src.info) for p, o, u in zip(plans, outcomes, unmounted, strict=True)
        ]


def _result(plan: Plan, out: Outcome, unmounted: tuple[str, ...], info: SourceInfo) -> DriveResult:
    if out.error is not None and out.write is None:
        return DriveResult(out.path, None, out.error)
    assert out.write is not None
    receipt = receipt_for(plan, out.write, out.verify, unmounted, out.wiped, info)
    return DriveResult(out.path, receipt, out.error)


__all__ = ["DriveResult", "plan_many", "run_many"]

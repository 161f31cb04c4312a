"""One image to several drives: a plan for each drive, one run that writes them all.

``plan_many`` plans each drive as for a single write (the checksum of the image is
taken once and shared), and refuses two names for the same drive. ``run_many``
unmounts what each plan says, opens every drive once (O_EXCL, identity checked on the
descriptor), and writes and reads back each drive on a thread of its own, as a single
write does (``jobs.write.carry_out``): each reads the image at its own pace (a raw image by
position, a compressed one decoded for each drive), so a fast drive never waits for a
slow one. One result per drive: its receipt, or the error that took it out. One drive
failing does not stop the others.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace

from usbwriter.engine.target import Target, wipe_note
from usbwriter.errors import BadInput, Cancelled, DeviceFault, InternalError, UsbWriterError
from usbwriter.jobs.model import Plan, Request
from usbwriter.jobs.mounts import unmount_planned
from usbwriter.jobs.write import carry_out, mismatch_message, open_source, open_target
from usbwriter.progress import Progress, ProgressCallback
from usbwriter.receipt import Receipt

#: drive path, its progress
DriveProgress = Callable[[str, Progress], None]
#: drive path, what went wrong and what was done about it (said as it happens)
DriveFailed = Callable[[str, str], None]


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
    from usbwriter.jobs import plan

    if len(set(devices)) != len(devices):
        raise BadInput("the same --device is given twice")
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
    """Write and read back every drive at once, each on its own thread at its own pace,
    each reading the image for itself (a fast drive never waits for a slow one); one
    result per drive, in order. A drive that fails is wiped and named at once through
    ON_FAILED; the others go on."""
    for p in plans:
        p.raise_if_blocked()
    cancel = cancel or threading.Event()
    if cancel.is_set():
        raise Cancelled("cancelled before anything was changed")
    unmounted = [unmount_planned(p.unmounts, notify=notify) if p.unmounts else () for p in plans]
    with ExitStack() as stack:
        src = stack.enter_context(open_source(plans[0].image, plans[0].checksum))
        targets: list[Target] = [stack.enter_context(open_target(p)) for p in plans]
        results: list[DriveResult | None] = [None] * len(plans)

        def one(i: int) -> None:
            plan, tgt = plans[i], targets[i]
            report = (lambda pr: progress(tgt.path, pr)) if progress is not None else None
            try:
                receipt = carry_out(plan, src, tgt, unmounted[i], progress=report, cancel=cancel)
            except BaseException as e:
                error = e if isinstance(e, UsbWriterError) else _unexpected(tgt, e)
                results[i] = DriveResult(tgt.path, None, error)
                if on_failed is not None and not isinstance(error, Cancelled):
                    on_failed(tgt.path, error.message)
                return
            results[i] = DriveResult(tgt.path, receipt, None)
            if on_failed is not None and receipt.verify is not None and not receipt.verified:
                on_failed(tgt.path, mismatch_message(receipt))

        threads = [
            threading.Thread(target=one, args=(i,), name=f"usbwriter-drive-{i}", daemon=True)
            for i in range(len(plans))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [r if r is not None else _lost(targets[i]) for i, r in enumerate(results)]


def _unexpected(tgt: Target, e: BaseException) -> UsbWriterError:
    """An error of no known kind on one drive's thread: that drive's failure, its head
    wiped (a write wipes it itself; this is past the write)."""
    wiped = tgt.wipe_head()
    return DeviceFault(f"{tgt.path}: {e}; {wipe_note(wiped)}", path=tgt.path)


def _lost(tgt: Target) -> DriveResult:
    return DriveResult(tgt.path, None, InternalError(f"{tgt.path}: no result", path=tgt.path))


__all__ = ["DriveFailed", "DriveProgress", "DriveResult", "plan_many", "run_many"]

"""usbwriter --image IMG --device A --device B ...: one image to several drives at once.

Each drive is planned and refused as for a single write; one confirmation lists every
drive; the image is read once; each drive gets its own result, and the exit code is
the worst of them (the highest number)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from usbwriter.cli.output import (
    ProgressPrinter,
    cancel_on_signals,
    confirm,
    emit,
    interactive,
    say,
    tell,
)
from usbwriter.errors import Cancelled, Refused

if TYPE_CHECKING:
    from usbwriter.jobs import Plan, Request
    from usbwriter.progress import Progress


class _AllDrives:
    """Per-drive progress into one line (the sum over the drives); NDJSON per drive."""

    def __init__(self, show: ProgressPrinter, json_mode: bool) -> None:
        self.show, self.json_mode = show, json_mode
        self.latest: dict[str, Progress] = {}
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def __call__(self, device: str, p: Progress) -> None:
        from usbwriter.progress import Progress

        with self.lock:
            if self.json_mode:
                emit(
                    {
                        "event": "progress",
                        "device": device,
                        "phase": p.phase,
                        "done": p.done,
                        "total": p.total,
                        "rate": round(p.rate),
                    }
                )
                return
            self.latest[device] = p
            phase = p.phase
            now = [q for q in self.latest.values() if q.phase == phase]
            self.show(
                Progress(
                    phase,
                    sum(q.done for q in now),
                    sum(q.total for q in now),
                    sum(q.rate for q in now),
                    time.monotonic() - self.start,
                )
            )

    def failed(self, device: str, message: str) -> None:
        """A drive dropped out: said at once; it leaves the total."""
        with self.lock:
            self.latest.pop(device, None)
            if self.json_mode:
                emit({"event": "drive_failed", "device": device, "message": message})
                return
            self.show.end_line()
            say(f"usbwriter: {message}; the other drives go on")


def write_several(request: Request, devices: list[str], *, yes: bool, json_mode: bool) -> int:
    from usbwriter.cli.write import boot_summary, refusal_for
    from usbwriter.jobs.several import plan_many, run_many
    from usbwriter.jobs.write import device_info, mismatch_message
    from usbwriter.receipt import describe_device

    asking = not yes and interactive()
    with cancel_on_signals() as cancel, ProgressPrinter(json_mode) as show:
        plans = plan_many(request, devices, progress=show, cancel=cancel)
    for p in plans:
        refusal = refusal_for(p, asking=asking)
        if refusal is not None and not p.needs_confirmation_only:
            raise refusal
    if json_mode and plans[0].boot is not None:
        emit({"event": "boot", **plans[0].boot.to_dict()})
    summary = boot_summary(plans[0])
    if summary:
        say(summary)
    if any(p.blockers for p in plans) and not asking:
        raise next(p for p in plans if p.blockers).blockers[0].error
    if not yes:
        if not interactive():
            raise Refused("not on a terminal and no --yes: refusing to erase the drives")
        warn = "".join(f"WARNING: {b.message}\n" for b in plans[0].blockers)
        listed = "".join(f"  {describe_device(device_info(p))}{_unmounts(p)}\n" for p in plans)
        question = (
            f"{warn}ALL DATA on these {len(plans)} drives will be erased and replaced by "
            f"{request.image} ({plans[0].image.describe()}):\n{listed}Type 'yes' to continue: "
        )
        if not confirm(question):
            raise Cancelled("not confirmed; nothing was written")
        plans = [p.confirmed() for p in plans]
    with cancel_on_signals() as cancel, ProgressPrinter(json_mode) as show:

        def notify(text: str) -> None:
            show.end_line()
            say(f"usbwriter: {text}")

        drives_progress = _AllDrives(show, json_mode)
        results = run_many(
            plans,
            progress=drives_progress,
            cancel=cancel,
            notify=notify,
            on_failed=drives_progress.failed,
        )
    drives: list[dict[str, Any]] = []
    for r in results:
        row: dict[str, Any] = {"device": r.path, "exit_code": r.exit_code}
        if r.receipt is not None:
            row["verified"] = r.receipt.verified
            if json_mode:
                emit({**r.receipt.to_json(), "device_path": r.path})
            else:
                tell(r.receipt.to_text())
            if r.receipt.verify is not None and not r.receipt.verified:
                say(f"usbwriter: {mismatch_message(r.receipt)}")
        if r.error is not None:
            row["error"] = r.error.message
            if json_mode:
                emit({"event": "error", **r.error.to_dict(), "device_path": r.path})
            say(f"usbwriter: {r.error.message}")
        drives.append(row)
    worst = max(r.exit_code for r in results)
    if json_mode:
        emit({"event": "summary", "drives": drives, "exit_code": worst})
    else:
        ok = sum(1 for r in results if r.exit_code == 0)
        say(f"{ok} of {len(results)} drives written and verified.")
        for row in drives:
            state = "ok" if row["exit_code"] == 0 else f"FAILED (exit {row['exit_code']})"
            say(f"  {row['device']}: {state}")
    return worst


def _unmounts(plan: Plan) -> str:
    if not plan.unmounts:
        return ""
    return f" ({', '.join(plan.unmount_points)} will be unmounted first)"

"""usbwriter probe DEVICE: is the stick what it says it is? Fake capacity, dropped writes,
read errors, and its real speed; what the probe overwrote is put back."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from usbwriter.cli.output import cancel_on_signals, confirm, emit, interactive, say, tell
from usbwriter.errors import (
    EXIT_FAILED,
    Cancelled,
    Refused,
    outcome_exit_code,
)

if TYPE_CHECKING:
    import threading
    from types import FrameType

DESCRIPTION = (
    "Test a drive for fake capacity (writes that wrap around onto earlier blocks), dropped "
    "writes and read errors, and measure its speed: tagged blocks are written at spread "
    "offsets and read back, the real size found by bisection. What is overwritten is "
    "saved and put back (unless --destructive). Exits 0 for a genuine drive, 3 for one "
    "that is not."
)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", metavar="DEVICE", help="the whole drive, e.g. /dev/sdb")
    p.add_argument(
        "--destructive",
        action="store_true",
        help="do not save and put back the blocks the probe overwrites (faster; asks first)",
    )
    p.add_argument("--yes", "-y", action="store_true", help="with --destructive: do not ask")
    p.add_argument(
        "--unmount", action="store_true", help="unmount the drive's mounted file systems first"
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(ns: argparse.Namespace) -> int:
    from usbwriter.cli.write import refusal_for
    from usbwriter.jobs.probe import plan_probe, run_probe
    from usbwriter.jobs.write import device_info
    from usbwriter.receipt import describe_device

    plan = plan_probe(ns.device, unmount=ns.unmount)
    refusal = refusal_for(plan, asking=False)
    if refusal is not None:
        raise refusal
    if ns.destructive and not ns.yes:
        if not interactive():
            raise Refused(
                f"{ns.device}: --destructive, not on a terminal and no --yes: refusing to "
                "overwrite blocks of the drive"
            )
        question = (
            f"Blocks spread over {describe_device(device_info(plan))} will be overwritten "
            "with test data and NOT put back.\nType 'yes' to continue: "
        )
        if not confirm(question):
            raise Cancelled("not confirmed; nothing was changed")
    with cancel_on_signals() as cancel, _restore_first(cancel, not ns.destructive):

        def notify(text: str) -> None:
            say(f"usbwriter: {text}")

        result = run_probe(plan, destructive=ns.destructive, cancel=cancel, notify=notify)
    if ns.json:
        emit({"event": "probe", "device": device_info(plan), **result.to_dict()})
    else:
        tell(result.to_text(ns.device))
    if result.restored is False:
        say(
            f"usbwriter: {ns.device}: {len(result.restore_failures)} block(s) could not be put "
            f"back as they were (first at byte {result.restore_failures[0]})"
        )
        return EXIT_FAILED
    return outcome_exit_code(result)  # 3 for a drive that is not genuine


@contextmanager
def _restore_first(cancel: threading.Event, saving: bool) -> Iterator[None]:
    """While blocks are saved, a second Ctrl-C or SIGTERM does not cut the restore short:
    the first stops the probe, which then puts everything back."""
    if not saving:
        yield
        return
    first = {int(sig): signal.getsignal(sig) for sig in STOP_SIGNALS}

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            return  # the probe is stopping: it puts back what it saved first
        previous = first[signum]
        if callable(previous):
            previous(signum, frame)
        else:
            cancel.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for signum, previous in first.items():
            signal.signal(signum, previous)

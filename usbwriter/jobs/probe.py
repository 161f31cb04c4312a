"""The probe job: is the drive what it says it is? And the quick probe before a write.

``plan_probe(device)`` makes the write's checks of the target (``decide_target``: a
partition, a mounted drive, the system disk, a read-only drive are refused the same
way) and changes nothing. ``run_probe(plan)`` holds the drive as a write does (one
``O_RDWR | O_DIRECT | O_EXCL`` descriptor, checked against the plan's identity) and
probes it (``usbwriter.engine.probe``), putting back what it overwrote unless
``destructive``.

``before_write(plan, tgt)`` is the quick probe a write makes on its own held
descriptor, after the identity check and before the first change: the ranges the
image will occupy (its last MiB), the drive's last MiB, powers of two and a sample. A
drive that cannot hold the image is refused there, naming its real size. What the
probe overwrote is put back in every case (a few dozen blocks): a write that stops
before its first byte leaves the drive as it was.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from usbwriter.engine.blockio import MiB, round_up
from usbwriter.engine.probe import (
    TAG_BLOCK,
    VERDICT_WORDS,
    FdMedium,
    ProbeResult,
    Saver,
    probe,
)
from usbwriter.engine.target import Target
from usbwriter.errors import Cancelled, DeviceFault, Refused
from usbwriter.jobs.decide import decide_target
from usbwriter.jobs.facts import look_at_target
from usbwriter.jobs.model import Plan, Request
from usbwriter.jobs.mounts import unmount_planned
from usbwriter.jobs.write import open_target
from usbwriter.units import human_size

Notify = Callable[[str], None]


def plan_probe(device: str, *, unmount: bool = False) -> Plan:
    """The write's checks of DEVICE as a target, with no image: changes nothing."""
    from usbwriter.devices import read_snapshot

    request = Request(image="", device=device, unmount=unmount)
    return decide_target(request, look_at_target(device, read_snapshot()))


def run_probe(
    plan: Plan,
    *,
    destructive: bool = False,
    cancel: threading.Event | None = None,
    notify: Notify | None = None,
    save_folder: str | None = None,
) -> ProbeResult:
    """Probe the plan's drive on one held descriptor; unless DESTRUCTIVE, what was
    overwritten is put back (also on a cancel) and read back."""
    plan.raise_if_blocked()
    cancel = cancel or threading.Event()
    name = plan.target.requested
    if cancel.is_set():
        raise Cancelled(f"{name}: cancelled before anything was changed")
    if plan.unmounts:
        unmount_planned(plan.unmounts, notify=notify)
    with open_target(plan) as tgt:
        medium = FdMedium(tgt.fd, tgt.size, tgt.block)
        try:
            return probe(medium, save=not destructive, cancel=cancel, save_folder=save_folder)
        except Cancelled:
            raise Cancelled(
                f"probe of {name} interrupted"
                + ("" if destructive else "; the blocks it overwrote were put back")
            ) from None
        except OSError as e:
            raise DeviceFault(
                f"{name}: the probe failed: {e.strerror}", path=name, errno=e.errno
            ) from None


def before_write(
    plan: Plan, tgt: Target, *, cancel: threading.Event | None = None, notify: Notify | None = None
) -> ProbeResult | None:
    """The quick probe before a write, on the write's held descriptor; None where it
    makes no sense (``--no-probe``, a regular file, a drive of 8 MiB or less). What it
    overwrote is put back before it returns. Raises ``Refused`` when the drive cannot
    hold the image."""
    if not plan.request.probe or not tgt.is_block or tgt.size <= 8 * MiB:
        return None
    if tgt.block > TAG_BLOCK:  # (blocks of 8 KiB or more: not probed)
        return None
    image_end = plan.image.size
    extra: list[int] = []
    if image_end is not None and 0 < image_end <= tgt.size:
        top = round_up(image_end, TAG_BLOCK)
        extra = [max(top - MiB, 0), top - TAG_BLOCK]
    medium = FdMedium(tgt.fd, tgt.size, tgt.block)
    saver = Saver()
    start = time.monotonic()
    try:
        result = probe(medium, quick=True, extra=extra, cancel=cancel, saver=saver)
    except (Cancelled, KeyboardInterrupt):
        raise Cancelled(
            f"write to {tgt.path} cancelled before it started (while probing the drive); "
            "device unchanged"
        ) from None
    except OSError as e:
        raise DeviceFault(
            f"{tgt.path}: the probe before writing failed: {e.strerror}; nothing was written",
            path=tgt.path,
            errno=e.errno,
        ) from None
    finally:
        # Everything is put back, also what the write overwrites next: a write that
        # stops before its first byte leaves the drive as it was.
        failed = saver.restore(medium)
        saver.close()
    if failed:
        (notify or (lambda _: None))(
            f"{tgt.path}: {len(failed)} block(s) the probe tested did not come back as they "
            f"were (first at byte {failed[0]})"
        )
    # A genuine drive was judged by the plan; an image's size read as "about" (gzip's,
    # modulo 4 GiB) proves nothing: the write checks it as it goes.
    known = plan.image.source is None or plan.image.source.size_is != "about"
    if not result.genuine and known and image_end is not None and result.usable_size < image_end:
        raise Refused(
            f"{tgt.path}: the drive holds only {human_size(result.usable_size)} of the "
            f"{human_size(result.reported_size)} it reports ({VERDICT_WORDS[result.verdict]}"
            f"); the image {plan.image.requested} ({human_size(image_end)}) does not fit; "
            "nothing was written",
            path=tgt.path,
            offset=result.usable_size,
        )
    result = replace(
        result,
        restored=not failed,
        restore_failures=failed,
        seconds=time.monotonic() - start,  # the restore too
    )
    if not result.genuine and notify is not None:
        fits = (
            f"the image ({human_size(image_end)}) fits in the part that works"
            if image_end is not None
            else "whether the image fits is known only once it is decompressed"
        )
        notify(f"{tgt.path}: {result.describe()}; {fits}")
    return result


__all__ = ["before_write", "plan_probe", "run_probe"]

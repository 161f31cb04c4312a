"""Carry out a plan on one exclusive descriptor, from the first byte to the last read-back.

The order: unmount exactly the planned mounts; open the image and check it is the file
the plan looked at; open the resolved target node once (O_RDWR | O_DIRECT | O_EXCL |
O_NOFOLLOW for a drive, an exclusive flock for a file) and check on that descriptor
that it is the device chosen; write; read back through the same descriptor; wipe the
first MiB through it if the read-back fails. The descriptor is closed only after the
result has been handed to ``on_result``.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from usbwriter.devices import DEV, read_snapshot
from usbwriter.engine.blockio import open_held
from usbwriter.engine.readback import (
    Drive,
    VerifyResult,
    explain_mismatch,
    read_back,
    read_back_against,
)
from usbwriter.engine.selectors import BmapSelector, Coverage, DeltaSelector, Selector
from usbwriter.engine.target import Target, WriteResult, wipe_note
from usbwriter.engine.write import write_drive
from usbwriter.errors import (
    BadInput,
    Cancelled,
    Changed,
    DeviceFault,
    Refused,
    UsbWriterError,
    os_error,
)
from usbwriter.identity import Identity
from usbwriter.jobs.decide import check_image
from usbwriter.jobs.facts import look_at_image, look_at_target
from usbwriter.jobs.model import ImageFacts, Plan, TargetFacts
from usbwriter.jobs.mounts import unmount_planned
from usbwriter.progress import ProgressCallback
from usbwriter.receipt import Receipt
from usbwriter.sources import ImageSource, SourceInfo, not_a_drive, open_image

if TYPE_CHECKING:
    from usbwriter.checksums import ChecksumCheck
    from usbwriter.engine.probe import ProbeResult

log = logging.getLogger(__name__)

Notify = Callable[[str], None]


def device_info(plan: Plan, unmounted: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the receipt says of the plan's target: its pinned identity and its names."""
    identity = plan.identity
    if identity is not None and unmounted:
        identity = replace(identity, unmounted=unmounted)
    return _describe(plan.target, identity)


def _describe(target: TargetFacts, identity: Identity | None) -> dict[str, Any]:
    info: dict[str, Any] = identity.to_dict() if identity is not None else {}
    if target.disk is not None:
        for key in ("vendor", "model", "serial", "bus", "size", "description"):
            value = getattr(target.disk, key, None)
            if value not in (None, ""):
                info.setdefault(key, value)
    info["path"] = target.requested
    return info


@contextmanager
def open_source(facts: ImageFacts, checksum: ChecksumCheck | None = None) -> Iterator[ImageSource]:
    """Open the image and check it is what the plan looked at (not swapped meanwhile).
    With the plan's matched CHECKSUM, every stream of it confirms the digest again on
    the bytes it reads: a file changed in place since the check is refused at its end."""
    src = open_image(facts.path, member=facts.source.member if facts.source else None)
    if checksum is not None:
        src = replace(src, expect=checksum.to_confirm())
    try:
        st = os.fstat(src.fd)
        same = (
            st.st_rdev == facts.rdev
            if src.is_block
            else (st.st_dev, st.st_ino, st.st_size) == (facts.dev, facts.ino, facts.file_size)
        )
        if not same:
            raise Changed(
                f"{facts.requested}: the image changed since it was checked; nothing was written",
                path=facts.requested,
            )
        yield src
    finally:
        src.close()


def open_target(plan: Plan) -> Target:
    """Open the plan's resolved target node once and check, on that descriptor, that it
    is the device (or file) the plan chose."""
    t = plan.target
    assert plan.identity is not None
    try:
        tgt = Target.open(t.node, block=t.kind == "block", create=t.kind == "missing")
    except Refused as e:
        if e.errno == errno.EBUSY and t.kind == "block":
            raise _mounted_since(plan) or e from None
        raise
    try:
        plan.identity.check_descriptor(tgt.fd)
        if t.disk is not None and t.disk.twins:
            tgt.hold_twins(tuple(f"{DEV}/{n}" for n in t.disk.twins))
    except BaseException:
        tgt.close()
        raise
    return tgt


def _mounted_since(plan: Plan) -> Changed | None:
    """The drive is busy: if file systems on it were mounted since the plan (a desktop's
    automounter), say which, as a change the person can be shown."""
    now = look_at_target(plan.target.requested, read_snapshot())
    planned = {m.mount_id for m in plan.unmounts}
    new = [m for m in now.mounts if m.mount_id not in planned]
    if not new:
        return None
    mounts = ", ".join(f"{m.source} on {m.mountpoint}" for m in new)
    return Changed(
        f"{plan.target.requested}: mounted since it was checked: {mounts}; nothing was written",
        path=plan.target.requested,
    )


def run(
    plan: Plan,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    notify: Notify | None = None,
    on_result: Callable[[Receipt], None] | None = None,
) -> Receipt:
    """Carry out PLAN (which must be ready) and return the receipt."""
    plan.raise_if_blocked()
    cancel = cancel or threading.Event()
    if cancel.is_set():
        raise Cancelled(f"{plan.target.requested}: cancelled before anything was changed")
    unmounted = unmount_planned(plan.unmounts, notify=notify) if plan.unmounts else ()
    with open_source(plan.image, plan.checksum) as src, open_target(plan) as tgt:
        log.info("writing %s to %s (held exclusively)", src.path, tgt.path)
        receipt = carry_out(
            plan, src, tgt, unmounted, progress=progress, cancel=cancel, notify=notify
        )
        if on_result is not None:
            on_result(receipt)
        return receipt


def carry_out(
    plan: Plan,
    src: ImageSource,
    tgt: Target,
    unmounted: tuple[str, ...] = (),
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    notify: Notify | None = None,
) -> Receipt:
    """Write one drive held on TGT from SRC and read it back: the receipt. A failed write
    has wiped the drive's head already; a read-back that fails, or finds a difference,
    wipes it here (a cancel during the read-back leaves the written drive as it is)."""
    from usbwriter.jobs.probe import before_write

    probed = before_write(plan, tgt, cancel=cancel, notify=notify)
    if plan.mode == "files":  # the ISO's files copied onto FAT32, on the same descriptor
        from usbwriter.jobs.files import copy_files

        copied = copy_files(
            plan, src, tgt, unmounted, progress=progress, cancel=cancel, notify=notify
        )
        return replace(copied, probe=probed)
    written = write_drive(src, tgt, _selector(plan, notify), progress=progress, cancel=cancel)
    checked = None
    wiped = None
    if plan.request.verify:
        try:
            checked = read_back(
                Drive(tgt.fd, tgt.path),
                written.spans,
                image=src,
                image_blake3=written.result.blake3,
                progress=progress,
                cancel=cancel,
            )
        except (Cancelled, KeyboardInterrupt):
            raise
        except BaseException as e:
            wiped = tgt.wipe_head()
            if isinstance(e, UsbWriterError):
                raise e.with_note(wipe_note(wiped)) from None
            raise DeviceFault(
                f"{tgt.path}: the read-back failed ({e}); {wipe_note(wiped)}", path=tgt.path
            ) from e
        if not checked.verified:
            checked = explained(Drive(tgt.fd, tgt.path), src, checked, probed)
            wiped = tgt.wipe_head()
    receipt = receipt_for(
        plan, written.result, checked, unmounted, wiped, src.info, written.coverage
    )
    return replace(receipt, probe=probed)


def explained(
    drive: Drive, src: ImageSource, checked: VerifyResult, probed: ProbeResult | None = None
) -> VerifyResult:
    """A failed read-back with what came back at its first differing byte, in words."""
    if checked.mismatch_offset is None:
        return checked
    try:
        words = explain_mismatch(drive, src, checked.mismatch_offset, probed)
    except UsbWriterError as e:
        log.debug("could not explain the mismatch: %s", e)
        return checked
    return replace(checked, explanation=words)


def receipt_for(
    plan: Plan,
    written: WriteResult,
    checked: VerifyResult | None,
    unmounted: tuple[str, ...],
    wiped: bool | None,
    source: SourceInfo,
    coverage: Coverage | None = None,
) -> Receipt:
    """The receipt of PLAN's run: what was written, what the read-back proved."""
    return Receipt(
        image_path=plan.image.requested,
        image_size=written.image_size,
        device=device_info(plan, unmounted),
        write=written,
        verify=checked,
        unmounted=unmounted,
        wiped_first_mib=wiped,
        source=source,
        checksum=(
            plan.checksum.confirmed_on_write()
            if plan.checksum is not None and written.checksum_confirmed
            else plan.checksum
        ),
        coverage=coverage,
    )


def _selector(plan: Plan, notify: Notify | None) -> Selector | None:
    """How much of the image to write: the bmap's ranges, the chunks that differ, or all."""
    if plan.bmap is not None:
        return BmapSelector(plan.bmap, plan.image.requested)
    if plan.request.delta:
        return DeltaSelector(notify)
    return None


def mismatch_message(receipt: Receipt) -> str:
    """One line for a failed verification: where, and what was done about it."""
    line = (
        f"{receipt.device.get('path')} differs from {receipt.image_path} at byte "
        f"{receipt.mismatch_offset}"
    )
    if receipt.verify is not None and receipt.verify.explanation:
        line += f": {receipt.verify.explanation}"
    if receipt.wiped_first_mib is not None:
        line += f"; {wipe_note(receipt.wiped_first_mib)}"
    return line


# --- verify only ------------------------------------------------------------------------


def verify_only(
    image: str,
    device: str,
    *,
    member: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    on_result: Callable[[Receipt], None] | None = None,
) -> Receipt:
    """Compare DEVICE with IMAGE, reading the device with O_DIRECT through a descriptor
    held exclusively (O_EXCL for a drive, a shared flock for a file)."""
    snapshot = read_snapshot()
    facts = look_at_image(image, snapshot, member=member)
    error = check_image(facts)
    if error is not None:
        raise error
    target = look_at_target(device, snapshot)
    if target.error is not None:
        raise target.error
    if target.kind not in ("block", "partition", "file"):
        if target.kind == "missing":
            raise BadInput(f"{device}: no such device", path=device)
        raise not_a_drive(device, target.kind)
    block = target.kind != "file"
    try:
        fd = open_held(target.node, os.O_RDONLY, block=block, exclusive=False)
    except OSError as e:
        raise os_error(device, e, "open for reading") from None
    try:
        st = os.fstat(fd)
        if (block and st.st_rdev != target.rdev) or (
            not block and (st.st_dev, st.st_ino) != (target.dev, target.ino)
        ):
            raise Refused(f"{device}: changed since it was checked; try again", path=device)
        with open_source(facts) as src:
            drive = Drive(fd, device)
            drive.check_fits(src.size)
            checked = read_back_against(drive, src, progress=progress, cancel=cancel)
            if not checked.verified:
                checked = explained(drive, src, checked)
            identity = Identity.from_disk(target.disk, requested=device) if target.disk else None
            info = _describe(target, identity)
            receipt = Receipt(
                image_path=image,
                image_size=checked.size,
                device=info,
                write=None,
                verify=checked,
                source=src.info,
            )
            if on_result is not None:
                on_result(receipt)
            return receipt
    finally:
        os.close(fd)


__all__ = ["device_info", "mismatch_message", "run", "verify_only"]

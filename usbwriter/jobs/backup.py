"""Back up a drive to an image file: a stick, an SD card or an optical disc.

``plan_backup`` looks and refuses without changing anything: the device must be a
drive (or partition) that is not mounted read-write, the output a new file (or one
to replace, when asked) that does not live on the drive being read. ``run_backup``
opens the resolved node once (O_RDONLY | O_DIRECT, and O_EXCL unless a read-only
mount holds it), checks on that descriptor that it is the device and medium planned
(the pinned ``Identity``, disk sequence included, as a write checks), reads it on a
thread into aligned buffers, hashes the bytes with blake3 and writes the file (raw,
sparse or compressed).

An optical disc is read to the end of its ISO 9660 volume (the volume descriptor's
size, as ``isosize`` reads it), not to the drive's reported end. A read that fails is
retried sector by sector (``retries`` reads each); a sector that still fails stops the
backup at its offset, or with ``keep_going`` is filled with zeros and listed.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import blake3

from usbwriter.devices import disk_from_info, read_block_info, read_snapshot, sys_path_of
from usbwriter.engine.blockio import (
    CHUNK_SIZE,
    Prefetcher,
    ReadError,
    drop_cache,
    fd_size,
    logical_block_size,
    open_held,
    pread_into,
    round_up,
)
from usbwriter.engine.readback import Drive, VerifyResult, device_read_error, read_back_against
from usbwriter.errors import BadInput, Cancelled, DeviceFault, Refused, os_error
from usbwriter.identity import Identity
from usbwriter.jobs.facts import block_size_of, look_at_target
from usbwriter.jobs.model import TargetFacts
from usbwriter.outputs import Output, check_output_file, file_word, format_of
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.sources import not_a_drive
from usbwriter.units import human_size

log = logging.getLogger(__name__)

#: errors a failing medium gives (the rest, such as ENODEV, end the backup at once)
MEDIUM_ERRORS = frozenset({errno.EIO, errno.ENODATA, errno.EILSEQ, errno.EBADMSG})


@dataclass(frozen=True)
class BadRange:
    offset: int
    length: int


@dataclass(frozen=True)
class BackupPlan:
    device: str  # as given
    node: str  # resolved: the node opened
    rdev: int
    description: str
    output: str
    fmt: str  # "raw" or a writable format's name (usbwriter.compression): "zstd", "xz"...
    replace: bool
    optical: bool
    shared_hold: bool  # mounted read-only: read without O_EXCL
    info: dict[str, Any] = field(default_factory=dict)
    #: what the drive (or partition) was when planned: device number, disk sequence,
    #: size, serial, loop backing file; checked again on the descriptor that reads it
    identity: Identity | None = None


@dataclass(frozen=True)
class BackupReceipt:
    plan: BackupPlan
    size: int
    size_from: str  # "iso9660" or "device"
    blake3: str
    unreadable: tuple[BadRange, ...]
    seconds: float
    sparse: bool
    verify: VerifyResult | None
    output_size: int

    @property
    def verified(self) -> bool | None:
        return None if self.verify is None else self.verify.verified

    @property
    def rate(self) -> float:
        return self.size / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        p = self.plan
        v = self.verify
        return {
            "event": "backup",
            "device": p.device,
            "device_info": p.info,
            "output": p.output,
            "format": file_word(p.fmt),  # "raw", "zst", "xz", "gz", as it always was
            "size": self.size,
            "size_from": self.size_from,
            "blake3": self.blake3,
            "output_size": self.output_size,
            "sparse": self.sparse,
            "unreadable": [{"offset": b.offset, "length": b.length} for b in self.unreadable],
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate),
            "verified": self.verified,
            "verify": None
            if v is None
            else {
                "verified": v.verified,
                "mismatch_offset": v.mismatch_offset,
                "device_blake3": v.device_blake3,
                "file_blake3": v.expected_blake3,
                "seconds": round(v.seconds, 3),
                "page_cache_bypassed": v.page_cache_bypassed,
            },
        }

    def to_text(self) -> str:
        p = self.plan
        extent = (
            "to the end of the ISO 9660 volume"
            if self.size_from == "iso9660"
            else "the whole device"
        )
        lines = [
            f"Backed up {p.device} ({p.description}) to {p.output}",
            f"  Image:     {human_size(self.size)} ({self.size} bytes, {extent})",
            f"  blake3:    {self.blake3}",
            f"  File:      {file_word(p.fmt)}{', sparse' if self.sparse else ''}, "
            f"{human_size(self.output_size)}",
            f"  Read:      {self.seconds:.1f} s, {human_size(self.rate)}/s",
        ]
        if self.unreadable:
            total = sum(b.length for b in self.unreadable)
            lines.append(
                f"  Unreadable: {len(self.unreadable)} range(s), {total} bytes filled with zeros:"
            )
            lines += [f"    offset {b.offset}, {b.length} bytes" for b in self.unreadable]
        if self.verify is not None:
            if self.verify.verified and self.unreadable:
                lines.append(
                    "  Verified:  the drive read again equals the file, but for the "
                    "unreadable ranges above"
                )
            elif self.verify.verified:
                lines.append("  Verified:  the drive read again equals the file")
            else:
                lines.append(f"  Verify:    FAILED: differs at byte {self.verify.mismatch_offset}")
        return "\n".join(lines)


# --- plan ---------------------------------------------------------------------------


def plan_backup(device: str, output: str, *, overwrite: bool = False) -> BackupPlan:
    """Every check that changes nothing; raises the refusal."""
    snapshot = read_snapshot()
    target = look_at_target(device, snapshot)
    if target.error is not None:
        raise target.error
    if target.kind == "missing":
        raise BadInput(f"{device}: no such device", path=device)
    if target.kind not in ("block", "partition"):
        raise not_a_drive(device, target.kind)
    if target.kind == "partition":
        target = _partition_facts(target, snapshot)
    _check_output(output, target, snapshot, overwrite)
    shared = _check_mounts(target)
    name = os.path.basename(target.node)
    disk = target.disk
    identity = Identity.from_disk(disk, requested=device) if disk is not None else None
    info: dict[str, Any] = {"path": device, "node": target.node}
    if disk is not None:
        for key in ("vendor", "model", "serial", "bus", "size", "description"):
            value = getattr(disk, key, None)
            if value not in (None, ""):
                info[key] = value
    return BackupPlan(
        device=device,
        node=target.node,
        rdev=target.rdev,
        description=disk.description if disk is not None else name,
        output=output,
        fmt=format_of(output),
        replace=overwrite,
        optical=name.startswith("sr"),
        shared_hold=shared,
        info=info,
        identity=identity,
    )


def _partition_facts(target: TargetFacts, snapshot: Any) -> TargetFacts:
    """A partition as the disk layer reads it (its size, its disk's sequence number)."""
    devno = f"{os.major(target.rdev)}:{os.minor(target.rdev)}"
    try:
        part = disk_from_info(read_block_info(sys_path_of(devno)), snapshot)
    except DeviceFault as e:
        raise DeviceFault(f"{target.requested}: cannot read it in sysfs: {e}") from None
    return replace(target, size=block_size_of(target.rdev), disk=part)


def _check_output(output: str, target: TargetFacts, snapshot: Any, overwrite: bool) -> None:
    """The output rule (outputs.check_output_file), and not on the drive being read."""
    check_output_file(output, overwrite=overwrite)
    folder = os.path.dirname(os.path.abspath(output)) or "/"
    try:
        fst = os.stat(folder)
    except OSError as e:
        raise os_error(folder, e, "look at the output's folder") from None
    devno = f"{os.major(fst.st_dev)}:{os.minor(fst.st_dev)}"
    lands_on = snapshot.footprint(devno, through_files=True)
    device_devno = f"{os.major(target.rdev)}:{os.minor(target.rdev)}"
    reads = snapshot.footprint(device_devno, through_files=False)
    if devno == device_devno or (lands_on & reads):
        raise Refused(
            f"{output}: is on {target.requested}, the drive being read; write the backup "
            "to another drive",
            path=output,
        )


def _check_mounts(target: TargetFacts) -> bool:
    """Refuse a drive mounted read-write (its image would not be consistent). True when
    it is mounted read-only: read it then without O_EXCL, beside the mount."""
    mounts = target.mounts
    if target.kind == "partition":
        devno = f"{os.major(target.rdev)}:{os.minor(target.rdev)}"
        mounts = tuple(m for m in read_snapshot().mounts if m.devno == devno)
    writable = [m for m in mounts if not _read_only(m.mountpoint)]
    if writable:
        listed = ", ".join(f"{m.source} on {m.mountpoint}" for m in writable)
        raise Refused(
            f"{target.requested}: mounted read-write ({listed}); its image would not be "
            "consistent: unmount it first",
            path=target.requested,
        )
    return bool(mounts)


def _read_only(mountpoint: str) -> bool:
    try:
        return bool(os.statvfs(mountpoint).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# --- run ----------------------------------------------------------------------------


class _Salvager(Prefetcher):
    """A Prefetcher over a drive that retries a failing read sector by sector; a sector
    that still fails is zero-filled and listed (keep going) or ends the read."""

    def __init__(
        self,
        fd: int,
        path: str,
        end: int,
        block: int,
        retries: int,
        keep_going: bool,
        known: tuple[BadRange, ...] = (),
        cancel: threading.Event | None = None,
    ) -> None:
        self.path, self.retries, self.keep_going = path, max(1, retries), keep_going
        self.cancel = cancel or threading.Event()  # Ctrl-C, heard between two retries
        self.known = known  # found unreadable before: zeros, not read again
        self.bad: list[BadRange] = []
        super().__init__(fd, 0, end, block=block)

    def _read(self, view: memoryview, want: int, offset: int) -> int:
        n = round_up(want, self.block)
        if not _overlaps(self.known, offset, n):
            try:
                return pread_into(self.fd, view[:n], offset)
            except OSError as e:
                if e.errno not in MEDIUM_ERRORS:
                    raise
                log.info("read error at %d (%s): retrying sector by sector", offset, e.strerror)
        for pos in range(0, n, self.block):
            sector = view[pos : pos + self.block]
            if _overlaps(self.known, offset + pos, self.block):
                sector[:] = bytes(len(sector))
            else:
                self._sector(sector, offset + pos)
        return n

    @property
    def fd(self) -> int:
        assert isinstance(self.source, int)
        return self.source

    def _sector(self, view: memoryview, offset: int) -> None:
        last: OSError | None = None
        for _ in range(self.retries):
            if self._stop.is_set() or self.cancel.is_set():
                raise Cancelled(f"backup of {self.path} interrupted")
            try:
                if pread_into(self.fd, view, offset) == len(view):
                    return
                last = OSError(errno.EIO, "short read")
            except OSError as e:
                if e.errno not in MEDIUM_ERRORS:
                    raise
                last = e
        assert last is not None
        if not self.keep_going:
            raise DeviceFault(
                f"{self.path}: unreadable at byte {offset} ({last.strerror}) after "
                f"{self.retries} reads; nothing was kept (--keep-going fills such sectors "
                "with zeros and lists them)",
                path=self.path,
                offset=offset,
                errno=last.errno,
            )
        view[:] = bytes(len(view))
        if self.bad and self.bad[-1].offset + self.bad[-1].length == offset:
            self.bad[-1] = BadRange(self.bad[-1].offset, self.bad[-1].length + len(view))
        else:
            self.bad.append(BadRange(offset, len(view)))
        log.warning("%s: unreadable at byte %d; filled with zeros", self.path, offset)


def _overlaps(ranges: tuple[BadRange, ...], offset: int, n: int) -> bool:
    return any(b.offset < offset + n and offset < b.offset + b.length for b in ranges)


class _SalvagingDrive(Drive):
    """The drive read again for --verify after a backup with unreadable sectors: those
    read as zeros, as in the file, without being tried again; a sector that fails now
    is zero-filled and listed by ``new_bad``."""

    def __init__(self, fd: int, path: str, size: int, known: tuple[BadRange, ...]) -> None:
        super().__init__(fd, path, limit=size)
        self.known = known
        self._reads: list[_Salvager] = []

    def chunks(self, segments: list[tuple[int, int]], chunk_size: int = CHUNK_SIZE) -> Prefetcher:
        assert len(segments) == 1 and segments[0][0] == 0, "read from the start, whole"
        salvager = _Salvager(self.fd, self.path, segments[0][1], self.block, 1, True, self.known)
        self._reads.append(salvager)
        return salvager

    @property
    def new_bad(self) -> list[BadRange]:
        return sorted({b for s in self._reads for b in s.bad}, key=lambda b: b.offset)


def run_backup(
    plan: BackupPlan,
    *,
    verify: bool = False,
    keep_going: bool = False,
    retries: int = 3,
    sparse: bool = False,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BackupReceipt:
    from usbwriter.iso.descriptors import disc_volume_size

    cancel = cancel or threading.Event()
    fd = _open_drive(plan)
    try:
        drop_cache(fd)
        block = logical_block_size(fd)
        device_size = fd_size(fd)
        size, size_from = device_size, "device"
        volume = disc_volume_size(fd, block, plan.device) if plan.optical else None
        if volume is not None and volume <= device_size:
            size, size_from = volume, "iso9660"
        elif volume is not None:
            log.warning("%s: the ISO volume says %d bytes, more than the disc", plan.device, volume)
        with Output(plan.output, fmt=plan.fmt, sparse=sparse, replace=plan.replace) as out:
            start = time.monotonic()
            digest, bad = _copy(fd, plan, size, block, out, retries, keep_going, progress, cancel)
            seconds = time.monotonic() - start
            out.finish()
            checked = None
            if verify:
                try:
                    checked = _verify(
                        fd, plan, size, digest, tuple(bad), progress, cancel, out.temp
                    )
                except Cancelled:
                    raise Cancelled(
                        f"backup of {plan.device} interrupted while reading it again "
                        "(--verify); no image file was left"
                    ) from None
            out.commit()
            output_size = os.stat(plan.output).st_blocks * 512 if sparse else _size(plan.output)
        return BackupReceipt(
            plan=plan,
            size=size,
            size_from=size_from,
            blake3=digest,
            unreadable=tuple(bad),
            seconds=seconds,
            sparse=sparse,
            verify=checked,
            output_size=output_size,
        )
    finally:
        os.close(fd)


def _open_drive(plan: BackupPlan) -> int:
    """The drive held as a write holds it (blockio.open_held: O_DIRECT, O_EXCL, the node
    not followed), or beside its read-only mount without O_EXCL; then checked, on that
    descriptor, to be the device and medium planned (Identity.check_descriptor: device
    number, disk sequence, size, serial, loop backing file): a disc or card swapped in
    the same drive since the plan is refused, not read."""
    try:
        if plan.shared_hold:
            flags = os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC | os.O_NOFOLLOW
            fd = os.open(plan.node, flags)
        else:
            fd = open_held(plan.node, os.O_RDONLY, block=True)
    except OSError as e:
        raise os_error(plan.device, e, "open for reading") from None
    try:
        if plan.identity is not None:
            plan.identity.check_descriptor(fd, for_writing=False)
        elif os.fstat(fd).st_rdev != plan.rdev:
            raise Refused(f"{plan.device}: changed since it was checked; try again")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _size(path: str) -> int:
    return os.stat(path).st_size


def _copy(
    fd: int,
    plan: BackupPlan,
    size: int,
    block: int,
    out: Output,
    retries: int,
    keep_going: bool,
    progress: ProgressCallback | None,
    cancel: threading.Event,
) -> tuple[str, list[BadRange]]:
    meter = Meter("read", size, progress)
    h = blake3.blake3()
    chunks = _Salvager(fd, plan.device, size, block, retries, keep_going, cancel=cancel)
    with chunks:
        try:
            for chunk in chunks:
                try:
                    if cancel.is_set():
                        raise Cancelled(
                            f"backup of {plan.device} interrupted; no image file was left"
                        )
                    h.update(chunk.data)
                    out.write(chunk.data)
                finally:
                    chunk.release()
                meter.advance(chunk.length)
        except Cancelled:
            raise Cancelled(
                f"backup of {plan.device} interrupted; no image file was left"
            ) from None
        except ReadError as e:  # an error that retrying does not help (the drive is gone)
            raise device_read_error(plan.device, e) from None
        bad = list(chunks.bad)
    meter.finish()
    return str(h.hexdigest()), bad


def _verify(
    fd: int,
    plan: BackupPlan,
    size: int,
    digest: str,
    bad: tuple[BadRange, ...],
    progress: ProgressCallback | None,
    cancel: threading.Event,
    written: str,
) -> VerifyResult:
    """Read the drive again (O_DIRECT, page cache dropped) beside the file just written
    (decompressed), and compare the two byte by byte; both must also equal the hash of
    the first read. Sectors found unreadable (BAD, zeros in the file) are not read
    again; one that fails only now fails the verify at its offset."""
    from usbwriter.sources import open_image

    drive = (
        _SalvagingDrive(fd, plan.device, size, bad)
        if bad
        else Drive(fd, plan.device, limit=size)  # a disc: not past its ISO volume
    )
    drive.check_fits(size)
    with open_image(written) as src:
        result = read_back_against(drive, src, progress=progress, cancel=cancel)
    new_bad = drive.new_bad if isinstance(drive, _SalvagingDrive) else []
    if new_bad:
        first = new_bad[0].offset
        if result.mismatch_offset is None or first < result.mismatch_offset:
            result = replace(result, verified=False, mismatch_offset=first)
    elif result.verified and result.expected_blake3 != digest:
        result = replace(result, verified=False, mismatch_offset=0)
    return result


__all__ = ["BackupPlan", "BackupReceipt", "BadRange", "plan_backup", "run_backup"]

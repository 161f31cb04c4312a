"""Know the stick before trusting it: tagged blocks written, read back, classified.

Fake-capacity sticks report more than they hold: writes past the real size either wrap
around onto earlier blocks (the address is taken modulo the real size, a power of two
in practice) or are dropped (a read there returns zeros or the old bytes). The probe
finds out on a descriptor the caller holds, without filling the drive:

- every block written carries its own offset, a random per-run nonce and a checksum
  (``Tags``), so a block that comes back can be named: its own, another offset's
  (wrap-around), zeros or the old bytes (dropped), or garbage;
- blocks are written at spread offsets (the first and last MiB, every power of two, a
  random sample, and any extra offsets the caller names), highest first and the first
  MiB last, so a wrap-around lands on the low blocks written after it: the power of two
  at the real size reads back as the first block's tag;
- the cache is dropped and everything is read back (O_DIRECT where the descriptor has
  it); the first bad offset is then narrowed down by bisection, one block at a time,
  to the real usable size;
- a short sequential run measures the read and write speed: 4 MiB read, then the same
  bytes written back where they were (the drive ends as it was).

By default (``save=True``) every block is read before it is overwritten and put back
afterwards, in the reverse order of the writes (which undoes them even on a drive that
wraps), and the restore is read back and checked. An error, a cancel or a signal
restores too: the restore runs in a ``finally`` and hears no cancel.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Protocol

from usbwriter.engine.blockio import MiB, aligned_buffer, drop_cache, pread_into, pwrite_all
from usbwriter.errors import Cancelled
from usbwriter.units import human_rate, human_size

log = logging.getLogger(__name__)

TAG_BLOCK = 4096
MAGIC = b"USBWPRB1"
_HEAD = struct.Struct("<8s16sQ")  # magic, nonce, offset
_SUM = 16  # blake2b digest at the block's end

GENUINE, WRAPS, DROPS, READ_ERRORS = "genuine", "wraps", "drops_writes", "read_errors"
#: what a block that came back was: its own tag, or why not
GOOD, OTHER, ZEROS, UNCHANGED, DAMAGED, READ_ERROR, WRITE_ERROR = (
    "good",
    "other-block",
    "zeros",
    "unchanged",
    "damaged",
    "read-error",
    "write-error",
)
SAMPLE = 8  # random blocks of a full probe (besides the powers of two)
QUICK_SAMPLE = 4  # and of the quick one before a write
ROUND = 15  # blocks a round of the search for the real size tests
EDGE = 64 * 1024  # of the first and the last MiB, the first and last EDGE are tested
SPEED_BYTES = 4 * MiB  # the most a speed run reads and writes
SPEED_SECONDS = 1.0  # and for about how long
MEMORY_LIMIT = 64 * MiB  # saved blocks beyond this go to a temporary file


class Medium(Protocol):
    """What the probe reads and writes: a held drive (``FdMedium``) or a test's fake."""

    size: int
    block: int

    def read(self, offset: int, length: int) -> bytes: ...

    def write(self, offset: int, data: bytes) -> None: ...

    def settle(self) -> None:
        """Flush the writes to the drive and drop what the page cache holds of it."""


class FdMedium:
    """A descriptor the caller holds (O_DIRECT when it has it): one aligned buffer,
    grown as needed (an mmap for each block read costs more than the read)."""

    def __init__(self, fd: int, size: int, block: int) -> None:
        self.fd, self.size, self.block = fd, size, max(block, 512)
        self._buf = aligned_buffer(MiB)

    def _view(self, length: int) -> memoryview:
        if len(self._buf) < length:
            self._buf.close()
            self._buf = aligned_buffer(length)
        return memoryview(self._buf)[:length]

    def read(self, offset: int, length: int) -> bytes:
        with self._view(length) as view:
            if pread_into(self.fd, view, offset) < length:
                raise OSError(5, "short read")
            return bytes(view)

    def write(self, offset: int, data: bytes) -> None:
        with self._view(len(data)) as view:
            view[:] = data
            pwrite_all(self.fd, view, offset)

    def settle(self) -> None:
        os.fdatasync(self.fd)
        drop_cache(self.fd)


@dataclass(frozen=True)
class Failure:
    """A block that did not come back as written: ``kind`` says what came back."""

    offset: int
    kind: str
    other: int | None = None  # OTHER: the offset whose tag came back
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"offset": self.offset, "kind": self.kind}
        if self.other is not None:
            d["other"] = self.other
        if self.error is not None:
            d["error"] = self.error
        return d


@dataclass(frozen=True)
class ProbeResult:
    reported_size: int
    usable_size: int
    verdict: str
    failures: tuple[Failure, ...] = ()
    blocks: int = 0  # tagged blocks written and read back
    seconds: float = 0.0
    write_rate: float | None = None  # bytes a second over the speed run
    read_rate: float | None = None
    speed_bytes: int = 0
    speed_seconds: float = 0.0  # of ``seconds``, the speed run's
    restored: bool | None = None  # None: nothing was saved (--destructive)
    restore_failures: tuple[int, ...] = ()
    quick: bool = False

    @property
    def genuine(self) -> bool:
        return self.verdict == GENUINE

    def describe(self) -> str:
        """'genuine, 1.0 GiB usable' or 'wraps around: 64.0 MiB usable of 1.0 GiB'."""
        usable = human_size(self.usable_size)
        if self.verdict == GENUINE:
            return f"genuine, {usable} usable"
        reported = human_size(self.reported_size)
        return f"{VERDICT_WORDS[self.verdict]}: {usable} usable of {reported}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "reported_size": self.reported_size,
            "usable_size": self.usable_size,
            "verdict": self.verdict,
            "failed_offsets": sorted({f.offset for f in self.failures}),
            "failures": [f.to_dict() for f in self.failures],
            "blocks_tested": self.blocks,
            "seconds": round(self.seconds, 3),
            "write_bytes_per_second": _rate(self.write_rate),
            "read_bytes_per_second": _rate(self.read_rate),
            "speed_bytes": self.speed_bytes,
            "speed_seconds": round(self.speed_seconds, 3),
            "restored": self.restored,
            "restore_failed_offsets": list(self.restore_failures),
            "quick": self.quick,
        }

    def to_text(self, path: str) -> str:
        lines = [f"{path}: {self.describe()}"]
        lines.append(
            f"  reported {human_size(self.reported_size)} ({self.reported_size} bytes), "
            f"usable {human_size(self.usable_size)} ({self.usable_size} bytes)"
        )
        lines += [f"  {line}" for line in explain_failures(self.failures)]
        if self.write_rate is not None and self.read_rate is not None:
            lines.append(
                f"  speed    write {human_rate(self.write_rate)}, read "
                f"{human_rate(self.read_rate)} (sequential, {human_size(self.speed_bytes)})"
            )
        lines.append(f"  tested   {self.blocks} blocks in {self.seconds:.1f} s")
        if self.restored is None:
            lines.append("  restore  none (--destructive): the blocks tested hold test data")
        elif self.restored:
            lines.append("  restore  every block overwritten was put back and read back equal")
        else:
            where = ", ".join(str(o) for o in self.restore_failures[:8])
            lines.append(f"  restore  FAILED: blocks at {where} did not come back as they were")
        return "\n".join(lines)


VERDICT_WORDS = {
    GENUINE: "genuine",
    WRAPS: "fake capacity, writes wrap around onto earlier blocks",
    DROPS: "fake capacity, writes past the real size are dropped",
    READ_ERRORS: "read errors",
}


def _rate(r: float | None) -> int | None:
    return None if r is None else int(r)


def explain_failures(failures: Iterable[Failure], limit: int = 4) -> list[str]:
    """A line per kind of failure, with its first offsets."""
    by_kind: dict[str, list[Failure]] = {}
    for f in failures:
        by_kind.setdefault(f.kind, []).append(f)
    words = {
        OTHER: "came back as another block (wrap-around)",
        ZEROS: "came back as zeros (write dropped)",
        UNCHANGED: "came back unchanged (write dropped)",
        DAMAGED: "came back damaged",
        READ_ERROR: "could not be read",
        WRITE_ERROR: "could not be written",
    }
    lines = []
    for kind, fs in by_kind.items():
        shown = []
        for f in fs[:limit]:
            if f.other is not None:
                shown.append(f"{f.offset} (as {f.other})")
            elif f.error:
                shown.append(f"{f.offset} ({f.error})")
            else:
                shown.append(str(f.offset))
        more = f" and {len(fs) - limit} more" if len(fs) > limit else ""
        lines.append(f"failed   {len(fs)} block(s) {words[kind]}: {', '.join(shown)}{more}")
    return lines


class Tags:
    """Tagged blocks: magic, nonce, offset, filler drawn from them, a checksum."""

    def __init__(self, nonce: bytes, size: int = TAG_BLOCK) -> None:
        self.nonce, self.size = nonce, size

    def make(self, offset: int) -> bytes:
        head = _HEAD.pack(MAGIC, self.nonce, offset)
        seed = hashlib.blake2b(head, digest_size=64).digest()
        fill = (seed * (self.size // len(seed) + 1))[: self.size - len(head) - _SUM]
        body = head + fill
        return body + hashlib.blake2b(body, digest_size=_SUM).digest()

    def run(self, offset: int, count: int) -> bytes:
        return b"".join(self.make(offset + k * self.size) for k in range(count))

    def owner(self, data: bytes) -> int | None:
        """The offset a block of this run was written for, or None."""
        if len(data) != self.size or not data.startswith(MAGIC):
            return None
        _, nonce, offset = _HEAD.unpack_from(data)
        if nonce != self.nonce:
            return None
        body = data[:-_SUM]
        if hashlib.blake2b(body, digest_size=_SUM).digest() != data[-_SUM:]:
            return None
        return int(offset)


def _runs_of(offsets: list[int], most: int = 1024) -> Iterator[tuple[int, int]]:
    """Sorted block offsets as (start, count) runs of adjacent blocks (at most MOST)."""
    start = count = 0
    for at in offsets:
        if count and at == start + count * TAG_BLOCK and count < most:
            count += 1
            continue
        if count:
            yield start, count
        start, count = at, 1
    if count:
        yield start, count


class Saver:
    """The blocks about to be overwritten, in the order saved: in memory, then in an
    unlinked temporary file past MEMORY_LIMIT. ``restore`` writes them back last first."""

    def __init__(self, limit: int = MEMORY_LIMIT, folder: str | None = None) -> None:
        self.limit, self.folder = limit, folder
        self.entries: list[tuple[int, int, bytes | int]] = []  # offset, length, data or position
        self.in_memory = 0
        self.file: BinaryIO | None = None
        self.skip: Callable[[int, int], bool] | None = None
        self.tags: Tags | None = None  # the run's: a saved block that is one was aliased

    def keep(self, offset: int, data: bytes) -> None:
        if self.in_memory + len(data) <= self.limit:
            self.entries.append((offset, len(data), data))
            self.in_memory += len(data)
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.folder)  # noqa: SIM115 (closed in close)
        pos = self.file.seek(0, os.SEEK_END)
        self.file.write(data)
        self.entries.append((offset, len(data), pos))

    def data(self, entry: tuple[int, int, bytes | int]) -> bytes:
        _, length, where = entry
        if isinstance(where, bytes):
            return where
        assert self.file is not None
        self.file.seek(where)
        return self.file.read(length)

    @property
    def saved_bytes(self) -> int:
        return sum(e[1] for e in self.entries)

    def originals(self) -> dict[int, bytes]:
        """Each block's first saved content: what it held before the probe."""
        first: dict[int, bytes] = {}
        for entry in self.entries:
            offset, length, _ = entry
            data = self.data(entry)
            for at in range(0, length, TAG_BLOCK):
                first.setdefault(offset + at, data[at : at + TAG_BLOCK])
        out: dict[int, bytes] = {}
        for at, block in first.items():
            # a block first saved after a write to an alias (a drive that wraps) holds
            # that write's tag: it held what the alias held before the probe
            seen = {at}
            owner = self.tags.owner(block) if self.tags is not None else None
            while owner is not None and owner not in seen and owner in first:
                seen.add(owner)
                block = first[owner]
                owner = self.tags.owner(block) if self.tags is not None else None
            out[at] = block
        return out

    def restore(self, medium: Medium) -> tuple[int, ...]:
        """Write every saved block back (last saved first), read them back: the offsets
        that did not come back as they were (none: restored)."""
        if not self.entries:
            return ()
        skip = self.skip
        failed: set[int] = set()
        for entry in reversed(self.entries):
            offset, length, _ = entry
            if skip is not None and skip(offset, length):
                continue
            try:
                medium.write(offset, self.data(entry))
            except OSError as e:
                log.warning("could not put back %d bytes at %d: %s", length, offset, e.strerror)
                failed.add(offset)
        try:
            medium.settle()
        except OSError as e:
            log.warning("could not flush the restored blocks: %s", e.strerror)
        originals = {
            at: data
            for at, data in self.originals().items()
            if skip is None or not skip(at, len(data))
        }
        for start, count in _runs_of(sorted(originals)):
            try:
                got = medium.read(start, count * TAG_BLOCK)
            except OSError:
                got = b""
            for k in range(count):
                at = start + k * TAG_BLOCK
                if got[k * TAG_BLOCK : (k + 1) * TAG_BLOCK] != originals[at]:
                    failed.add(at)
        return tuple(sorted(failed))

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


@dataclass
class _Run:
    medium: Medium
    tags: Tags
    saver: Saver | None
    cancel: threading.Event
    notify: Callable[[str], None] | None = None
    written: dict[int, bytes] = field(default_factory=dict)  # offset -> what was there
    olds: dict[int, bytes] = field(default_factory=dict)  # saved, not yet overwritten
    failures: dict[int, Failure] = field(default_factory=dict)
    blocks: int = 0

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("probe interrupted")

    def save_run(self, offset: int, count: int) -> bool:
        """Read and save what COUNT blocks from OFFSET hold (--destructive: nothing read);
        False when it cannot be read (it is then not overwritten)."""
        self.check_cancel()
        if self.saver is None or offset in self.olds:
            return True
        try:
            old = self.medium.read(offset, count * TAG_BLOCK)
        except OSError as e:
            self._fail(offset, READ_ERROR, error=e.strerror)
            return False
        self.saver.keep(offset, old)
        self.olds[offset] = old
        return True

    def write_run(self, offset: int, count: int) -> bool:
        """Write COUNT tagged blocks from OFFSET (saving what was there first, unless
        ``save_run`` did before any write)."""
        if not self.save_run(offset, count):
            return False
        self.check_cancel()
        old = self.olds.pop(offset, b"")
        try:
            self.medium.write(offset, self.tags.run(offset, count))
        except OSError as e:
            self._fail(offset, WRITE_ERROR, error=e.strerror)
            return False
        for k in range(count):
            at = offset + k * TAG_BLOCK
            self.written[at] = old[k * TAG_BLOCK : (k + 1) * TAG_BLOCK]
        self.blocks += count
        return True

    def _fail(
        self, offset: int, kind: str, *, other: int | None = None, error: str | None = None
    ) -> None:
        self.failures.setdefault(offset, Failure(offset, kind, other, error))

    def check_run(self, offset: int, count: int) -> None:
        """Read COUNT blocks from OFFSET back and record each one that is not its tag."""
        self.check_cancel()
        length = count * TAG_BLOCK
        try:
            data = self.medium.read(offset, length)
        except OSError:
            data = b""
        for k in range(count):
            at = offset + k * TAG_BLOCK
            if not data:
                try:
                    got = self.medium.read(at, TAG_BLOCK)
                except OSError as e:
                    self._fail(at, READ_ERROR, error=e.strerror)
                    continue
            else:
                got = data[k * TAG_BLOCK : (k + 1) * TAG_BLOCK]
            kind, other = self.classify(at, got)
            if kind != GOOD:
                self._fail(at, kind, other=other)

    def classify(self, offset: int, got: bytes) -> tuple[str, int | None]:
        owner = self.tags.owner(got)
        if owner == offset:
            return GOOD, None
        if owner is not None:
            return OTHER, owner
        if got == self.written.get(offset) and got.count(0) != len(got):
            return UNCHANGED, None
        if got.count(0) == len(got):
            return ZEROS, None
        return DAMAGED, None

    def first_bad(self, points: list[int]) -> int | None:
        """Write one tagged block at each of POINTS (all saved first, highest written
        first), settle once, read them back: the lowest that is not its tag, or None (a
        round of the search for the real size)."""
        points = [at for at in sorted(points, reverse=True) if self.save_run(at, 1)]
        for at in points:
            self.write_run(at, 1)
        self.medium.settle()
        for at in sorted(points):
            if at not in self.failures:
                self.check_run(at, 1)
            if at in self.failures and self.failures[at].kind != READ_ERROR:
                return at
        return None


def spread(
    size: int, *, sample: int, rng: random.Random, extra: Iterable[int] = (), quick: bool = False
) -> list[tuple[int, int]]:
    """(offset, blocks) runs to test, highest first, the first MiB last: the first and
    last MiB (their first and last EDGE, or a few blocks for a quick probe), every power
    of two from 1 MiB, a random sample, EXTRA offsets (block-aligned down)."""
    top = size // TAG_BLOCK * TAG_BLOCK
    runs: dict[int, int] = {}
    head = min(MiB, top)
    edge = EDGE // TAG_BLOCK
    if top > 2 * MiB:
        last = (top - MiB) // TAG_BLOCK * TAG_BLOCK
        if quick:
            runs[last] = 1
            runs[top - TAG_BLOCK] = 1
        else:  # the last MiB's first and last EDGE
            runs[last] = edge
            runs[top - EDGE] = edge
    p = MiB
    while p < top:
        runs.setdefault(p, 1)
        p *= 2
    if top > 2 * MiB:
        for _ in range(sample):
            at = rng.randrange(head, top - MiB) // TAG_BLOCK * TAG_BLOCK
            runs.setdefault(at, 1)
    for at in extra:
        at = min(max(at, 0), top - TAG_BLOCK) // TAG_BLOCK * TAG_BLOCK
        if at >= head:
            runs.setdefault(at, 1)
    # a run must not overlap another: drop single blocks inside the last MiB's run
    out = []
    covered: list[tuple[int, int]] = []
    for at, n in sorted(runs.items(), key=lambda r: -r[1]):
        if any(a <= at < a + m * TAG_BLOCK for a, m in covered):
            continue
        covered.append((at, n))
        out.append((at, n))
    out.sort(reverse=True)
    if quick or head < 2 * EDGE:
        first = (head if not quick else min(head, 4 * TAG_BLOCK)) // TAG_BLOCK
        if first:
            out.append((0, first))
    else:  # the first MiB's last and first EDGE, block 0 written last of all
        out += [(head - EDGE, edge), (0, edge)]
    return out


def probe(
    medium: Medium,
    *,
    save: bool = True,
    quick: bool = False,
    speed: bool = True,
    extra: Iterable[int] = (),
    cancel: threading.Event | None = None,
    seed: int | None = None,
    saver: Saver | None = None,
    save_folder: str | None = None,
) -> ProbeResult:
    """Probe MEDIUM (see the module's docstring); with SAVE, everything written is put
    back, also on an error or a cancel. A quick probe (before a write) tests fewer
    blocks and measures no speed. A SAVER given is filled and left to the caller to
    restore (``with saved(...)``); otherwise the probe restores before it returns."""
    start = time.monotonic()
    with saved(medium, save=save, saver=saver, folder=save_folder) as keeper:
        result = _probe(
            medium, keeper, quick=quick, speed=speed, extra=extra, cancel=cancel, seed=seed
        )
    result = replace(result, seconds=time.monotonic() - start)  # the restore too
    if keeper is not None and saver is None:
        return _with_restore(result, keeper.restored)
    return result


def _with_restore(result: ProbeResult, failed: tuple[int, ...] | None) -> ProbeResult:
    if failed is None:
        return result
    return replace(result, restored=not failed, restore_failures=failed)


class _Keeper:
    def __init__(self, saver: Saver, own: bool) -> None:
        self.saver, self.own = saver, own
        self.restored: tuple[int, ...] | None = None


@contextmanager
def saved(
    medium: Medium, *, save: bool, saver: Saver | None = None, folder: str | None = None
) -> Iterator[_Keeper | None]:
    """A Saver for the blocks the probe overwrites, restored when the block ends (an
    error or a cancel too) unless the caller owns the saver."""
    if not save:
        yield None
        return
    own = saver is None
    keeper = _Keeper(saver if saver is not None else Saver(folder=folder), own)
    try:
        yield keeper
    finally:
        if own:
            try:
                keeper.restored = keeper.saver.restore(medium)
            finally:
                keeper.saver.close()


def _probe(
    medium: Medium,
    keeper: _Keeper | None,
    *,
    quick: bool,
    speed: bool,
    extra: Iterable[int],
    cancel: threading.Event | None,
    seed: int | None,
) -> ProbeResult:
    start = time.monotonic()
    rng = random.Random(seed) if seed is not None else random.SystemRandom()
    nonce = bytes(rng.getrandbits(8) for _ in range(16))
    run = _Run(medium, Tags(nonce), keeper.saver if keeper else None, cancel or threading.Event())
    if run.saver is not None:
        run.saver.tags = run.tags
    size = medium.size
    runs = spread(size, sample=QUICK_SAMPLE if quick else SAMPLE, rng=rng, extra=extra, quick=quick)
    # Everything is saved before the first write: on a drive that wraps, a block read
    # after a write to its alias would not be what it held before the probe.
    runs = [(at, n) for at, n in runs if run.save_run(at, n)]
    for at, n in runs:  # highest first, the first MiB last
        run.write_run(at, n)
    medium.settle()
    for at, n in sorted(runs):
        if at in run.failures and run.failures[at].kind in (WRITE_ERROR, READ_ERROR):
            continue
        run.check_run(at, n)
    usable = _usable(run, runs, size)
    write_rate = read_rate = None
    speed_bytes = 0
    speed_seconds = 0.0
    if speed and not quick and usable > 2 * MiB:
        t = time.monotonic()
        write_rate, read_rate, speed_bytes = _speed(run, usable)
        speed_seconds = time.monotonic() - t
    verdict = _verdict(run.failures.values())
    return ProbeResult(
        reported_size=size,
        usable_size=usable,
        verdict=verdict,
        failures=tuple(sorted(run.failures.values(), key=lambda f: f.offset)),
        blocks=run.blocks,
        seconds=time.monotonic() - start,
        write_rate=write_rate,
        read_rate=read_rate,
        speed_bytes=speed_bytes,
        speed_seconds=speed_seconds,
        quick=quick,
    )


def _usable(run: _Run, runs: list[tuple[int, int]], size: int) -> int:
    """The real usable size: the first bad offset, narrowed between the last good block
    below it and it by rounds of ROUND blocks (a bisection that settles the drive once
    a round, not once a block)."""
    bad = [f.offset for f in run.failures.values() if f.kind != READ_ERROR]
    if not bad:
        return size
    first_bad = min(bad)
    tested = sorted(at + k * TAG_BLOCK for at, n in runs for k in range(n))
    good = [at for at in tested if at < first_bad and at not in run.failures]
    lo = good[-1] if good else -TAG_BLOCK  # the last block known good
    hi = first_bad  # the first block known bad
    if hi - lo > TAG_BLOCK and run.first_bad([hi - TAG_BLOCK]) is None:
        return hi  # the block just below is good (the common case: a round size)
    hi -= TAG_BLOCK if hi - lo > TAG_BLOCK else 0
    while hi - lo > TAG_BLOCK:
        # a round: ROUND blocks spread over (lo, hi), one settle for all of them
        steps = (hi - lo) // TAG_BLOCK
        n = min(ROUND, steps - 1)
        points = sorted(
            {lo + (steps * (i + 1) // (n + 1)) * TAG_BLOCK for i in range(n)} - {lo, hi}
        )
        bad_at = run.first_bad(points)
        if bad_at is None:
            lo = points[-1]
        else:
            lo = max([p for p in points if p < bad_at], default=lo)
            hi = bad_at
    return max(hi, 0)


def _verdict(failures: Iterable[Failure]) -> str:
    kinds = {f.kind for f in failures}
    if OTHER in kinds:
        return WRAPS
    if kinds & {ZEROS, UNCHANGED, DAMAGED}:
        return DROPS
    if kinds & {READ_ERROR, WRITE_ERROR}:
        return READ_ERRORS
    return GENUINE


def _speed(run: _Run, usable: int) -> tuple[float, float, int]:
    """Sequential read and write speed over a short run from 1 MiB: read (for about
    SPEED_SECONDS / 2), then the same bytes written back where they were read. The
    drive ends as it was, so nothing is saved for it, with or without --destructive."""
    piece = 2 * MiB
    end = min(usable - MiB, MiB + SPEED_BYTES)
    medium = run.medium
    pieces: list[tuple[int, bytes]] = []
    t0 = time.monotonic()
    for at in range(MiB, end - piece + 1, piece):
        run.check_cancel()
        pieces.append((at, medium.read(at, piece)))
        if time.monotonic() - t0 > SPEED_SECONDS / 2:
            break
    read = time.monotonic() - t0
    t0 = time.monotonic()
    for at, data in pieces:  # (not cancelled between: each piece is written back whole)
        medium.write(at, data)
    medium.settle()
    wrote = time.monotonic() - t0
    n = len(pieces) * piece
    return (n / wrote if wrote > 0 else 0.0), (n / read if read > 0 else 0.0), n


__all__ = [
    "DROPS",
    "GENUINE",
    "READ_ERRORS",
    "WRAPS",
    "Failure",
    "FdMedium",
    "Medium",
    "ProbeResult",
    "Saver",
    "Tags",
    "explain_failures",
    "probe",
    "saved",
]

"""Progress reports from the engine: what phase, how far, how fast."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    phase: str  # "write", "sync" or "verify"
    done: int  # bytes
    total: int  # bytes
    rate: float  # bytes per second, over the last few seconds
    elapsed: float  # seconds since the phase started
    by_file: bool = False  # done/total count the compressed file, the image's size unknown

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or None before a rate is known."""
        if self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)


ProgressCallback = Callable[[Progress], None]


class Meter:
    """Turns byte counts into throttled Progress reports (about ten a second)."""

    def __init__(
        self,
        phase: str,
        total: int,
        callback: ProgressCallback | None,
        interval: float = 0.1,
        window: float = 3.0,
        by_file: bool = False,
    ) -> None:
        self.phase, self.total, self.callback = phase, total, callback
        self.by_file = by_file
        self.interval, self.window = interval, window
        self.start = time.monotonic()
        self._last_report = 0.0
        self._samples: deque[tuple[float, int]] = deque([(self.start, 0)])
        self.done = 0

    def rate(self, now: float) -> float:
        t0, d0 = self._samples[0]
        if now - t0 <= 0:
            return 0.0
        return (self.done - d0) / (now - t0)

    def advance(self, n: int, *, force: bool = False) -> None:
        self.done += n
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self._last_report < self.interval:
            return
        self._last_report = now
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.window:
            self._samples.popleft()
        self.callback(
            Progress(
                self.phase, self.done, self.total, self.rate(now), now - self.start, self.by_file
            )
        )

    def finish(self) -> float:
        """Report completion; return the phase's duration in seconds."""
        elapsed = time.monotonic() - self.start
        if self.callback is not None:
            avg = self.done / elapsed if elapsed > 0 else 0.0
            self.callback(Progress(self.phase, self.done, self.total, avg, elapsed, self.by_file))
        return elapsed

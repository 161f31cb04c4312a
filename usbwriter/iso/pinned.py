"""pycdlib's clock and random numbers, pinned for the thread building an image.

pycdlib reads ``time`` and ``random`` directly for volume and record dates and for the
UDF volume set identifier. For a reproducible image those reads are answered, in the
building thread only, with the time being recorded (in UTC) and a seeded generator;
every other thread sees the real modules. This depends on the names pycdlib imports
(checked with pycdlib 1.22); tests/unit/test_mkiso.py's byte-identity test catches a
change.
"""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from time import struct_time
from typing import Any


class _PinnedTime:
    """Stands in for the time module inside pycdlib: in a thread that pinned a time,
    time() is that time and localtime() is UTC; elsewhere the real module answers."""

    def __init__(self) -> None:
        self.local = threading.local()

    def pinned(self) -> float | None:
        return getattr(self.local, "now", None)

    def time(self) -> float:
        now = self.pinned()
        return time.time() if now is None else now

    def localtime(self, secs: float | None = None) -> struct_time:
        if self.pinned() is None:
            return time.localtime(secs)
        return time.gmtime(secs)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


class _PinnedRandom:
    """Stands in for the random module inside pycdlib (seeded in a pinned thread)."""

    def __init__(self, clock: _PinnedTime) -> None:
        self.clock = clock

    def getrandbits(self, k: int) -> int:
        rng: random.Random | None = getattr(self.clock.local, "rng", None)
        return random.getrandbits(k) if rng is None else rng.getrandbits(k)

    def __getattr__(self, name: str) -> Any:
        return getattr(random, name)


_CLOCK = _PinnedTime()
_installed = False


def _install_clock() -> None:
    global _installed
    if _installed:
        return
    import pycdlib  # noqa: F401 - loads its modules

    for name in ("pycdlib.pycdlib", "pycdlib.headervd", "pycdlib.dates", "pycdlib.udf"):
        mod = sys.modules[name]
        mod.time = _CLOCK  # type: ignore[attr-defined]
        if name == "pycdlib.udf":
            mod.random = _PinnedRandom(_CLOCK)  # type: ignore[attr-defined]
    _installed = True


@contextlib.contextmanager
def pinned_clock(now: float, seed: int | None) -> Iterator[Callable[[float], None]]:
    """Pin pycdlib's clock for this thread; yields a function that moves it."""
    _install_clock()
    _CLOCK.local.now = now
    _CLOCK.local.rng = random.Random(seed) if seed is not None else None
    try:
        yield lambda t: setattr(_CLOCK.local, "now", t)
    finally:
        _CLOCK.local.now = None
        _CLOCK.local.rng = None

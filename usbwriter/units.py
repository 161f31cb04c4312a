"""Sizes, rates and durations in words people read."""

from __future__ import annotations


def human_size(n: float) -> str:
    """1536 -> '1.5 KiB'; binary units, as drive tools show them."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def count(n: int, one: str, many: str | None = None) -> str:
    """3 files, 1 file, 0 files: N with the word in the number it takes (MANY for a
    plural other than ONE + 's')."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def human_rate(bps: float) -> str:
    """Bytes per second in MB/s (10^6), as drive speeds are quoted."""
    return f"{bps / 1e6:.1f} MB/s"


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds >= 0.1 else f"{seconds * 1000:.0f} ms"
    s = int(seconds + 0.5)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"

from __future__ import annotations

import pytest

from usbwriter.progress import Meter, Progress
from usbwriter.units import human_duration, human_rate, human_size


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (4 << 20, "4.0 MiB"), (3 << 40, "3.0 TiB")],
)
def test_human_size(n: int, text: str) -> None:
    assert human_size(n) == text


@pytest.mark.parametrize(
    ("s", "text"),
    [(None, "--:--"), (0.03, "30 ms"), (2.25, "2.2 s"), (75, "01:15"), (3725, "1:02:05")],
)
def test_human_duration(s: float | None, text: str) -> None:
    assert human_duration(s) == text


def test_human_rate_is_decimal_megabytes() -> None:
    assert human_rate(200_000_000) == "200.0 MB/s"


def test_progress_eta_and_fraction() -> None:
    p = Progress("write", 25, 100, 5.0, 1.0)
    assert p.fraction == 0.25
    assert p.eta == 15.0
    assert Progress("write", 0, 100, 0.0, 0.0).eta is None


def test_meter_throttles_and_always_reports_the_end() -> None:
    seen: list[Progress] = []
    m = Meter("write", 1000, seen.append, interval=60)
    for _ in range(10):
        m.advance(100)
    assert len(seen) == 1  # the first report, then throttled
    m.finish()
    assert seen[-1].done == 1000 and seen[-1].phase == "write"

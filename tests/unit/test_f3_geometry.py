"""f3probe's own emulation of a fake stick (its ``--debug-*`` options over a plain
file): which fakes f3probe 8.0 can tell apart at all. A wrapping fake that keeps less
than half of what it reports is "damaged, 0 usable" to f3probe even when f3probe
itself emulates it: its search for a write cache writes the drive's upper half, and on
such a fake those writes land on one another. That is why, in the qemu guest, f3probe
and ``usbwriter probe`` agree on the fake that keeps half (both: wraps, 128 MiB usable)
and not on the one that keeps a sixteenth (usbwriter: wraps at 64 MiB; f3probe:
damaged). The emulations take about a second each.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

MiB = 1 << 20
GiB = 1 << 30

pytestmark = pytest.mark.skipif(shutil.which("f3probe") is None, reason="f3probe not installed")


def _f3_emulated(tmp_path: Path, reported: int, kept: int) -> tuple[str, int]:
    wrap = kept.bit_length() - 1
    argv = ["f3probe", f"--debug-fake-size={reported}", f"--debug-real-size={kept}",
            f"--debug-wrap={wrap}", "--debug-block-order=9", "--destructive",
            str(tmp_path / "fake")]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    kind = re.search(r"counterfeit of type (\w+)|is (damaged)", out)
    usable = re.search(r"\*Usable\* size:.*\((\d+) blocks\)", out)
    assert kind and usable, out
    return kind.group(1) or kind.group(2), int(usable.group(1)) * 512


@pytest.mark.parametrize(
    ("reported", "kept", "verdict"),
    [
        (256 * MiB, 128 * MiB, ("wraparound", 128 * MiB)),  # the guest's half-keeping fake
        (1 * GiB, 512 * MiB, ("wraparound", 512 * MiB)),
        (1 * GiB, 64 * MiB, ("damaged", 0)),  # the guest's fake of the issue
        (256 * MiB, 64 * MiB, ("damaged", 0)),
    ],
)
def test_f3probe_tells_a_wrapping_fake_only_when_it_keeps_half(
    tmp_path: Path, reported: int, kept: int, verdict: tuple[str, int]
) -> None:
    assert _f3_emulated(tmp_path, reported, kept) == verdict

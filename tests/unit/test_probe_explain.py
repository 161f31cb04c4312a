"""A failed verify explained: what came back at the first differing byte, read from a
drive left as a fake leaves it (here a file standing for the drive)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import random_file
from usbwriter.engine.probe import ProbeResult
from usbwriter.engine.readback import Drive, explain_mismatch
from usbwriter.sources import open_image

MiB = 1 << 20


def _drive(path: Path) -> Drive:
    return Drive(os.open(path, os.O_RDONLY), str(path))


def test_a_block_from_another_offset_is_named_wrap_around(tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.raw", 8 * MiB, seed=1)
    data = image.read_bytes()
    # a drive that keeps 2 MiB and wraps: each offset holds the last alias written
    held = bytes(data[(a % (2 * MiB)) + 6 * MiB] for a in range(2 * MiB)) * 4
    drive_file = tmp_path / "drive"
    drive_file.write_bytes(held)
    with open_image(str(image)) as src:
        words = explain_mismatch(_drive(drive_file), src, 4096)
    assert words.startswith(f"the image's bytes from offset {6 * MiB + 4096} came back")
    assert "the drive wraps around" in words


def test_zeros_are_named_dropped_writes_with_the_probes_numbers(tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.raw", 4 * MiB, seed=2)
    drive_file = tmp_path / "drive"
    drive_file.write_bytes(image.read_bytes()[: 2 * MiB] + bytes(2 * MiB))
    probe = ProbeResult(8 * MiB, 2 * MiB, "drops_writes")
    with open_image(str(image)) as src:
        words = explain_mismatch(_drive(drive_file), src, 2 * MiB + 17, probe)
    assert words == (
        "zeros came back where the image has data: the drive dropped the writes; the probe "
        "before writing found it fake capacity, writes past the real size are dropped: "
        "2.0 MiB usable of 8.0 MiB"
    )


def test_other_bytes_are_named_old_content_or_damage(tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.raw", 4 * MiB, seed=3)
    drive_file = random_file(tmp_path / "drive", 4 * MiB, seed=4)
    with open_image(str(image)) as src:
        words = explain_mismatch(_drive(drive_file), src, 0)
    assert "kept its old content" in words

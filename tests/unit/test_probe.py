"""The probe's engine on fake drives in memory: wrap-around, dropped writes, genuine;
the restore of what it overwrote, also when it is cancelled."""

from __future__ import annotations

import threading

import pytest

from tests.helpers.fakes import FakeDrive
from usbwriter.engine.probe import (
    DROPS,
    GENUINE,
    OTHER,
    WRAPS,
    ZEROS,
    Saver,
    Tags,
    probe,
)
from usbwriter.errors import Cancelled

MiB = 1 << 20
GiB = 1 << 30


def test_a_genuine_drive_passes_with_its_full_size_and_keeps_its_bytes() -> None:
    drive = FakeDrive(256 * MiB)
    before = drive.whole()
    result = probe(drive, seed=1)
    assert result.verdict == GENUINE
    assert result.usable_size == result.reported_size == 256 * MiB
    assert result.failures == ()
    assert result.restored is True
    assert drive.whole() == before
    assert result.write_rate and result.read_rate and result.speed_bytes >= 4 * MiB


@pytest.mark.parametrize("real", [64 * MiB, 8 * MiB, 128 * MiB])
def test_a_wrapping_drive_is_found_at_its_real_size(real: int) -> None:
    drive = FakeDrive(1 * GiB, real, "wrap")
    before = drive.whole()
    result = probe(drive, seed=2)
    assert result.verdict == WRAPS
    assert result.usable_size == real
    wrapped = [f for f in result.failures if f.kind == OTHER]
    assert wrapped and wrapped[0].offset == real and wrapped[0].other == 0
    assert result.restored is True and drive.whole() == before
    assert "wrap around" in result.to_text("/dev/sdx")
    assert result.to_dict()["usable_size"] == real


@pytest.mark.parametrize("real", [64 * MiB, 64 * MiB + 12 * 4096, 300 * MiB + 4096])
def test_a_drive_that_drops_writes_is_found_at_its_real_size(real: int) -> None:
    """Bisection finds the first dropped block to the block, in a few dozen steps."""
    drive = FakeDrive(1 * GiB, real, "drop")
    before = drive.whole()
    result = probe(drive, seed=3)
    assert result.verdict == DROPS
    assert result.usable_size == real
    assert any(f.kind == ZEROS and f.offset >= real for f in result.failures)
    assert result.blocks < 400 + 256 * 2  # not a fill: the MiBs, the sample, the steps
    assert result.restored is True and drive.whole() == before
    assert "dropped" in result.to_text("/dev/sdx")


def test_destructive_saves_nothing() -> None:
    drive = FakeDrive(64 * MiB)
    before = drive.whole()
    result = probe(drive, save=False, seed=4)
    assert result.verdict == GENUINE and result.restored is None
    assert drive.whole() != before


def test_a_cancelled_probe_puts_back_what_it_overwrote() -> None:
    drive = FakeDrive(1 * GiB, 64 * MiB, "wrap")
    before = drive.whole()
    cancel = threading.Event()

    def stop(offset: int) -> None:
        if drive.writes == 20:
            cancel.set()

    drive.on_write = stop
    with pytest.raises(Cancelled):
        probe(drive, cancel=cancel, seed=5)
    assert drive.whole() == before


def test_saved_blocks_past_the_memory_limit_go_to_a_file(tmp_path: object) -> None:
    drive = FakeDrive(128 * MiB)
    before = drive.whole()
    saver = Saver(limit=64 * 1024)
    result = probe(drive, saver=saver, seed=6)
    assert saver.file is not None and saver.saved_bytes > 64 * 1024
    assert drive.whole() != before  # the caller's saver: not yet restored
    assert saver.restore(drive) == ()
    saver.close()
    assert drive.whole() == before
    assert result.verdict == GENUINE


def test_tags_name_their_offset_and_nothing_else() -> None:
    tags = Tags(b"n" * 16)
    block = tags.make(123 * 4096)
    assert tags.owner(block) == 123 * 4096
    assert Tags(b"m" * 16).owner(block) is None  # another run's
    damaged = bytearray(block)
    damaged[100] ^= 1
    assert tags.owner(bytes(damaged)) is None
    assert tags.owner(bytes(4096)) is None


def test_a_quick_probe_refuses_little_time() -> None:
    drive = FakeDrive(1 * GiB, 64 * MiB, "wrap")
    result = probe(drive, quick=True, extra=(200 * MiB - 4096,), seed=7)
    assert result.usable_size == 64 * MiB and result.verdict == WRAPS
    assert result.blocks < 80
    assert result.write_rate is None


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("mode", "real"), [("wrap", 8 * MiB), ("wrap", 32 * MiB), ("drop", 20 * MiB + 8192)]
)
def test_any_run_finds_the_real_size_and_puts_everything_back(
    seed: int, mode: str, real: int
) -> None:
    """Every random sample: blocks first saved after a write to their alias are checked
    against what the alias held before the probe."""
    drive = FakeDrive(512 * MiB, real, mode, seed=seed)
    before = drive.whole()
    result = probe(drive, seed=100 + seed)
    assert result.usable_size == real
    assert result.restored is True, result.restore_failures
    assert drive.whole() == before

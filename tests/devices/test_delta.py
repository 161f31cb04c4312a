"""--delta on real loop devices: re-flashing writes only the chunks that differ, and
still confirms every byte of the image (by the compare read or by the read-back)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file, read_dev

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]
SIZE = 96 * MiB + 12345  # not a multiple of the chunk or the block


def write(image: Path, dev: str, *extra: str) -> dict[str, object]:
    done = subprocess.run(
        [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["verified"] is True, result
    return result


def holds(dev: str, image: Path) -> bool:
    data = image.read_bytes()
    return read_dev(dev, 0, len(data)) == data


@pytest.fixture
def flashed(loop: LoopFactory, tmp_path: Path) -> tuple[str, Path]:
    image = random_file(tmp_path / "nightly.img", SIZE, seed=11)
    dev = loop(128 * MiB)
    write(image, dev)
    return dev, image


def test_same_image_again_is_a_verify(flashed: tuple[str, Path]) -> None:
    dev, image = flashed
    result = write(image, dev, "--delta")
    coverage = result["coverage"]
    assert isinstance(coverage, dict)
    assert coverage["written"] == 0 and coverage["unchanged"] == SIZE
    assert result["bytes_written"] == 0
    assert holds(dev, image)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_single_flipped_bytes_are_found_and_rewritten(
    flashed: tuple[str, Path], where: str
) -> None:
    dev, image = flashed
    offset = {"first": 0, "middle": SIZE // 2, "last": SIZE - 1}[where]
    with open(image, "r+b") as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x5A]))
    result = write(image, dev, "--delta")
    coverage = result["coverage"]
    assert isinstance(coverage, dict)
    # The block holding the byte, and the head (zeroed first, written last).
    expected = MiB if offset < MiB else 2 * MiB
    if where == "last":
        expected = MiB + (SIZE - SIZE // MiB * MiB)
    assert coverage["written"] == expected, coverage
    assert coverage["unchanged"] + coverage["written"] >= SIZE
    assert holds(dev, image)


def test_everything_changed_switches_to_a_plain_write(
    flashed: tuple[str, Path], tmp_path: Path
) -> None:
    dev, _ = flashed
    other = random_file(tmp_path / "other.img", SIZE, seed=12)
    result = write(other, dev, "--delta")
    coverage = result["coverage"]
    assert isinstance(coverage, dict)
    assert coverage["switched_to_full_at"] is not None
    assert coverage["written"] == SIZE
    assert holds(dev, other)


def test_delta_and_bmap_are_not_combined(flashed: tuple[str, Path], tmp_path: Path) -> None:
    dev, image = flashed
    bmap = tmp_path / "x.bmap"
    bmap.write_text("<bmap/>")
    done = subprocess.run(
        [
            *USBWRITER,
            "--image",
            str(image),
            "--device",
            dev,
            "--yes",
            "--delta",
            "--bmap",
            str(bmap),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "choose one" in done.stderr, done.stderr


@pytest.mark.parametrize("phase", ["compare", "write"])
def test_ctrl_c_stops_within_two_seconds(
    flashed: tuple[str, Path], tmp_path: Path, phase: str
) -> None:
    """SIGINT while the drive is read for the compare (nothing written yet: the old
    image stays whole) or while the changed blocks are written (then the head is
    wiped): exit 130 within 2 s either way."""
    from tests.helpers.throttle import blkio_group, interrupt_after

    dev, image = flashed
    if phase == "write":  # every block differs: the rest is written plainly
        image = random_file(tmp_path / "other.img", SIZE, seed=12)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--delta"]
    with blkio_group(dev, 8 * MiB, 8 * MiB) as group:
        stop = interrupt_after(argv, group, 2.5)
    assert stop.returncode == 130, stop.stderr
    assert stop.seconds < 2.0, stop.seconds
    assert "Traceback" not in stop.stderr, stop.stderr
    head = read_dev(dev, 0, MiB)
    if phase == "compare":
        assert holds(dev, image), "a compare changed the drive"
    else:
        assert head == bytes(MiB), "interrupted mid-write, the drive still looks bootable"

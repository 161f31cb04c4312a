"""Writing by a bmap on real loop devices: only the mapped ranges are written (their
checksums checked on the way) and read back; unmapped ranges keep what the drive held."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, read_dev, run

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]
SIZE = 64 * MiB
PATTERN = b"\xaa"


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*USBWRITER, *args], capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
def ext4(tmp_path: Path) -> tuple[Path, Path]:
    """A 64 MiB ext4 image with a few files, and its bmap made by bmaptool."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(5):
        (tree / f"f{i}.bin").write_bytes(bytes([i + 1]) * (300_000 + 7 * i))
    image = tmp_path / "rootfs.img"
    run(["truncate", "-s", str(SIZE), str(image)])
    run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image)])
    bmap = tmp_path / "rootfs.img.bmap"
    run(["bmaptool", "create", "-o", str(bmap), str(image)])
    return image, bmap


def mapped(bmap: Path) -> list[tuple[int, int]]:
    from usbwriter.sources.bmap import read_bmap

    return [(r.first, r.length) for r in read_bmap(str(bmap)).ranges]


def result(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    last: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return last


def test_only_mapped_ranges_are_written_and_read_back(
    loop: LoopFactory, ext4: tuple[Path, Path]
) -> None:
    image, bmap = ext4
    dev = loop(96 * MiB)
    fill(dev, 96 * MiB, PATTERN)
    done = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json")
    assert done.returncode == 0, done.stderr
    r = result(done)
    assert r["verified"] is True
    coverage = r["coverage"]
    assert isinstance(coverage, dict) and coverage["mode"] == "bmap"
    assert coverage["untouched"] > SIZE // 2  # most of the file system is free
    data = image.read_bytes()
    written = read_dev(dev, 0, SIZE)
    for first, length in mapped(bmap):
        assert written[first : first + length] == data[first : first + length]
    # An unmapped block past the first MiB still holds the drive's old bytes.
    ranges = mapped(bmap)
    gaps = [(a + n, b) for (a, n), (b, _) in itertools.pairwise(ranges) if a + n < b]
    gap = next((s, e) for s, e in gaps if s >= MiB and e - s >= 8192)
    assert written[gap[0] : gap[0] + 4096] == PATTERN * 4096
    fsck = subprocess.run(["e2fsck", "-f", "-n", dev], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_compressed_image_finds_the_bmap_of_its_plain_name(
    loop: LoopFactory, ext4: tuple[Path, Path]
) -> None:
    image, _ = ext4
    run(["xz", "-T0", "-1", "-k", str(image)])
    dev = loop(96 * MiB)
    done = usbwriter("--image", f"{image}.xz", "--device", dev, "--yes", "--force", "--json")
    assert done.returncode == 0, done.stderr
    r = result(done)
    assert r["verified"] is True and r["coverage"]["mode"] == "bmap"  # type: ignore[index]
    data = image.read_bytes()
    for first, length in mapped(image.with_name(image.name + ".bmap")):
        assert read_dev(dev, first, length) == data[first : first + length]


def test_wrong_checksum_stops_and_wipes_the_head(
    loop: LoopFactory, ext4: tuple[Path, Path]
) -> None:
    image, bmap = ext4
    first, length = mapped(bmap)[-1]
    with open(image, "r+b") as f:  # tampered after the bmap was made
        f.seek(first + length // 2)
        f.write(b"\x00tampered\x00")
    dev = loop(96 * MiB)
    fill(dev, 96 * MiB, PATTERN)
    done = usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    assert done.returncode == 4, done.stderr
    assert "does not match its bmap" in done.stderr and f"{first}-" in done.stderr
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_bmap_of_another_size_is_refused_and_no_bmap_writes_all(
    loop: LoopFactory, ext4: tuple[Path, Path]
) -> None:
    image, _ = ext4
    with open(image, "ab") as f:
        f.write(bytes(4096))
    dev = loop(96 * MiB)
    fill(dev, 96 * MiB, PATTERN)
    refused = usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    assert refused.returncode == 4 and "wrong bmap" in refused.stderr, refused.stderr
    assert read_dev(dev, 0, 4096) == PATTERN * 4096  # untouched
    whole = usbwriter(
        "--image", str(image), "--device", dev, "--yes", "--force", "--no-bmap", "--json"
    )
    assert whole.returncode == 0, whole.stderr
    assert "coverage" not in result(whole)
    assert read_dev(dev, 0, SIZE + 4096) == image.read_bytes()


def test_ctrl_c_stops_within_two_seconds_and_wipes_the_head(
    loop: LoopFactory, ext4: tuple[Path, Path]
) -> None:
    from tests.helpers.throttle import blkio_group, interrupt_after

    image, bmap = ext4
    assert sum(n for _, n in mapped(bmap)) > 3 * MiB  # seconds at 1 MiB/s
    dev = loop(96 * MiB)
    fill(dev, 2 * MiB, PATTERN)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force"]
    with blkio_group(dev, MiB, 64 * MiB) as group:
        stop = interrupt_after(argv, group, 2.5)
    assert stop.returncode == 130, stop.stderr
    assert stop.seconds < 2.0, stop.seconds
    assert "Traceback" not in stop.stderr, stop.stderr
    assert read_dev(dev, 0, MiB) == bytes(MiB), "interrupted, the drive still looks bootable"


def test_a_drive_with_4096_byte_blocks(loop: LoopFactory, ext4: tuple[Path, Path]) -> None:
    """The bmap's 4 KiB blocks on a 4Kn drive: the mapped ranges are written and read
    back, the unmapped ones keep the drive's bytes, and the file system checks clean."""
    image, bmap = ext4
    dev = loop(96 * MiB, sector_size=4096)
    fill(dev, 96 * MiB, PATTERN)
    done = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json")
    assert done.returncode == 0, done.stderr
    r = result(done)
    assert r["verified"] is True and r["coverage"]["mode"] == "bmap"  # type: ignore[index]
    data = image.read_bytes()
    written = read_dev(dev, 0, SIZE)
    for first, length in mapped(bmap):
        assert written[first : first + length] == data[first : first + length]
    fsck = subprocess.run(["e2fsck", "-f", "-n", dev], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

"""usbwriter probe on real loop devices, and the quick probe before every write.

A loop device is genuine: it passes whole, and its bytes are the same after a
non-destructive probe, also one stopped by Ctrl-C, SIGTERM or SIGHUP (the probe slowed
by the blkio throttle). A partition, a mounted drive and a read-only drive get the
write's own refusals. A write probes the drive first (its receipt says so), leaves the
blocks the probe touched outside the image as the write leaves them, and costs less
than a second at 20 MB/s.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, random_file, read_dev, run
from tests.helpers.throttle import CGROUP_ROOT, blkio_group, enter

pytestmark = ROOT_ONLY

USBWRITER = [sys.executable, "-m", "usbwriter"]


def _hash(dev: str) -> str:
    h = hashlib.sha256()
    with open(dev, "rb", buffering=0) as f:
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()


def _random_drive(loop: LoopFactory, tmp_path: Path, size: int) -> str:
    backing = random_file(tmp_path / "old.img", size, seed=11)
    return loop(0, backing=backing)


def _usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*USBWRITER, *args], capture_output=True, text=True, check=False)


def test_a_genuine_drive_passes_whole_and_keeps_its_bytes(
    loop: LoopFactory, tmp_path: Path
) -> None:
    dev = _random_drive(loop, tmp_path, 96 * MiB)
    before = _hash(dev)
    done = _usbwriter("probe", dev, "--json")
    assert done.returncode == 0, done.stderr
    d = json.loads(done.stdout)
    assert d["verdict"] == "genuine"
    assert d["reported_size"] == d["usable_size"] == 96 * MiB
    assert d["failed_offsets"] == [] and d["restored"] is True
    assert d["write_bytes_per_second"] > 0 and d["read_bytes_per_second"] > 0
    assert d["device"]["path"] == dev
    assert _hash(dev) == before
    text = _usbwriter("probe", dev)
    assert text.returncode == 0
    assert f"{dev}: genuine, 96.0 MiB usable" in text.stdout
    assert _hash(dev) == before


def test_destructive_asks_first_and_saves_nothing(loop: LoopFactory, tmp_path: Path) -> None:
    dev = _random_drive(loop, tmp_path, 32 * MiB)
    before = _hash(dev)
    asked = _usbwriter("probe", dev, "--destructive")
    assert asked.returncode == 4 and "no --yes" in asked.stderr
    assert _hash(dev) == before
    done = _usbwriter("probe", dev, "--destructive", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["restored"] is None
    assert _hash(dev) != before


@pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_probe_puts_back_what_it_overwrote(
    loop: LoopFactory, tmp_path: Path, signum: int
) -> None:
    dev = _random_drive(loop, tmp_path, 64 * MiB)
    before = _hash(dev)
    with blkio_group(dev, MiB // 2, MiB) as group:
        proc = subprocess.Popen(
            [*USBWRITER, "probe", dev],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: enter(group),
        )
        time.sleep(1.2)  # testing blocks (or in the speed run)
        proc.send_signal(signum)
        if signum != signal.SIGHUP:
            time.sleep(0.3)
            proc.send_signal(signum)  # a second one does not cut the restore short
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "the blocks it overwrote were put back" in err
    assert _hash(dev) == before


def _write_refusal(dev: str, image: Path) -> tuple[int, str]:
    done = _usbwriter("--image", str(image), "--device", dev, "--yes", "--force")
    return done.returncode, done.stderr.strip()


def _probe_refusal(dev: str) -> tuple[int, str]:
    done = _usbwriter("probe", dev)
    return done.returncode, done.stderr.strip()


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return random_file(tmp_path / "small.img", 2 * MiB, seed=3)


def test_a_partition_is_refused_as_a_write_refuses_it(
    loop: LoopFactory, image: Path, tmp_path: Path, cleanup: list[list[str]]
) -> None:
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"")
    os.truncate(backing, 32 * MiB)
    run(["sfdisk", "-q", str(backing)], input="label: dos\n\nsize=8M\n")
    dev = loop(0, backing=backing)
    run(["partx", "-a", dev])
    cleanup.append(["partx", "-d", dev])
    part = f"{dev}p1"
    code, words = _probe_refusal(part)
    assert (code, words) == _write_refusal(part, image)
    assert code == 4 and "is a partition; write to the whole disk" in words


def test_a_mounted_drive_is_refused_as_a_write_refuses_it(
    mounted_ext4: tuple[str, Path], image: Path
) -> None:
    dev, _ = mounted_ext4
    code, words = _probe_refusal(dev)
    assert (code, words) == _write_refusal(dev, image)
    assert code == 4 and "mounted" in words


def test_a_read_only_drive_is_refused_as_a_write_refuses_it(loop: LoopFactory, image: Path) -> None:
    dev = loop(32 * MiB, read_only=True)
    code, words = _probe_refusal(dev)
    assert (code, words) == _write_refusal(dev, image)
    assert code == 4 and "read-only" in words


def test_a_write_probes_the_drive_first_and_leaves_what_lies_past_the_image(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """The probe touches powers of two and a sample past a small image; the write leaves
    them as they were (only the drive's last MiB is zeroed, by the write itself)."""
    dev = loop(64 * MiB)
    fill(dev, 64 * MiB)
    img = random_file(tmp_path / "img.raw", 3 * MiB + 4096, seed=5)
    done = _usbwriter("--image", str(img), "--device", dev, "--yes", "--force", "--json")
    assert done.returncode == 0, done.stderr
    receipt = json.loads(done.stdout.splitlines()[-1])
    assert receipt["verified"] is True
    assert receipt["probe"]["verdict"] == "genuine"
    assert receipt["probe"]["usable_size"] == 64 * MiB
    assert receipt["probe"]["restored"] is True
    written = img.read_bytes()
    assert read_dev(dev, 0, len(written)) == written
    past = read_dev(dev, len(written), 63 * MiB - len(written))
    assert past == b"\xaa" * len(past)
    assert read_dev(dev, 63 * MiB, MiB) == bytes(MiB)
    text = _usbwriter("--image", str(img), "--device", dev, "--yes", "--force")
    assert re.search(r"(?i)probe\s+genuine, 64\.0 MiB usable", text.stdout), text.stdout


def test_no_probe_skips_it(loop: LoopFactory, tmp_path: Path) -> None:
    dev = loop(32 * MiB)
    img = random_file(tmp_path / "img.raw", 1 * MiB, seed=6)
    done = _usbwriter(
        "--image", str(img), "--device", dev, "--yes", "--force", "--json", "--no-probe"
    )
    assert done.returncode == 0, done.stderr
    assert "probe" not in json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller")
def test_the_probe_before_a_write_costs_under_a_second_at_20_mb_s(
    loop: LoopFactory, tmp_path: Path
) -> None:
    dev = _random_drive(loop, tmp_path, 256 * MiB)
    img = random_file(tmp_path / "img.raw", 8 * MiB, seed=7)
    argv = [*USBWRITER, "--image", str(img), "--device", dev, "--yes", "--force", "--json"]
    with blkio_group(dev, 20_000_000, 20_000_000) as group:
        done = subprocess.run(
            argv, capture_output=True, text=True, preexec_fn=lambda: enter(group), check=False
        )
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.splitlines()[-1])["probe"]
    print(f"probe before the write: {probe['seconds']} s, {probe['blocks_tested']} blocks")
    assert probe["seconds"] < 1.0

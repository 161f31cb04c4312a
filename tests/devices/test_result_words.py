"""What the command line says after a write, on real loop devices: a second write with
--delta that finds nothing to write says so (no '0 span(s)', no rate of nothing, no
blake3 of nothing as the drive's), several drives each give their hash and times, and
a second extraction into the same folder counts what it kept."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file
from tests.helpers.images import build_image

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]
EMPTY_B3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # blake3(b"")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*USBWRITER, *args], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_delta_write_with_nothing_to_write_says_so(loop: LoopFactory, tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.raw", 24 * MiB + 4096, seed=7)
    dev = loop(32 * MiB)
    first = run("--image", str(image), "--device", dev, "--yes", "--force").stdout
    digest = next(line.split()[-1] for line in first.splitlines() if "  Image blake3 " in line)
    assert f"drive blake3 {digest} = the image's" in first, first
    again = run("--image", str(image), "--device", dev, "--yes", "--force", "--delta").stdout
    assert again.startswith(f"Verified, nothing needed writing: {dev} already held"), again
    assert "24.0 MiB compared with the drive MiB by MiB: all equal" in again, again
    for wrong in ("span(s)", "0.0 MB/s", EMPTY_B3, "(matches)"):
        assert wrong not in again, again


def test_several_drives_each_give_their_hash_and_times(loop: LoopFactory, tmp_path: Path) -> None:
    image = random_file(tmp_path / "img.raw", 8 * MiB, seed=8)
    devs = [loop(16 * MiB) for _ in range(2)]
    argv = ["--image", str(image), "--yes", "--force"]
    for dev in devs:
        argv += ["--device", dev]
    out = run(*argv).stdout
    receipts = out.split("Written and verified: ")[1:]
    assert sorted(r.split()[0] for r in receipts) == sorted(devs), out
    for r in receipts:
        assert re.search(r"\n  Write +8\.0 MiB in .* MB/s", r), r
        assert re.search(r"\n  Verify +8\.0 MiB read back in ", r), r
        assert "drive blake3 " in r and " = the image's" in r, r


def test_a_second_extraction_counts_what_it_kept(tmp_path: Path) -> None:
    iso = build_image("grub-hybrid")
    out = tmp_path / "tree"
    run("extract", str(iso), "-o", str(out))
    again = run("extract", str(iso), "-o", str(out))
    assert "existing file(s)" not in again.stderr, again.stderr
    assert " existing files kept (--overwrite replaces them)" in again.stderr, again.stderr
    assert ": 0 files (0 B), " in again.stdout, again.stdout
    assert re.search(r"; (\d+) skipped: \1 already there and kept$", again.stdout.strip())

"""A board's image, compressed as it is downloaded, written to a drive from the command line
without --force: the plan warns that it will not boot a PC, writes the image inside and
verifies it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from tests.helpers.images import build_image

pytestmark = [pytest.mark.root]
MiB = 1 << 20


def test_compressed_raspberry_pi_image_is_written_without_force(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    if shutil.which("xz") is None:
        pytest.skip("needs xz")
    image = build_image("raw-pi")
    packed = tmp_path / "pi.img.xz"
    with open(packed, "wb") as f:
        subprocess.run(["xz", "-T0", "-c", str(image)], stdout=f, check=True)
    dev = loop(128 * MiB)
    env = dict(os.environ, LC_ALL="C")
    argv = [sys.executable, "-m", "usbwriter", "--image", str(packed), "--device", dev, "--yes"]
    p = subprocess.run(
        [*argv, "--json"], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    boot = next(e for e in events if e["event"] == "boot")
    assert (boot["bios"], boot["uefi"]) == ("no", "no")
    assert boot["image_kind"] == "board:raspberry-pi" and boot["for_hardware"] == "a Raspberry Pi"
    assert boot["compression"] == "xz" and boot["not_read"] == []
    assert f"{packed}: this image is for a Raspberry Pi; it will not boot a PC" in p.stderr
    result = events[-1]
    assert result["event"] == "result" and result["verified"] is True
    assert result["image"]["format"] == "xz"
    data = image.read_bytes()
    assert result["image"]["blake3"] == blake3.blake3(data).hexdigest()
    with open(dev, "rb") as d:
        assert d.read(len(data)) == data

"""A plan's facts changed before its run: the run refuses with ``Changed`` (exit 4),
nothing written, so a face that asked can plan again and show what changed. (A drive
mounted after the plan: tests/devices/test_write.py.)"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, random_file
from usbwriter.errors import Changed
from usbwriter.jobs import Request, plan, run

pytestmark = ROOT_ONLY
MiB = 1 << 20


def test_image_replaced_after_the_plan(loop: Callable[..., str], tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.img", 2 * MiB)
    dev = loop(16 * MiB)
    p = plan(Request(str(image), dev, force=True))
    other = random_file(tmp_path / "other.img", 2 * MiB, seed=2)
    os.replace(other, image)
    with pytest.raises(Changed, match="the image changed since it was checked"):
        run(p)
    assert Path(dev).read_bytes()[:MiB] == bytes(MiB)

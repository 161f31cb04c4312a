"""The slow steps before a write's confirmation say how far they are, through the
progress callback the plan is given: the read of a compressed image's first part for
its boot report (phase "inspect": seconds for a .bz2), and the checksum."""

from __future__ import annotations

import bz2
import hashlib
import io
import itertools
import sys
from pathlib import Path

import pytest

from tests.helpers.images import build_image
from usbwriter.cli.output import ProgressPrinter
from usbwriter.jobs import Request, plan
from usbwriter.progress import Progress

MiB = 1 << 20


@pytest.fixture(scope="module")
def bz2_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bootable ISO of 24 MiB, bzip2-compressed (no size recorded in the file)."""
    iso = build_image("grub-hybrid").read_bytes()
    data = iso + bytes(range(256)) * ((24 * MiB - len(iso)) // 256)
    out = tmp_path_factory.mktemp("bz2") / "disk.iso.bz2"
    out.write_bytes(bz2.compress(data, 1))
    return out


def test_the_boot_report_read_of_a_bz2_image_reports_progress(
    bz2_image: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out.img"
    seen: list[Progress] = []
    p = plan(Request(str(bz2_image), str(target), to_file=True), progress=seen.append)
    inspect = [s for s in seen if s.phase == "inspect"]
    assert len(inspect) >= 2, [s.phase for s in seen]
    assert inspect[-1].done == inspect[-1].total > 0, inspect[-1]
    assert all(a.done <= b.done for a, b in itertools.pairwise(inspect))
    assert p.boot is not None


def test_the_checksum_reports_progress_to_its_end(bz2_image: Path, tmp_path: Path) -> None:
    digest = hashlib.sha256(bz2_image.read_bytes()).hexdigest()
    seen: list[Progress] = []
    plan(
        Request(str(bz2_image), str(tmp_path / "o.img"), to_file=True,
                checksum=f"sha256:{digest}"),
        progress=seen.append,
    )  # fmt: skip
    checks = [s for s in seen if s.phase == "checksum"]
    assert checks and checks[-1].done == checks[-1].total, checks[-1:]


def test_the_terminal_names_the_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", out)
    with ProgressPrinter(json_mode=False, stream=out) as show:
        show(Progress("inspect", 64 * MiB, 64 * MiB, 20e6, 3.2))
    assert out.getvalue().startswith("usbwriter: Inspecting"), out.getvalue()

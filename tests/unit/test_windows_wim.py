"""wimlib on damaged WIM files: the split or the verification refuses with wimlib's own
error in one line, and a cancel stops the tool."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from usbwriter.errors import BadImage, Cancelled
from usbwriter.windows import wim

pytestmark = pytest.mark.skipif(shutil.which("wimlib-imagex") is None, reason="needs wimtools")
MiB = 1 << 20


def make_wim(tmp: Path, sizes: tuple[int, ...] = (3 * MiB, 2 * MiB)) -> Path:
    src = tmp / "src"
    src.mkdir()
    for i, n in enumerate(sizes):
        (src / f"f{i}.bin").write_bytes(os.urandom(n))
    out = tmp / "install.wim"
    subprocess.run(
        ["wimlib-imagex", "capture", str(src), str(out), "--compress=none"],
        check=True,
        capture_output=True,
    )
    return out


def test_split_and_verify_a_good_wim(tmp_path: Path) -> None:
    w = make_wim(tmp_path)
    parts = tmp_path / "parts"
    parts.mkdir()
    s = wim.split(str(w), str(parts), "install.swm", threading.Event())
    assert os.path.basename(s.parts[0]) == "install.swm"
    wim.verify(s.parts, threading.Event())


def test_a_cut_short_wim_is_refused_with_wimlibs_error(tmp_path: Path) -> None:
    w = make_wim(tmp_path)
    data = w.read_bytes()
    w.write_bytes(data[: len(data) - 4096])
    parts = tmp_path / "parts"
    parts.mkdir()
    with pytest.raises(BadImage) as e:
        wim.split(str(w), str(parts), "install.swm", threading.Event(), shown="x.iso: install.wim")
    msg = e.value.message
    assert msg.startswith("x.iso: install.wim: wimlib-imagex could not split it: ")
    assert "\n" not in msg and len(msg) < 300


def test_damaged_file_data_is_refused_by_the_split(tmp_path: Path) -> None:
    w = make_wim(tmp_path)
    data = bytearray(w.read_bytes())
    data[4096:4196] = os.urandom(100)  # inside the first file's resource
    w.write_bytes(bytes(data))
    parts = tmp_path / "parts"
    parts.mkdir()
    with pytest.raises(BadImage) as e:
        wim.split(str(w), str(parts), "install.swm", threading.Event(), shown="x.iso: install.wim")
    assert e.value.message == (
        "x.iso: install.wim: wimlib-imagex could not split it: A WIM resource is corrupted!"
    )


def test_a_damaged_part_is_found_by_the_verification(tmp_path: Path) -> None:
    w = make_wim(tmp_path)
    parts = tmp_path / "parts"
    parts.mkdir()
    s = wim.split(str(w), str(parts), "install.swm", threading.Event())
    with open(s.parts[0], "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(100))
    with pytest.raises(BadImage) as e:
        wim.verify(s.parts, threading.Event(), shown="x.iso: install.wim")
    assert e.value.message.startswith("x.iso: install.wim: wimlib-imagex verify failed: ")
    assert "\n" not in e.value.message


def test_a_cancel_kills_wimlib(tmp_path: Path) -> None:
    w = make_wim(tmp_path, (32 * MiB,) * 4)
    parts = tmp_path / "parts"
    parts.mkdir()
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(Cancelled):
        wim.split(str(w), str(parts), "install.swm", cancel)
    assert time.monotonic() - start < 2


def test_parts_are_small_so_the_first_is_copied_early(tmp_path: Path) -> None:
    """A WIM of many resources is split into parts of at most a quarter GiB: the copy of
    the first starts after wimlib has written that much, not a whole GiB."""
    w = make_wim(tmp_path, (4 * MiB,) * 80)  # 320 MiB in 80 resources
    parts = tmp_path / "parts"
    parts.mkdir()
    handed: list[str] = []
    s = wim.split(str(w), str(parts), "install.swm", threading.Event(), on_part=handed.append)
    assert len(s.parts) >= 2 and handed == list(s.parts)
    assert max(s.sizes) <= 256 * MiB
    wim.verify(s.parts, threading.Event())

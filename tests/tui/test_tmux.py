"""The app in a real terminal: scripts/tui_smoke.sh runs it in tmux and captures the screen."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY
from tests.tui.helpers import MiB, read_device, small_image

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scripts" / "tui_smoke.sh"

pytestmark = [
    ROOT_ONLY,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)"),
]


def smoke(
    out: Path, *steps: str, args: list[str], size: str = "120x40"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SMOKE), str(out), *steps, "--", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env={
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "PYTHON": sys.executable,
            "HOME": str(out),
            "XDG_CONFIG_HOME": str(out / "config"),
            "LC_ALL": "C.UTF-8",
            "SMOKE_SIZE": size,
        },
    )


def screens(out: Path) -> dict[str, str]:
    return {p.stem: p.read_text() for p in out.glob("*.txt")}


def test_main_screen_help_and_quit(loop: Callable[..., str], tmp_path: Path) -> None:
    image = small_image(tmp_path)
    dev = loop(16 * MiB)
    out = tmp_path / "screens"
    p = smoke(out, args=[str(image), "--all"])
    shown = screens(out)
    assert p.returncode == 0, p.stderr + shown.get("timeout", "")
    main = shown["main"]
    for text in ("Image", str(image), "Boot report", "Drives", dev, "Write", "^q Quit"):
        assert text in main, text
    assert len(main.splitlines()) == 40 and max(map(len, main.splitlines())) <= 120
    assert "Three steps" in shown["help"]
    assert "[usbwriter exited 0]" in shown["exit"]
    assert not any("Traceback" in s for s in shown.values())


def choose_and_write(dev: str) -> list[str]:
    """Steps: choose DEV with the arrow keys, press w, answer the question with yes."""
    return [
        "wait=" + dev,
        "sleep=1",
        "keys=d,C-Home,Enter",
        # d focuses the table (choosing moves focus to Write), Down, Enter chooses:
        # until the chosen mark sits on our device.
        f"repeat=d,Down,Enter@▶ {dev} ",
        "keys=w",
        "wait=Erase this drive?",
        "capture=confirm",
        "keys=Tab,Enter",
    ]


def test_write_in_a_real_terminal(loop: Callable[..., str], tmp_path: Path) -> None:
    """Choose the loop device with the arrow keys, confirm, write, verify, read the result."""
    image = small_image(tmp_path)
    dev = loop(16 * MiB)
    out = tmp_path / "screens"
    steps = [
        *choose_and_write(dev),
        "wait=Written and verified",
        "capture=result",
        "keys=q",
        "wait=[usbwriter exited",
        "capture=exit",
    ]
    p = smoke(out, *steps, args=[str(image), "--all"])
    shown = screens(out)
    assert p.returncode == 0, p.stderr + shown.get("timeout", "")
    assert dev in shown["confirm"] and "Cancel" in shown["confirm"]
    assert "safe to remove" in shown["result"] and "= the image's" in shown["result"]
    assert "[usbwriter exited 0]" in shown["exit"]
    data = image.read_bytes()
    assert read_device(dev, len(data)) == data


@pytest.mark.parametrize("size", ["80x24", "100x30"])
def test_small_terminals_show_drives_and_the_keys(
    loop: Callable[..., str], tmp_path: Path, size: str
) -> None:
    """The terminal most people have: with an image loaded, the drive table shows rows
    (three drives here) and the footer keeps Help and Quit."""
    image = small_image(tmp_path)
    for _ in range(3):
        loop(16 * MiB)
    out = tmp_path / "screens"
    steps = ["wait=loop: ", "sleep=2", "capture=main", "keys=C-q", "wait=[usbwriter exited"]
    p = smoke(out, *steps, args=[str(image), "--all"], size=size)
    shown = screens(out)
    assert p.returncode == 0, p.stderr + shown.get("timeout", "")
    main = shown["main"]
    width, height = map(int, size.split("x"))
    assert len(main.splitlines()) == height and max(map(len, main.splitlines())) <= width
    rows = [line for line in main.splitlines() if re.match(r" │ +\S? */dev/lo", line)]
    assert len(rows) >= 3, main
    assert "Help" in main.splitlines()[-1] and "Quit" in main.splitlines()[-1], main


def test_a_failed_write_then_quit_exits_1(loop: Callable[..., str], tmp_path: Path) -> None:
    """As the command line would: the write fails (a .gz damaged past its head), the
    person reads why and quits; the app's exit code is 1, not 0."""
    import gzip

    data = small_image(tmp_path).read_bytes()
    packed = bytearray(gzip.compress(data, compresslevel=1))
    at = len(packed) * 3 // 4
    packed[at : at + 4096] = bytes(4096)  # damaged in the middle: found while writing
    image = tmp_path / "damaged.iso.gz"
    image.write_bytes(bytes(packed))
    dev = loop(16 * MiB)
    out = tmp_path / "screens"
    steps = [
        *choose_and_write(dev),
        "wait=Writing failed",
        "capture=failed",
        "keys=Escape",
        "sleep=1",
        "keys=C-q",
        "wait=[usbwriter exited",
        "capture=exit",
    ]
    p = smoke(out, *steps, args=[str(image), "--all"])
    shown = screens(out)
    assert p.returncode == 0, p.stderr + shown.get("timeout", "")
    assert str(image.name) in shown["failed"], shown["failed"]
    assert "[usbwriter exited 1]" in shown["exit"], shown["exit"]

"""The terminal closes while the app works on a drive (``tmux kill-session``: SIGHUP).

The job is stopped as Stop stops it (a write's first MiB wiped, a backup's unfinished
file removed, the descriptor closed) and the process exits with the interrupted exit
code within seconds. The app runs in a real terminal (tmux) under a small launcher that
ignores SIGHUP itself, so it can note the app's pid and exit code; the app gets SIGHUP
as any program in a closed terminal does. The drive is a loop device throttled to a
stick's speed (the cgroup v1 blkio controller), so the job is still under way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, random_file
from tests.helpers.throttle import CGROUP_ROOT, blkio_group
from tests.tui.helpers import MiB, read_device
from usbwriter.errors import Cancelled, exit_code_of

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    ROOT_ONLY,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt-get install tmux)"),
    pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller"),
]

#: What the app exits with when its terminal closes: interrupted, as for Ctrl-C.
HANGUP_EXIT = exit_code_of(Cancelled("hangup"))

#: Runs the app with SIGHUP at its default, in the cgroup GROUP; ignores SIGHUP itself
#: so that it outlives the terminal and writes the app's pid and exit code down.
LAUNCHER = """
import os, signal, subprocess, sys
group, out, *argv = sys.argv[1:]
signal.signal(signal.SIGHUP, signal.SIG_IGN)
def child():
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    with open(os.path.join(group, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
p = subprocess.Popen(argv, preexec_fn=child)
with open(os.path.join(out, "pid"), "w") as f:
    f.write(str(p.pid))
rc = p.wait()
with open(os.path.join(out, "rc.tmp"), "w") as f:
    f.write(str(rc))
os.rename(os.path.join(out, "rc.tmp"), os.path.join(out, "rc"))
"""


class Terminal:
    """One tmux session on its own socket, 120x40, running a command."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=False
        )

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "app").stdout

    def wait(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not on the screen after {timeout} s:\n{shown}")
            time.sleep(0.2)

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", "app", key)
            time.sleep(0.15)

    def until(self, text: str, *keys: str, tries: int = 40) -> None:
        """Send KEYS until the screen shows TEXT."""
        for _ in range(tries):
            if text in self.screen():
                return
            self.keys(*keys)
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not shown after {tries} rounds of {keys}")


@contextmanager
def app_in_terminal(out: Path, group: Path, *args: str) -> Iterator[Terminal]:
    """`usbwriter ARGS` in tmux, its pid and exit code noted in OUT."""
    launcher = out / "launch.py"
    launcher.write_text(LAUNCHER)
    argv = [sys.executable, str(launcher), str(group), str(out), sys.executable, "-m", "usbwriter"]
    env = {
        "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(out),
        "XDG_CONFIG_HOME": str(out / "config"),
        "XDG_STATE_HOME": str(out / "state"),
        "LC_ALL": "C.UTF-8",
        "TERM": "xterm-256color",
        "PYTHONPATH": str(ROOT),
    }
    words = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv, *args]
    # Not exec'd: the shell stays the terminal's session leader; when it dies of the
    # hangup, the kernel sends SIGHUP to the processes in the foreground (the app).
    command = " ".join(_quote(w) for w in words) + "; true"
    term = Terminal(f"usbwriter-hangup-{os.getpid()}-{time.monotonic_ns()}")
    started = term.tmux(
        "-f", "/dev/null", "new-session", "-d", "-s", "app", "-x", "120", "-y", "40", command
    )
    assert started.returncode == 0, started.stderr
    try:
        yield term
    finally:
        term.tmux("kill-server")


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def hang_up(term: Terminal, out: Path, timeout: float = 15) -> tuple[int, float]:
    """Close the terminal; (the app's exit code, seconds until its process was gone)."""
    pid = int((out / "pid").read_text())
    family = [pid, *children(pid)]  # the app and what it started (a compressor, say)
    start = time.monotonic()
    term.tmux("kill-session", "-t", "app")
    while any(os.path.exists(f"/proc/{p}") for p in family):
        if time.monotonic() - start > timeout:
            raise AssertionError(f"still running {timeout} s on: {family}")
        time.sleep(0.05)
    gone = time.monotonic() - start
    rc = out / "rc"
    while not rc.exists() and time.monotonic() - start < timeout:
        time.sleep(0.05)
    return int(rc.read_text()), gone


def children(pid: int) -> list[int]:
    """The processes whose parent is PID."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def choose(term: Terminal, dev: str) -> None:
    """Focus the drives (d) and move down until the chosen mark sits on DEV."""
    term.wait(dev)
    time.sleep(1)
    term.keys("d", "C-Home", "Enter")
    term.until(f"▶ {dev} ", "d", "Down", "Enter")


def highlight(term: Terminal, dev: str) -> None:
    """Choose DEV, then put the cursor back on it (choosing moves the focus to Write)."""
    choose(term, dev)
    term.keys("d")


def big_image(tmp: Path) -> Path:
    """2 MiB of random bytes, then a sparse tail: cheap to read, slow to write throttled."""
    image = random_file(tmp / "big.img", 2 * MiB)
    with open(image, "r+b") as f:
        f.truncate(160 * MiB)
    return image


@contextmanager
def writing(loop: Callable[..., str], tmp_path: Path) -> Iterator[tuple[Terminal, Path, str, Path]]:
    """The app in a terminal writing a big image to a throttled loop device, bytes going
    out: (the terminal, the folder with the app's pid and exit code, the device, the
    image)."""
    image = big_image(tmp_path)
    dev = loop(192 * MiB)
    out = tmp_path / "out"
    out.mkdir()
    with (
        blkio_group(dev, 16_000_000, 400_000_000) as group,
        app_in_terminal(out, group, str(image), "--all") as term,
    ):
        choose(term, dev)
        term.keys("w")
        term.wait("Erase this drive?")
        term.keys("Tab", "Enter")
        term.wait("Writing " + dev)
        term.wait(" MiB of ")  # the figures: bytes are going out
        time.sleep(1)
        yield term, out, dev, image


def stopped_as_stop_does(dev: str, image: Path) -> bool:
    """The drive's first MiB wiped (or, done already, the whole image on it)."""
    data = image.read_bytes()
    return read_device(dev, MiB) == bytes(MiB) or read_device(dev, len(data)) == data


def test_hangup_during_a_write_stops_it_and_exits(loop: Callable[..., str], tmp_path: Path) -> None:
    with writing(loop, tmp_path) as (term, out, dev, image):
        rc, gone = hang_up(term, out)
    print(f"the app exited {rc}, {gone:.2f} s after the terminal closed")
    assert rc == HANGUP_EXIT
    assert gone < 10
    assert stopped_as_stop_does(dev, image)


def test_sigterm_during_a_write_stops_it_and_quits(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    """SIGTERM (a shutdown, kill) while the app writes: the write stops as Stop stops it
    (the first MiB wiped), then the app quits with the interrupted exit code, as the
    command line does, instead of dying with the terminal left in the app's mode."""
    import signal

    with writing(loop, tmp_path) as (_, out, dev, image):
        start = time.monotonic()
        os.kill(int((out / "pid").read_text()), signal.SIGTERM)
        rc_file = out / "rc"
        while not rc_file.exists() and time.monotonic() - start < 15:
            time.sleep(0.05)
        gone = time.monotonic() - start
        rc = int(rc_file.read_text())
    print(f"the app exited {rc}, {gone:.2f} s after SIGTERM")
    assert rc == HANGUP_EXIT, rc
    assert gone < 10
    assert stopped_as_stop_does(dev, image)


@pytest.mark.parametrize("suffix", ["img", "zst"])
def test_hangup_during_a_backup_removes_the_unfinished_file(
    loop: Callable[..., str], tmp_path: Path, suffix: str
) -> None:
    """Raw, or compressed by zstd in a process of its own, which goes too."""
    dev = loop(192 * MiB)
    with open(dev, "r+b") as f:
        f.write(os.urandom(MiB))
    small = random_file(tmp_path / "small.img", MiB)
    out = tmp_path / "out"
    out.mkdir()
    with (
        blkio_group(dev, 400_000_000, 16_000_000) as group,
        app_in_terminal(out, group, str(small), "--all") as term,
    ):
        highlight(term, dev)
        term.keys("k")
        term.wait("Back up a drive to an image file")
        # the suggested file, in the home folder: .img, or made .zst
        if suffix != "img":
            term.keys("End", "BSpace", "BSpace", "BSpace", *suffix)
        term.keys("Enter")
        term.wait("Back up this drive?")
        term.keys("Tab", "Enter")
        term.wait("Backing up")
        term.wait(" MiB of ")
        assert [p.name for p in out.iterdir() if f".{suffix}.usbwriter-" in p.name]  # unfinished
        if suffix == "zst":
            app = int((out / "pid").read_text())
            assert "zstd" in [Path(f"/proc/{c}/comm").read_text().strip() for c in children(app)]
        time.sleep(1)
        rc, gone = hang_up(term, out)
    print(f"the app exited {rc}, {gone:.2f} s after the terminal closed")
    left = [p.name for p in out.iterdir() if "usbwriter-backup" in p.name]
    assert not left, f"left behind: {left}"
    assert rc == HANGUP_EXIT
    assert gone < 10


def test_hangup_on_the_main_screen_exits(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    out = tmp_path / "out"
    out.mkdir()
    with (
        blkio_group(dev, 400_000_000, 400_000_000) as group,
        app_in_terminal(out, group, "--all") as term,
    ):
        term.wait(dev)
        rc, gone = hang_up(term, out)
    assert rc == HANGUP_EXIT
    assert gone < 5

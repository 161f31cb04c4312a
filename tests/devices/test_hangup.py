"""SIGHUP (a closed terminal, a dropped ssh session) is an interruption like SIGTERM:
the job stops and cleans up (the drive's head wiped, temporary files removed, the
compressor ended), an NDJSON `error` event is written, and the exit code is 130.

The terminal cases are real hangups: the command runs in its own session with a
pseudo-terminal as its controlling terminal (stdin and stderr), NDJSON on a pipe; the
test closes the terminal's master side, so the kernel sends SIGHUP and every later
write to the terminal fails (EIO), as when a terminal window is closed.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, random_file, read_dev, run
from tests.helpers.throttle import CGROUP_ROOT, blkio_group, enter

pytestmark = [
    ROOT_ONLY,
    pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller"),
]

USBWRITER = [sys.executable, "-m", "usbwriter"]


@dataclass
class Ended:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str  # what the terminal (or the pipe) showed before the hangup


class Command:
    """ARGV in its own session inside GROUP; stdin and stderr on a pseudo-terminal that
    is its controlling terminal (or, with terminal=False, stderr on a pipe)."""

    def __init__(self, argv: list[str], group: Path, *, terminal: bool = True) -> None:
        self.master = -1
        self.seen = b""
        self._closing = threading.Event()
        if terminal:
            self.master, slave = pty.openpty()

            def pre() -> None:
                enter(group)
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # (start_new_session: setsid first)

            self.proc = subprocess.Popen(
                argv, stdin=slave, stdout=subprocess.PIPE, stderr=slave, preexec_fn=pre,
                start_new_session=True, env=dict(os.environ, LC_ALL="C.UTF-8", TERM="xterm"),
            )  # fmt: skip
            os.close(slave)
            self._drain = threading.Thread(target=self._read_terminal, daemon=True)
            self._drain.start()
        else:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=lambda: enter(group), env=dict(os.environ, LC_ALL="C.UTF-8"),
            )  # fmt: skip
        self.events: list[dict[str, Any]] = []

    def _read_terminal(self) -> None:
        """What the terminal shows, read until the test closes it (a read in progress
        would keep the master open: poll, and let hang_up close it in between)."""
        while not self._closing.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.seen += chunk

    def wait_for(self, phase: str, done: int, timeout: float = 60) -> None:
        """Read NDJSON until a progress event of PHASE past DONE bytes."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            event = json.loads(line)
            self.events.append(event)
            if event["event"] == "progress" and event["phase"] == phase and event["done"] > done:
                return
            assert time.monotonic() < deadline, self.events[-3:]
        raise AssertionError(f"ended before {phase} > {done}: {self.events[-3:]}")

    def hang_up(self) -> None:
        """Close the terminal (the kernel sends SIGHUP), or send SIGHUP without one."""
        if self.master >= 0:
            self._closing.set()
            self._drain.join()
            os.close(self.master)
            self.master = -1
        else:
            self.proc.send_signal(signal.SIGHUP)

    def end(self, timeout: float = 20) -> Ended:
        assert self.proc.stdout is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.master >= 0:
                self._closing.set()
                self._drain.join()
                os.close(self.master)
        self.events += [json.loads(line) for line in out.splitlines() if line.strip()]
        shown = (self.seen + (err or b"")).decode(errors="replace")
        return Ended(self.proc.returncode, self.events, shown)


def the_error(ended: Ended) -> dict[str, Any]:
    last = ended.events[-1] if ended.events else {}
    assert last.get("event") == "error", (ended.returncode, ended.events[-3:], ended.stderr)
    return last


@contextmanager
def slow(dev: str, *, write: int = 1 << 40, read: int = 1 << 40) -> Iterator[Path]:
    with blkio_group(dev, write, read) as group:
        yield group


def test_hangup_while_writing_wipes_the_head_and_exits_130(
    loop: LoopFactory, tmp_path: Path
) -> None:
    image = random_file(tmp_path / "large.img", 2 * MiB)
    with open(image, "r+b") as f:
        f.truncate(160 * MiB)  # sparse: read fast, written at the throttled rate
    dev = loop(192 * MiB)
    fill(dev, 2 * MiB)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--json"]
    with slow(dev, write=16 * MiB) as group:
        cmd = Command(argv, group)
        cmd.wait_for("write", 8 * MiB)
        sent = time.monotonic()
        cmd.hang_up()
        ended = cmd.end()
        took = time.monotonic() - sent
    assert ended.returncode == 130, ended
    error = the_error(ended)
    assert error["code"] == "interrupted" and error["exit_code"] == 130
    assert "first MiB was wiped" in error["message"]
    assert "SIGHUP" in error["message"]
    assert took < 5.0, took
    assert read_dev(dev, 0, MiB) == bytes(MiB)
    assert "Traceback" not in ended.stderr


def test_hangup_during_the_read_back_says_written_but_not_verified(
    loop: LoopFactory, tmp_path: Path
) -> None:
    image = random_file(tmp_path / "image.img", 48 * MiB, seed=3)
    dev = loop(64 * MiB)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--json"]
    with slow(dev, read=8 * MiB) as group:
        cmd = Command(argv, group)
        cmd.wait_for("verify", 4 * MiB)
        cmd.hang_up()
        ended = cmd.end()
    assert ended.returncode == 130, ended
    error = the_error(ended)
    assert error["code"] == "interrupted"
    assert "written but not verified" in error["message"], error
    assert read_dev(dev, 0, MiB) == image.read_bytes()[:MiB]  # written: not wiped


def _children(pid: int) -> list[int]:
    p = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in p.stdout.split()]


def _gone(pid: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("terminal", [False, True], ids=["sighup", "terminal-closed"])
def test_hangup_during_a_compressed_backup_leaves_nothing(
    loop: LoopFactory, tmp_path: Path, terminal: bool
) -> None:
    backing = random_file(tmp_path / "drive.img", 96 * MiB, seed=9)
    dev = loop(0, backing=backing)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "drive.img.zst"
    with slow(dev, read=16 * MiB) as group:
        cmd = Command(
            [*USBWRITER, "backup", dev, "-o", str(out), "--json"], group, terminal=terminal
        )
        cmd.wait_for("read", 8 * MiB)
        compressors = _children(cmd.proc.pid)
        assert compressors, "no compressor running"
        cmd.hang_up()
        ended = cmd.end()
    assert ended.returncode == 130, ended
    error = the_error(ended)
    assert error["code"] == "interrupted" and "no image file was left" in error["message"]
    assert os.listdir(out_dir) == []
    for pid in compressors:
        assert _gone(pid), f"compressor {pid} still running"


def test_hangup_during_an_extract_leaves_no_temporary_file(
    loop: LoopFactory, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(4):
        random_file(tree / f"part{i}.bin", 24 * MiB, seed=20 + i)
    iso = tmp_path / "big.iso"
    run(["xorriso", "-as", "mkisofs", "-R", "-J", "-o", str(iso), str(tree)])
    dev = loop(0, backing=iso)  # read through the loop device: throttled
    out = tmp_path / "out"
    with slow(dev, read=16 * MiB) as group:
        cmd = Command([*USBWRITER, "extract", dev, "-o", str(out), "--json"], group)
        cmd.wait_for("extract", 8 * MiB)
        cmd.hang_up()
        ended = cmd.end()
    assert ended.returncode == 130, ended
    assert the_error(ended)["code"] == "interrupted"
    left = sorted(os.listdir(out)) if out.exists() else []
    assert not [n for n in left if n.startswith(".")], left
    for name in left:  # what is there was extracted whole
        assert (out / name).read_bytes() == (tree / name).read_bytes()


def test_a_second_hangup_does_not_cut_the_cleanup_short(loop: LoopFactory, tmp_path: Path) -> None:
    """A shell forwards the hangup to its jobs: SIGHUP may come twice. The second must
    not interrupt the wipe (as a second Ctrl-C does)."""
    image = random_file(tmp_path / "large.img", 2 * MiB)
    with open(image, "r+b") as f:
        f.truncate(160 * MiB)
    dev = loop(192 * MiB)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--json"]
    with slow(dev, write=16 * MiB) as group:
        cmd = Command(argv, group, terminal=False)
        cmd.wait_for("write", 8 * MiB)
        cmd.proc.send_signal(signal.SIGHUP)
        cmd.proc.send_signal(signal.SIGHUP)
        ended = cmd.end()
    assert ended.returncode == 130, ended
    assert "first MiB was wiped" in the_error(ended)["message"]
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_a_closed_output_during_a_write_is_an_interruption_not_a_success(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """`ssh host usbwriter ... --json` with no terminal: a dropped session sends no
    SIGHUP, the NDJSON reader is simply gone (EPIPE). The write stops and cleans up as
    for SIGHUP, and the exit code says so (it was 0)."""
    image = random_file(tmp_path / "large.img", 2 * MiB)
    with open(image, "r+b") as f:
        f.truncate(160 * MiB)
    dev = loop(192 * MiB)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--json"]
    with slow(dev, write=16 * MiB) as group:
        cmd = Command(argv, group, terminal=False)
        cmd.wait_for("write", 8 * MiB)
        assert cmd.proc.stdout is not None
        cmd.proc.stdout.close()  # the reader is gone
        _, err = cmd.proc.communicate(timeout=20)
    assert cmd.proc.returncode == 130, err
    line = err.decode().strip().splitlines()[-1]
    assert "first MiB was wiped" in line and "output was closed" in line, line
    assert read_dev(dev, 0, MiB) == bytes(MiB)

"""A device with a stick's speed: the cgroup v1 blkio controller throttles one device."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import run

CGROUP_ROOT = Path("/sys/fs/cgroup/blkio")


@contextmanager
def blkio_group(dev: str, write_bps: int, read_bps: int) -> Iterator[Path]:
    """A cgroup that limits DEV to the given bytes per second; removed afterwards.

    Put a process in it with `enter(group)` (from a preexec_fn for a child).
    """
    group = CGROUP_ROOT / f"usbwriter-test-{os.getpid()}-{time.monotonic_ns()}"
    group.mkdir()
    majmin = run(["lsblk", "-dno", "MAJ:MIN", dev]).stdout.strip()
    try:
        (group / "blkio.throttle.write_bps_device").write_text(f"{majmin} {write_bps}")
        (group / "blkio.throttle.read_bps_device").write_text(f"{majmin} {read_bps}")
        yield group
    finally:
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def enter(group: Path, pid: int | None = None) -> None:
    """Move PID (default: the calling process) into GROUP."""
    (group / "cgroup.procs").write_text(str(pid if pid is not None else os.getpid()))


@dataclass(frozen=True)
class Interrupted:
    returncode: int
    stderr: str
    seconds: float  # from SIGINT to the exit


def interrupt_after(argv: list[str], group: Path, delay: float) -> Interrupted:
    """Run ARGV inside GROUP, send it SIGINT after DELAY seconds, and wait: how it ended
    and how long it took to stop."""
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: enter(group)
    )
    time.sleep(delay)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return Interrupted(proc.returncode, err, time.monotonic() - start)

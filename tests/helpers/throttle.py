"""A device with a stick's speed: the cgroup v1 blkio controller throttles one device."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

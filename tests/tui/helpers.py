"""Shared pieces of the TUI tests: waiting on the app, images, a throttled device."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from tests.conftest import run

MiB = 1 << 20
CGROUP_ROOT = Path("/sys/fs/cgroup/blkio")


async def wait_for(
    pilot: Pilot[Any], predicate: Callable[[], bool], what: str, timeout: float = 30.0
) -> float:
    """Let the app run until PREDICATE holds; the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await pilot.pause(0.05)
    return time.monotonic() - start


def small_image(tmp: Path) -> Path:
    """A small hybrid BIOS+UEFI ISO built by grub-mkrescue (cached per session)."""
    from tests.helpers.images import build_image

    return build_image("grub-hybrid")


@contextmanager
def throttled(dev: str, write_bps: int, read_bps: int) -> Iterator[None]:
    """Put this process in a cgroup v1 blkio group that limits DEV's bandwidth.

    The engine's threads are this process's, so the write in the app runs at a
    stick's speed; the process goes back to the root group afterwards.
    """
    group = CGROUP_ROOT / f"usbwriter-tui-test-{os.getpid()}"
    group.mkdir()
    majmin = run(["lsblk", "-dno", "MAJ:MIN", dev]).stdout.strip()
    try:
        (group / "blkio.throttle.write_bps_device").write_text(f"{majmin} {write_bps}")
        (group / "blkio.throttle.read_bps_device").write_text(f"{majmin} {read_bps}")
        (group / "cgroup.procs").write_text(str(os.getpid()))
        yield
    finally:
        (CGROUP_ROOT / "cgroup.procs").write_text(str(os.getpid()))
        for _ in range(100):
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def read_device(dev: str, size: int) -> bytes:
    with open(dev, "rb") as f:
        return f.read(size)


def detach(dev: str) -> None:
    subprocess.run(["losetup", "-d", dev], check=False)

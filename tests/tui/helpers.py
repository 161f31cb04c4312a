"""Shared pieces of the TUI tests: waiting on the app, images, a throttled device."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from textual.app import App
from textual.pilot import Pilot

from tests.helpers.throttle import CGROUP_ROOT, blkio_group, enter

MiB = 1 << 20


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


def error_shown(app: App[Any]) -> bool:
    """The error screen is up and composed (its message can be read): a job stopped."""
    from usbwriter.tui.screens.error import ErrorScreen

    return isinstance(app.screen, ErrorScreen) and bool(app.screen.query("#error-message"))


def small_image(tmp: Path) -> Path:
    """A small hybrid BIOS+UEFI ISO built by grub-mkrescue (cached per session)."""
    from tests.helpers.images import build_image

    return build_image("grub-hybrid")


@contextmanager
def throttled(dev: str, write_bps: int, read_bps: int) -> Iterator[None]:
    """Throttle DEV for this process: the engine's threads run at a stick's speed."""
    with blkio_group(dev, write_bps, read_bps) as group:
        enter(group)
        try:
            yield
        finally:
            enter(CGROUP_ROOT)


def read_device(dev: str, size: int) -> bytes:
    with open(dev, "rb") as f:
        return f.read(size)


def detach(dev: str) -> None:
    subprocess.run(["losetup", "-d", dev], check=False)

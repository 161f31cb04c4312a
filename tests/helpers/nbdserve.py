"""Serve a fake-capacity stick (tests/helpers/nbdfake.py) over NBD on a unix socket,
for qemu's USB stick in the guest tests. nbdkit runs in the foreground as our child and
is killed by its own PID."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PLUGIN = Path(__file__).with_name("nbdfake.py")


@contextmanager
def serve_fake(backing: Path, socket: Path, *, size: str, mode: str) -> Iterator[Path]:
    """nbdkit serving BACKING (the REAL bytes) as a drive of SIZE that wraps or drops
    (MODE) on SOCKET, until the block ends."""
    argv = [
        "nbdkit",
        "--foreground",
        "--exit-with-parent",
        "--unix",
        str(socket),
        "python",
        str(PLUGIN),
        f"file={backing}",
        f"size={size}",
        f"mode={mode}",
    ]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 15
        while not socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr and proc.poll() is not None else ""
                raise RuntimeError(f"nbdkit did not start: {err}")
            time.sleep(0.05)
        yield socket
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

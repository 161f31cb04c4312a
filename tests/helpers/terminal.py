"""Run a command on a pseudo-terminal and answer its confirmation prompt."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Callable

PROMPT = b"Type 'yes' to continue"


def run_on_terminal(
    argv: list[str],
    answer: bytes,
    *,
    on_prompt: Callable[[], None] | None = None,
    timeout: float = 60,
) -> tuple[int, str]:
    """Run ARGV with stdin and stderr on a pseudo-terminal; when the prompt shows, call
    ON_PROMPT (something changing while the question waits), then type ANSWER. The exit
    code and everything the terminal showed."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, LC_ALL="C")
    )
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += chunk
            if not answered and PROMPT in seen:
                if on_prompt is not None:
                    on_prompt()
                os.write(master, answer)
                answered = True
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")

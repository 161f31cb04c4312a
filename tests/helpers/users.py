"""Acting as an unprivileged user (nobody), as someone who plants links where root writes."""

from __future__ import annotations

import os
from collections.abc import Callable

NOBODY = 65534


def as_nobody(step: Callable[[], None]) -> None:
    """Run STEP in a forked child that is really `nobody` (uid and gid, no groups)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            step()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the step as nobody failed"

"""A bug in the app: one line on stderr, the whole traceback in a log file.

The app collects the traceback Textual prints when it exits after an unhandled
exception (``UsbWriterApp.crash_text``); ``report`` keeps it in
``$XDG_STATE_HOME/usbwriter/tui-error.log`` (``paths.state_dir``) and says so in one
line. When that directory is unsafe, the line says why and no file is written.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from usbwriter.tui.paths import UnsafePath, state_dir, write_private

LOG_NAME = "tui-error.log"


def exception_line(traceback: str) -> str:
    """'RuntimeError: boom' from a traceback as Rich draws it: the lines after the last
    box, up to a blank line (Textual may add a note after it)."""
    lines = traceback.strip().splitlines()
    ends = [i for i, line in enumerate(lines) if line.startswith("╰")]
    words: list[str] = []
    for line in lines[ends[-1] + 1 :] if ends else lines[-1:]:
        if not line.strip():
            break
        words += line.split()
    return " ".join(words) or "unknown error"


def report(
    traceback: str,
    stderr: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path | None:
    """Save TRACEBACK in the log file and print one line; the file, or None."""
    path: Path | None = None
    try:
        path = write_private(state_dir(environ, home), LOG_NAME, traceback)
        where = f" (details in {path})"
    except UnsafePath as e:
        where = f" (no log file: {e})"
    except OSError as e:
        where = f" (no log file: {e.filename}: {e.strerror})"
    print(
        f"usbwriter: internal error in the app: {exception_line(traceback)}{where}",
        file=stderr or sys.stderr,
    )
    return path

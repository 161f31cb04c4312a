"""What the command line prints and asks: NDJSON, progress, confirmation, signals.

Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed terminal, a dropped ssh
session) interrupt every command the same way: inside a job they ask the engine to
stop and clean up (``cancel_on_signals``), elsewhere they raise KeyboardInterrupt
(``interrupt_on_signals``); either way the command exits 130 with one error. After a
hangup the terminal is gone: writing to it fails (EIO, or EPIPE on a pipe whose reader
went with the session), so every write here tolerates that and sends what follows to
/dev/null, and the cleanup runs to its end. A second SIGINT or SIGTERM interrupts at
once; a second SIGHUP (a shell forwards the hangup to its jobs) changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from types import FrameType

    from usbwriter.progress import Progress


class _Session:
    """What the command has been through: the signal that interrupted it (the first),
    whether the terminal hung up, the last phase progress was shown for."""

    interrupted_by: int | None = None
    hung_up = False
    output_lost = False  # stdout or stderr closed under a running job (EPIPE, EIO)
    phase = ""
    job: threading.Event | None = None  # the running job's cancel, while one runs


SESSION = _Session()


def _note_signal(signum: int) -> None:
    if SESSION.interrupted_by is None:
        SESSION.interrupted_by = signum
    if signum == signal.SIGHUP:
        SESSION.hung_up = True


def signal_words() -> str | None:
    """What interrupted the command, for its error message (None for nothing or Ctrl-C)."""
    if SESSION.output_lost and SESSION.interrupted_by is None:
        return "the output was closed (a broken pipe: the reader or the session is gone)"
    if SESSION.interrupted_by == signal.SIGHUP:
        return "SIGHUP: the terminal or the session was closed"
    if SESSION.interrupted_by == signal.SIGTERM:
        return "SIGTERM"
    return None


def _write(stream: TextIO, text: str) -> None:
    """TEXT to STREAM, flushed. After a hangup a write that fails (the terminal is
    gone) is dropped, and the stream sent to /dev/null, so that the cleanup and the
    exit code are not lost to it. While a job runs, an output that fails (EPIPE: its
    reader is gone, as a dropped ssh session without a terminal leaves it; EIO) is
    taken as a hangup: the job is asked to stop and clean up, as on SIGHUP."""
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError) as e:
        lost = isinstance(e, OSError) and e.errno in (errno.EPIPE, errno.EIO)
        if not SESSION.hung_up and not (lost and SESSION.job is not None):
            raise
        if not SESSION.hung_up:
            SESSION.hung_up = SESSION.output_lost = True
            assert SESSION.job is not None
            SESSION.job.set()
        _to_devnull(stream)


def _to_devnull(stream: TextIO) -> None:
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)
    with contextlib.suppress(OSError, ValueError):
        stream.flush()  # what was left in the buffer goes to /dev/null now


def settle() -> None:
    """At the end of a command that hung up: stdout and stderr flushed, or sent to
    /dev/null (Python would otherwise exit 120 failing to flush them)."""
    if not SESSION.hung_up:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            _to_devnull(stream)


def emit(obj: dict[str, Any], out: TextIO | None = None) -> None:
    if obj.get("event") == "progress":
        SESSION.phase = str(obj.get("phase", ""))
    _write(out or sys.stdout, json.dumps(obj, sort_keys=False) + "\n")


def say(text: str) -> None:
    """TEXT on stderr, each line as a terminal shows it (no escape sequences from
    names in it: see errors.terminal_safe)."""
    _write(sys.stderr, _safe_lines(text) + "\n")


def tell(text: str) -> None:
    """A result in words (a receipt) on stdout, each line as a terminal shows it."""
    _write(sys.stdout, _safe_lines(text) + "\n")


def _safe_lines(text: str) -> str:
    from usbwriter.errors import terminal_safe

    return "\n".join(terminal_safe(line) for line in text.split("\n"))


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str) -> bool:
    """QUESTION (which asks for the word yes) on stderr; True only for that word, as
    the question says: erasing a drive is not agreed to by a stray 'y'."""
    _write(sys.stderr, question)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() == "yes"


#: The signals that interrupt a command (SIGINT is Python's KeyboardInterrupt already).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Outside a job, SIGTERM and SIGHUP interrupt as Ctrl-C does (KeyboardInterrupt:
    exit 130 with one error, an NDJSON error event with --json); a repeated SIGHUP is
    ignored. Around a whole command; what it went through (SESSION) starts afresh."""
    global SESSION
    SESSION = _Session()

    def handler(signum: int, frame: FrameType | None) -> None:
        repeated = signum == signal.SIGHUP and SESSION.hung_up
        _note_signal(signum)
        if not repeated:
            raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


def default_signals() -> None:
    """SIGTERM and SIGHUP as the system handles them (the interactive app's own way)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """First Ctrl-C, SIGTERM or SIGHUP asks the engine to stop (it cleans up: the
    drive's head wiped, temporary files removed); a second Ctrl-C or SIGTERM interrupts
    at once. A second SIGHUP does not: a shell forwards the hangup to its jobs."""
    cancel = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        _note_signal(signum)
        if signum == signal.SIGHUP:
            cancel.set()
            return
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    outer, SESSION.job = SESSION.job, cancel
    try:
        if SESSION.hung_up:  # (a hangup before this job: it does not start)
            cancel.set()
        yield cancel
    finally:
        SESSION.job = outer
        for sig, previous in old.items():
            signal.signal(sig, previous)


class ProgressPrinter:
    """Progress on stderr (a bar on a terminal, plain lines otherwise); NDJSON on stdout."""

    def __init__(self, json_mode: bool, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._last_phase = ""
        self._finished_phase = ""
        self._open_line = False

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end_line()

    def end_line(self) -> None:
        if self._open_line:
            self._open_line = False
            _write(self.stream, "\n")

    def __call__(self, p: Progress) -> None:
        from usbwriter.units import human_duration, human_rate, human_size

        SESSION.phase = p.phase
        now = time.monotonic()
        finished = p.done >= p.total
        interval = 0.25 if (self.json_mode or self.tty) else 2.0
        if p.phase == self._last_phase and not finished and now - self._last < interval:
            return
        if finished and p.phase == self._finished_phase:
            return  # the engine's last chunk and its summary both say 100%
        if finished:
            self._finished_phase = p.phase
        self._last, self._last_phase = now, p.phase
        if self.json_mode:
            emit(
                {
                    "event": "progress",
                    "phase": p.phase,
                    "done": p.done,
                    "total": p.total,
                    "rate": round(p.rate),
                    "eta": None if p.eta is None else round(p.eta, 1),
                    **({"by_file": True} if p.by_file else {}),
                }
            )
            return
        if p.phase == "sync":
            if self.tty:
                self._open_line = True
                _write(self.stream, "\r\033[KFlushing the drive's cache...")
            return
        pct = 100.0 * p.fraction
        label = {
            "write": "Writing",
            "sync": "Flushing",
            "verify": "Verifying",
            "checksum": "Checking",
            "inspect": "Inspecting",
            "read": "Reading",
            "extract": "Extracting",
        }.get(p.phase, p.phase)
        eta = "done" if finished else f"ETA {human_duration(p.eta)}"
        text = (
            f"{label:10} {pct:5.1f}%  {human_size(p.done)} / {human_size(p.total)}  "
            f"{human_rate(p.rate)}  {eta}"
        )
        if p.by_file:
            text += "  (of the compressed file)"
        if self.tty:
            width = 24
            filled = int(width * p.fraction)
            bar = "#" * filled + "-" * (width - filled)
            self._open_line = not finished
            _write(self.stream, f"\r\033[K[{bar}] {text}" + ("\n" if finished else ""))
        else:
            _write(self.stream, f"usbwriter: {text}\n")

"""What the command line prints and asks: NDJSON, progress, confirmation, signals."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from usbwriter.progress import Progress


def emit(obj: dict[str, Any], out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(obj, sort_keys=False) + "\n")
    stream.flush()


def say(text: str) -> None:
    """TEXT on stderr, each line as a terminal shows it (no escape sequences from
    names in it: see errors.terminal_safe)."""
    print(_safe_lines(text), file=sys.stderr, flush=True)


def tell(text: str) -> None:
    """A result in words (a receipt) on stdout, each line as a terminal shows it."""
    print(_safe_lines(text), flush=True)


def _safe_lines(text: str) -> str:
    from usbwriter.errors import terminal_safe

    return "\n".join(terminal_safe(line) for line in text.split("\n"))


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stderr.isatty()


def confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


@contextmanager
def cancel_on_signals() -> Iterator[threading.Event]:
    """First Ctrl-C (or SIGTERM) asks the engine to stop; a second one interrupts at once."""
    cancel = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


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
            self.stream.write("\n")
            self.stream.flush()
            self._open_line = False

    def __call__(self, p: Progress) -> None:
        from usbwriter.units import human_duration, human_rate, human_size

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
                self.stream.write("\r\033[KFlushing the drive's cache...")
                self._open_line = True
                self.stream.flush()
            return
        pct = 100.0 * p.fraction
        label = {
            "write": "Writing",
            "sync": "Flushing",
            "verify": "Verifying",
            "checksum": "Checking",
            "read": "Reading",
            "extract": "Extracting",
        }.get(p.phase, p.phase)
        eta = "done" if finished else f"ETA {human_duration(p.eta)}"
        text = (
            f"{label:9} {pct:5.1f}%  {human_size(p.done)} / {human_size(p.total)}  "
            f"{human_rate(p.rate)}  {eta}"
        )
        if p.by_file:
            text += "  (of the compressed file)"
        if self.tty:
            width = 24
            filled = int(width * p.fraction)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r\033[K[{bar}] {text}")
            self._open_line = True
            if finished:
                self.stream.write("\n")
                self._open_line = False
        else:
            self.stream.write(f"usbwriter: {text}\n")
        self.stream.flush()

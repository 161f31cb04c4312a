"""After a hangup the terminal is gone: what the command line writes must not fail."""

from __future__ import annotations

import contextlib
import io
import os
import signal
from collections.abc import Iterator

import pytest

from usbwriter.cli import output
from usbwriter.progress import Progress


@pytest.fixture
def dead_stream() -> Iterator[io.TextIOWrapper]:
    """A text stream on a pipe whose reader is gone (EPIPE), as after a dropped session."""
    r, w = os.pipe()
    os.close(r)
    previous = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    stream = io.TextIOWrapper(os.fdopen(w, "wb"), encoding="utf-8", line_buffering=True)
    try:
        yield stream
    finally:
        signal.signal(signal.SIGPIPE, previous)
        with contextlib.suppress(OSError):
            stream.close()


def test_writes_to_a_dead_stream_fail_before_a_hangup(dead_stream: io.TextIOWrapper) -> None:
    with output.interrupt_on_signals(), pytest.raises(BrokenPipeError):
        output.emit({"event": "x"}, dead_stream)


def test_after_a_hangup_writes_are_dropped_and_the_stream_goes_to_devnull(
    dead_stream: io.TextIOWrapper,
) -> None:
    with output.interrupt_on_signals(), output.cancel_on_signals() as cancel:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGHUP)  # forwarded again by a shell: no escalation
        assert cancel.is_set() and output.SESSION.hung_up
        assert output.signal_words() == "SIGHUP: the terminal or the session was closed"
        output.emit({"event": "error"}, dead_stream)
        show = output.ProgressPrinter(json_mode=False, stream=dead_stream)
        show(Progress("write", 1, 2, 1.0, 1.0))
        show.end_line()
        assert os.path.samestat(os.fstat(dead_stream.fileno()), os.stat(os.devnull))


def test_outside_a_job_sighup_and_sigterm_interrupt_as_ctrl_c() -> None:
    for sig in (signal.SIGHUP, signal.SIGTERM):
        with output.interrupt_on_signals():
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), sig)
            assert output.SESSION.interrupted_by == sig
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # restored afterwards

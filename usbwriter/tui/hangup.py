"""The terminal closed (SIGHUP): stop every job as Stop stops it, then exit.

A job on a drive runs in a thread (``ProgressScreen``, ``ExtractScreen``); each one is
``Jobs.running`` while it runs. On SIGHUP the handler, on the main thread between two
steps of the app, does not wait there: it points the terminal's descriptors at
/dev/null (the app's output thread would fail on the closed terminal, and its full
queue would then block the app), sets every running job's cancel event, and starts a
thread that waits for those jobs to end (a write's first MiB wiped, a backup's
unfinished file removed, the drive's descriptor closed) and then ends the process
with the interrupted exit code. Nothing is shown: there is no terminal left.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType

from usbwriter.errors import Cancelled, exit_code_of

#: The exit code after a hangup: interrupted, as Ctrl-C and SIGTERM on the command line.
HANGUP_EXIT = exit_code_of(Cancelled("the terminal was closed"))


class Jobs:
    """The jobs running in the app's threads, so that a hangup can stop them and wait.

    No lock: the signal handler runs on the main thread and must never wait for one.
    A job registers before it looks at ``hung_up``, and the handler sets ``hung_up``
    before it looks at the jobs, so a job either is stopped and waited for, or sees
    the hangup and does not start."""

    def __init__(self) -> None:
        self._running: dict[int, tuple[threading.Event, threading.Event]] = {}
        self.hung_up = False
        # the last job's exit code, by the core's policy: what Quit exits with
        self.exit_code = 0

    @contextmanager
    def running(self, cancel: threading.Event) -> Iterator[None]:
        """While a job runs; CANCEL is its Stop. Raises Cancelled after a hangup."""
        done = threading.Event()
        key = id(done)
        self._running[key] = (cancel, done)
        try:
            if self.hung_up:
                cancel.set()
                raise Cancelled("interrupted: the terminal was closed")
            yield
        finally:
            del self._running[key]
            done.set()

    def stop_all(self) -> list[threading.Event]:
        """Stop every running job (and any that would start); the events set as each ends."""
        self.hung_up = True
        jobs = list(self._running.values())
        for cancel, _ in jobs:
            cancel.set()
        return [done for _, done in jobs]


def jobs_of(app: object) -> Jobs:
    """APP's jobs (a bundle of its own for an app that keeps none, as in a test)."""
    jobs = getattr(app, "jobs", None)
    return jobs if isinstance(jobs, Jobs) else Jobs()


def detach_terminal() -> None:
    """Standard input, output and error on /dev/null: the terminal is gone."""
    try:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    for fd in (0, 1, 2):
        with suppress(OSError):
            os.dup2(null, fd)
    os.close(null)


class Hangup:
    """What SIGHUP does to the app: ``detach()`` the terminal, stop JOBS, then
    ``exit(HANGUP_EXIT)`` once they ended.

    ``exit`` is ``os._exit``: the app's own exit would draw on the closed terminal
    and may wait on it; the jobs' clean-up is done by then and nothing else is left."""

    def __init__(
        self,
        jobs: Jobs,
        *,
        exit: Callable[[int], object] = os._exit,
        detach: Callable[[], None] = detach_terminal,
    ) -> None:
        self.jobs = jobs
        self.exit = exit
        self.detach = detach
        self.thread: threading.Thread | None = None

    def __call__(self, signum: int = signal.SIGHUP, frame: FrameType | None = None) -> None:
        if self.thread is not None:
            return
        self.detach()
        waiting = self.jobs.stop_all()
        self.thread = threading.Thread(
            target=self._exit_after, args=(waiting,), name="hangup", daemon=True
        )
        self.thread.start()

    def _exit_after(self, waiting: list[threading.Event]) -> None:
        for done in waiting:
            done.wait()
        self.exit(HANGUP_EXIT)

    def wait(self) -> None:
        """After a hangup, until the process ends (the app's loop may have ended first)."""
        if self.thread is not None:
            self.thread.join()


class Terminate:
    """What SIGTERM does to the app (a shutdown, ``kill``): stop JOBS as Stop stops them
    (a write's first MiB wiped, a backup's unfinished file removed) and, once they ended,
    ``quit(HANGUP_EXIT)``: the app leaves as it does on Quit, the terminal restored."""

    def __init__(self, jobs: Jobs, quit: Callable[[int], object]) -> None:
        self.jobs = jobs
        self.quit = quit
        self.thread: threading.Thread | None = None

    def __call__(self, signum: int = signal.SIGTERM, frame: FrameType | None = None) -> None:
        if self.thread is not None:
            return
        waiting = self.jobs.stop_all()
        self.thread = threading.Thread(
            target=self._quit_after, args=(waiting,), name="terminate", daemon=True
        )
        self.thread.start()

    def _quit_after(self, waiting: list[threading.Event]) -> None:
        for done in waiting:
            done.wait()
        self.quit(HANGUP_EXIT)


@contextmanager
def exit_on_hangup(jobs: Jobs, quit: Callable[[int], object] | None = None) -> Iterator[Hangup]:
    """While the app runs (on the main thread): SIGHUP stops JOBS and ends the process;
    SIGTERM stops JOBS and then QUITs the app (the terminal is still there)."""
    hangup = Hangup(jobs)
    if threading.current_thread() is not threading.main_thread():
        yield hangup
        return
    old = signal.signal(signal.SIGHUP, hangup)
    old_term = signal.signal(signal.SIGTERM, Terminate(jobs, quit)) if quit else None
    try:
        yield hangup
    finally:
        hangup.wait()
        signal.signal(signal.SIGHUP, old)
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)

"""What a hangup does to the jobs the app runs (usbwriter.tui.hangup), without a terminal:
the running jobs are stopped and waited for, then the process would exit; a job that
would start after the hangup does not. (tests/tui/test_hangup.py closes a real terminal
on the app.)"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from tests.tui.helpers import wait_for
from tests.tui.recorded import DISKS, recorded_services
from usbwriter.errors import Cancelled
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.hangup import HANGUP_EXIT, Hangup, Jobs
from usbwriter.tui.screens.extract import ExtractScreen
from usbwriter.tui.screens.progress import Job, ProgressScreen


def test_the_exit_comes_after_the_running_jobs_ended() -> None:
    jobs = Jobs()
    cancel = threading.Event()
    started = threading.Event()
    order: list[object] = []

    def job() -> None:
        with jobs.running(cancel):
            started.set()
            cancel.wait(10)
            time.sleep(0.2)  # the wipe
            order.append("wiped")

    worker = threading.Thread(target=job)
    worker.start()
    started.wait(10)
    hangup = Hangup(jobs, exit=order.append, detach=lambda: order.append("detached"))
    hangup()
    hangup()  # a second SIGHUP changes nothing
    hangup.wait()
    worker.join()
    assert order == ["detached", "wiped", HANGUP_EXIT]
    assert HANGUP_EXIT == 130


def test_a_job_does_not_start_after_the_hangup() -> None:
    jobs = Jobs()
    exits: list[int] = []
    hangup = Hangup(jobs, exit=exits.append, detach=lambda: None)
    hangup()
    hangup.wait()
    assert exits == [HANGUP_EXIT]
    cancel = threading.Event()
    with pytest.raises(Cancelled), jobs.running(cancel):
        pytest.fail("the job started")
    assert cancel.is_set()


async def test_the_app_s_write_is_stopped_by_a_hangup() -> None:
    """The progress screen's job is one of the app's jobs: a hangup stops it, and the
    exit waits until the engine returned."""
    order: list[object] = []

    def run(plan: Any, *, progress: Any = None, cancel: Any = None, notify: Any = None) -> Any:
        order.append("writing")
        cancel.wait(10)
        order.append("wiped")
        raise Cancelled("interrupted: first MiB wiped")

    services = recorded_services(run=run)
    app = UsbWriterApp(services, show_all=True, live_updates=False, cursor_blink=False)
    plan = SimpleNamespace(request=SimpleNamespace(delta=False))
    job = Job("/srv/stick.img", 1 << 20, DISKS[0], plan)  # type: ignore[arg-type]
    async with app.run_test() as pilot:
        screen = ProgressScreen(services, job)
        await app.push_screen(screen)
        await wait_for(pilot, lambda: order == ["writing"], "the write")
        hangup = Hangup(app.jobs, exit=order.append, detach=lambda: None)
        hangup()
        await wait_for(pilot, lambda: HANGUP_EXIT in order, "the exit")
        assert order == ["writing", "wiped", HANGUP_EXIT]
        assert screen.cancel_event.is_set()


async def test_the_app_s_extraction_is_stopped_by_a_hangup() -> None:
    order: list[object] = []

    def extract(iso: Any, paths: list[str], output: str, **kw: Any) -> Any:
        order.append("extracting")
        kw["cancel"].wait(10)
        order.append("temporary file removed")
        raise Cancelled("interrupted")

    services = recorded_services(extract=extract)
    app = UsbWriterApp(services, show_all=True, live_updates=False, cursor_blink=False)
    iso = SimpleNamespace(path="/srv/tools.iso", close=lambda: None)
    async with app.run_test() as pilot:
        await app.push_screen(ExtractScreen(services, iso, [], "/srv/tools"))  # type: ignore[arg-type]
        await wait_for(pilot, lambda: order == ["extracting"], "the extraction")
        hangup = Hangup(app.jobs, exit=order.append, detach=lambda: None)
        hangup()
        await wait_for(pilot, lambda: HANGUP_EXIT in order, "the exit")
        assert order == ["extracting", "temporary file removed", HANGUP_EXIT]

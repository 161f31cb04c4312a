"""A bug in the app ends it with one line on stderr, never a traceback; the traceback
goes to a log file in the user's state directory, and the exit code is not 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import usbwriter.tui.app
from usbwriter.tui import run
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.services import Services


class Broken(UsbWriterApp):
    CSS_PATH = str(Path(usbwriter.tui.app.__file__).with_name("app.tcss"))

    def on_mount(self) -> None:
        raise RuntimeError("boom\nwith a second line")


def test_bug_in_the_app_prints_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    # Links planted at the old fixed name in the temporary directory and at the new
    # name: neither is followed.
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    (tmp_path / "usbwriter-tui-error.log").symlink_to(victim)
    log = state / "usbwriter" / "tui-error.log"
    log.parent.mkdir(mode=0o700)
    log.symlink_to(victim)

    code = run(Broken(Services.real(), live_updates=False, cursor_blink=False), headless=True)

    assert code == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "usbwriter: internal error in the app: RuntimeError: boom with a second line "
        f"(details in {log})"
    ]
    assert not log.is_symlink() and os.stat(log).st_uid == os.geteuid()
    text = log.read_text()
    assert "Traceback" in text and "RuntimeError: boom" in text
    assert victim.read_text() == "precious\n"


def test_a_clean_exit_prints_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    class Quits(UsbWriterApp):
        CSS_PATH = Broken.CSS_PATH

        def on_ready(self) -> None:
            self.exit(return_code=0)

    assert run(Quits(Services.real(), live_updates=False, cursor_blink=False), headless=True) == 0
    assert capsys.readouterr().err == ""
    assert list(tmp_path.iterdir()) == []

"""A bug in the app ends it with one line on stderr, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

import usbwriter.tui.app
from usbwriter.tui.app import UsbWriterApp
from usbwriter.tui.services import Services


class Broken(UsbWriterApp):
    CSS_PATH = str(Path(usbwriter.tui.app.__file__).with_name("app.tcss"))

    def on_mount(self) -> None:
        raise RuntimeError("boom\nwith a second line")


async def test_bug_in_the_app_prints_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    app = Broken(Services.real(), live_updates=False, cursor_blink=False)
    with pytest.raises(RuntimeError):
        async with app.run_test():
            pass
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines == [
        "usbwriter: internal error in the app: RuntimeError: boom with a second line "
        f"(details in {tmp_path / 'usbwriter-tui-error.log'})"
    ]
    assert "Traceback" in (tmp_path / "usbwriter-tui-error.log").read_text()

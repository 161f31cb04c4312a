"""The app in a real terminal in the qemu guest: an empty drive list, then a USB stick.

The guest boots with no USB stick; the app (under tmux, scripts/tui_smoke.sh) says
there is none and how to go on; the host plugs an emulated stick over QMP and the same
screen lists it, by vendor and model, without a key pressed: hot-plug as a user sees it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.guest import harness
from tests.guest.conftest import StickFile
from tests.guest.harness import Guest, Stick

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or ""),
]

MiB = 1 << 20
EMPTY = "No USB stick or SD card found. Plug one in, or press a to show every disk"


def test_an_empty_list_then_a_stick_plugged_in(module_stick_file: StickFile) -> None:
    from tests.helpers.images import build_image

    image = Path(build_image("grub-hybrid"))
    stick = Stick(module_stick_file("plugged", 48 * MiB), "USBW-AP-0008", "Verbatim", "Store n Go")
    steps = [
        "wait=No USB stick",
        "sleep=1",
        "capture=empty",  # the host plugs the stick once it sees this file
        "wait=Store n Go",
        "sleep=1",
        "capture=plugged",
        "keys=C-q",
        "wait=[usbwriter exited",
        "--",
        str(image),
    ]
    smoke = 'scripts/tui_smoke.sh "$GUEST_SHARE/screens" ' + " ".join(map(shlex.quote, steps))
    command = 'mkdir -p "$GUEST_SHARE/screens"\nstep app ' + smoke
    env = {"SMOKE_TIMEOUT": "90"}
    with Guest(command, sticks=[], env=env, timeout=240) as g:
        try:
            g.wait_for_file("screens/empty.txt", timeout=180)
        except harness.GuestError as e:
            said = [(g.share / f"app.{x}") for x in ("out", "err")]
            shown = sorted((g.share / "screens").glob("*.txt"))
            raise AssertionError(
                f"{e}\n" + "\n".join(p.read_text() for p in said + shown if p.exists())
            ) from None
        g.plug(stick)
        result = g.wait()
        empty = (g.share / "screens" / "empty.txt").read_text()
        plugged = (g.share / "screens" / "plugged.txt").read_text()
    print(result.timings())
    assert result.step("app").returncode == 0, result.describe()
    assert EMPTY in " ".join(empty.split()), empty
    assert "Verbatim" in plugged and "Store n Go" in plugged, plugged
    assert "No USB stick" not in plugged, plugged

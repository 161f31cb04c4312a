"""What `usbwriter` does with no command, or a word that is not one: from cron, CI or a
shell, never the full-screen app without a terminal, and a typo is a usage error."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

USBWRITER = [sys.executable, "-m", "usbwriter"]


def usbwriter(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*USBWRITER, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,  # the app waiting for a terminal that is not there would hang here
        check=False,
        cwd=cwd,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
    )


def last_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [x for x in stderr.splitlines() if x.startswith("usbwriter: ")]
    assert lines, stderr
    return lines[-1]


@pytest.mark.parametrize("args", [[], ["--all"], ["-v"]])
def test_no_command_without_a_terminal_is_a_usage_error(args: list[str]) -> None:
    p = usbwriter(*args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("usage: usbwriter"), p.stderr
    assert "usbwriter list" in p.stderr and "--image IMG --device DEV" in p.stderr
    line = last_line(p.stderr)
    assert "no terminal" in line and "usbwriter --help" in line
    assert p.stdout == ""


def test_an_image_without_a_terminal_is_a_usage_error_too(tmp_path: Path) -> None:
    image = tmp_path / "debian.iso"
    image.write_bytes(bytes(4096))
    p = usbwriter(str(image))
    assert p.returncode == 2, p.stderr
    assert "no terminal" in last_line(p.stderr)


@pytest.mark.parametrize(
    ("word", "suggestion"),
    [("lst", "list"), ("lsit", "list"), ("verfy", "verify"), ("bakup", "backup"), ("ls", None)],
)
def test_a_mistyped_command_says_did_you_mean(
    tmp_path: Path, word: str, suggestion: str | None
) -> None:
    p = usbwriter(word, cwd=tmp_path)
    if suggestion is None:  # a real command: not taken for a typo
        assert "did you mean" not in p.stderr
        return
    assert p.returncode == 2, p.stderr
    line = last_line(p.stderr)
    assert f"{word}: not a command, and no such file" in line
    assert f"did you mean '{suggestion}'?" in line
    assert "list, inspect, verify" in line


def test_an_unknown_word_names_the_commands(tmp_path: Path) -> None:
    p = usbwriter("frobnicate", cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    line = last_line(p.stderr)
    assert "frobnicate: not a command, and no such file" in line
    assert "did you mean" not in line
    assert (
        "commands: list, inspect, verify, hash, ls, extract, mkiso, backup, format, restore,"
        in (line)
    )


def test_an_unknown_word_with_json_is_an_error_event(tmp_path: Path) -> None:
    p = usbwriter("lst", "--json", cwd=tmp_path)
    assert p.returncode == 2
    assert '"event": "error"' in p.stdout and "did you mean 'list'" in p.stdout


def test_a_mistyped_command_on_a_terminal_does_not_open_the_app(tmp_path: Path) -> None:
    """On a terminal too: `usbwriter lst` is a typo, not an image to preselect."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*USBWRITER, "lst"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=tmp_path,
        env=dict(os.environ, LC_ALL="C.UTF-8", TERM="xterm"),
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError("the app opened: " + seen.decode(errors="replace")[:200]) from None
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert proc.returncode == 2
    assert b"did you mean 'list'?" in seen

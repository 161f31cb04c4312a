"""`usbwriter inspect IMAGE [--json]` end to end, in a subprocess like a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.images import build_image
from usbwriter.boot import inspect_image


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip


def test_inspect_json_is_the_report() -> None:
    image = build_image("grub-hybrid")
    p = usbwriter("inspect", str(image), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d == json.loads(json.dumps(inspect_image(image).to_dict()))
    assert d["boot"]["bios"] == "yes" and d["boot"]["uefi"] == "yes"
    assert d["boot"]["reasons"]


def test_inspect_text_puts_the_verdict_first() -> None:
    image = build_image("eltorito-bios-uefi")
    p = usbwriter("inspect", str(image))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith(str(image))
    assert "BIOS (legacy): no" in lines[3]
    assert "UEFI (x86-64): depends on the firmware" in lines[4]
    assert "El Torito boot catalog" in p.stdout


def test_inspect_bad_image_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x01" * 4096)
    p = usbwriter("inspect", str(junk))
    assert p.returncode == 1
    assert p.stdout == ""
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and str(junk) in err and "Traceback" not in err


def test_a_name_with_escape_sequences_cannot_reach_the_terminal(tmp_path: Path) -> None:
    """A crafted file name (a newline, ESC [31m, a C1 CSI) is shown with '?' in the one
    error line; --json keeps the real name, escaped by JSON."""
    name = tmp_path / "bad\nname\x1b[31m\u009b2J.iso"
    name.write_bytes(b"")
    p = usbwriter("inspect", str(name))
    err = p.stderr.strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1, err
    assert "bad name?[31m?2J.iso" in err and "\x1b" not in err and "\u009b" not in err
    w = usbwriter("--image", str(name), "--device", "/dev/null", "--yes", "--json")
    event = json.loads(w.stdout.strip().splitlines()[-1])
    assert event["path"] == str(name) and "\x1b" not in event["message"], event

"""The exception tree's text: what a terminal is shown, and what an errno says."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from usbwriter.errors import BadInput, Refused, UsbWriterError, os_error, terminal_safe


@pytest.mark.parametrize(
    "char",
    [
        "\u202e",  # RIGHT-TO-LEFT OVERRIDE: "gpj.exe" shown as "exe.jpg"
        "\u202a",
        "\u202b",
        "\u202c",
        "\u202d",
        "\u2066",  # LEFT-TO-RIGHT ISOLATE
        "\u2067",
        "\u2068",
        "\u2069",
        "\u200e",  # LEFT-TO-RIGHT MARK
        "\u200f",
        "\u061c",  # ARABIC LETTER MARK
        "\u200b",  # ZERO WIDTH SPACE
        "\ufeff",  # BYTE ORDER MARK
        "\u2028",  # LINE SEPARATOR: a new line to some terminals
        "\u2029",
    ],
)
def test_format_characters_are_shown_as_question_marks(char: str) -> None:
    assert terminal_safe(f"stick{char}.iso") == "stick?.iso"


def test_controls_and_printable_text() -> None:
    assert terminal_safe("a\x1b[2Jb\x9bc\x7fd\ne") == "a?[2Jb?c?d?e"
    assert terminal_safe("Ubuntu 24.04 — amd64 é ü 日本 😀") == "Ubuntu 24.04 — amd64 é ü 日本 😀"
    assert terminal_safe(os.fsdecode(b"bad\xffname")) == "bad\ufffdname"


def test_an_error_message_hides_a_bidi_override_in_a_file_name() -> None:
    e = BadInput("/tmp/\u202egpj.exe: no such file or device")
    assert e.message == "/tmp/?gpj.exe: no such file or device"
    assert e.to_dict()["message"] == e.message


def _eloop(path: Path) -> UsbWriterError:
    try:
        os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        assert e.errno == errno.ELOOP
        return os_error(str(path), e, "open the image")
    raise AssertionError(f"{path} opened")


def test_eloop_of_a_symlink_loop_says_too_many_levels(tmp_path: Path) -> None:
    a, b = tmp_path / "a.iso", tmp_path / "b.iso"
    a.symlink_to(b)
    b.symlink_to(a)
    err = _eloop(a)
    assert isinstance(err, BadInput) and err.exit_code == 2
    assert err.message == f"{a}: too many levels of symbolic links (a loop)"
    assert "since it was checked" not in err.message


def test_eloop_of_a_link_not_followed_says_it_is_a_symbolic_link(tmp_path: Path) -> None:
    target = tmp_path / "real.iso"
    target.write_bytes(b"x")
    link = tmp_path / "link.iso"
    link.symlink_to(target)
    err = _eloop(link)
    assert isinstance(err, Refused) and err.exit_code == 4
    assert err.message == f"{link}: is a symbolic link, which is never followed"


def test_eloop_in_a_folder_of_the_path_says_too_many_levels(tmp_path: Path) -> None:
    (tmp_path / "d").symlink_to(tmp_path / "d")
    path = tmp_path / "d" / "x.iso"
    try:
        os.stat(path)
    except OSError as e:
        err = os_error(str(path), e, "look at the image")
    assert isinstance(err, BadInput)
    assert "too many levels of symbolic links" in err.message

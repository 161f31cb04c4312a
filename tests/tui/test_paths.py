"""Where the app writes its own files (usbwriter/tui/paths.py), with no app.

As root, a planted symbolic link or another user's directory must never become a file
root writes: the links here point at a "victim" file that must stay as it was.
"""

from __future__ import annotations

import io
import json
import logging
import os
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from usbwriter.tui import crash
from usbwriter.tui.paths import (
    UnsafePath,
    config_dir,
    effective_home,
    private_dir,
    read_private,
    state_dir,
    write_private,
)
from usbwriter.tui.settings import Settings, default_path

OTHER_UID = 54321
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: chown to another user")
TRACEBACK = "Traceback (most recent call last):\n  ...\nRuntimeError: boom\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_log_lands_in_xdg_state_home(tmp_path: Path) -> None:
    state = private(tmp_path / "state")
    err = io.StringIO()
    path = crash.report(TRACEBACK, err, environ={"XDG_STATE_HOME": str(state)}, home=tmp_path)
    assert path == state / "usbwriter" / "tui-error.log"
    assert path.read_text() == TRACEBACK
    assert mode(state / "usbwriter") == 0o700 and mode(path) == 0o600
    assert err.getvalue() == (
        f"usbwriter: internal error in the app: RuntimeError: boom (details in {path})\n"
    )
    assert not (tmp_path / ".local").exists()


def test_without_xdg_the_directories_are_under_the_home(tmp_path: Path) -> None:
    home = private(tmp_path / "home")
    assert state_dir({}, home) == home / ".local" / "state" / "usbwriter"
    assert config_dir({}, home) == home / ".config" / "usbwriter"
    for made in (".local", ".local/state", ".local/state/usbwriter", ".config/usbwriter"):
        assert mode(home / made) == 0o700, made
    # a relative $XDG_* is not a base (the XDG spec says to ignore it)
    assert state_dir({"XDG_STATE_HOME": "state"}, home) == home / ".local/state/usbwriter"


def test_a_missing_xdg_base_is_made_in_the_users_directory(tmp_path: Path) -> None:
    home = private(tmp_path / "home")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "made" / "config")}
    assert config_dir(env, home) == tmp_path / "made/config/usbwriter"
    for made in ("made", "made/config", "made/config/usbwriter"):
        assert mode(tmp_path / made) == 0o700, made
    assert not (home / ".config").exists()


def test_the_home_is_the_effective_users_from_the_password_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pwd

    monkeypatch.setenv("HOME", "/nonexistent/elsewhere")
    assert effective_home() == Path(pwd.getpwuid(os.geteuid()).pw_dir)


def test_a_symlink_at_the_old_tmp_name_is_not_followed(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    (tmp_path / "usbwriter-tui-error.log").symlink_to(victim)
    state = private(tmp_path / "state")
    crash.report(TRACEBACK, io.StringIO(), environ={"XDG_STATE_HOME": str(state)})
    assert victim.read_text() == "precious\n"


def test_a_symlink_at_the_log_name_is_replaced_not_followed(tmp_path: Path, victim: Path) -> None:
    state = private(tmp_path / "state")
    private(state / "usbwriter")
    log = state / "usbwriter" / "tui-error.log"
    log.symlink_to(victim)
    assert crash.report(TRACEBACK, io.StringIO(), {"XDG_STATE_HOME": str(state)}) == log
    assert victim.read_text() == "precious\n"
    assert not log.is_symlink() and log.read_text() == TRACEBACK
    assert [p.name for p in log.parent.iterdir()] == ["tui-error.log"]  # no temporary left


@pytest.mark.parametrize("where", ["state", ".local", "state/usbwriter"])
def test_a_symlinked_directory_is_refused(tmp_path: Path, victim: Path, where: str) -> None:
    """A link as the base, above it or below it: no directory is made through it."""
    elsewhere = private(tmp_path / "elsewhere")
    home = private(tmp_path / "home")
    if where == ".local":
        (home / ".local").symlink_to(elsewhere)
        env = {}
    else:
        state = tmp_path / "state"
        if where == "state":
            state.symlink_to(elsewhere)
        else:
            private(state)
            (state / "usbwriter").symlink_to(elsewhere)
        env = {"XDG_STATE_HOME": str(state)}
        (home / ".local").symlink_to(elsewhere)  # the fallback is no better
    with pytest.raises(UnsafePath, match="a symbolic link"):
        state_dir(env, home)
    assert list(elsewhere.iterdir()) == []
    err = io.StringIO()
    assert crash.report(TRACEBACK, err, env, home) is None
    line = err.getvalue()
    assert line.count("\n") == 1 and "(no log file: " in line and "symbolic link" in line


def test_a_link_above_the_base_is_refused(tmp_path: Path) -> None:
    real = private(tmp_path / "real")
    private(real / "state")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafePath, match=f"{tmp_path / 'link'}: a symbolic link"):
        private_dir(tmp_path / "link" / "state", PurePosixPath("usbwriter"))
    home = private(tmp_path / "home")
    env = {"XDG_STATE_HOME": str(tmp_path / "link" / "state")}
    assert state_dir(env, home) == home / ".local/state/usbwriter"  # $XDG_STATE_HOME unused
    assert list((real / "state").iterdir()) == []
    # the home (the password database's) may go through a link: it is resolved first
    assert state_dir({}, tmp_path / "link") == real / ".local/state/usbwriter"


def test_a_directory_writable_by_others_is_refused(tmp_path: Path) -> None:
    shared = private(tmp_path / "shared")
    shared.chmod(0o777)
    with pytest.raises(UnsafePath, match="writable by other users"):
        state_dir({}, shared / "home")
    shared.chmod(0o1777)  # sticky, as /tmp: others cannot rename what is ours
    private(shared / "home")
    assert state_dir({}, shared / "home") == shared / "home/.local/state/usbwriter"
    (shared / "home/.local/state/usbwriter").chmod(0o777)
    with pytest.raises(UnsafePath, match="usbwriter: writable by other users"):
        state_dir({}, shared / "home")


@AS_ROOT
def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path, victim: Path) -> None:
    """As root under sudo, $XDG_STATE_HOME may still point into the invoking user's home:
    it is not used; root's own directory is. Another user's home is refused outright."""
    theirs = private(tmp_path / "theirs")
    os.chown(theirs, OTHER_UID, OTHER_UID)
    home = private(tmp_path / "home")
    assert state_dir({"XDG_STATE_HOME": str(theirs)}, home) == home / ".local/state/usbwriter"
    assert list(theirs.iterdir()) == []
    with pytest.raises(UnsafePath, match=f"owned by uid {OTHER_UID}, not by uid 0"):
        state_dir({}, theirs)
    missing = {"XDG_STATE_HOME": str(theirs / "state")}  # would be made in their directory
    assert state_dir(missing, home) == home / ".local/state/usbwriter"
    # one of the directories below the base, made by someone else
    other = private(tmp_path / "other")
    private(other / ".local")
    os.chown(other / ".local", OTHER_UID, OTHER_UID)
    with pytest.raises(UnsafePath, match=r"\.local: owned by uid 54321"):
        state_dir({}, other)
    err = io.StringIO()
    assert crash.report(TRACEBACK, err, {}, theirs) is None
    assert f"(no log file: {theirs}: owned by uid {OTHER_UID}, not by uid 0)" in err.getvalue()
    assert list(theirs.iterdir()) == []


def test_settings_are_kept_in_the_config_dir_and_never_written_through_a_link(
    tmp_path: Path, victim: Path
) -> None:
    config = private(tmp_path / "config")
    path = default_path({"XDG_CONFIG_HOME": str(config)}, tmp_path)
    assert path == config / "usbwriter" / "tui.json"
    Settings(theme="nord", path=path).save()
    assert Settings.load(path).theme == "nord" and mode(path) == 0o600
    path.unlink()
    path.symlink_to(victim)
    assert Settings.load(path).theme is None  # not read through the link either
    Settings(theme="nord", path=path).save()
    assert victim.read_text() == "precious\n"
    assert json.loads(path.read_text()) == {"theme": "nord"}


def test_unsafe_settings_dir_means_no_settings_and_one_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = private(tmp_path / "home")
    (home / ".config").symlink_to(private(tmp_path / "elsewhere"))
    with caplog.at_level(logging.WARNING):
        assert default_path({}, home) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"settings are not kept between runs: {home / '.config'}: a symbolic link"
    ]


def test_read_private_refuses_links_and_fifos(tmp_path: Path, victim: Path) -> None:
    (tmp_path / "link").symlink_to(victim)
    with pytest.raises(OSError):
        read_private(tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        read_private(tmp_path / "fifo")  # and does not wait for a writer
    assert read_private(victim) == "precious\n"
    write_private(tmp_path, "new", "text")
    assert read_private(tmp_path / "new") == "text"


def test_a_user_missing_from_the_password_database_has_no_files(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unknown(uid: int) -> Any:
        raise KeyError(uid)

    monkeypatch.setattr("pwd.getpwuid", unknown)
    with caplog.at_level(logging.WARNING):
        assert default_path({}) is None
    assert "not in the password database" in caplog.text
    err = io.StringIO()
    assert crash.report(TRACEBACK, err, {}) is None
    assert "(no log file: uid " in err.getvalue()


# ---- the names the app suggests (usbwriter/tui/suggest.py) --------------------------------


def test_a_suggested_name_is_never_one_that_exists() -> None:
    """With evil, evil-2 ... evil-999 all taken (links another user planted), the
    suggestion is a name nobody made; when no name is free, no suggestion at all."""
    import re

    from usbwriter.tui import suggest

    taken = {"/dl/evil"} | {f"/dl/evil-{n}" for n in range(2, 1000)}
    folder = suggest.extract_folder(
        "/dl/evil.iso", home=Path("/h"), writable=lambda d: True, exists=taken.__contains__
    )
    assert folder not in taken and re.fullmatch(r"/dl/evil-[0-9a-f]{8}", folder), folder
    assert suggest.extract_folder("/dl/evil.iso", home=Path("/h"), writable=lambda d: True,
                                  exists=lambda p: True) == ""  # fmt: skip

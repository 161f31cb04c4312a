"""Every TUI test keeps the app's own files (settings, crash logs) in its temporary
directory, never in the home of the user running the tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def private_xdg_dirs(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path_factory.mktemp("xdg")
    for name in ("XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        path = base / name.lower()
        path.mkdir(mode=0o700)
        monkeypatch.setenv(name, str(path))

"""The app's few settings (the theme), kept in a small JSON file between runs.

The file is ``tui.json`` in the effective user's config directory (``paths.config_dir``:
root's under sudo); it is read with ``O_NOFOLLOW`` and replaced, never written through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from usbwriter.tui.paths import UnsafePath, config_dir, read_private, write_private

log = logging.getLogger(__name__)

FILE_NAME = "tui.json"


def default_path(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path | None:
    """The settings file, its directory created; None (said in one line) when unsafe."""
    try:
        return config_dir(environ, home) / FILE_NAME
    except UnsafePath as e:
        log.warning("settings are not kept between runs: %s", e)
        return None


@dataclass
class Settings:
    theme: str | None = None
    path: Path | None = None  # None: nothing is read or saved (tests, snapshots)

    @classmethod
    def load(cls, path: Path | None) -> Settings:
        if path is None:
            return cls()
        try:
            data = json.loads(read_private(path))
        except (OSError, ValueError):
            return cls(path=path)
        theme = data.get("theme") if isinstance(data, dict) else None
        return cls(theme=theme if isinstance(theme, str) else None, path=path)

    def save(self) -> None:
        if self.path is None:
            return
        try:
            write_private(
                self.path.parent, self.path.name, json.dumps({"theme": self.theme}) + "\n"
            )
        except OSError as e:
            log.info("could not save settings to %s: %s", self.path, e.strerror)

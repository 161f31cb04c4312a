"""The app's few settings (the theme), kept in a small JSON file between runs."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


def default_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "usbwriter" / "tui.json"


@dataclass
class Settings:
    theme: str | None = None
    path: Path | None = None  # None: nothing is read or saved (tests, snapshots)

    @classmethod
    def load(cls, path: Path | None) -> Settings:
        if path is None:
            return cls()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls(path=path)
        theme = data.get("theme") if isinstance(data, dict) else None
        return cls(theme=theme if isinstance(theme, str) else None, path=path)

    def save(self) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"theme": self.theme}) + "\n")
        except OSError as e:
            log.info("could not save settings to %s: %s", self.path, e.strerror)

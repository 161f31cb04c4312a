"""The paths the app suggests for the ISO toolkit: where to extract, where to back up.

Pure functions over a path, a ``Disk``, a date and a home folder; the screens pass
``os.access``/``os.path.lexists``. No Textual here: tests/tui/test_toolkit.py runs them
without an app.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import date
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from usbwriter.compression import SUFFIXES
from usbwriter.tui.format import IMAGE_SUFFIXES

if TYPE_CHECKING:
    from usbwriter.devices import Disk

Exists = Callable[[str], bool]
Writable = Callable[[str], bool]


def user_home(environ: Mapping[str, str] | None = None) -> Path:
    """The invoking user's home under sudo, else $HOME, else the effective user's."""
    env = os.environ if environ is None else environ
    sudo_user = env.get("SUDO_USER")
    if sudo_user:
        import pwd

        try:
            return Path(pwd.getpwnam(sudo_user).pw_dir)
        except KeyError:
            pass
    if env.get("HOME"):
        return Path(env["HOME"])
    from usbwriter.tui.paths import effective_home

    return effective_home()


def image_stem(path: str) -> str:
    """'debian-12.iso' and 'debian-12.iso.xz' -> 'debian-12'."""
    name = os.path.basename(path)
    for suffix in SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.strip() or "image"


def _free(path: str, exists: Exists) -> str:
    """PATH, or PATH-2 ... PATH-999 (before the suffixes) when it is taken, then
    PATH-<8 random hex digits>: never a name that exists, where another user's link
    could wait (whoever owns the folder can make every name they can guess). '' when
    even the random names are taken: no suggestion."""
    if not exists(path):
        return path
    folder, name = os.path.split(path)
    stem, dot, rest = name.partition(".")
    tags = chain(map(str, range(2, 1000)), (secrets.token_hex(4) for _ in range(100)))
    for tag in tags:
        candidate = os.path.join(folder, f"{stem}-{tag}{dot}{rest}")
        if not exists(candidate):
            return candidate
    return ""


def extract_folder(
    image: str, *, home: Path, writable: Writable, exists: Exists = os.path.lexists
) -> str:
    """A folder named after IMAGE beside it, or in HOME when its folder is not writable;
    a name not taken yet ('' when none is free). Extraction itself refuses a link
    planted at the name afterwards (usbwriter.iso.extract.open_output)."""
    folder = os.path.dirname(os.path.abspath(image))
    if not writable(folder):
        folder = str(home)
    return _free(os.path.join(folder, image_stem(image)), exists)


def slug(text: str) -> str:
    """'SanDisk Cruzer Blade' -> 'SanDisk-Cruzer-Blade': safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._+]+", "-", text).strip("-.") or "drive"


def backup_file(disk: Disk, today: date, *, home: Path, exists: Exists = os.path.lexists) -> str:
    """~/usbwriter-backup-<model>-<date>.img (a name not taken yet; '' when none is)."""
    name = f"usbwriter-backup-{slug(disk.model or disk.name)}-{today.isoformat()}.img"
    return _free(str(home / name), exists)

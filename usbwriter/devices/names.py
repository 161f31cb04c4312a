"""Device strings: made safe to show, decoded from udev, sorted naturally."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_UDEV_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def clean_name(value: str | None, limit: int = 64) -> str:
    """A device string safe to show: no control, bidi or other format characters.

    Whitespace controls become spaces, runs of spaces collapse, the ends are stripped
    and the result is cut to ``limit`` characters.
    """
    if not value:
        return ""
    out: list[str] = []
    for ch in value:
        if ch in "\t\n\r\v\f":
            out.append(" ")
        elif ch in _BIDI or unicodedata.category(ch) in _DROP_CATEGORIES:
            continue
        else:
            out.append(ch)
    text = " ".join("".join(out).split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def decode_udev(value: str) -> str:
    r"""Decode udev's ``\xNN`` escapes (ID_VENDOR_ENC, ID_MODEL_ENC, ID_FS_LABEL_ENC)."""
    raw = _UDEV_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    try:
        # The escapes are bytes: re-read the latin-1 round trip as UTF-8 where it is.
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return raw


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key: loop2 before loop10, sda before sdb."""
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))

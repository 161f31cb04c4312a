"""ISO 9660 (level 3) and Joliet names derived from real file names, unique in a folder."""

from __future__ import annotations

import re

JOLIET_MAX = 64  # UTF-16 code units in a Joliet name
ISO_FILE_MAX = 30  # name + "." + extension, ISO 9660 level 3
ISO_DIR_MAX = 31
ISO_EXT_MAX = 8

_NOT_D = re.compile(r"[^A-Z0-9_]")
_NOT_JOLIET = re.compile(r"[\x00-\x1f*/:;?\\]")


def _d_chars(s: str) -> str:
    return _NOT_D.sub("_", s.upper())


def _counted(stem: str, n: int, room: int) -> str:
    suffix = f"_{n}"
    return stem[: max(room - len(suffix), 0)] + suffix


def iso9660_name(name: str, is_dir: bool, taken: set[str]) -> str:
    """A level-3 ISO 9660 identifier for NAME unique in TAKEN (which it is added to);
    files get ";1". Two candidates are the same when they differ only by ";1"."""
    if is_dir:
        stem, ext = _d_chars(name)[:ISO_DIR_MAX], ""
        room = ISO_DIR_MAX
    else:
        base, dot, ext = name.rpartition(".")
        if not dot or not base:
            base, ext = name, ""
        ext = _d_chars(ext)[:ISO_EXT_MAX]
        room = ISO_FILE_MAX - len(ext) - 1
        stem = _d_chars(base)[:room]
    stem = stem or "_"
    candidate, n = stem, 0
    while (candidate + (f".{ext}" if ext else "")) in taken:
        n += 1
        candidate = _counted(stem, n, room)
    key = candidate + (f".{ext}" if ext else "")
    taken.add(key)
    return key if is_dir else f"{key if ext else key + '.'};1"


def _utf16_cut(s: str, units: int) -> str:
    """The longest prefix of s of at most UNITS UTF-16 code units."""
    out, used = [], 0
    for ch in s:
        w = 2 if ord(ch) > 0xFFFF else 1
        if used + w > units:
            break
        out.append(ch)
        used += w
    return "".join(out)


def _utf16_len(s: str) -> int:
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in s)


def joliet_name(name: str, taken: set[str]) -> str:
    """NAME as Joliet allows it (forbidden characters as '_', at most 64 UTF-16 units,
    the extension kept), unique in TAKEN ignoring case (Windows reads Joliet so)."""
    clean = _NOT_JOLIET.sub("_", name) or "_"
    base, dot, ext = clean.rpartition(".")
    if not dot or not base or _utf16_len(ext) > 16:
        base, ext = clean, ""
    ext = f".{ext}" if ext else ""
    room = JOLIET_MAX - _utf16_len(ext)
    candidate = clean if _utf16_len(clean) <= JOLIET_MAX else _utf16_cut(base, room) + ext
    n = 0
    while candidate.casefold() in taken:
        n += 1
        suffix = f"~{n}"
        candidate = _utf16_cut(base, room - len(suffix)) + suffix + ext
    taken.add(candidate.casefold())
    return candidate


def volume_label(label: str) -> str:
    """The ISO 9660 volume identifier: d-characters, at most 32."""
    return _d_chars(label)[:32] or "CDROM"

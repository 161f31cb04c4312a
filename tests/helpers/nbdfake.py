"""An nbdkit Python plugin: a fake-capacity stick that reports SIZE and keeps REAL bytes.

    nbdkit --unix SOCK python tests/helpers/nbdfake.py file=BACKING size=1G mode=wrap

BACKING is a file of REAL bytes (its size). ``mode=wrap``: an offset past REAL lands on
offset modulo REAL (the address lines the firmware lies about are ignored);
``mode=drop``: writes past REAL are dropped and reads there return zeros;
``mode=genuine``: SIZE must equal REAL. The same behaviour as tests/helpers/fakes.py.
"""

from __future__ import annotations

import os

import nbdkit  # type: ignore[import-not-found]  # provided by nbdkit's python plugin

API_VERSION = 2

_conf: dict[str, str] = {}
_fd = -1
_real = 0
_size = 0


def _bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


def config(key: str, value: str) -> None:
    _conf[key] = value


def config_complete() -> None:
    global _fd, _real, _size
    if _conf.get("mode", "wrap") not in ("wrap", "drop", "genuine"):
        raise RuntimeError("mode: wrap, drop or genuine")
    _fd = os.open(_conf["file"], os.O_RDWR)
    _real = os.fstat(_fd).st_size
    _size = _bytes(_conf.get("size", str(_real)))


def thread_model() -> int:
    return int(nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS)


def open(readonly: bool) -> int:  # (the plugin API names it so)
    return 1


def get_size(h: int) -> int:
    return _size


def can_flush(h: int) -> bool:
    return True


def flush(h: int, flags: int) -> None:
    os.fsync(_fd)


def _pieces(offset: int, length: int) -> list[tuple[int, int, int]]:
    """(position in the request, physical offset or -1 for none, length)."""
    mode = _conf.get("mode", "wrap")
    out = []
    pos = 0
    while pos < length:
        at = offset + pos
        if mode == "wrap":
            phys = at % _real
            n = min(length - pos, _real - phys)
        elif at >= _real:
            phys, n = -1, length - pos
        else:
            phys, n = at, min(length - pos, _real - at)
        out.append((pos, phys, n))
        pos += n
    return out


def pread(h: int, buf: bytearray, offset: int, flags: int) -> None:
    view = memoryview(buf)
    for pos, phys, n in _pieces(offset, len(buf)):
        if phys < 0:
            view[pos : pos + n] = bytes(n)
        else:
            view[pos : pos + n] = os.pread(_fd, n, phys)


def pwrite(h: int, buf: bytes, offset: int, flags: int) -> None:
    view = memoryview(buf)
    for pos, phys, n in _pieces(offset, len(buf)):
        if phys >= 0:
            os.pwrite(_fd, view[pos : pos + n], phys)

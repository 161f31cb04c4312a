"""Fake-capacity drives in memory, for the probe's unit tests: a drive that reports SIZE
and keeps REAL bytes, either wrapping (offset modulo REAL) or dropping the writes past
REAL (reads there return zeros). The same behaviour as tests/helpers/nbdfake.py, which
serves it to a qemu guest over NBD."""

from __future__ import annotations

import random

MiB = 1 << 20


class FakeDrive:
    """A medium for usbwriter.engine.probe: ``mode`` is "genuine", "wrap" or "drop"."""

    def __init__(self, size: int, real: int | None = None, mode: str = "genuine", seed: int = 7):
        self.size, self.real, self.mode, self.block = size, real or size, mode, 512
        tile = random.Random(seed).randbytes(MiB)  # old contents (not zeros)
        self.data = bytearray((tile * (self.real // MiB + 1))[: self.real])
        self.writes = 0
        self.on_write: object = None  # a callable(offset) run after each write (tests)

    def _where(self, offset: int, length: int) -> list[tuple[int, int, int]]:
        """(position in the result, physical offset, length) pieces, or -1: zeros."""
        out = []
        pos = 0
        while pos < length:
            at = offset + pos
            if self.mode == "wrap":
                phys = at % self.real
                n = min(length - pos, self.real - phys)
            elif at >= self.real:
                phys, n = -1, length - pos
            else:
                phys, n = at, min(length - pos, self.real - at)
            out.append((pos, phys, n))
            pos += n
        return out

    def read(self, offset: int, length: int) -> bytes:
        assert offset >= 0 and offset + length <= self.size
        buf = bytearray(length)
        for pos, phys, n in self._where(offset, length):
            if phys >= 0:
                buf[pos : pos + n] = self.data[phys : phys + n]
        return bytes(buf)

    def write(self, offset: int, data: bytes) -> None:
        assert offset >= 0 and offset + len(data) <= self.size
        for pos, phys, n in self._where(offset, len(data)):
            if phys >= 0:
                self.data[phys : phys + n] = data[pos : pos + n]
        self.writes += 1
        if callable(self.on_write):
            self.on_write(offset)

    def settle(self) -> None:
        pass

    def whole(self) -> bytes:
        return bytes(self.data)

"""SparseSelector: only a sparse file's data ranges are read and written, the ranges
given first before the rest; through the one write loop and read-back (no root: the
target is a regular file)."""

from __future__ import annotations

import mmap
import os
import queue
from pathlib import Path

import pytest

from usbwriter.engine.blockio import Chunk
from usbwriter.engine.readback import Drive, read_back
from usbwriter.engine.selectors import SparseSelector, data_ranges
from usbwriter.engine.target import Target
from usbwriter.engine.write import write_drive
from usbwriter.sources import open_image

MiB = 1 << 20
SIZE = 64 * MiB


def sparse(path: Path, size: int, pieces: dict[int, bytes]) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    return path


@pytest.fixture(autouse=True)
def holes_kept(tmp_path: Path) -> None:
    probe = sparse(tmp_path / "probe", 8 * MiB, {})
    with open(probe, "rb") as f:
        if data_ranges(f.fileno(), 8 * MiB):
            pytest.skip("this file system keeps no holes")


def chunk(offset: int, length: int) -> Chunk:
    return Chunk(offset, length, mmap.mmap(-1, length), queue.Queue())


def test_reads_the_first_ranges_then_the_data_past_the_head(tmp_path: Path) -> None:
    image = sparse(
        tmp_path / "layout.img",
        SIZE,
        {0: b"table", 10 * MiB: b"x" * 100, 40 * MiB: b"y" * MiB, SIZE - 4096: b"end"},
    )
    with open(image, "rb") as f:
        sel = SparseSelector(f.fileno(), SIZE, first=[(SIZE - MiB, SIZE)])
    assert sel.reads(MiB) == [
        (SIZE - MiB, SIZE),  # first, whatever it holds; its data not read twice
        (10 * MiB, 10 * MiB + 4096),  # 100 bytes widened to a whole 4 KiB block
        (40 * MiB, 41 * MiB),
    ]
    assert sel.parts(chunk(8 * MiB, 4 * MiB)) == [(10 * MiB, 4096)]
    assert sel.parts(chunk(12 * MiB, 4 * MiB)) == []
    assert sel.parts(chunk(40 * MiB + 4096, 4 * MiB)) == [(40 * MiB + 4096, MiB - 4096)]
    assert sel.image_size == SIZE and sel.last_write_end is None


def test_a_range_at_an_odd_end_is_widened_no_further_than_the_file(tmp_path: Path) -> None:
    size = 3 * MiB + 512
    image = sparse(tmp_path / "odd.img", size, {size - 100: b"z" * 100})
    with open(image, "rb") as f:
        sel = SparseSelector(f.fileno(), size)
    assert sel.reads(MiB) == [(3 * MiB, size)]


def test_written_and_read_back_through_the_engine(tmp_path: Path) -> None:
    pieces = {0: b"\x55\xaa" * 256, 5 * MiB: os.urandom(3 * MiB + 7), 30 * MiB: b"fs" * 900}
    image = sparse(tmp_path / "layout.img", SIZE, pieces)
    old = os.urandom(SIZE)
    drive = tmp_path / "drive.img"
    drive.write_bytes(old)
    with open_image(str(image)) as src, Target.open(str(drive), block=False) as tgt:
        sel = SparseSelector(src.fd, SIZE, first=[(SIZE - MiB, SIZE)])
        written = write_drive(src, tgt, sel)
        checked = read_back(Drive(tgt.fd, tgt.path), written.spans, image=src)
    assert checked.verified and checked.proof == "compared"
    assert written.coverage is not None and written.coverage.mode == "sparse"
    spans = [(s.offset, s.end) for s in written.spans]
    covered = [(0, MiB), (5 * MiB, 8 * MiB + 4096), (30 * MiB, 30 * MiB + 4096)]
    assert sorted(_joined(spans)) == [*covered, (SIZE - MiB, SIZE)]
    assert written.result.bytes_written == checked.size == sum(b - a for a, b in spans)
    assert written.coverage.untouched == SIZE - written.result.bytes_written
    got, want = drive.read_bytes(), image.read_bytes()
    for a, b in [*covered, (SIZE - MiB, SIZE)]:
        assert got[a:b] == want[a:b]
    assert got[8 * MiB + 4096 : 30 * MiB] == old[8 * MiB + 4096 : 30 * MiB]  # a hole
    assert got[SIZE - MiB :] == bytes(MiB)  # first ranges written, zeros from the hole


def _joined(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a == out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out

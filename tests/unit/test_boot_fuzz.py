"""Fuzzing the boot report: real images with mutated MBRs, GPTs, Apple maps, volume
descriptors, boot catalogs and directories, truncated, and plain noise.

Every input must give a BootReport or a one-line BadImage: no other exception, no hang.
Over 10,000 inputs in all (FUZZ_EXAMPLES below). Inputs are patches laid over
the image's bytes (no copies). The file tree (pycdlib) and the EFI loaders (mtools) are
cached by the patches that touch the bytes they read: mutating the system area does not
re-walk an unchanged tree, and every mutation of a tree or a FAT does go through them.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cache
from typing import Any, cast
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.images import build_image
from usbwriter.boot import fat, iso9660
from usbwriter.boot import report as boot
from usbwriter.boot.reader import ImageReader
from usbwriter.errors import BadImage

# examples per test; the sum is the number of inputs a run tries
FUZZ_EXAMPLES = {"system": 4000, "volume": 2600, "truncated": 2000, "noise": 1600}
SCALE = float(os.environ.get("USBW_FUZZ_SCALE", "1"))

SYSTEM_BASES = (
    "grub-hybrid",
    "syslinux-isohybrid-efi",
    "grub-bios-only",
    "ia32-only",
    "raw-gpt-esp",
    "raw-mbr-fat",
    "raw-fat-superfloppy",
)
VOLUME_BASES = (
    "syslinux-isohybrid",
    "pycdlib-isohybrid",
    "data-only",
    "windows-like",
    "grub-bios-only",
)
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x800, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)


def fuzz_settings(kind: str) -> Callable[[Any], Any]:
    return settings(
        max_examples=max(10, int(FUZZ_EXAMPLES[kind] * SCALE)),
        deadline=timedelta(seconds=10),
        database=None,
        derandomize=os.environ.get("CI") == "true",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@cache
def image_bytes(name: str) -> bytes:
    return build_image(name).read_bytes()


@cache
def regions(name: str, kind: str) -> tuple[tuple[int, int], ...]:
    """(offset, length) spans worth mutating in this image."""
    data = image_bytes(name)
    if kind == "system":
        # MBR, GPT header and entries, APM: an ISO's system area, a disk's first 64 KiB
        spans = [(0, (64 if name.startswith("raw-") else 32) << 10)]
        if len(data) > (1 << 20):
            spans.append((len(data) - (64 << 10), 64 << 10))  # backup GPT of raw disks
        return tuple(spans)
    r = boot.inspect_image(build_image(name), verify_checksum=False)
    spans = [(16 * 2048, 6 * 2048)]  # volume descriptors and UDF recognition sequence
    if r.eltorito is not None:
        spans.append((r.eltorito.catalog_lba * 2048, 2048))
    pvd = iso9660.parse_pvd(data[16 * 2048 : 17 * 2048])
    spans.append((pvd.root_extent * 2048, max(2048, min(pvd.root_size, 8192))))
    path_table = struct.unpack_from("<I", data, 16 * 2048 + 140)[0]
    spans.append((path_table * 2048, 2048))
    return tuple((o, n) for o, n in spans if o + n <= len(data))


PACKED = tuple(struct.pack(fmt, v) for v in INTERESTING for fmt in ("<I", ">I"))
edit = st.tuples(
    st.integers(0, 15),  # which span (modulo their number)
    st.integers(0, 1 << 20),  # offset in the span (modulo its length)
    st.binary(min_size=1, max_size=4) | st.sampled_from(PACKED),
)
edits = st.lists(edit, min_size=1, max_size=8)


Patch = tuple[int, bytes]


def mutate(name: str, kind: str, edits: list[tuple[int, int, bytes]]) -> list[Patch]:
    """The edits as (absolute offset, bytes) patches over the image."""
    spans = regions(name, kind)
    size = len(image_bytes(name))
    patches = []
    for which, off, b in edits:
        start, length = spans[which % len(spans)]
        pos = start + off % length
        patches.append((pos, b[: max(0, size - pos)]))
    return patches


class PatchedImage:
    """A read-only file over an image's bytes with patches laid over them (no copy)."""

    def __init__(self, base: bytes, patches: list[Patch], size: int | None = None) -> None:
        self.base, self.patches, self.pos = base, patches, 0
        self.log: list[tuple[int, int]] | None = None  # ranges read, while recording
        self.size = len(base) if size is None else min(size, len(base))

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = max(0, {0: 0, 1: self.pos, 2: self.size}[whence] + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n < 0 else min(self.size, self.pos + n)
        if end <= self.pos:
            return b""
        if self.log is not None:
            self.log.append((self.pos, end))
        start, self.pos = self.pos, end
        hits = [(at, b) for at, b in self.patches if at < end and at + len(b) > start]
        if not hits:
            return self.base[start:end]
        out = bytearray(self.base[start:end])
        for at, b in hits:
            lo, hi = max(at, start), min(at + len(b), end)
            out[lo - start : hi - start] = b[lo - at : hi - at]
        return bytes(out)

    def touched(self, lo: int, hi: int) -> tuple[object, ...]:
        """What distinguishes bytes lo..hi of this file from the unpatched image."""
        ps = tuple(p for p in self.patches if p[0] < hi and p[0] + len(p[1]) > lo)
        return (id(self.base), min(self.size, hi), ps)


class PatchedReader(ImageReader):
    """The boot readers' reader over a PatchedImage."""

    def __init__(self, f: PatchedImage) -> None:
        super().__init__("<fuzz>", f.size, pread=self._at)
        self.f = f

    def _at(self, offset: int, n: int) -> bytes:
        self.f.seek(offset)
        return self.f.read(n)


_tree_cache: dict[tuple[int, int], list[tuple[list[tuple[int, int]], list[Patch], Any]]] = {}
_fat_cache: dict[tuple[object, ...], Any] = {}
_real_read_tree = iso9660.read_tree
_real_efi_loaders = fat.efi_loaders


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _patches_in(patches: list[Patch], ranges: list[tuple[int, int]]) -> list[Patch]:
    """The patches that touch the (merged, sorted) ranges."""
    starts = [lo for lo, _ in ranges]
    hit = []
    for p in patches:
        i = bisect.bisect_right(starts, p[0] + len(p[1]) - 1) - 1
        if i >= 0 and ranges[i][1] > p[0]:
            hit.append(p)
    return hit


def cached_read_tree(r: ImageReader, pvd: iso9660.PvdFields) -> iso9660.Tree:
    """pycdlib's result is a function of the bytes it read: reuse it while none of those
    bytes is patched differently."""
    assert isinstance(r, PatchedReader)
    f = r.f
    entries = _tree_cache.setdefault((id(f.base), f.size), [])
    for ranges, seen, tree in entries:
        if _patches_in(f.patches, ranges) == seen:
            return cast(iso9660.Tree, tree)
    f.log = []
    try:
        tree = _real_read_tree(r, pvd)
        ranges = _merge(f.log)
    finally:
        f.log = None
    if len(entries) > 64:
        entries.clear()
    entries.append((ranges, _patches_in(f.patches, ranges), tree))
    return tree


def cached_efi_loaders(r: ImageReader, offset: int, size: int) -> Any:
    """The loaders of a FAT are a function of its bytes: re-read when those changed."""
    assert isinstance(r, PatchedReader)
    f = r.f
    key = (offset, size, *f.touched(offset, offset + size))
    if key not in _fat_cache:
        if len(_fat_cache) > 512:
            _fat_cache.clear()
        _fat_cache[key] = _real_efi_loaders(r, offset, size)
    return _fat_cache[key]


def inspect_bytes(base: bytes, patches: Sequence[Patch] = (), size: int | None = None) -> None:
    """Inspect patched in-memory bytes; anything but a report or a one-line BadImage fails."""
    r = PatchedReader(PatchedImage(base, list(patches), size))
    with (
        mock.patch.object(iso9660, "read_tree", cached_read_tree),
        mock.patch.object(fat, "efi_loaders", cached_efi_loaders),
    ):
        try:
            if r.size < 512:
                raise BadImage("<fuzz>: too short")
            report = boot._inspect(r, verify_checksum=True)
        except BadImage as e:
            assert "\n" not in str(e)
            return
    assert report.boot.bios in ("yes", "no")
    assert report.boot.uefi in ("yes", "firmware-dependent", "no")
    assert report.boot.reasons
    json.dumps(report.to_dict())
    assert boot.render_text(report).startswith("<fuzz>")


@fuzz_settings("system")
@given(name=st.sampled_from(SYSTEM_BASES), edits=edits)
def test_fuzz_system_area(name: str, edits: list[tuple[int, int, bytes]]) -> None:
    inspect_bytes(image_bytes(name), mutate(name, "system", edits))


@fuzz_settings("volume")
@given(name=st.sampled_from(VOLUME_BASES), edits=edits)
def test_fuzz_volume_descriptors_catalog_directories(
    name: str, edits: list[tuple[int, int, bytes]]
) -> None:
    inspect_bytes(image_bytes(name), mutate(name, "volume", edits))


@fuzz_settings("truncated")
@given(
    name=st.sampled_from(SYSTEM_BASES + VOLUME_BASES),
    kind=st.sampled_from(("system", "volume")),
    edits=st.lists(edit, max_size=6),
    cut=st.floats(0.0, 1.0),
)
def test_fuzz_truncated(
    name: str, kind: str, edits: list[tuple[int, int, bytes]], cut: float
) -> None:
    if kind == "volume" and name not in VOLUME_BASES:
        kind = "system"
    data = image_bytes(name)
    inspect_bytes(data, mutate(name, kind, edits), int(len(data) * cut))


SIGNATURES = (b"\x55\xaa", b"EFI PART", b"\x01CD001\x01", b"\x00CD001\x01", b"ER", b"PM",
              b"BEA01", b"NSR02", b"\xfd7zXZ\x00", b"MZ", b"\xeb\x3c\x90")  # fmt: skip


@fuzz_settings("noise")
@given(
    size=st.integers(0, 80 << 10),
    seed=st.binary(min_size=0, max_size=64),
    marks=st.lists(
        st.tuples(
            st.sampled_from((0, 510, 512, 2048, 32768, 34816, 36864, 1024, 1536)),
            st.sampled_from(SIGNATURES),
        ),
        max_size=6,
    ),
)
def test_fuzz_noise(size: int, seed: bytes, marks: list[tuple[int, bytes]]) -> None:
    data = bytearray((seed or b"\0") * (size // max(1, len(seed)) + 1))[:size]
    for off, sig in marks:
        data[off : off + len(sig)] = sig
    inspect_bytes(bytes(data))


def test_at_least_ten_thousand_inputs() -> None:
    assert sum(FUZZ_EXAMPLES.values()) >= 10_000


@pytest.mark.parametrize("name", SYSTEM_BASES + VOLUME_BASES)
def test_unmutated_bases_inspect_cleanly(name: str) -> None:
    inspect_bytes(image_bytes(name))

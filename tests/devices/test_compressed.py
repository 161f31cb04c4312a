"""Compressed images end to end on real loop devices, each format made by its own tool.

For every format: the device holds the decompressed image byte for byte, `verify`
passes, the receipt names the blake3 of the file as downloaded and of the image, and
a byte flipped on the device is found at its offset in the image. A truncated or
damaged file is one line on stderr, exit 1, naming the file, and either refused before
anything is written (the drive unchanged) or stopped while writing with the first MiB
wiped. An image whose size the file does not record is checked while writing.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.conftest import PATTERN, ROOT_ONLY, MiB, fill, read_dev
from tests.devices.test_cli import ndjson, one_line_error, usbwriter

pytestmark = ROOT_ONLY

IMAGE_SIZE = 24 * MiB
DEVICE_SIZE = 32 * MiB
FLIP_AT = 17 * MiB + 12345  # a byte of the image, in decompressed coordinates


def build_image(path: Path) -> Path:
    """24 MiB: random MiBs, half-random MiBs and zero MiBs in turn (compresses to ~1/2)."""
    rng = random.Random(24)
    with open(path, "wb") as f:
        for i in range(IMAGE_SIZE // MiB):
            if i % 3 == 0:
                f.write(rng.randbytes(MiB))
            elif i % 3 == 1:
                f.write(rng.randbytes(MiB // 2) + bytes(MiB // 2))
            else:
                f.write(bytes(MiB))
    return path


def sh(cmd: str, **kw: Any) -> None:
    subprocess.run(["bash", "-c", cmd], check=True, env=dict(os.environ, LC_ALL="C"), **kw)


def zip_intact(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            return zf.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


@dataclass(frozen=True)
class Case:
    """One way of making a compressed image with a real tool."""

    id: str
    suffix: str
    fmt: str  # the receipt's "format"
    make: str  # bash; {src} the image, {dst} the file to make, {dir} a scratch folder
    test: str  # bash exiting non-zero for a damaged {f}; "" for zip (checked in Python)
    tools: tuple[str, ...]
    member: str | None = None  # --member to give
    size_recorded: bool = True  # the file says the image's size (a fit refused up front)
    truncated_refused: bool = False  # a truncated file is refused before anything is written

    @property
    def args(self) -> list[str]:
        return ["--member", self.member] if self.member else []

    def intact(self, f: Path) -> bool:
        if self.fmt == "zip":
            return zip_intact(f)
        p = subprocess.run(["bash", "-c", self.test.format(f=f)], capture_output=True)
        return p.returncode == 0


CASES = [
    Case(
        "xz-T0",
        ".img.xz",
        "xz",
        "xz -T0 -1 --block-size=4MiB -c {src} > {dst}",
        "xz -t {f}",
        ("xz",),
        truncated_refused=True,  # the index at the end is gone
    ),
    Case(
        "xz-T1",
        ".img.xz",
        "xz",
        "xz -T1 -1 -c {src} > {dst}",
        "xz -t {f}",
        ("xz",),
        truncated_refused=True,
    ),
    Case("zstd", ".img.zst", "zstd", "zstd -q -c {src} > {dst}", "zstd -qt {f}", ("zstd",)),
    Case(
        "zstd-stdin",  # no content size in the frame header
        ".img.zst",
        "zstd",
        "zstd -q -c < {src} > {dst}",
        "zstd -qt {f}",
        ("zstd",),
        size_recorded=False,
    ),
    # gzip's trailer is an estimate: a fit is only warned about, then checked while writing.
    Case(
        "gzip",
        ".img.gz",
        "gzip",
        "gzip -c {src} > {dst}",
        "gzip -t {f}",
        ("gzip",),
        size_recorded=False,
    ),
    Case(
        "pigz",
        ".img.gz",
        "gzip",
        "pigz -c {src} > {dst}",
        "pigz -t {f}",
        ("pigz",),
        size_recorded=False,
    ),
    Case(
        "bzip2",
        ".img.bz2",
        "bzip2",
        "bzip2 -c {src} > {dst}",
        "bzip2 -t {f}",
        ("bzip2",),
        size_recorded=False,
    ),
    Case(
        "lz4",
        ".img.lz4",
        "lz4",
        "lz4 -q -c {src} > {dst}",
        "lz4 -qt {f}",
        ("lz4",),
        size_recorded=False,
    ),
    Case(
        "lz4-content-size",
        ".img.lz4",
        "lz4",
        "lz4 -q --content-size -c {src} > {dst}",
        "lz4 -qt {f}",
        ("lz4",),
    ),
    Case(
        "zip",
        ".zip",
        "zip",
        "cp {src} {dir}/disk.img && cd {dir} && zip -q {dst} disk.img",
        "",
        ("zip",),
        truncated_refused=True,  # the central directory at the end is gone
    ),
    Case(
        "zip-member",
        ".zip",
        "zip",
        "cp {src} {dir}/disk.img && echo 'read me' > {dir}/README.txt && cd {dir} "
        "&& zip -q {dst} README.txt disk.img",
        "",
        ("zip",),
        member="disk.img",
        truncated_refused=True,
    ),
]
BY_ID = {c.id: c for c in CASES}


@dataclass
class Made:
    """The test image and its compressed forms, made once per session."""

    root: Path
    image: Path
    image_blake3: str
    files: dict[str, Path] = field(default_factory=dict)

    def get(self, case: Case) -> Path:
        missing = [t for t in case.tools if shutil.which(t) is None]
        if missing:
            pytest.skip(f"{', '.join(missing)} not installed (scripts/lib/setup.sh installs it)")
        if case.id not in self.files:
            scratch = self.root / f"scratch-{case.id}"
            scratch.mkdir()
            dst = self.root / f"{case.id}{case.suffix}"
            sh(case.make.format(src=self.image, dst=dst, dir=scratch))
            shutil.rmtree(scratch)
            self.files[case.id] = dst
        return self.files[case.id]


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("compressed")
    image = build_image(root / "disk.img")
    return Made(root, image, blake3.blake3(image.read_bytes()).hexdigest())


def b3(path: Path) -> str:
    return str(blake3.blake3(path.read_bytes()).hexdigest())


def write(image: Path, dev: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json", *extra)


def cmp_device(image: Path, dev: str) -> None:
    """The device's first bytes are the image's, byte for byte (cmp reads the device)."""
    p = subprocess.run(
        ["cmp", "-n", str(image.stat().st_size), str(image), dev], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr


def flip_device_byte(dev: str, offset: int) -> None:
    fd = os.open(dev, os.O_RDWR)
    try:
        b = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([b[0] ^ 0x10]), offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def error_of(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    last = ndjson(p.stdout)[-1]
    assert last["event"] == "error", last
    return last


def head_wiped(dev: str) -> bool:
    return read_dev(dev, 0, MiB) == bytes(MiB)


def unchanged(dev: str) -> bool:
    return read_dev(dev, 0, DEVICE_SIZE) == PATTERN * DEVICE_SIZE


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_round_trip_verify_and_flipped_byte(
    case: Case, made: Made, loop: Callable[..., str]
) -> None:
    f = made.get(case)
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    p = write(f, dev, *case.args)
    assert p.returncode == 0, p.stderr
    events = ndjson(p.stdout)
    assert any(e["event"] == "progress" and e["phase"] == "verify" for e in events)
    r = events[-1]
    assert r["event"] == "result" and r["verified"] is True
    img = r["image"]
    assert img["format"] == case.fmt
    assert img["size"] == IMAGE_SIZE
    assert img["file_size"] == f.stat().st_size
    assert img["file_blake3"] == b3(f)
    assert img["blake3"] == made.image_blake3
    assert r["device_blake3"] == made.image_blake3
    assert r["bytes_written"] == IMAGE_SIZE
    if case.fmt == "zip":
        assert img["member"] == "disk.img"
    cmp_device(made.image, dev)

    ok = usbwriter("verify", "--image", str(f), "--device", dev, "--json", *case.args)
    assert ok.returncode == 0, ok.stderr
    checked = ndjson(ok.stdout)[-1]
    assert checked["verified"] is True
    assert checked["image"]["file_blake3"] == b3(f)

    flip_device_byte(dev, FLIP_AT)
    bad = usbwriter("verify", "--image", str(f), "--device", dev, "--json", *case.args)
    assert bad.returncode == 3, bad.stderr
    assert ndjson(bad.stdout)[-1]["mismatch_offset"] == FLIP_AT
    assert f"at byte {FLIP_AT}" in one_line_error(bad.stderr)


# --- damaged files ------------------------------------------------------------------------


def check_damage_outcome(
    p: subprocess.CompletedProcess[str], f: Path, dev: str, refused_before: bool
) -> None:
    assert p.returncode == 1, p.stdout[-500:] + p.stderr
    line = one_line_error(p.stderr)
    assert not line.startswith("usbwriter: warning"), p.stderr
    assert str(f) in line, line
    assert error_of(p)["code"] == "bad_image"
    if refused_before:
        assert unchanged(dev), "refused before writing: the drive must be unchanged"
    else:
        assert head_wiped(dev), "stopped while writing: the first MiB must be wiped"
        assert "first MiB was wiped" in line


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_truncated_file(case: Case, made: Made, loop: Callable[..., str], tmp_path: Path) -> None:
    data = made.get(case).read_bytes()
    f = tmp_path / f"truncated{case.suffix}"
    f.write_bytes(data[: len(data) // 2])
    assert not case.intact(f)
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    check_damage_outcome(write(f, dev, *case.args), f, dev, case.truncated_refused)


def damage(case: Case, src: Path, dst: Path) -> int:
    """Copy SRC to DST with one byte flipped in the middle of the compressed data, at the
    first offset from the middle on that the format's own tester finds damaged (a flip
    inside a run of zeros can re-encode the same bytes)."""
    data = src.read_bytes()
    for offset in range(len(data) // 2, len(data) * 3 // 4, 4093):
        trial = bytearray(data)
        trial[offset] ^= 0x55
        dst.write_bytes(trial)
        if not case.intact(dst):
            return offset
    raise AssertionError(f"no flipped byte made {src} fail its own test")


@pytest.mark.parametrize(
    "case",
    CASES,
    ids=lambda c: c.id,
)
def test_corrupt_file(case: Case, made: Made, loop: Callable[..., str], tmp_path: Path) -> None:
    f = tmp_path / f"corrupt{case.suffix}"
    damage(case, made.get(case), f)
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    check_damage_outcome(write(f, dev, *case.args), f, dev, refused_before=False)


# --- zip members, fit ---------------------------------------------------------------------


def test_zip_with_two_members_needs_member(made: Made, loop: Callable[..., str]) -> None:
    f = made.get(BY_ID["zip-member"])
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    for argv in (
        ["--image", str(f), "--device", dev, "--yes", "--force"],
        ["verify", "--image", str(f), "--device", dev],
    ):
        p = usbwriter(*argv)
        assert p.returncode == 2, p.stderr
        line = one_line_error(p.stderr)
        assert str(f) in line and "README.txt" in line and "disk.img" in line
        assert "--member" in line
    p = write(f, dev, "--member", "nothere.img")
    assert p.returncode == 2
    assert "nothere.img" in one_line_error(p.stderr)
    assert unchanged(dev)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_image_larger_than_device(case: Case, made: Made, loop: Callable[..., str]) -> None:
    """Recorded size: refused before writing, drive unchanged. Not recorded (bzip2, lz4 and
    zstd without it; gzip's trailer is only an estimate): stopped when the decompressed
    bytes pass the device's end, first MiB wiped. Exit 4 either way."""
    f = made.get(case)
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(f, dev, *case.args)
    assert p.returncode == 4, p.stderr
    assert error_of(p)["code"] == "refused"
    line = one_line_error(p.stderr)
    assert "does not fit" in line and str(f) in line
    if case.size_recorded:
        assert read_dev(dev, 0, 16 * MiB) == PATTERN * (16 * MiB)
    else:
        assert head_wiped(dev)
        assert "first MiB was wiped" in line


# --- several frames -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "tool"),
    [
        pytest.param(
            "head -c 5000000 {src} > {dst}.a && tail -c +5000001 {src} > {dst}.b && "
            "zstd -q -c {dst}.a > {dst} && zstd -q -c {dst}.b >> {dst}",
            "zstd",
            id="zstd-two-frames",
        ),
        pytest.param(
            "pzstd -q -p 2 -c {src} > {dst}",
            "pzstd",
            id="pzstd",
        ),
        pytest.param(
            "head -c 5000000 {src} > {dst}.a && tail -c +5000001 {src} > {dst}.b && "
            "lz4 -q --content-size -c {dst}.a > {dst} && lz4 -q --content-size -c {dst}.b >> {dst}",
            "lz4",
            id="lz4-two-frames",
        ),
        pytest.param(
            "head -c 5000000 {src} | xz -1 > {dst} && head -c 8 /dev/zero >> {dst} && "
            "tail -c +5000001 {src} | xz -1 >> {dst} && head -c 4 /dev/zero >> {dst}",
            "xz",
            id="xz-two-streams-padded",
        ),
        pytest.param(
            "head -c 5000000 {src} | gzip > {dst} && tail -c +5000001 {src} | gzip >> {dst}",
            "gzip",
            id="gzip-two-members",
        ),
        pytest.param(
            "head -c 5000000 {src} | bzip2 > {dst} && tail -c +5000001 {src} | bzip2 >> {dst}",
            "bzip2",
            id="bzip2-two-streams",
        ),
    ],
)
def test_several_frames_or_streams(
    make: str, tool: str, made: Made, loop: Callable[..., str], tmp_path: Path
) -> None:
    """A file made of several frames or streams (`cat a.zst b.zst`, pzstd) holds their
    concatenation, as the format's own tool decompresses it."""
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    f = tmp_path / "frames.img.c"
    sh(make.format(src=made.image, dst=f))
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    p = write(f, dev)
    assert p.returncode == 0, p.stderr
    r = ndjson(p.stdout)[-1]
    assert r["image"]["blake3"] == made.image_blake3
    assert r["image"]["file_blake3"] == b3(f)
    cmp_device(made.image, dev)


# --- without the xz and zstd tools: the library decoders -----------------------------------

WITHOUT_TOOLS = """
import shutil, sys
real = shutil.which
shutil.which = lambda name, *a, **k: None if name in ("xz", "zstd") else real(name, *a, **k)
from usbwriter.cli import main
sys.exit(main(sys.argv[1:]))
"""


def usbwriter_without_tools(*args: str) -> subprocess.CompletedProcess[str]:
    """usbwriter as if the xz and zstd tools were not installed (lzma, zstandard)."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TOOLS, *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env=dict(os.environ, LC_ALL="C"),
    )


LIBRARY_CASES = [BY_ID[i] for i in ("xz-T0", "xz-T1", "zstd", "zstd-stdin")]


@pytest.mark.parametrize("case", LIBRARY_CASES, ids=lambda c: c.id)
def test_library_round_trip(case: Case, made: Made, loop: Callable[..., str]) -> None:
    f = made.get(case)
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    p = usbwriter_without_tools("--image", str(f), "--device", dev, "--yes", "--force", "--json")
    assert p.returncode == 0, p.stderr
    r = ndjson(p.stdout)[-1]
    assert r["image"]["blake3"] == made.image_blake3
    assert r["image"]["file_blake3"] == b3(f)
    cmp_device(made.image, dev)
    ok = usbwriter_without_tools("verify", "--image", str(f), "--device", dev, "--json")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(
    ("case", "how"),
    [
        (BY_ID["xz-T0"], "corrupt"),
        (BY_ID["xz-T1"], "corrupt"),
        (BY_ID["zstd"], "corrupt"),
        (BY_ID["zstd-stdin"], "corrupt"),
        (BY_ID["zstd"], "truncated"),
        (BY_ID["zstd-stdin"], "truncated"),
    ],
    ids=lambda v: v.id if isinstance(v, Case) else v,
)
def test_library_damaged(
    case: Case, how: str, made: Made, loop: Callable[..., str], tmp_path: Path
) -> None:
    src = made.get(case)
    f = tmp_path / f"{how}{case.suffix}"
    if how == "corrupt":
        damage(case, src, f)
    else:
        data = src.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    dev = loop(DEVICE_SIZE)
    fill(dev, DEVICE_SIZE)
    p = usbwriter_without_tools("--image", str(f), "--device", dev, "--yes", "--force", "--json")
    check_damage_outcome(p, f, dev, refused_before=False)

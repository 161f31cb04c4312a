"""Shared fixtures: real loop devices over sparse files, and small real images."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0
ROOT_ONLY = pytest.mark.skipif(not IS_ROOT, reason="needs root: loop devices (run as root)")


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(argv, check=True, text=True, capture_output=True, env=env, **kw)  # type: ignore[call-overload, no-any-return]


class LoopFactory:
    """Creates loop devices over sparse files and detaches exactly those it made."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.devices: list[str] = []
        self.count = 0

    def __call__(
        self,
        size: int,
        *,
        backing: Path | None = None,
        direct_io: bool = False,
        read_only: bool = False,
        sector_size: int | None = None,
        partscan: bool = False,
    ) -> str:
        if backing is None:
            self.count += 1
            backing = self.tmp / f"stick{self.count}.img"
            with open(backing, "wb") as f:
                f.truncate(size)
        argv = ["losetup", "-f", "--show"]
        if direct_io:
            argv.append("--direct-io=on")
        if read_only:
            argv.append("--read-only")
        if sector_size is not None:  # 4096: a drive with 4 KiB logical blocks (4Kn)
            argv.append(f"--sector-size={sector_size}")
        if partscan:  # the kernel reads (and re-reads) its partition table, as a stick's
            argv.append("--partscan")
        dev = run([*argv, str(backing)]).stdout.strip()
        self.devices.append(dev)
        return dev

    def detach(self, dev: str) -> None:
        if dev in self.devices:
            subprocess.run(["losetup", "-d", dev], check=False)
            self.devices.remove(dev)

    def cleanup(self) -> None:
        for dev in list(self.devices):
            self.detach(dev)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[LoopFactory]:
    """loop(size) -> '/dev/loopN' over a sparse file in tmp_path; detached afterwards."""
    if not IS_ROOT:
        pytest.skip("needs root: loop devices (run as root)")
    factory = LoopFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


def random_file(path: Path, size: int, seed: int = 1) -> Path:
    """A file of pseudo-random bytes (fast, reproducible)."""
    import random

    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return path


MiB = 1 << 20
PATTERN = b"\xaa"


def fill(dev: str, size: int, byte: bytes = PATTERN) -> None:
    with open(dev, "r+b", buffering=0) as f:
        block = byte * MiB
        left = size
        while left:
            left -= f.write(block[: min(left, MiB)])
        os.fsync(f.fileno())


def read_dev(dev: str, offset: int, n: int) -> bytes:
    fd = os.open(dev, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.pread(fd, n, offset)
    finally:
        os.close(fd)


@pytest.fixture
def mounted_ext4(loop: LoopFactory, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(loop device holding a mounted ext4, its mountpoint); unmounted afterwards."""
    dev = loop(32 * MiB)
    # no lazy initialisation: nothing writes to the mounted file system behind the test
    run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", dev])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    try:
        yield dev, mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False, capture_output=True)


@pytest.fixture
def failing_loop(loop: LoopFactory, tmp_path: Path) -> Iterator[str]:
    """A 64 MiB loop device over an 8 MiB tmpfs: writes past 8 MiB fail with ENOSPC."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=8M", "none", str(mnt)])
    try:
        backing = mnt / "stick.img"
        with open(backing, "wb") as f:
            f.truncate(64 * MiB)
        dev = loop(0, backing=backing)
        yield dev
        loop.detach(dev)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def cleanup() -> Iterator[list[list[str]]]:
    """Commands to run at teardown, last registered first (umount, partx -d ...)."""
    todo: list[list[str]] = []
    try:
        yield todo
    finally:
        for argv in reversed(todo):
            subprocess.run(argv, check=False, capture_output=True)

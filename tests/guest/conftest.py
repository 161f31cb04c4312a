"""Fixtures for the tests that run in a qemu guest with emulated USB sticks.

They skip only when they cannot run at all: not root (the host root is shared with
the guest over 9p, and qemu's 9p server must read every file), or no qemu. The guest
kernel and initramfs are built once and cached (see harness.build_artifacts).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.guest import harness

SKIP_REASON = harness.skip_reason()


@pytest.fixture(scope="session")
def guest_artifacts() -> harness.Artifacts:
    """The guest's kernel and initramfs (built once, then taken from the cache)."""
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)
    return harness.build_artifacts()


StickFile = Callable[..., Path]


def _stick_file(directory: Path, name: str, size: int, random_head: int = 0) -> Path:
    path = directory / f"{name}.img"
    with open(path, "wb") as f:
        f.truncate(size)
        if random_head:
            f.write(random.Random(name).randbytes(random_head))
    return path


@pytest.fixture
def stick_file(tmp_path: Path) -> StickFile:
    """stick_file(name, size, random_head=0) -> a sparse raw image for an emulated stick."""

    def make(name: str, size: int = 64 << 20, random_head: int = 0) -> Path:
        return _stick_file(tmp_path, name, size, random_head)

    return make


@pytest.fixture(scope="module")
def module_stick_file(tmp_path_factory: pytest.TempPathFactory) -> StickFile:
    """Like ``stick_file``, for module-scoped guest runs."""
    directory = tmp_path_factory.mktemp("sticks")

    def make(name: str, size: int = 64 << 20, random_head: int = 0) -> Path:
        return _stick_file(directory, name, size, random_head)

    return make

"""Fixtures for the tests that run in a qemu guest with emulated USB sticks.

The tests skip only when they cannot run at all: not root (qemu's 9p server must read
the whole host root for the guest), or no qemu (see harness.skip_reason). The guest
kernel and initramfs are built on first use and cached (see harness.build_artifacts).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

#: stick_file(name, size, random_head=0) -> Path
StickFile = Callable[..., Path]


@pytest.fixture(scope="module")
def module_stick_file(tmp_path_factory: pytest.TempPathFactory) -> StickFile:
    """A factory of sparse raw images for emulated sticks, kept for the module's guest runs.

    ``random_head`` bytes of pseudo-random data at the start stand for old contents, so
    a write that did nothing cannot pass for a good one.
    """
    directory = tmp_path_factory.mktemp("sticks")

    def make(name: str, size: int = 64 << 20, random_head: int = 0) -> Path:
        path = directory / f"{name}.img"
        with open(path, "wb") as f:
            f.truncate(size)
            if random_head:
                f.write(random.Random(name).randbytes(random_head))
        return path

    return make

"""Fixtures shared by the ISO toolkit's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.isotrees import make_tree, xorriso_iso


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("tree") / "src")


@pytest.fixture(scope="module")
def rr_iso(tree: Path) -> Path:
    return xorriso_iso(tree, tree.parent / "rr.iso")

"""Test images built once per test session with real tools (scripts/make_images.py).

    from tests.helpers.images import build_image
    iso = build_image("grub-hybrid")      # Path, built on first use, then cached

Images are cached in one directory per process (removed at exit), or in
$USBW_IMAGE_CACHE when set (kept, for quick local re-runs). When the tools an image
needs are missing, build_image calls pytest.skip with what is missing.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
_lock = threading.Lock()
_built: dict[str, Path] = {}
_cache_dir: Path | None = None


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "usbw_make_images", REPO / "scripts" / "make_images.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


make_images = _load()
IMAGES = make_images.IMAGES
ALL_NAMES: tuple[str, ...] = tuple(IMAGES)


def cache_dir() -> Path:
    global _cache_dir
    if _cache_dir is None:
        env = os.environ.get("USBW_IMAGE_CACHE")
        if env:
            _cache_dir = Path(env)
            _cache_dir.mkdir(parents=True, exist_ok=True)
        else:
            # Not under tempfile.tempdir, which a test may point at a folder it checks.
            _cache_dir = Path(
                tempfile.mkdtemp(prefix="usbw-images-", dir=os.environ.get("TMPDIR", "/tmp"))
            )
            atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir


def missing(name: str) -> list[str]:
    """Commands or files the image needs that this machine lacks."""
    return list(make_images.missing_requirements(name))


def build_image(name: str) -> Path:
    """The image's path, built on first use (skips the test if its tools are missing)."""
    if name not in IMAGES:
        raise KeyError(f"no test image named {name!r}; known: {', '.join(IMAGES)}")
    with _lock:
        if name in _built and _built[name].exists():
            return _built[name]
        lacking = missing(name)
        if lacking:
            pytest.skip(f"test image {name} needs {', '.join(lacking)}")
        d = cache_dir()
        suffix = IMAGES[name].suffix or (".img" if name.startswith("raw-") else ".iso")
        existing = d / f"{name}{suffix}"
        path = existing if existing.exists() else make_images.build(name, d)
        _built[name] = path
        return Path(path)


def expected_verdict(name: str) -> tuple[str, str]:
    """(bios, uefi) as the image was designed; the boot tests check the real firmware."""
    spec = IMAGES[name]
    return spec.expect_bios, spec.expect_uefi

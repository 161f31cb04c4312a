"""Folder trees and the ISOs made of them with real tools (xorriso, genisoimage,
pycdlib), for the ls and extract tests; and the tree as `ls -R --json` would list it.

    tree = make_tree(tmp_path / "src")
    iso = xorriso_iso(tree, tmp_path / "t.iso")
    assert listing_of(tree) == ...
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

T0 = 1_600_000_000  # 2020-09-13, whole seconds: ISO dates hold seconds

# path (relative) -> content; None for a folder; ("->", target) for a symlink
TREE: dict[str, Any] = {
    "boot": None,
    "boot/grub": None,
    "boot/grub/grub.cfg": b"set timeout=5\nmenuentry 'x' {}\n",
    "boot/empty": b"",
    "docs": None,
    "docs/Ünïcødé ñame.txt": "héllo wörld\n".encode(),
    "docs/日本語.txt": "こんにちは\n".encode(),
    "docs/readme.md": b"# read me\n" * 100,
    "docs/link-to-readme": ("->", "readme.md"),
    "docs/link-up": ("->", "../boot/grub/grub.cfg"),
    "docs/dangling": ("->", "nowhere/at/all"),
    "bin": None,
    "bin/run.sh": b"#!/bin/sh\necho run\n",
    "big.bin": bytes(range(256)) * 4096 + b"tail",  # 1 MiB + 4 bytes
    "a/b/c/d/e/f/g/h/i/j": None,  # deeper than ISO 9660's 8 levels
    "a/b/c/d/e/f/g/h/i/j/deep.txt": b"deep\n",
}
MODES = {"bin/run.sh": 0o755, "docs/readme.md": 0o640, "boot/grub": 0o750, "docs": 0o755}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def run(argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C.UTF-8")
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env, **kw)


def make_tree(root: Path, tree: dict[str, Any] | None = None) -> Path:
    """TREE (default: the test tree) under ROOT with its modes and mtimes."""
    tree = TREE if tree is None else tree
    root.mkdir(parents=True)
    for rel, content in tree.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            p.mkdir(parents=True, exist_ok=True)
        elif isinstance(content, tuple):
            p.symlink_to(content[1])
        else:
            p.write_bytes(content)
    for rel, mode in MODES.items():
        if rel in tree:
            (root / rel).chmod(mode)
    # mtimes last, deepest first, so that making a child does not touch its folder's
    paths = sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True)
    for i, p in enumerate(paths):
        t = T0 + 3600 * (i % 50)
        os.utime(p, (t, t), follow_symlinks=False)
    return root


def listing_of(root: Path) -> dict[str, dict[str, Any]]:
    """ROOT's tree as `usbwriter ls -R --json` lists an image of it (path -> fields)."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        rel = "/" + p.relative_to(root).as_posix()
        if p.is_symlink():
            kind, target = "symlink", os.readlink(p)
        elif p.is_dir():
            kind, target = "dir", None
        else:
            kind, target = "file", None
        out[rel] = {
            "type": kind,
            "size": st.st_size if kind != "dir" else None,
            "mtime": datetime.fromtimestamp(int(st.st_mtime), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": st.st_mode & 0o7777,
            "target": target,
        }
    return out


def comparable(entries: list[dict[str, Any]], *, modes: bool = True) -> dict[str, Any]:
    """`ls --json` objects keyed by path, folder sizes dropped (as listing_of)."""
    out: dict[str, Any] = {}
    for e in entries:
        d = {k: v for k, v in e.items() if k != "path"}
        if d["type"] == "dir":
            d["size"] = None
        if not modes:
            d.pop("mode")
        out[e["path"]] = d
    return out


def xorriso_iso(src: Path, out: Path, *args: str) -> Path:
    """An ISO of SRC by xorriso (mkisofs emulation): Rock Ridge and Joliet by default."""
    argv = [tool("xorriso"), "-as", "mkisofs", *(args or ("-R", "-J")), "-o", str(out), str(src)]
    run(argv)
    return out


def genisoimage_iso(src: Path, out: Path, *args: str) -> Path:
    run([tool("genisoimage"), "-quiet", *(args or ("-R", "-J")), "-o", str(out), str(src)])
    return out


def udf_iso(src: Path, out: Path) -> Path:
    """A UDF 2.60 image of SRC by pycdlib (xorriso cannot write UDF): its ISO 9660 side
    has made-up short names, no Rock Ridge, no Joliet; symlinks are in UDF only."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, udf="2.60")
    iso_dir: dict[Path, str] = {src: ""}
    for n, p in enumerate(sorted(src.rglob("*"), key=lambda p: (len(p.parts), str(p)))):
        rel = "/" + p.relative_to(src).as_posix()
        parent = iso_dir[p.parent]
        if p.is_symlink():
            iso.add_symlink(udf_symlink_path=rel, udf_target=os.readlink(p))
        elif p.is_dir():
            iso_dir[p] = f"{parent}/D{n}"
            iso.add_directory(iso_dir[p], udf_path=rel)
        else:
            data = p.read_bytes()
            iso.add_fp(io.BytesIO(data), len(data), f"{parent}/F{n}.;1", udf_path=rel)
    iso.write(str(out))
    iso.close()
    return out


def compress(iso: Path, fmt: str) -> Path:
    """ISO compressed by the real tool: xz, zst, gz or zip."""
    if fmt == "xz":
        run([tool("xz"), "-k", "-T0", "-1", "-f", str(iso)])
        return iso.with_name(iso.name + ".xz")
    if fmt == "zst":
        run([tool("zstd"), "-q", "-f", "-1", str(iso)])
        return iso.with_name(iso.name + ".zst")
    if fmt == "gz":
        out = iso.with_name(iso.name + ".gz")
        with open(out, "wb") as f:
            subprocess.run([tool("gzip"), "-1", "-c", str(iso)], stdout=f, check=True)
        return out
    if fmt == "zip":
        out = iso.with_name(iso.name + ".zip")
        run([tool("zip"), "-q", "-j", str(out), str(iso)])
        return out
    raise ValueError(fmt)

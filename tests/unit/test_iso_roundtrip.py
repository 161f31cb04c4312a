"""The toolkit against itself and against the standard tools: a tree made into an ISO
by `usbwriter mkiso`, listed by `usbwriter ls`, xorriso and isoinfo, and extracted by
`usbwriter extract`, gives back the same tree (names, modes, symlink targets, data)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.isotrees import comparable, listing_of, make_tree, run, tool

USBWRITER = [sys.executable, "-m", "usbwriter"]
SOURCE_DATE_EPOCH = "1700000000"


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH)
    return subprocess.run(
        [*USBWRITER, *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("roundtrip")
    tree = make_tree(root / "src")
    iso = root / "made.iso"
    done = usbwriter("mkiso", str(tree), "-o", str(iso), "--label", "Round Trip")
    assert done.returncode == 0, done.stderr
    return tree, iso


def without_times(listing: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    # mtimes are clamped to SOURCE_DATE_EPOCH by mkiso, so they are compared apart
    return {p: {k: v for k, v in d.items() if k != "mtime"} for p, d in listing.items()}


def test_ls_lists_the_tree(made: tuple[Path, Path]) -> None:
    tree, iso = made
    done = usbwriter("ls", str(iso), "-R", "--json")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    listed = comparable(entries)
    assert without_times(listed) == without_times(listing_of(tree))
    clamp = int(SOURCE_DATE_EPOCH)
    for path, d in listing_of(tree).items():
        if d["type"] != "symlink":
            want = min(clamp, int(os.lstat(tree / path.lstrip("/")).st_mtime))
            assert listed[path]["mtime"] == _iso8601(want), path


def _iso8601(t: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_extract_gives_back_the_tree(made: tuple[Path, Path], tmp_path: Path) -> None:
    tree, iso = made
    out = tmp_path / "out"
    done = usbwriter("extract", str(iso), "-o", str(out))
    assert done.returncode == 0, done.stderr
    diff = subprocess.run(
        ["diff", "-r", "--no-dereference", str(tree), str(out)], capture_output=True, text=True
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert without_times(listing_of(out)) == without_times(listing_of(tree))


def test_standard_tools_list_the_same_files(made: tuple[Path, Path]) -> None:
    tree, iso = made
    ours = set(listing_of(tree))
    found = run([tool("xorriso"), "-indev", str(iso), "-find", "/"]).stdout
    by_xorriso = {line.strip().strip("'") for line in found.splitlines() if line.strip()}
    # mkiso, like mkisofs -hide-rr-moved, leaves an empty /.rr_moved where ISO 9660
    # keeps folders deeper than eight levels; Rock Ridge readers show them in place
    assert by_xorriso - {"/", "/.rr_moved"} == ours
    by_isoinfo = {
        line.strip()
        for line in run([tool("isoinfo"), "-R", "-f", "-i", str(iso)]).stdout.split("\n")
    } - {""}
    # isoinfo shows folders deeper than eight levels where ISO 9660 stores them, under
    # /.rr_moved: put them back where they belong
    deep = {os.path.basename(p): p for p in ours if p.count("/") >= 8}
    mapped = set()
    for p in by_isoinfo - {"/.rr_moved"}:
        if p.startswith("/.rr_moved/"):
            top, _, rest = p.removeprefix("/.rr_moved/").partition("/")
            p = deep[top] + (f"/{rest}" if rest else "")
        mapped.add(p)
    assert mapped == ours

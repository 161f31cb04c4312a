"""`man usbwriter` after the README's set-up: scripts/lib/setup.sh puts the page where
man looks (pip installs it into the venv's share/man, where man does not)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "lib" / "setup.sh"

pytestmark = pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")


@pytest.fixture
def tree() -> Iterator[Path]:
    """A copy of what setup_manpage reads: docs/usbwriter.1, from the checkout's root;
    in /tmp, which another user can reach (pytest's own folders are root's only)."""
    top = Path(tempfile.mkdtemp(prefix="usbwriter-man-"))
    try:
        (top / "docs").mkdir()
        shutil.copy(ROOT / "docs" / "usbwriter.1", top / "docs" / "usbwriter.1")
        os.chmod(top, 0o777)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def setup_manpage(tree: Path, env: dict[str, str], *prefix: str) -> str:
    done = subprocess.run(
        [*prefix, "bash", "-c", f". {SETUP} && setup_manpage"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def man_w(manpath: str, *prefix: str) -> str:
    found = subprocess.run(
        [*prefix, "man", "-w", "usbwriter"],
        env=dict(os.environ, MANPATH=manpath),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="the root branch: run as root")
def test_as_root_the_page_goes_into_a_system_man_folder(tree: Path, tmp_path: Path) -> None:
    mandir = tmp_path / "usr-local-share-man"
    setup_manpage(tree, dict(os.environ, USBWRITER_MANDIR=str(mandir)))
    page = mandir / "man1" / "usbwriter.1"
    assert page.read_bytes() == (ROOT / "docs" / "usbwriter.1").read_bytes()
    assert man_w(str(mandir)) == str(page)


def test_as_root_the_default_folder_is_one_man_searches() -> None:
    text = SETUP.read_text()
    default = re.search(r'USBWRITER_MANDIR:-([^}"]+)', text)
    assert default is not None
    searched = subprocess.run(
        ["manpath"], env={"PATH": os.environ["PATH"]}, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert default.group(1) in searched.split(":"), (default.group(1), searched)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
@pytest.mark.skipif(os.geteuid() != 0, reason="runs as nobody: run as root")
def test_without_root_it_says_which_manpath_to_export(tree: Path) -> None:
    nobody = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
    env = {"PATH": os.environ["PATH"], "HOME": str(tree), "USBWRITER_MANDIR": "/nonexistent"}
    said = setup_manpage(tree, env, *nobody)
    match = re.search(r"export MANPATH=(\S+)", said)
    assert match is not None, said
    manpath = match.group(1).strip("'\"")
    assert manpath.startswith(f"{tree}/.venv/share/man"), manpath
    assert man_w(manpath, *nobody) == f"{tree}/.venv/share/man/man1/usbwriter.1"

"""Extraction run as root, tried by another user who owns the folder it writes into.

The folder's owner (really running as `nobody`, in a forked child that dropped root)
plants symbolic links where root will extract: at the name the app suggests, at every
name it would fall back to, at the folder given to `extract -o`. The root-owned folder
the links point at (think /etc/cron.d) must stay byte-for-byte unchanged.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY
from tests.helpers.isotrees import xorriso_iso
from tests.helpers.users import NOBODY, as_nobody
from usbwriter.tui import suggest

pytestmark = ROOT_ONLY


def usbwriter(*args: str, sudo_uid: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUDO_")}
    env["LC_ALL"] = "C.UTF-8"
    if sudo_uid is not None:
        env["SUDO_UID"] = str(sudo_uid)
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, env=env,
        check=False,
    )  # fmt: skip


def snapshot(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every name below ROOT with its mode, owner, size and content hash."""
    out = {}
    for p in [root, *sorted(root.rglob("*"))]:
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_size, digest)
    return out


class Scene:
    """/tmp/usbw-x-*/: `dl` owned by nobody holding evil.iso; `cron.d` owned by root."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.dl = base / "dl"
        self.victim = base / "cron.d"
        self.iso = self.dl / "evil.iso"

    def plant(self, *names: str, target: Path | None = None) -> None:
        """NAMES in `dl`, made by nobody: links to the root-owned folder."""
        to = str(target or self.victim)

        def step() -> None:
            for name in names:
                os.symlink(to, self.dl / name)

        as_nobody(step)
        for name in names:
            assert (self.dl / name).lstat().st_uid == NOBODY


@pytest.fixture
def scene() -> Iterator[Scene]:
    base = Path(tempfile.mkdtemp(prefix="usbw-x-", dir="/tmp"))  # nobody must reach it
    try:
        os.chmod(base, 0o755)
        s = Scene(base)
        s.dl.mkdir()
        os.chown(s.dl, NOBODY, NOBODY)
        s.victim.mkdir()
        (s.victim / "job").write_bytes(b"* * * * * root true\n")
        src = base / "src"
        (src / "sub").mkdir(parents=True)
        (src / "payload").write_bytes(b"* * * * * root sh -c 'owned'\n")
        (src / "sub" / "more").write_bytes(b"more\n")
        xorriso_iso(src, s.iso)
        yield s
    finally:
        shutil.rmtree(base, ignore_errors=True)


def refused_line(p: subprocess.CompletedProcess[str], path: Path) -> str:
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr
    (line,) = p.stderr.splitlines()
    assert str(path) in line, line
    return line


def test_the_suggestion_never_falls_back_to_a_planted_name(scene: Scene) -> None:
    before = snapshot(scene.victim)
    scene.plant("evil", *(f"evil-{n}" for n in range(2, 1000)))
    folder = suggest.extract_folder(
        str(scene.iso),
        home=scene.base / "home",
        writable=lambda d: os.access(d, os.W_OK | os.X_OK),
    )
    assert not os.path.lexists(folder), folder
    p = usbwriter("extract", str(scene.iso), "-o", folder)
    assert p.returncode == 0, p.stderr
    assert (Path(folder) / "payload").is_file() and not Path(folder).is_symlink()
    assert snapshot(scene.victim) == before


def test_a_link_planted_at_the_suggestion_afterwards_is_refused(scene: Scene) -> None:
    """The name is free when suggested; nobody plants it before extraction starts."""
    before = snapshot(scene.victim)
    folder = suggest.extract_folder(str(scene.iso), home=scene.base, writable=lambda d: True)
    scene.plant(os.path.basename(folder))
    p = usbwriter("extract", str(scene.iso), "-o", folder)
    assert "symbolic link" in refused_line(p, Path(folder))
    assert snapshot(scene.victim) == before


def test_extract_into_a_link_planted_by_another_user_is_refused(scene: Scene) -> None:
    before = snapshot(scene.victim)
    scene.plant("evil")
    link = scene.dl / "evil"
    for out in (str(link), f"{link}/", f"{link}/sub/deeper", f"{scene.dl}/./evil/../evil"):
        p = usbwriter("extract", str(scene.iso), "-o", out)
        line = refused_line(p, link)
        assert "symbolic link" in line and "not followed" in line, line
    assert snapshot(scene.victim) == before


def test_links_of_root_and_of_the_invoking_user_are_followed(scene: Scene) -> None:
    """Root's own link is followed; nobody's only when nobody is the one who ran sudo
    (SUDO_UID), as the kernel's protected_symlinks rule would."""
    mine = scene.base / "real"
    mine.mkdir()
    (scene.base / "mine").symlink_to(mine)
    p = usbwriter("extract", str(scene.iso), "-o", str(scene.base / "mine" / "x"))
    assert p.returncode == 0, p.stderr
    assert (mine / "x" / "payload").is_file()
    theirs = scene.base / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    scene.plant("to-theirs", target=theirs)
    p = usbwriter("extract", str(scene.iso), "-o", str(scene.dl / "to-theirs"))
    refused_line(p, scene.dl / "to-theirs")
    assert list(theirs.iterdir()) == []
    p = usbwriter("extract", str(scene.iso), "-o", str(scene.dl / "to-theirs"), sudo_uid=NOBODY)
    assert p.returncode == 0, p.stderr
    assert (theirs / "payload").is_file()


# ---- an image that claims more than the output's file system holds ------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8M", "none", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_extract_refuses_up_front_when_the_files_do_not_fit(small_fs: Path, tmp_path: Path) -> None:
    """Five names for one 2 MiB extent: 10 MiB to write, 8 MiB free. Refused before the
    first byte (nor is the output folder made), naming the folder and both sizes."""
    from tests.helpers.shared_extents import shared_extent_iso

    iso = shared_extent_iso(tmp_path / "s.iso", pad=4096, shared=2 << 20, links=4)
    for out in (small_fs / "out", small_fs):
        p = usbwriter("extract", str(iso), "-o", str(out))
        line = refused_line(p, out)
        free = os.statvfs(small_fs).f_bavail * os.statvfs(small_fs).f_frsize
        assert f"({free} bytes) free" in line and "needs 11.0 MiB" in line, line
        assert "6 files share their bytes" in line, line
        assert list(small_fs.iterdir()) == []
    p = usbwriter("extract", str(iso), "/s.bin", "/a.bin", "-o", str(small_fs / "out"))
    assert p.returncode == 0, p.stderr

"""`usbwriter mkiso` against a folder whose owner changes it while the image is made.

The folder belongs to `nobody`; root builds an ISO from it. Between the scan and the
write, nobody (really running as nobody, through setpriv) swaps a file: for a symbolic
link to a root-only file, for a FIFO, or shortens or lengthens it. The window is hooked
deterministically: the command runs in a child Python whose `usbwriter.iso.build.scan`
is wrapped to run the swap right after the real scan returns, then `usbwriter` runs as
usual. Pseudo files (a /proc or /sys file bind-mounted into the folder) are tried too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY

pytestmark = ROOT_ONLY

NOBODY = 65534
SECRET = b"ROOT-ONLY-SECRET-" * 64  # 1088 bytes: never to be seen in an ISO
SIZE = 4096  # the scanned file's size: larger than the secret

#: the child: `usbwriter ARGS...` with SWAP run as nobody right after the scan (HOOK
#: "scan") or right before the image is written out (HOOK "_write": after every file was
#: added to pycdlib's tree, when it is about to read them)
DRIVER = """
import subprocess, sys
import usbwriter.iso.build as build

hook, swap = sys.argv[1:3]
real = getattr(build, hook)

def swap_now():
    subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-ec", swap],
        check=True,
    )

def hooked(*args, **kwargs):
    if hook == "scan":
        result = real(*args, **kwargs)
        swap_now()
        return result
    swap_now()
    return real(*args, **kwargs)

setattr(build, hook, hooked)
from usbwriter.cli import main

sys.argv = ["usbwriter", *sys.argv[3:]]
raise SystemExit(main())
"""


@dataclass
class Scene:
    base: Path
    tree: Path  # owned by nobody
    out: Path  # in a folder of root's
    secret_dir: Path  # root's, 0700
    secret: Path  # root's, 0600

    def mkiso(
        self, swap: str, *args: str, hook: str = "scan", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, LC_ALL="C.UTF-8", SOURCE_DATE_EPOCH="1600000000")
        return subprocess.run(
            [sys.executable, "-c", DRIVER, hook, swap, "mkiso", str(self.tree), "-o", str(self.out),
             *args],
            capture_output=True, text=True, timeout=timeout, env=env, check=False,
            cwd=str(Path(__file__).resolve().parents[2]),
        )  # fmt: skip

    def nothing_left(self) -> None:
        """No output and no temporary file beside it."""
        assert sorted(p.name for p in self.out.parent.iterdir()) == []

    def no_secret_anywhere(self) -> None:
        for p in self.out.parent.iterdir():
            assert SECRET[:40] not in p.read_bytes(), p


@pytest.fixture
def scene() -> Iterator[Scene]:
    base = Path(tempfile.mkdtemp(prefix="usbw-mkiso-", dir="/tmp"))
    os.chmod(base, 0o755)  # nobody must reach the tree
    try:
        secret_dir = base / "root-only"
        secret_dir.mkdir(mode=0o700)
        secret = secret_dir / "data.bin"
        secret.write_bytes(SECRET)
        os.chmod(secret, 0o600)
        tree = base / "tree"
        (tree / "sub").mkdir(parents=True)
        (tree / "data.bin").write_bytes(b"d" * SIZE)
        (tree / "sub" / "data.bin").write_bytes(b"s" * SIZE)
        (tree / "z-last.txt").write_text("after the swapped file\n")
        for p in (tree, tree / "sub", *tree.rglob("*")):
            os.chown(p, NOBODY, NOBODY)
        outdir = base / "out"
        outdir.mkdir()
        yield Scene(base, tree, outdir / "made.iso", secret_dir, secret)
    finally:
        shutil.rmtree(base, ignore_errors=True)


WINDOWS = pytest.mark.parametrize("hook", ["scan", "_write"], ids=["after-scan", "before-write"])


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    """The one line of the error (progress lines aside), with no traceback."""
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.strip().splitlines() if " ETA " not in x]
    assert len(lines) == 1, p.stderr
    return lines[0]


@WINDOWS
def test_the_swap_really_happens_between_scan_and_write(scene: Scene, hook: str) -> None:
    """The hook itself: a file made by nobody after the scan is not in the image."""
    p = scene.mkiso(f"echo late > {scene.tree}/late.txt", "--json", hook=hook)
    assert p.returncode == 0, p.stderr
    assert (scene.tree / "late.txt").stat().st_uid == NOBODY
    assert b"late" not in scene.out.read_bytes()


@WINDOWS
def test_a_file_swapped_for_a_link_to_a_root_only_file(scene: Scene, hook: str) -> None:
    swap = f"cd {scene.tree} && rm data.bin && ln -s {scene.secret} data.bin"
    p = scene.mkiso(swap, hook=hook)
    scene.no_secret_anywhere()
    assert p.returncode == 4, p.stderr
    line = one_line(p)
    assert f"{scene.tree / 'data.bin'}: changed since it was scanned" in line, line
    scene.nothing_left()


@WINDOWS
def test_a_folder_swapped_for_a_link_to_a_root_only_folder(scene: Scene, hook: str) -> None:
    swap = f"cd {scene.tree} && mv sub sub.old && ln -s {scene.secret_dir} sub"
    p = scene.mkiso(swap, hook=hook)
    scene.no_secret_anywhere()
    assert p.returncode == 4, p.stderr
    line = one_line(p)
    assert f"{scene.tree / 'sub' / 'data.bin'}: changed since it was scanned" in line, line
    scene.nothing_left()


@WINDOWS
def test_a_file_swapped_for_a_fifo_does_not_hang(scene: Scene, hook: str) -> None:
    swap = f"cd {scene.tree} && rm data.bin && mkfifo data.bin"
    try:
        p = scene.mkiso(swap, hook=hook, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("mkiso hung on a FIFO swapped in after the scan")
    assert p.returncode == 4, p.stderr
    line = one_line(p)
    assert f"{scene.tree / 'data.bin'}: changed since it was scanned" in line, line
    scene.nothing_left()


@pytest.mark.parametrize(
    ("swap", "now"),
    [("truncate -s 100 data.bin", 100), ("truncate -s 0 data.bin", 0),
     ("head -c 5000 /dev/zero >> data.bin", SIZE + 5000)],
    ids=["shrunk", "emptied", "grown"],
)  # fmt: skip
@WINDOWS
def test_a_file_whose_size_changes_fails_naming_it(
    scene: Scene, swap: str, now: int, hook: str
) -> None:
    p = scene.mkiso(f"cd {scene.tree} && {swap}", hook=hook)
    assert p.returncode == 1, p.stderr
    line = one_line(p)
    assert f"{scene.tree / 'data.bin'}: its size changed" in line, line
    assert f"({SIZE} bytes when scanned, now {now})" in line, line
    scene.nothing_left()


@WINDOWS
def test_a_file_rewritten_in_place_fails_naming_it(scene: Scene, hook: str) -> None:
    """Same size, new bytes (and a new modification time): not silently mixed."""
    swap = f"cd {scene.tree} && head -c {SIZE} /dev/zero | dd of=data.bin conv=notrunc status=none"
    p = scene.mkiso(swap, hook=hook)
    assert p.returncode == 1, p.stderr
    assert f"{scene.tree / 'data.bin'}: modified since it was scanned" in one_line(p)
    scene.nothing_left()


# ---- pseudo files ------------------------------------------------------------------------


@pytest.fixture
def bind_mounts() -> Iterator[list[Path]]:
    mounted: list[Path] = []
    yield mounted
    for m in reversed(mounted):
        subprocess.run(["umount", str(m)], check=False)


def bind(src: str, dst: Path, mounted: list[Path]) -> None:
    dst.write_bytes(b"")
    subprocess.run(["mount", "--bind", src, str(dst)], check=True)
    mounted.append(dst)


def test_a_proc_file_of_size_zero_is_not_stored_empty(
    scene: Scene, bind_mounts: list[Path]
) -> None:
    """/proc/version says size 0 and reads a line: mkiso stops and names it (exit 1)."""
    bind("/proc/version", scene.tree / "version", bind_mounts)
    p = scene.mkiso("true")
    assert p.returncode == 1, p.stderr
    line = one_line(p)
    assert f"{scene.tree / 'version'}: reads more than its size" in line, line
    scene.nothing_left()


SYSFS = "/sys/kernel/mm/transparent_hugepage/enabled"  # size 4096, a line of text


@pytest.mark.skipif(not os.path.exists(SYSFS), reason=f"no {SYSFS}")
def test_a_sysfs_file_shorter_than_its_size_is_not_padded(
    scene: Scene, bind_mounts: list[Path]
) -> None:
    bind(SYSFS, scene.tree / "enabled", bind_mounts)
    p = scene.mkiso("true")
    assert p.returncode == 1, p.stderr
    line = one_line(p)
    assert f"{scene.tree / 'enabled'}: reads " in line, line
    assert "bytes, not the 4096 its size says" in line, line
    scene.nothing_left()

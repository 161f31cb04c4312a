"""One rule for the paths usbwriter writes to (backup -o, mkiso -o, --log-file):

exit 2 when the path is the wrong kind of thing (a directory where a file is wanted, a
FIFO, a socket, a device node such as /dev/null, a trailing slash on a file's name, a
missing folder, permission denied); exit 4 when it is refused for safety (a symbolic
link, which is never followed; an existing file without --overwrite; under /dev, /proc
or /sys; on the drive being read). Each case as a script meets it, one line on stderr.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file
from tests.helpers.users import as_nobody

pytestmark = ROOT_ONLY


def usbwriter(
    *args: str, nobody: bool = False, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] if nobody else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "usbwriter", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
    )


def one_line(p: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.startswith("usbwriter: ")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.fixture
def place(tmp_path: Path) -> Path:
    """A folder others can enter (nobody runs in it too), with things in the way."""
    base = tmp_path / "out"
    base.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(base, 0o755)
    (base / "dir").mkdir()
    os.mkfifo(base / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(base / "sock"))
    sock.close()
    (base / "file").write_text("precious")
    (base / "link").symlink_to(base / "elsewhere")
    (base / "link-to-file").symlink_to(base / "file")
    (base / "closed").mkdir(mode=0o700)  # nobody may not write here
    return base


@pytest.fixture
def under_dev() -> Iterator[str]:
    """A name under /dev that does not exist (a mistyped drive name)."""
    name = f"/dev/usbwriter-test-{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        if os.path.lexists(name):
            os.unlink(name)


#: (the output under `place`, or an absolute path; exit code; words of the message)
CASES: list[tuple[str, int, str]] = [
    ("dir", 2, "is a directory"),
    ("fifo", 2, "is a FIFO"),
    ("sock", 2, "is a socket"),
    ("/dev/null", 2, "is a character device"),
    ("new.img/", 2, "ends with a slash"),
    ("file/", 2, "ends with a slash"),
    ("missing/new.img", 2, "does not exist"),
    ("file/new.img", 2, "not a folder"),
    ("link", 4, "is a symbolic link, which is never followed"),
    ("link-to-file", 4, "is a symbolic link, which is never followed"),
    ("file", 4, "exists; pass --overwrite to replace it"),
    ("/proc/usbwriter-test.img", 4, "is under /proc"),
    ("/sys/usbwriter-test.img", 4, "is under /sys"),
]
IDS = [c[0] for c in CASES]


def _path(place: Path, name: str) -> str:
    if name.startswith("/"):
        return name
    return f"{place}/{name}"  # (a Path would drop a trailing slash)


def _untouched(place: Path) -> None:
    assert (place / "file").read_text() == "precious"
    assert stat.S_ISFIFO(os.lstat(place / "fifo").st_mode)
    assert not (place / "elsewhere").exists()
    assert os.listdir(place / "dir") == []
    assert not any(n.startswith(".") for n in os.listdir(place)), os.listdir(place)


@pytest.fixture
def small_drive(loop: LoopFactory, tmp_path: Path) -> str:
    return loop(0, backing=random_file(tmp_path / "drive.img", 2 * MiB, seed=5))


@pytest.mark.parametrize(("name", "code", "words"), CASES, ids=IDS)
def test_backup_output(small_drive: str, place: Path, name: str, code: int, words: str) -> None:
    p = usbwriter("backup", small_drive, "-o", _path(place, name))
    assert p.returncode == code, p.stderr
    assert words in one_line(p)
    _untouched(place)


def test_backup_output_under_dev(small_drive: str, under_dev: str) -> None:
    p = usbwriter("backup", small_drive, "-o", under_dev)
    assert p.returncode == 4, p.stderr
    assert "is under /dev" in one_line(p)
    assert not os.path.lexists(under_dev)


def test_backup_output_a_drive_is_the_wrong_kind(small_drive: str, loop: LoopFactory) -> None:
    other = loop(4 * MiB)
    p = usbwriter("backup", small_drive, "-o", other, "--overwrite")
    assert p.returncode == 2, p.stderr
    assert "is a block device" in one_line(p)


def test_backup_output_permission_denied(small_drive: str, place: Path) -> None:
    """As nobody, in a folder only root may write: found in the plan, before the drive
    is opened (which nobody may not do either)."""
    p = usbwriter("backup", small_drive, "-o", str(place / "closed" / "x.img"), nobody=True)
    assert p.returncode == 2, p.stderr
    assert "permission denied" in one_line(p)


def test_backup_sparse_of_a_compressed_output_is_refused_first(
    small_drive: str, place: Path
) -> None:
    p = usbwriter("backup", small_drive, "-o", str(place / "x.img.zst"), "--sparse")
    assert p.returncode == 2 and "--sparse" in one_line(p)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "tree"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    return src


@pytest.mark.parametrize(("name", "code", "words"), CASES, ids=IDS)
def test_mkiso_output(tree: Path, place: Path, name: str, code: int, words: str) -> None:
    p = usbwriter("mkiso", str(tree), "-o", _path(place, name))
    assert p.returncode == code, p.stderr
    assert words in one_line(p)
    _untouched(place)


def test_mkiso_output_under_dev(tree: Path, under_dev: str) -> None:
    p = usbwriter("mkiso", str(tree), "-o", under_dev)
    assert p.returncode == 4, p.stderr
    assert "is under /dev" in one_line(p)
    assert not os.path.lexists(under_dev)


def test_mkiso_output_permission_denied(tree: Path, place: Path) -> None:
    os.chmod(tree.parent, 0o755)
    p = usbwriter("mkiso", str(tree), "-o", str(place / "closed" / "x.iso"), nobody=True)
    assert p.returncode == 2, p.stderr
    assert "permission denied" in one_line(p)


LOG_CASES = [c for c in CASES if c[0] != "file"]  # a log is appended to


@pytest.mark.parametrize(("name", "code", "words"), LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_log_file(place: Path, name: str, code: int, words: str) -> None:
    """`completion` needs nothing: only the log file is in question. A FIFO with no
    reader must not block the open (the test's timeout would fire)."""
    p = usbwriter("completion", "bash", "--log-file", _path(place, name), timeout=20)
    assert p.returncode == code, p.stderr
    assert words in one_line(p)
    _untouched(place)


def test_log_file_fifo_with_a_reader_is_refused_too(place: Path) -> None:
    reader = os.open(place / "fifo", os.O_RDONLY | os.O_NONBLOCK)
    try:
        p = usbwriter("completion", "bash", "--log-file", str(place / "fifo"), timeout=20)
    finally:
        os.close(reader)
    assert p.returncode == 2 and "is a FIFO" in one_line(p)


def test_log_file_planted_symlink_is_not_followed(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Another user plants /tmp-like/usbwriter.log -> a file root owns: root's log must
    not land there (nor create the link's target)."""
    sticky = Path(tempfile.mkdtemp(prefix="usbw-sticky-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(sticky, ignore_errors=True))
    os.chmod(sticky, 0o1777)  # as /tmp: anyone may plant a name in it
    victim = tmp_path / "victim.conf"
    victim.write_text("root's\n")
    missing = tmp_path / "created-by-root"
    log = sticky / "usbwriter.log"
    log2 = sticky / "usbwriter2.log"

    def plant() -> None:
        os.symlink(victim, log)
        os.symlink(missing, log2)

    as_nobody(plant)
    for path in (log, log2):
        p = usbwriter("completion", "bash", "--log-file", str(path), "-v", timeout=20)
        assert p.returncode == 4, p.stderr
        assert "is a symbolic link, which is never followed" in one_line(p)
    assert victim.read_text() == "root's\n"
    assert not missing.exists()


def test_log_file_under_dev_and_a_regular_file_appended(place: Path, under_dev: str) -> None:
    p = usbwriter("completion", "bash", "--log-file", under_dev, timeout=20)
    assert p.returncode == 4 and "is under /dev" in one_line(p)
    assert not os.path.lexists(under_dev)
    log = place / "new.log"
    for _ in range(2):
        p = usbwriter("completion", "bash", "--log-file", str(log), timeout=20)
        assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    p = usbwriter("completion", "bash", "--log-file", str(place / "file"), timeout=20)
    assert p.returncode == 0, p.stderr
    assert (place / "file").read_text().startswith("precious")

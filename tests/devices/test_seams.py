"""Targets that are not what they seem, on real loop devices and files: two loop devices
over one backing file, a file target reached through another user's symbolic link, a
mistyped device name that would make a file in /dev."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file, run
from tests.devices.test_cli import one_line_error, usbwriter

pytestmark = ROOT_ONLY


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_twin_of_a_mounted_loop_is_refused(
    loop: LoopFactory, tmp_path: Path, cleanup: list[list[str]]
) -> None:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(32 * MiB)
    run(["mkfs.ext4", "-q", "-F", str(backing)])
    twin_b, twin_c = loop(0, backing=backing), loop(0, backing=backing)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", twin_c, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    (mnt / "kept.txt").write_text("still here\n")
    run(["sync"])
    before = digest(backing)
    image = random_file(tmp_path / "image.img", 2 * MiB)
    p = usbwriter("--image", str(image), "--device", twin_b, "--yes", "--force", "--unmount")
    assert p.returncode == 4, p.stderr
    line = one_line_error(p.stderr)
    assert f"shares its backing file with {twin_c}" in line and str(mnt) in line
    assert digest(backing) == before
    assert (mnt / "kept.txt").read_text() == "still here\n"
    # the listing does not offer it either, and says why
    listed = json.loads(usbwriter("list", "--all", "--json").stdout)
    entry = next(d for d in listed if d["path"] == twin_b)
    assert not entry["eligible"] and any("backing file" in r for r in entry["reasons"])


def test_twin_loops_given_as_two_drives_are_the_same_drive(
    loop: LoopFactory, tmp_path: Path
) -> None:
    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(16 * MiB)
    twin_b, twin_c = loop(0, backing=backing), loop(0, backing=backing)
    image = random_file(tmp_path / "image.img", 2 * MiB)
    before = digest(backing)
    p = usbwriter("--image", str(image), "--device", twin_b, "--device", twin_c, "--yes", "--force")
    assert p.returncode == 2, p.stderr
    assert "are the same drive" in one_line_error(p.stderr)
    assert digest(backing) == before


def test_twin_cannot_be_mounted_while_the_other_is_written(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """The drive is held with O_EXCL, and so is every other loop device over its file:
    a mount of the twin (an automounter, a user) is turned away until the end."""
    from tests.helpers.throttle import blkio_group, enter

    backing = tmp_path / "disk.img"
    with open(backing, "wb") as f:
        f.truncate(32 * MiB)
    run(["mkfs.ext4", "-q", "-F", str(backing)])
    twin_b, twin_c = loop(0, backing=backing), loop(0, backing=backing)
    image = random_file(tmp_path / "image.img", 16 * MiB)
    argv = [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", twin_b]
    with blkio_group(twin_b, 4 * MiB, 64 * MiB) as group:
        proc = subprocess.Popen(
            [*argv, "--yes", "--force"],
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: enter(group),
        )
        try:
            assert wait_open(proc.pid, twin_b), "the write did not start"
            # (held once the drive's identity is checked: a claim before that is a
            # refusal of the write, tested in test_twin_of_a_mounted_loop_is_refused)
            assert wait_open(proc.pid, twin_c), "the twin was not held"
            try:  # what mount, mkfs and automounters do: claim the device exclusively
                fd = os.open(twin_c, os.O_RDONLY | os.O_EXCL)
            except OSError as e:
                assert e.errno == errno.EBUSY
            else:
                os.close(fd)
                pytest.fail(f"{twin_c} could be claimed while {twin_b} was written")
            assert proc.poll() is None, "the write ended before the twin was tried"
        finally:
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def wait_open(pid: int, dev: str, timeout: float = 20) -> bool:
    """Wait until process PID holds DEV open."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            return False
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == dev:
                    return True
            except OSError:
                continue
        time.sleep(0.05)
    return False


def as_nobody(*argv: str) -> None:
    subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv], check=True
    )


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder that belongs to another user (nobody), as a user's Downloads does: the
    kernel's protected_symlinks rule (sticky world-writable folders) does not apply."""
    import pwd
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="usbwriter-shared-", dir="/tmp"))
    os.chmod(top, 0o755)
    folder = top / "nobody"
    folder.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    try:
        yield folder
    finally:
        shutil.rmtree(top)


def test_to_file_through_a_planted_link_is_refused(tmp_path: Path, shared: Path) -> None:
    secret = tmp_path / "root-only.conf"
    secret.write_text("root's\n")
    os.chmod(secret, 0o600)
    link = shared / "vm.img"
    as_nobody("ln", "-s", str(secret), str(link))
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", str(link), "--to-file", "--yes", "--force")
    assert p.returncode == 4, p.stderr
    assert "symbolic link" in one_line_error(p.stderr)
    assert secret.read_text() == "root's\n"
    # a dangling one (to a file that does not exist yet) is refused as well
    link.unlink()
    as_nobody("ln", "-s", str(tmp_path / "new.img"), str(link))
    p = usbwriter("--image", str(image), "--device", str(link), "--to-file", "--yes", "--force")
    assert p.returncode == 4, p.stderr
    assert not (tmp_path / "new.img").exists()


@pytest.mark.parametrize("where", ["/dev/sdzz9", "/proc/usbwriter-test", "/sys/usbwriter-test"])
def test_to_file_never_makes_a_file_under_dev_proc_or_sys(tmp_path: Path, where: str) -> None:
    image = random_file(tmp_path / "image.img", MiB)
    p = usbwriter("--image", str(image), "--device", where, "--to-file", "--yes", "--force")
    assert p.returncode == 4, p.stderr
    assert where in one_line_error(p.stderr)
    assert not os.path.lexists(where)


def test_to_file_into_a_new_file_still_works(tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.img", MiB)
    out = tmp_path / "vm.img"
    p = usbwriter("--image", str(image), "--device", str(out), "--to-file", "--yes", "--force")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == image.read_bytes()

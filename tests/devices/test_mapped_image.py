"""An uncompressed image is written from, and compared with, its mapped pages under a
read lease. The attack on a mapping is a file cut short under it (a touch past the new
end kills the process with SIGBUS): here the image is truncated by another program while
usbwriter is stopped (SIGSTOP) in the middle of the write, and of the read-back.

The truncate is held by the lease while usbwriter is stopped (which shows the mapping
was in use), goes on within moments of SIGCONT (the lease given back once the chunks in
hand are done), and usbwriter ends with one line naming the image, its head wiped: never
a "Bus error".
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file, read_dev
from tests.devices.test_hangup import USBWRITER, Command, slow, the_error
from tests.helpers.throttle import CGROUP_ROOT

pytestmark = [
    ROOT_ONLY,
    pytest.mark.skipif(not CGROUP_ROOT.is_dir(), reason="no cgroup v1 blkio controller"),
]


class Truncation(threading.Thread):
    """os.truncate(PATH, 0) on a thread: how long it took, once done."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.seconds = path, -1.0

    def run(self) -> None:
        start = time.monotonic()
        os.truncate(self.path, MiB)
        self.seconds = time.monotonic() - start


def _truncate_while_stopped(cmd: Command, image: Path) -> Truncation:
    """Stop usbwriter, truncate the image from another thread: the truncate must wait
    (the lease); continue usbwriter: the truncate must finish within two seconds."""
    cmd.proc.send_signal(signal.SIGSTOP)
    cut = Truncation(image)
    cut.start()
    time.sleep(0.5)
    held = cut.is_alive()
    cmd.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()
    cut.join(timeout=10)
    assert held, "the truncate did not wait: the image was not under a lease"
    assert not cut.is_alive() and time.monotonic() - resumed < 2.0
    return cut


@pytest.mark.parametrize("phase", ["write", "verify"])
def test_image_cut_short_under_the_mapping_ends_in_one_line(
    loop: LoopFactory, tmp_path: Path, phase: str
) -> None:
    image = random_file(tmp_path / "image.img", 64 * MiB, seed=5)
    dev = loop(80 * MiB)
    argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force", "--json",
            "--no-probe"]  # fmt: skip
    rate = {"write": 16 * MiB} if phase == "write" else {"read": 16 * MiB}
    with slow(dev, **rate) as group:
        cmd = Command(argv, group, terminal=False)
        cmd.wait_for(phase, 16 * MiB)
        _truncate_while_stopped(cmd, image)
        ended = cmd.end()
    assert ended.returncode == 1, (ended.returncode, ended.stderr)  # not -SIGBUS
    error = the_error(ended)
    assert str(image) in error["message"] and "changed while" in error["message"], error
    assert "first MiB was wiped" in error["message"], error
    assert "Traceback" not in ended.stderr and "Bus error" not in ended.stderr
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_image_open_for_writing_elsewhere_is_read_without_a_mapping(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """No lease is granted while another program has the file open for writing: the
    image is read with pread, and the write is verified as ever."""
    image = random_file(tmp_path / "image.img", 24 * MiB, seed=6)
    dev = loop(32 * MiB)
    with open(image, "r+b"):
        argv = [*USBWRITER, "--image", str(image), "--device", dev, "--yes", "--force",
                "--json"]  # fmt: skip
        with slow(dev) as group:
            ended = Command(argv, group, terminal=False).end(timeout=60)
    assert ended.returncode == 0, ended.stderr
    assert read_dev(dev, 0, 24 * MiB) == image.read_bytes()

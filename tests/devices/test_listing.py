"""Listing real disks: the root disk, real loop devices, partitions, mounts, hot-plug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import IS_ROOT, run
from usbwriter.devices import (
    DiskEvent,
    Watcher,
    disk_from_path,
    format_disk_table,
    list_disks,
    read_snapshot,
)
from usbwriter.errors import BadInput

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.root

MiB = 1024 * 1024


def partitioned(loop: Callable[..., str], tmp_path: Path, name: str = "parted.img") -> str:
    """A loop device over a GPT image with two partitions, nodes added with partx."""
    img = tmp_path / name
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    run(["sfdisk", "-q", str(img)], input="label: gpt\n\nsize=16M, name=data\nname=rest\n")
    dev = loop(0, backing=img)
    run(["partx", "-a", dev])
    return dev


def by_path(path: str, include_all: bool = True) -> dict[str, object]:
    for d in list_disks(include_all):
        if d.path == path:
            return d.to_dict()
    raise AssertionError(f"{path} not listed")


def test_root_disk_is_listed_as_system_and_not_eligible() -> None:
    if not os.path.exists("/sys/block/vda"):
        pytest.skip("no /dev/vda on this machine")
    vda = disk_from_path("/dev/vda")
    assert vda.is_system and not vda.eligible
    assert "system disk: holds /" in vda.reasons
    assert by_path("/dev/vda")["eligible"] is False
    assert all(d.path != "/dev/vda" for d in list_disks())  # not a user drive


def test_every_listed_disk_has_reasons_when_not_eligible() -> None:
    for d in list_disks(include_all=True):
        assert d.eligible == (not d.reasons)
        assert not d.name.startswith(("zram", "ram", "dm-"))
        assert not (d.bus == "loop" and d.size == 0)
    system = read_snapshot().system_disks
    for d in list_disks(include_all=True):
        if d.name in system:
            assert not d.eligible


def test_loop_device_is_listed_with_all_and_eligible(loop: Callable[..., str]) -> None:
    dev = loop(32 * MiB)
    d = by_path(dev)
    assert d["bus"] == "loop" and d["eligible"] is True and d["reasons"] == []
    assert d["size"] == 32 * MiB
    assert str(d["backing_file"]).endswith(".img")
    assert d["removable"] is False
    assert all(x.path != dev for x in list_disks())  # not in the default view
    assert dev in format_disk_table(list_disks(include_all=True))


def test_read_only_loop_is_not_eligible(loop: Callable[..., str]) -> None:
    dev = loop(8 * MiB, read_only=True)
    d = by_path(dev)
    assert d["eligible"] is False and d["reasons"] == ["read-only"]


def test_detached_loops_are_not_listed() -> None:
    for d in list_disks(include_all=True):
        if d.bus == "loop":
            assert d.size > 0 and d.backing_file


def test_partitions_and_mounts_are_read(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = partitioned(loop, tmp_path)
    cleanup.append(["partx", "-d", dev])
    run(["mkfs.ext4", "-q", "-L", "DATA", f"{dev}p1"])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", f"{dev}p1", str(mnt)])
    cleanup.append(["umount", str(mnt)])
    d = disk_from_path(dev)
    assert [p.path for p in d.partitions] == [f"{dev}p1", f"{dev}p2"]
    p1 = d.partitions[0]
    assert p1.size == 16 * MiB and p1.number == 1
    assert p1.fstype == "ext4" and p1.mountpoints == (str(mnt),)
    assert d.eligible and d.mounted == ((f"{dev}p1", str(mnt)),)
    assert "ok: loop device over " in format_disk_table([d])
    assert format_disk_table([d]).endswith("; mounted (needs --unmount)")


def test_disk_from_path_resolves_symlinks_and_rejects_bad_paths(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = partitioned(loop, tmp_path)
    cleanup.append(["partx", "-d", dev])
    link = tmp_path / "usb-Some_Stick_123-0:0"
    link.symlink_to(dev)
    assert disk_from_path(str(link)).path == dev
    with pytest.raises(BadInput, match="no such device"):
        disk_from_path(str(tmp_path / "missing"))
    with pytest.raises(BadInput, match=f"partition; use the whole disk {dev}$"):
        disk_from_path(f"{dev}p1")
    with pytest.raises(BadInput, match="not a block device"):
        disk_from_path("/dev/null")


@pytest.mark.skipif(not IS_ROOT, reason="needs root to switch to an unprivileged user")
def test_listing_works_as_a_normal_user(loop: Callable[..., str]) -> None:
    dev = loop(8 * MiB)
    code = (
        "import json; from usbwriter.devices import list_disks;"
        "print(json.dumps([d.to_dict() for d in list_disks(True)]))"
    )
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "LC_ALL": "C"},
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    disks = {d["path"]: d for d in json.loads(proc.stdout)}
    assert dev in disks and disks[dev]["eligible"] is True
    # Without access to the loop node the backing file is stat'ed; here it sits in a
    # private temporary folder, so its inode stays unknown rather than failing.
    assert disks[dev]["backing_inode"] in (None, os.stat(disks[dev]["backing_file"]).st_ino)
    if os.path.exists("/sys/block/vda"):
        assert disks["/dev/vda"]["eligible"] is False


class EventLog:
    """Runs a Watcher in a thread and keeps the events for one device path."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.cancel = threading.Event()
        self.events: list[DiskEvent] = []
        self.lock = threading.Lock()
        watcher.start()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for ev in self.watcher.iter_events(self.cancel):
            with self.lock:
                self.events.append(ev)

    def wait_for(self, pred: Callable[[DiskEvent], bool], timeout: float = 5.0) -> DiskEvent:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                for i, ev in enumerate(self.events):
                    if pred(ev):
                        del self.events[: i + 1]
                        return ev
            time.sleep(0.05)
        raise AssertionError(f"no matching event in {timeout} s: {self.events}")

    def stop(self) -> float:
        start = time.monotonic()
        self.cancel.set()
        self.thread.join(5)
        assert not self.thread.is_alive()
        return time.monotonic() - start


def test_watcher_sees_loop_attach_detach_and_partitions(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    img = tmp_path / "hot.img"
    with open(img, "wb") as f:
        f.truncate(64 * MiB)
    run(["sfdisk", "-q", str(img)], input="label: gpt\n\nsize=16M\ntype=L\n")
    log = EventLog(Watcher(include_all=True))
    try:
        dev = loop(0, backing=img)
        cleanup.append(["partx", "-d", dev])
        ev = log.wait_for(lambda e: e.path == dev and e.disk is not None and e.disk.size > 0)
        assert ev.action == "change"  # loop attach is a change event
        assert ev.disk is not None and ev.disk.backing_file == str(img)

        run(["partx", "-a", dev])
        ev = log.wait_for(
            lambda e: e.path == dev and e.disk is not None and len(e.disk.partitions) == 2
        )
        assert ev.action == "change"
        run(["partx", "-d", dev])
        log.wait_for(lambda e: e.path == dev and e.disk is not None and not e.disk.partitions)

        loop.detach(dev)  # type: ignore[attr-defined]
        ev = log.wait_for(lambda e: e.path == dev and e.disk is None)
        assert ev.action == "change"
    finally:
        took = log.stop()
    assert took < 0.6


def test_default_watcher_reports_loops_as_not_listed(loop: Callable[..., str]) -> None:
    log = EventLog(Watcher())
    try:
        dev = loop(8 * MiB)
        ev = log.wait_for(lambda e: e.path == dev)
        assert ev.disk is None  # not a drive a user would flash
    finally:
        log.stop()

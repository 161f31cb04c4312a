"""check_target and identity pinning on real loop devices, mounts and the root disk."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LoopFactory, run
from usbwriter.devices import parse_mountinfo
from usbwriter.errors import BadInput, Refused
from usbwriter.safety import Identity, check_target

pytestmark = pytest.mark.root

MiB = 1024 * 1024


def sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def is_mounted(mountpoint: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(m.mountpoint == str(mountpoint) for m in parse_mountinfo(f.read()))


def test_root_disk_is_refused() -> None:
    if not os.path.exists("/dev/vda"):
        pytest.skip("no /dev/vda on this machine")
    with pytest.raises(Refused, match=r"^/dev/vda .*system disk: holds /") as e:
        check_target("/dev/vda", None)
    assert e.value.exit_code == 4
    # not even with unmount: nothing is unmounted, nothing is written
    with pytest.raises(Refused, match="system disk"):
        check_target("/dev/vda", None, unmount=True)


def test_missing_and_odd_paths(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such device") as e:
        check_target(str(tmp_path / "nope"), None)
    assert e.value.exit_code == 2
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "gone")
    with pytest.raises(BadInput, match="broken: cannot open"):
        check_target(str(broken), None)
    with pytest.raises(BadInput, match="not a block device or a regular file"):
        check_target("/dev/null", None)
    with pytest.raises(BadInput, match="not a block device or a regular file"):
        check_target(str(tmp_path), None)


def test_partition_node_is_refused_with_the_whole_disk_named(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    img = sparse(tmp_path / "p.img", 32 * MiB)
    run(["sfdisk", "-q", str(img)], input="label: dos\n\nsize=8M\n")
    dev = loop(0, backing=img)
    run(["partx", "-a", dev])
    cleanup.append(["partx", "-d", dev])
    with pytest.raises(Refused, match=f"{dev}p1: is a partition; write to the whole disk {dev}$"):
        check_target(f"{dev}p1", None)


def test_loop_is_accepted_and_pinned(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    image = sparse(tmp_path / "image.iso", MiB)
    ident = check_target(dev, str(image))
    assert (ident.path, ident.kind, ident.size) == (dev, "block", 16 * MiB)
    st = os.stat(dev)
    assert (ident.major, ident.minor) == (os.major(st.st_rdev), os.minor(st.st_rdev))
    name = os.path.basename(dev)
    assert ident.diskseq == int(Path(f"/sys/block/{name}/diskseq").read_text())
    backing = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
    assert ident.backing_file == backing
    assert ident.backing_inode == os.stat(backing).st_ino
    assert ident.unmounted == ()
    ident.recheck()  # nothing changed
    data = json.loads(json.dumps(ident.to_dict()))
    assert data["path"] == dev and data["diskseq"] == ident.diskseq


def test_symlinked_target_is_resolved_and_rechecked(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    a, b = loop(8 * MiB), loop(8 * MiB)
    link = tmp_path / "usb-Stick_1234-0:0"
    link.symlink_to(a)
    ident = check_target(str(link), None)
    assert ident.path == a and ident.requested == str(link)
    link.unlink()
    link.symlink_to(b)
    with pytest.raises(Refused, match=f"now points to {b}, not {a}"):
        ident.recheck()


def test_read_only_loop_is_refused(loop: Callable[..., str]) -> None:
    dev = loop(8 * MiB, read_only=True)
    with pytest.raises(Refused, match=f"^{dev} .*refused: read-only$"):
        check_target(dev, None)


def test_loop_over_the_image_itself_is_refused(loop: Callable[..., str], tmp_path: Path) -> None:
    image = sparse(tmp_path / "image.iso", 8 * MiB)
    dev = loop(0, backing=image)
    with pytest.raises(Refused, match="loop device over the image file itself"):
        check_target(dev, str(image))


def test_disk_holding_the_image_is_refused(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = loop(32 * MiB)
    run(["mkfs.ext4", "-q", dev])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    image = mnt / "image.iso"
    image.write_bytes(b"x" * 4096)
    with pytest.raises(Refused, match="holds the image file"):
        check_target(dev, str(image))
    with pytest.raises(Refused, match="holds the image file"):
        check_target(dev, str(image), unmount=True)
    assert is_mounted(mnt)  # refused before anything was unmounted


def test_mounted_partitions_refused_then_unmounted(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    img = sparse(tmp_path / "two.img", 64 * MiB)
    run(["sfdisk", "-q", str(img)], input="label: gpt\n\nsize=24M\nsize=24M\n")
    dev = loop(0, backing=img)
    run(["partx", "-a", dev])
    cleanup.append(["partx", "-d", dev])
    mounts = []
    for n in (1, 2):
        run(["mkfs.ext4", "-q", f"{dev}p{n}"])
        mnt = tmp_path / f"mnt {n}"  # a space: mountinfo escapes it
        mnt.mkdir()
        run(["mount", f"{dev}p{n}", str(mnt)])
        cleanup.append(["umount", str(mnt)])
        mounts.append(mnt)
    # a second mount nested inside the first: unmounted deepest first
    nested = mounts[0] / "nested"
    nested.mkdir()
    run(["mount", f"{dev}p2", str(nested)])
    cleanup.append(["umount", str(nested)])

    with pytest.raises(Refused) as e:
        check_target(dev, None)
    msg = str(e.value)
    assert msg.startswith(f"{dev}: mounted: ") and msg.endswith("pass --unmount")
    assert f"{dev}p1 on {mounts[0]}" in msg and f"{dev}p2 on {mounts[1]}" in msg
    assert "\n" not in msg
    assert all(is_mounted(m) for m in mounts)

    ident = check_target(dev, None, unmount=True)
    assert set(ident.unmounted) == {str(mounts[0]), str(mounts[1]), str(nested)}
    assert ident.unmounted.index(str(nested)) < ident.unmounted.index(str(mounts[0]))
    assert not any(is_mounted(m) for m in [*mounts, nested])
    ident.recheck()

    run(["mount", f"{dev}p1", str(mounts[0])])  # an automounter strikes in between
    with pytest.raises(Refused, match="mounted since it was chosen"):
        ident.recheck()


def test_busy_mount_cannot_be_unmounted(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = loop(16 * MiB)
    run(["mkfs.ext4", "-q", dev])
    mnt = tmp_path / "busy"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    with (
        open(mnt / "open-file", "w"),
        pytest.raises(Refused, match=f"^{mnt}: could not unmount: .*busy"),
    ):
        check_target(dev, None, unmount=True)


def test_swapped_backing_file_is_detected(loop: LoopFactory, tmp_path: Path) -> None:
    dev = loop(16 * MiB)
    ident = check_target(dev, None)
    other = sparse(tmp_path / "other.img", 16 * MiB)
    loop.detach(dev)
    # attach the other file to the very same node (another process may take it first)
    proc = subprocess.run(["losetup", dev, str(other)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"{dev} was taken by another process between detach and attach")
    loop.devices.append(dev)
    with pytest.raises(Refused) as e:
        ident.recheck()
    msg = str(e.value)
    assert msg.startswith(f"{dev}: not the device that was chosen: disk sequence ")
    assert f"-> {other}" in msg and "backing file inode" in msg
    assert msg.endswith("choose the device again")


def test_resized_loop_is_detected(loop: LoopFactory, tmp_path: Path) -> None:
    img = sparse(tmp_path / "grow.img", 16 * MiB)
    dev = loop(0, backing=img)
    ident = check_target(dev, None)
    os.truncate(img, 32 * MiB)
    run(["losetup", "-c", dev])
    with pytest.raises(Refused, match=f"size {16 * MiB} -> {32 * MiB}"):
        ident.recheck()


def test_detached_target_is_refused_on_recheck(loop: LoopFactory) -> None:
    dev = loop(16 * MiB)
    ident = check_target(dev, None)
    loop.detach(dev)
    with pytest.raises(Refused, match=r"choose the device again|no medium"):
        ident.recheck()


def test_regular_file_target(tmp_path: Path) -> None:
    target = sparse(tmp_path / "vm-disk.img", 64 * MiB)
    image = sparse(tmp_path / "image.iso", MiB)
    ident = check_target(str(target), str(image))
    st = os.stat(target)
    assert ident.kind == "file" and ident.size == 64 * MiB
    assert (ident.file_device, ident.file_inode) == (st.st_dev, st.st_ino)
    ident.recheck()
    assert json.loads(json.dumps(ident.to_dict()))["kind"] == "file"

    with pytest.raises(Refused, match="is the image file itself"):
        check_target(str(image), str(image))

    sparse(tmp_path / "new.img", 64 * MiB).rename(target)  # same name, another file
    with pytest.raises(Refused, match="not the file that was chosen"):
        ident.recheck()


def test_file_backing_a_mounted_loop_is_refused(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    img = sparse(tmp_path / "fs.img", 16 * MiB)
    run(["mkfs.ext4", "-q", str(img)])
    dev = loop(0, backing=img)
    mnt = tmp_path / "m"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    with pytest.raises(Refused, match=f"backs {dev}, which is in use"):
        check_target(str(img), None)


def test_identity_is_frozen() -> None:
    ident = Identity("/x", 1, 2, 3, 4, "s", None)
    with pytest.raises(AttributeError):
        ident.size = 5  # type: ignore[misc]

"""Writing and verifying through the job (plan, then run) on real loop devices."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.conftest import PATTERN, ROOT_ONLY, MiB, fill, random_file, read_dev, run
from usbwriter import jobs
from usbwriter.errors import BadInput, Cancelled, Changed, DeviceFault, Refused
from usbwriter.jobs import Plan, Request
from usbwriter.progress import Progress

pytestmark = ROOT_ONLY


def file_blake3(path: Path) -> str:
    return str(blake3.blake3(path.read_bytes()).hexdigest())


def plan(image: Path | str, device: Path | str, **kw: Any) -> Plan:
    """A plan with --force: these images are random bytes that boot nowhere."""
    kw.setdefault("force", True)
    return jobs.plan(Request(str(image), str(device), **kw))


def flip(dev: str, offset: int) -> None:
    with open(dev, "r+b", buffering=0) as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x01]))
        os.fsync(f.fileno())


@pytest.mark.parametrize(
    "size",
    [512, 1000, 4096, MiB - 1, MiB, MiB + 1, 5 * MiB + 777, 8 * MiB, 9 * MiB + 4096 + 3],
)
def test_write_and_verify_sizes(loop: Callable[..., str], tmp_path: Path, size: int) -> None:
    dev_size = 16 * MiB
    dev = loop(dev_size)
    fill(dev, dev_size)
    image = random_file(tmp_path / "image.bin", size, seed=size)
    seen: list[Progress] = []

    p = plan(image, dev)
    assert p.ready
    receipt = jobs.run(p, progress=seen.append)

    written = receipt.write
    assert written is not None
    assert written.image_size == receipt.image_size == size
    assert written.blake3 == file_blake3(image)  # independent hash of the whole file
    assert written.direct_io
    assert read_dev(dev, 0, size) == image.read_bytes()
    # Bytes after the image up to the last MiB are untouched; the last MiB is zeroed.
    after = max(size, MiB)
    assert read_dev(dev, after, 4096) == PATTERN * 4096
    assert read_dev(dev, dev_size - MiB, MiB) == bytes(MiB)
    if size < MiB:
        assert read_dev(dev, size, MiB - size) == bytes(MiB - size)
    phases = [x.phase for x in seen]
    assert "sync" in phases
    sync = phases.index("sync")
    assert set(phases[:sync]) == {"write"} and set(phases[sync + 1 :]) == {"verify"}
    assert max(x.done for x in seen if x.phase == "write") == size
    assert max(x.done for x in seen if x.phase == "verify") == size

    checked = receipt.verify
    assert checked is not None
    assert receipt.verified and receipt.mismatch_offset is None
    assert checked.page_cache_bypassed
    assert checked.device_blake3 == written.blake3
    assert receipt.wiped_first_mib is None

    again = jobs.verify_only(str(image), dev)
    assert again.verified and again.write is None
    assert again.image_blake3 == written.blake3


@pytest.mark.parametrize("offset", [0, 511, MiB + 5, 6 * MiB - 1])
def test_flipped_byte_is_found_at_its_offset(
    loop: Callable[..., str], tmp_path: Path, offset: int
) -> None:
    size = 6 * MiB
    dev = loop(8 * MiB)
    image = random_file(tmp_path / "image.bin", size)
    receipt = jobs.run(plan(image, dev))
    assert receipt.verified and receipt.write is not None
    flip(dev, offset)

    # verify only: the image is read beside the device and compared
    by_compare = jobs.verify_only(str(image), dev)
    assert not by_compare.verified and by_compare.mismatch_offset == offset
    assert by_compare.verify is not None
    assert by_compare.verify.expected_blake3 == receipt.write.blake3

    # in the run: the read-back hash differs, the image locates the byte, the first MiB
    # is wiped so the stick does not look bootable
    def flip_before_read_back(x: Progress) -> None:
        if x.phase == "sync":  # every byte is written, nothing read back yet
            flip(dev, offset)

    bad = jobs.run(plan(image, dev), progress=flip_before_read_back)
    assert not bad.verified and bad.mismatch_offset == offset
    assert bad.verify is not None and bad.write is not None
    assert bad.verify.expected_blake3 == bad.write.blake3 == receipt.write.blake3
    assert bad.verify.device_blake3 != bad.write.blake3
    assert bad.wiped_first_mib is True
    assert read_dev(dev, 0, MiB) == bytes(MiB)
    assert f"at offset {offset}" in bad.to_text()
    assert bad.to_json()["mismatch_offset"] == offset


def test_image_larger_than_device_is_refused_untouched(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    dev = loop(4 * MiB)
    fill(dev, 4 * MiB)
    image = random_file(tmp_path / "big.bin", 4 * MiB + 512)
    p = plan(image, dev)
    assert [b.exit_code for b in p.blockers] == [4]
    with pytest.raises(Refused, match="does not fit"):
        jobs.run(p)
    assert read_dev(dev, 0, 4 * MiB) == PATTERN * (4 * MiB)


def test_mounted_device_is_refused(mounted_ext4: tuple[str, Path], tmp_path: Path) -> None:
    dev, mnt = mounted_ext4
    image = random_file(tmp_path / "image.bin", MiB)
    before = read_dev(dev, 0, 2 * MiB)
    p = plan(image, dev)
    assert [b.exit_code for b in p.blockers] == [4]
    with pytest.raises(Refused, match=f"mounted: {dev} on {mnt}; .*--unmount"):
        jobs.run(p)
    assert os.path.ismount(mnt)
    assert read_dev(dev, 0, 2 * MiB) == before


def test_device_mounted_after_the_plan_is_busy(
    loop: Callable[..., str], tmp_path: Path, cleanup: list[list[str]]
) -> None:
    dev = loop(32 * MiB)
    run(["mkfs.ext4", "-q", dev])
    image = random_file(tmp_path / "image.bin", MiB)
    p = plan(image, dev)
    assert p.ready
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", dev, str(mnt)])
    cleanup.append(["umount", str(mnt)])
    before = read_dev(dev, 0, 2 * MiB)
    with pytest.raises(Changed, match=f"mounted since it was checked: {dev} on {mnt}") as e:
        jobs.run(p)  # a fact the plan relied on changed: a face may ask again
    assert e.value.exit_code == 4 and e.value.code == "changed"
    assert read_dev(dev, 0, 2 * MiB) == before


def test_cancel_wipes_the_first_mib(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(64 * MiB)
    image = random_file(tmp_path / "image.bin", 48 * MiB)
    cancel = threading.Event()

    def stop_midway(x: Progress) -> None:
        if x.phase == "write" and x.done < x.total:
            cancel.set()

    results: list[object] = []
    with pytest.raises(Cancelled, match="first MiB was wiped") as e:
        jobs.run(plan(image, dev), progress=stop_midway, cancel=cancel, on_result=results.append)
    assert e.value.exit_code == 130
    assert results == []
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_cancel_before_the_run_changes_nothing(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(8 * MiB)
    fill(dev, 8 * MiB)
    image = random_file(tmp_path / "image.bin", MiB)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="before anything was changed"):
        jobs.run(plan(image, dev), cancel=cancel)
    assert read_dev(dev, 0, 8 * MiB) == PATTERN * (8 * MiB)


def test_io_error_names_the_offset_and_device(failing_loop: str, tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.bin", 32 * MiB)
    with pytest.raises(DeviceFault) as info:
        jobs.run(plan(image, failing_loop))
    message = str(info.value)
    assert failing_loop in message
    assert "error while writing bytes" in message
    assert "No space left on device" in message
    assert "\n" not in message
    assert info.value.exit_code == 1
    assert info.value.errno == errno.ENOSPC
    assert info.value.offset is not None and info.value.offset >= MiB
    assert info.value.path == failing_loop


def test_regular_file_target(tmp_path: Path, cleanup: list[list[str]]) -> None:
    """A VM disk image (a regular file) is a target with --to-file; here on a tmpfs,
    which has no O_DIRECT (the read-back then says the cache was not bypassed)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=16M", "none", str(mnt)])
    cleanup.append(["umount", str(mnt)])
    shm = mnt / "vm.img"
    with open(shm, "wb") as f:
        f.truncate(8 * MiB)
    image = random_file(tmp_path / "image.bin", 3 * MiB + 100)
    with pytest.raises(Refused, match="add --to-file"):
        jobs.run(plan(image, shm))
    assert shm.read_bytes() == bytes(8 * MiB)

    receipt = jobs.run(plan(image, shm, to_file=True))
    assert shm.read_bytes()[: 3 * MiB + 100] == image.read_bytes()
    assert receipt.verified and receipt.write is not None and receipt.verify is not None
    assert receipt.verify.page_cache_bypassed == receipt.write.direct_io
    assert jobs.verify_only(str(image), str(shm)).verified


def test_to_file_creates_a_missing_file(tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.bin", MiB + 3)
    target = tmp_path / "new.img"
    with pytest.raises(BadInput, match=r"no such device.*--to-file"):
        jobs.run(plan(image, target))
    assert not target.exists()
    receipt = jobs.run(plan(image, target, to_file=True))
    assert receipt.verified
    assert target.read_bytes() == image.read_bytes()


def test_missing_image_and_device_are_bad_input(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(4 * MiB)
    fill(dev, 4 * MiB)
    p = plan(tmp_path / "nope.iso", dev)
    assert [b.exit_code for b in p.blockers] == [2]
    with pytest.raises(BadInput, match="no such file") as e:
        jobs.run(p)
    assert e.value.exit_code == 2
    image = random_file(tmp_path / "image.bin", 4096)
    p = plan(image, "/dev/does-not-exist")
    assert [b.exit_code for b in p.blockers] == [2]
    with pytest.raises(BadInput, match="no such device") as e:
        jobs.run(p)
    assert e.value.exit_code == 2
    assert read_dev(dev, 0, 4 * MiB) == PATTERN * (4 * MiB)


@pytest.mark.parametrize("size", [1000, MiB + 512, 5 * MiB + 777])
def test_a_drive_with_4096_byte_blocks(loop: Callable[..., str], tmp_path: Path, size: int) -> None:
    """A 4Kn drive (4 KiB logical blocks, as some USB NVMe enclosures report): O_DIRECT
    I/O comes in 4 KiB multiples, yet an image ending mid-block is written, read back
    and compared to its last byte, plainly and by --delta."""
    dev = loop(16 * MiB, sector_size=4096)
    assert run(["blockdev", "--getss", dev]).stdout.strip() == "4096"
    fill(dev, 16 * MiB)
    image = random_file(tmp_path / "image.bin", size, seed=size + 1)
    receipt = jobs.run(plan(image, dev))
    assert receipt.verified and receipt.write is not None and receipt.write.direct_io
    assert read_dev(dev, 0, size) == image.read_bytes()

    flip(dev, size - 1)
    found = jobs.verify_only(str(image), dev)
    assert not found.verified and found.mismatch_offset == size - 1

    again = jobs.run(plan(image, dev, delta=True))
    assert again.verified and again.coverage is not None
    assert again.coverage.written > 0  # the block with the flipped byte
    assert read_dev(dev, 0, size) == image.read_bytes()

"""The write engine and the verifier on real loop devices."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from tests.conftest import PATTERN, ROOT_ONLY, MiB, fill, random_file, read_dev
from usbwriter.errors import BadInput, Cancelled, DeviceFault, Refused
from usbwriter.progress import Progress
from usbwriter.verify import verify_device
from usbwriter.writer import write_image

pytestmark = ROOT_ONLY


def file_blake3(path: Path) -> str:
    return str(blake3.blake3(path.read_bytes()).hexdigest())


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

    result = write_image(str(image), dev, progress=seen.append)

    assert result.image_size == size
    assert result.blake3 == file_blake3(image)  # independent hash of the whole file
    assert result.direct_io
    assert read_dev(dev, 0, size) == image.read_bytes()
    # Bytes after the image up to the last MiB are untouched; the last MiB is zeroed.
    after = max(size, MiB)
    assert read_dev(dev, after, 4096) == PATTERN * 4096
    assert read_dev(dev, dev_size - MiB, MiB) == bytes(MiB)
    if size < MiB:
        assert read_dev(dev, size, MiB - size) == bytes(MiB - size)
    assert seen and seen[-1].phase == "sync"
    assert max(p.done for p in seen if p.phase == "write") == size

    checked = verify_device(dev, size, result.blake3, image=str(image))
    assert checked.verified and checked.mismatch_offset is None
    assert checked.page_cache_bypassed
    assert checked.device_blake3 == result.blake3


@pytest.mark.parametrize("offset", [0, 511, MiB + 5, 6 * MiB - 1])
def test_flipped_byte_is_found_at_its_offset(
    loop: Callable[..., str], tmp_path: Path, offset: int
) -> None:
    size = 6 * MiB
    dev = loop(8 * MiB)
    image = random_file(tmp_path / "image.bin", size)
    result = write_image(str(image), dev)
    with open(dev, "r+b", buffering=0) as f:
        f.seek(offset)
        old = f.read(1)
        f.seek(offset)
        f.write(bytes([old[0] ^ 0x01]))
        os.fsync(f.fileno())

    by_hash = verify_device(dev, size, result.blake3, image=str(image))
    assert not by_hash.verified and by_hash.mismatch_offset == offset
    by_compare = verify_device(dev, size, image=str(image))
    assert not by_compare.verified and by_compare.mismatch_offset == offset
    assert by_compare.expected_blake3 == result.blake3


def test_image_larger_than_device_is_refused_untouched(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    dev = loop(4 * MiB)
    fill(dev, 4 * MiB)
    image = random_file(tmp_path / "big.bin", 4 * MiB + 512)
    with pytest.raises(Refused, match="does not fit"):
        write_image(str(image), dev)
    assert read_dev(dev, 0, 4 * MiB) == PATTERN * (4 * MiB)


def test_mounted_device_is_refused(mounted_ext4: tuple[str, Path], tmp_path: Path) -> None:
    dev, _ = mounted_ext4
    image = random_file(tmp_path / "image.bin", MiB)
    before = read_dev(dev, 0, 2 * MiB)
    with pytest.raises(Refused, match="busy"):
        write_image(str(image), dev)
    assert read_dev(dev, 0, 2 * MiB) == before


def test_cancel_wipes_the_first_mib(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(64 * MiB)
    image = random_file(tmp_path / "image.bin", 48 * MiB)
    cancel = threading.Event()

    def stop_midway(p: Progress) -> None:
        if p.phase == "write" and p.done < p.total:
            cancel.set()

    with pytest.raises(Cancelled, match="first MiB was wiped"):
        write_image(str(image), dev, progress=stop_midway, cancel=cancel)
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_io_error_names_the_offset_and_device(failing_loop: str, tmp_path: Path) -> None:
    image = random_file(tmp_path / "image.bin", 32 * MiB)
    with pytest.raises(DeviceFault) as info:
        write_image(str(image), failing_loop)
    message = str(info.value)
    assert failing_loop in message
    assert "error while writing bytes" in message
    assert "No space left on device" in message
    assert "\n" not in message


def test_regular_file_target(tmp_path: Path) -> None:
    """A VM disk image (a regular file) is an accepted target."""
    shm = Path("/dev/shm") / f"usbwriter-test-{os.getpid()}.img"
    try:
        with open(shm, "wb") as f:
            f.truncate(8 * MiB)
        image = random_file(tmp_path / "image.bin", 3 * MiB + 100)
        result = write_image(str(image), str(shm))
        assert shm.read_bytes()[: 3 * MiB + 100] == image.read_bytes()
        checked = verify_device(str(shm), result.image_size, result.blake3)
        assert checked.verified
        assert checked.page_cache_bypassed == result.direct_io
    finally:
        shm.unlink(missing_ok=True)


def test_missing_image_and_device_are_bad_input(loop: Callable[..., str], tmp_path: Path) -> None:
    dev = loop(4 * MiB)
    with pytest.raises(BadInput, match="no such file"):
        write_image(str(tmp_path / "nope.iso"), dev)
    image = random_file(tmp_path / "image.bin", 4096)
    with pytest.raises(BadInput, match="no such device"):
        write_image(str(image), "/dev/does-not-exist")

"""The boot report's verdict against real firmware.

Each test image is written with usbwriter to a loop device, which qemu then boots as a
USB stick with SeaBIOS and with OVMF (at the same time, read-only). The verdict must match
what ran: "yes" boots to the image's marker, "no" does not, and "firmware-dependent" boots
on OVMF (EDK2 reads El Torito from disks; that is what the word warns about). Compressed
copies are written decompressed and boot (or not) like the image they hold; board and
data disk images boot neither.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers.images import ALL_NAMES, IMAGES, build_image
from tests.helpers.qemuboot import BootOutcome, boot_stick, qemu_available
from usbwriter.boot import inspect_image
from usbwriter.sources import open_image

pytestmark = [
    pytest.mark.boot,
    pytest.mark.root,
    pytest.mark.skipif(qemu_available() is not None, reason=str(qemu_available())),
]

STICK_SLACK = 16 << 20  # the stick is larger than the image, as real sticks are
WRITE_WITH = "usbwriter"  # "usbwriter" (the project's CLI) or "dd"


def write_to_device(image: Path, device: str) -> None:
    """Write the image to the device: the one place that chooses how."""
    if WRITE_WITH == "usbwriter":
        # --mode raw: the verdict checked is the raw write's (a Windows installer would
        # otherwise be copied by file)
        argv = [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", device,
                "--yes", "--force", "--mode", "raw"]  # fmt: skip
    else:
        argv = ["dd", f"if={image}", f"of={device}", "bs=1M", "oflag=direct", "conv=fsync"]
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert p.returncode == 0, f"{argv} failed ({p.returncode}): {p.stderr[-2000:]}"
    with open(device, "rb") as dev:
        head = image_head(image)
        assert dev.read(len(head)) == head, "the device does not hold the image"


def image_head(image: Path, n: int = 1 << 20) -> bytes:
    """The first N bytes of the image (decompressed, for a compressed file)."""
    from usbwriter.sources import read_prefix

    with open_image(str(image)) as src:
        return read_prefix(src.fd, src.info, n)


def image_size(image: Path) -> int:
    with open_image(str(image)) as src:
        assert src.size is not None
        return src.size


def _tail(o: BootOutcome) -> str:
    return "\n".join(o.log.splitlines()[-25:])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_verdict_matches_real_firmware(name: str, loop: Callable[..., str]) -> None:
    image = build_image(name)
    marked = IMAGES[name].same_as or name  # a compressed copy prints its image's marker
    report = inspect_image(image)
    verdict = report.boot
    dev = loop(image_size(image) + STICK_SLACK)
    write_to_device(image, dev)

    with ThreadPoolExecutor(max_workers=2) as pool:
        bios_f = pool.submit(boot_stick, dev, "bios")
        uefi_f = pool.submit(boot_stick, dev, "uefi")
        bios, uefi = bios_f.result(), uefi_f.result()

    why = "\n".join(verdict.reasons)
    if verdict.bios == "yes":
        assert bios.booted, (
            f"{name}: report says BIOS boots, SeaBIOS did not:\n{why}\n{_tail(bios)}"
        )
        assert bios.marker == f"USBW-MARK {marked} pc"
    else:
        assert not bios.booted, f"{name}: report says no BIOS boot, but it booted:\n{why}"
    if verdict.uefi in ("yes", "firmware-dependent"):
        assert uefi.booted, (
            f"{name}: report says UEFI {verdict.uefi}, OVMF did not boot:\n{why}\n{_tail(uefi)}"
        )
        assert uefi.marker == f"USBW-MARK {marked} efi"
    else:
        assert not uefi.booted, f"{name}: report says no UEFI boot, but OVMF booted:\n{why}"

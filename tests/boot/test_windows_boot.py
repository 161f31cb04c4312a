"""A Windows-like installer ISO written by file copy boots on real firmware: OVMF starts
EFI/BOOT/BOOTX64.EFI from the FAT32 partition (a GRUB that prints a marker), and SeaBIOS
starts GRUB from the stick's MBR, which chains /bootmgr (a program that prints a marker
on the serial port)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.helpers.qemuboot import boot_stick, qemu_available
from tests.helpers.windows import missing_tools, windows_iso

pytestmark = [
    pytest.mark.boot,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop devices"),
    pytest.mark.skipif(qemu_available() is not None, reason=str(qemu_available())),
    pytest.mark.skipif(bool(missing_tools()), reason=f"needs {', '.join(missing_tools())}"),
]

MiB = 1 << 20


def written_stick(loop: Callable[..., str]) -> str:
    dev = loop(300 * MiB)
    p = subprocess.run(
        [sys.executable, "-m", "usbwriter", "--image", str(windows_iso("small")),
         "--device", dev, "--yes", "--no-probe"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
        env=dict(os.environ, LC_ALL="C"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "BIOS: GRUB chains bootmgr" in p.stdout
    return dev


def test_uefi_boots_the_efi_loader_from_the_fat32_partition(loop: Callable[..., str]) -> None:
    out = boot_stick(written_stick(loop), "uefi")
    assert out.marker == "USBW-MARK windows efi", out.log[-3000:]


def test_bios_boots_grub_which_chains_bootmgr(loop: Callable[..., str]) -> None:
    out = boot_stick(written_stick(loop), "bios")
    assert out.marker == "USBW-MARK bootmgr pc", out.log[-3000:]
    assert "chaining /bootmgr" in out.log

"""BIOS boot for a Windows stick, as WoeUSB does it: GRUB (i386-pc) in the MBR and the
gap before the partition, with a built-in configuration that finds /bootmgr on the FAT32
partition and chains it (``ntldr``). The boot sector and core image are put together
here (what grub-bios-setup would patch) and written by the job through the held
descriptor: nothing is installed through a path or a mount."""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
from dataclasses import dataclass

from usbwriter.errors import DeviceFault

GRUB_DIR = "/usr/lib/grub/i386-pc"
MODULES = (
    "biosdisk", "part_msdos", "fat", "search", "search_fs_file", "ntldr",
    "serial", "terminal", "echo",
)  # fmt: skip
KERNEL_SECTOR = 0x5C  # boot.img: the LBA of core.img's first sector (8 bytes)
BOOT_DRIVE = 0x64  # 0xff: use the drive the BIOS booted from
DRIVE_CHECK = 0x66  # a jump that works around BIOSes passing a wrong drive: nop'ed
BLOCKLIST = 512 - 12  # diskboot.img: where the rest of core.img lies (start, len, segment)
SECTOR = 512


def config(loader: str) -> str:
    return (
        "serial --unit=0 --speed=115200\n"
        "terminal_output --append serial\n"
        f"search --no-floppy --file --set=root {loader}\n"
        f'echo "usbwriter: chaining {loader}"\n'
        f"ntldr {loader}\n"
        "boot\n"
        f'echo "usbwriter: {loader} could not be started"\n'
    )


def missing() -> str | None:
    """What this machine lacks to make the BIOS boot code (None: nothing)."""
    if not os.path.exists(os.path.join(GRUB_DIR, "boot.img")):
        return f"GRUB for BIOS ({GRUB_DIR}; Debian: grub-pc-bin)"
    if not any(
        os.access(os.path.join(d, "grub-mkimage"), os.X_OK)
        for d in os.environ.get("PATH", "/usr/bin").split(":")
    ):
        return "grub-mkimage (Debian: grub-common)"
    return None


@dataclass(frozen=True)
class BiosBoot:
    boot_code: bytes  # the MBR's first 440 bytes
    core: bytes  # core.img, for sectors 1.. of the drive

    @property
    def sectors(self) -> int:
        return -(-len(self.core) // SECTOR)


def build(loader: str, gap: int) -> BiosBoot:
    """GRUB's boot sector and a core image chaining LOADER, to fit in GAP bytes after
    sector 0."""
    with tempfile.TemporaryDirectory(prefix="usbwriter-grub-") as tmp:
        cfg = os.path.join(tmp, "embed.cfg")
        with open(cfg, "w") as f:
            f.write(config(loader))
        out = os.path.join(tmp, "core.img")
        p = subprocess.run(
            [
                "grub-mkimage", "-O", "i386-pc", "-d", GRUB_DIR, "-c", cfg,
                "-p", "/boot/grub", "-o", out, *MODULES,
            ],
            capture_output=True,
            text=True,
            check=False,
            env=dict(os.environ, LC_ALL="C"),
        )  # fmt: skip
        if p.returncode != 0:
            lines = p.stderr.strip().splitlines()
            raise DeviceFault(f"grub-mkimage failed: {lines[-1] if lines else p.returncode}")
        with open(out, "rb") as f:
            core = bytearray(f.read())
    with open(os.path.join(GRUB_DIR, "boot.img"), "rb") as f:
        boot = bytearray(f.read(SECTOR))
    if len(core) > gap - SECTOR:
        raise DeviceFault(
            f"GRUB's core image ({len(core)} bytes) does not fit before the partition"
        )
    struct.pack_into("<Q", boot, KERNEL_SECTOR, 1)
    boot[BOOT_DRIVE] = 0xFF
    boot[DRIVE_CHECK : DRIVE_CHECK + 2] = b"\x90\x90"
    # The first block list: the rest of core.img follows its first sector.
    _start, length, segment = struct.unpack_from("<QHH", core, BLOCKLIST)
    sectors = -(-len(core) // SECTOR)
    if length != sectors - 1 or segment != 0x820:
        raise DeviceFault(
            f"GRUB's core image is not laid out as expected (block list {length}, {segment:#x})"
        )
    struct.pack_into("<Q", core, BLOCKLIST, 2)
    core += bytes(sectors * SECTOR - len(core))
    return BiosBoot(bytes(boot[:440]), bytes(core))

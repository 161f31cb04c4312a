"""Boot a disk image or block device as a USB stick under qemu and report what ran.

    outcome = boot_stick("/dev/loop3", "uefi")
    outcome.booted, outcome.marker, outcome.log

The stick is attached read-only to an EHCI controller as a removable USB mass-storage
device with boot index 0; SeaBIOS or OVMF boots it under TCG. The test images print
``USBW-MARK <name> <pc|efi>`` on the serial port (see scripts/make_images.py); the run
stops as soon as that line is complete, when the firmware says it found nothing
(SeaBIOS: "No bootable device"; OVMF: the UEFI shell or "No bootable option"), when
SeaBIOS has jumped to the boot sector and nothing has been printed for `quiet`
seconds (an MBR with no code hangs in place), when qemu exits, or at the time-out.
qemu is always killed by its own PID.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MARK_RE = re.compile(r"USBW-MARK [\w.-]+ (?:pc|efi)(?=[\r\n\x1b])")
OVMF_CANDIDATES = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd")
SEABIOS_FAIL = "No bootable device"
SEABIOS_HANDOVER = "Booting from 0000:7c00"
OVMF_FAIL = ("UEFI Interactive Shell", "No bootable option", "Shell> ")

Firmware = Literal["bios", "uefi"]


@dataclass(frozen=True)
class BootOutcome:
    booted: bool
    marker: str | None
    log: str  # serial output, then the firmware debug console (SeaBIOS)
    seconds: float
    ended_by: str  # "marker", "no-boot", "stalled", "exited", "timeout"


def qemu_available() -> str | None:
    """None when qemu and the firmware are there, else what is missing."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (Debian: qemu-system-x86)"
    if ovmf_path() is None:
        return "OVMF firmware is not installed (Debian: ovmf)"
    return None


def ovmf_path() -> str | None:
    for p in OVMF_CANDIDATES:
        if os.path.exists(p):
            return p
    return None


def qemu_argv(
    stick: str, firmware: Firmware, serial: Path, debugcon: Path, *, disc: bool = False
) -> list[str]:
    argv = [
        "qemu-system-x86_64", "-nodefaults", "-accel", "tcg", "-m", "256",
        "-display", "none", "-monitor", "none", "-no-reboot",
    ]  # fmt: skip
    if firmware == "uefi":
        ovmf = ovmf_path()
        if ovmf is None:
            raise FileNotFoundError("OVMF firmware not found")
        argv += ["-bios", ovmf]
    else:
        argv += ["-boot", "reboot-timeout=0"]
    if disc:  # a CD/DVD in the machine's IDE drive: El Torito, not the MBR
        argv += [
            "-drive", f"file={stick},format=raw,if=none,id=disc,readonly=on,media=cdrom",
            "-device", "ide-cd,drive=disc,bootindex=0",
        ]  # fmt: skip
    else:
        argv += [
            "-drive", f"file={stick},format=raw,if=none,id=stick,readonly=on",
            "-device", "usb-ehci,id=ehci",
            "-device", "usb-storage,bus=ehci.0,drive=stick,removable=on,bootindex=0",
        ]  # fmt: skip
    argv += [
        "-serial", f"file:{serial}",
        "-chardev", f"file,id=dbg,path={debugcon}",
        "-device", "isa-debugcon,iobase=0x402,chardev=dbg",
    ]  # fmt: skip
    return argv


def _mtime(p: Path) -> float:
    """When p last changed, on the time.monotonic() clock."""
    try:
        return time.monotonic() - (time.time() - p.stat().st_mtime)
    except FileNotFoundError:
        return 0.0


def _read(p: Path) -> str:
    try:
        return p.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def boot_stick(
    stick: str | os.PathLike[str],
    firmware: Firmware,
    timeout: float | None = None,
    quiet: float = 8.0,
    *,
    disc: bool = False,
) -> BootOutcome:
    """Boot `stick` (an image file or a block device) under qemu with BIOS or UEFI; with
    DISC, as a CD/DVD in an IDE drive instead of a USB stick."""
    if firmware not in ("bios", "uefi"):
        raise ValueError(f"firmware must be 'bios' or 'uefi', not {firmware!r}")
    if timeout is None:
        timeout = 45.0 if firmware == "bios" else 120.0
    with tempfile.TemporaryDirectory(prefix="usbw-qemu-") as tmp:
        serial = Path(tmp) / "serial.log"
        debugcon = Path(tmp) / "debugcon.log"
        argv = qemu_argv(os.fspath(stick), firmware, serial, debugcon, disc=disc)
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(os.environ, LC_ALL="C"),
        )
        ended_by = "timeout"
        found: str | None = None
        last_out, last_change = "", start
        try:
            while time.monotonic() - start < timeout:
                exited = proc.poll() is not None
                out = _read(serial)
                now = time.monotonic()
                if out != last_out:
                    last_out, last_change = out, now
                m = MARK_RE.search(out + ("\n" if exited else ""))
                if m:
                    found, ended_by = m.group(0), "marker"
                    break
                dbg = _read(debugcon)
                if SEABIOS_FAIL in dbg or any(s in out for s in OVMF_FAIL):
                    ended_by = "no-boot"
                    break
                handed_over = SEABIOS_HANDOVER in dbg[-200:]
                if handed_over and now - max(last_change, _mtime(debugcon)) > quiet:
                    ended_by = "stalled"
                    break
                if exited:
                    ended_by = "exited"
                    break
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.kill()
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - a wedged qemu
                proc.kill()
                _, err = proc.communicate()
        seconds = time.monotonic() - start
        log = _read(serial)
        dbg = _read(debugcon)
        if dbg:
            log += "\n--- firmware debug console ---\n" + dbg[-4000:]
        if err:
            log += "\n--- qemu stderr ---\n" + err.decode("utf-8", "replace")[-2000:]
        return BootOutcome(found is not None, found, log, seconds, ended_by)

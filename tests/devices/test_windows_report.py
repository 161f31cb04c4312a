"""The boot report of a stick written by file copy: `usbwriter inspect` of the drive says
that BIOS boots through GRUB to bootmgr (read from GRUB's core image and the FAT
partition), the same words the write's receipt uses; a stick whose image had no BIOS
loader, or whose bootmgr was removed afterwards, says BIOS: no and why."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT_ONLY, MiB
from tests.helpers.windows import windows_iso

pytestmark = ROOT_ONLY

MTOOLS_ENV = dict(os.environ, LC_ALL="C", MTOOLSRC="/dev/null", MTOOLS_SKIP_CHECK="1")


def usbwriter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
        env=dict(os.environ, LC_ALL="C"),
    )


def write(iso: Path, dev: str, *extra: str) -> None:
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--no-probe", *extra)
    assert p.returncode == 0, p.stderr


def inspect(dev: str) -> tuple[dict[str, object], str]:
    j = usbwriter("inspect", dev, "--json")
    assert j.returncode == 0, j.stderr
    t = usbwriter("inspect", dev)
    assert t.returncode == 0, t.stderr
    assert "Traceback" not in j.stderr + t.stderr
    boot = json.loads(j.stdout)["boot"]
    assert isinstance(boot, dict)
    return boot, t.stdout


def bios_reason(boot: dict[str, object]) -> str:
    reasons = boot["reasons"]
    assert isinstance(reasons, list)
    return next(str(r) for r in reasons if str(r).startswith("BIOS"))


def test_a_windows_stick_says_grub_chains_bootmgr(loop: Callable[..., str]) -> None:
    dev = loop(300 * MiB)
    write(windows_iso("small"), dev)
    boot, text = inspect(dev)
    assert boot["bios"] == "yes" and boot["uefi"] == "yes"
    assert bios_reason(boot).startswith("BIOS: GRUB chains bootmgr"), boot
    assert "BIOS: GRUB chains bootmgr" in text
    assert "BIOS (legacy): yes" in text


def test_bootmgr_removed_from_the_stick_is_a_no(loop: Callable[..., str]) -> None:
    dev = loop(300 * MiB)
    write(windows_iso("small"), dev)
    p = subprocess.run(
        ["mdel", "-i", f"{dev}@@{MiB}", "::/bootmgr"], env=MTOOLS_ENV, capture_output=True
    )
    assert p.returncode == 0, p.stderr
    boot, text = inspect(dev)
    assert boot["bios"] == "no", boot
    why = bios_reason(boot)
    assert "/bootmgr" in why and "not on" in why, why
    assert "BIOS (legacy): no" in text and why in text.replace("\n    ", " ")


def test_an_image_without_bios_loader_says_bios_no(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "efi" / "boot").mkdir(parents=True)
    (tree / "sources").mkdir()
    (tree / "sources" / "lang.ini").write_text("[Available UI Languages]\r\n")
    (tree / "setup.exe").write_bytes(b"MZ" + bytes(1000))
    iso = tmp_path / "no-bootmgr.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-udf", "-iso-level", "3", "-V", "NOBOOTMGR",
         "-o", str(iso), str(tree)],
        check=True,
    )  # fmt: skip
    dev = loop(300 * MiB)
    write(iso, dev, "--mode", "files")
    boot, text = inspect(dev)
    assert boot["bios"] == "no", boot
    assert bios_reason(boot) == "BIOS: the MBR holds no boot code, so BIOS has nothing to run."
    assert "BIOS (legacy): no" in text and "GRUB chains" not in text

"""A Windows installer ISO written to a loop device by file copy: the partition table and
FAT32 file system as the standard tools see them, every file equal to the ISO's (read
with mtools), install.wim over 4 GiB split into parts that join back byte for byte, the
refusals before the first byte, and a cancel that wipes the head."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pycdlib
import pytest

from tests.conftest import ROOT_ONLY, MiB, fill, read_dev, run
from tests.helpers.windows import udf_entries, windows_iso
from usbwriter.errors import Refused

pytestmark = ROOT_ONLY

GiB = 1 << 30
FAT32_LIMIT = 4 * GiB - 1
MTOOLS_ENV = dict(os.environ, LC_ALL="C", MTOOLSRC="/dev/null", MTOOLS_SKIP_CHECK="1")


def usbwriter(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env=dict(os.environ, LC_ALL="C"),
    )


def mtools(*argv: str) -> str:
    p = subprocess.run(argv, capture_output=True, text=True, env=MTOOLS_ENV, check=False)
    assert p.returncode == 0, p.stderr
    return p.stdout


def events(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def result(out: str) -> dict[str, Any]:
    return next(e for e in events(out) if e.get("event") == "result")


def one_line_error(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = [x for x in stderr.splitlines() if x.startswith("usbwriter: ")]
    assert lines, stderr
    return lines[-1]


def iso_files(iso_path: Path) -> Iterator[tuple[str, int]]:
    """(UDF path, size) of every file in the ISO."""
    return ((path, size) for path, size in udf_entries(iso_path) if size is not None)


def iso_digest(iso_path: Path, path: str) -> str:
    """sha256 of a file of the ISO, read with pycdlib."""
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        h = hashlib.sha256()
        with iso.open_file_from_iso(udf_path=path) as f:
            while b := f.read(8 * MiB):
                h.update(b)
        return h.hexdigest()
    finally:
        iso.close()


def iso_bytes(iso_path: Path, path: str, offset: int, n: int) -> bytes:
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        with iso.open_file_from_iso(udf_path=path) as f:
            f.seek(offset)
            data: bytes = f.read(n)
            return data
    finally:
        iso.close()


def stick_digest(dev: str, path: str) -> str:
    """sha256 of a file of the stick's FAT32 partition, read with mtools."""
    p = subprocess.Popen(
        ["mcopy", "-n", "-i", f"{dev}@@{MiB}", f"::{path}", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=MTOOLS_ENV,
    )
    assert p.stdout is not None
    h = hashlib.sha256()
    while b := p.stdout.read(8 * MiB):
        h.update(b)
    assert p.wait() == 0, path
    return h.hexdigest()


def stick_listing(dev: str) -> dict[str, int]:
    """Every file on the stick: path -> size (mdir -/ -b lists paths; sizes via minfo)."""
    out = mtools("mdir", "-/", "-b", "-a", "-i", f"{dev}@@{MiB}", "::/")
    files: dict[str, int] = {}
    for line in out.splitlines():
        path = line.strip().removeprefix("::")
        if not path or path.endswith("/"):
            continue
        size = mtools("mdir", "-a", "-i", f"{dev}@@{MiB}", f"::{path}")
        for row in size.splitlines():
            bits = row.split()
            if len(bits) >= 3 and bits[-3].replace(" ", "").isdigit():
                files[path] = int(bits[-3])
                break
        else:
            files[path] = -1
    return files


def check_table_and_fs(dev: str, size: int, label: str = "CCCOMA_X64F") -> None:
    table = json.loads(run(["sfdisk", "--json", dev]).stdout)["partitiontable"]
    assert table["label"] == "dos"
    (part,) = table["partitions"]
    assert part["start"] == 2048 and part["type"] == "c" and part.get("bootable") is True
    assert part["start"] + part["size"] <= size // 512
    assert size // 512 - (part["start"] + part["size"]) < 2048  # over the whole drive
    info = run(["blkid", "-p", "-o", "export", "--offset", str(MiB), dev]).stdout
    fields = dict(line.split("=", 1) for line in info.splitlines() if "=" in line)
    assert fields["TYPE"] == "vfat" and fields["VERSION"] == "FAT32"
    assert fields["LABEL"] == label
    fs = run(["losetup", "-f", "--show", "-r", "-o", str(MiB), dev]).stdout.strip()
    try:
        check = subprocess.run(["fsck.fat", "-n", fs], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        subprocess.run(["losetup", "-d", fs], check=False)


def test_windows_iso_becomes_a_fat32_stick_with_every_file(
    loop: Callable[..., str],
) -> None:
    iso = windows_iso("small")
    dev = loop(300 * MiB)
    fill(dev, 2 * MiB)
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--json", "--no-probe")
    assert p.returncode == 0, p.stderr
    r = result(p.stdout)
    assert r["verified"] is True and r["mode"] == "files"
    files = dict(iso_files(iso))
    f = r["files"]
    assert f["files"] == len(files) and f["files_verified"] == len(files)
    assert f["bytes_verified"] == sum(files.values())
    assert f["layout"]["partition"]["label"] == "CCCOMA_X64F"
    assert f["bios"] == "GRUB chains bootmgr" and f["uefi"] == "from efi/boot/bootx64.efi"
    check_table_and_fs(dev, 300 * MiB)
    for path in files:
        assert stick_digest(dev, path) == iso_digest(iso, path), path
    # folders the ISO has, even empty-file ones, are on the stick
    listing = mtools("mdir", "-/", "-b", "-a", "-i", f"{dev}@@{MiB}", "::/")
    assert "::/support/logging/Empty Folder Name.txt" in listing
    # progress: by bytes over the whole copy, with a rate and the total known
    prog = [e for e in events(p.stdout) if e.get("event") == "progress"]
    writes = [e for e in prog if e.get("phase") == "write"]
    assert writes and writes[-1]["done"] == writes[-1]["total"] == sum(files.values())


def test_the_report_and_question_say_what_the_stick_gets(loop: Callable[..., str]) -> None:
    iso = windows_iso("small")
    dev = loop(300 * MiB)
    p = usbwriter("--image", str(iso), "--device", dev)  # no --yes, no terminal: refused
    assert p.returncode == 4
    assert "Mode: file copy: a Windows installer image" in p.stderr + p.stdout
    assert "one active FAT32 partition 'CCCOMA_X64F'" in p.stderr + p.stdout


def test_bypass_options_add_an_answer_file(loop: Callable[..., str], tmp_path: Path) -> None:
    iso = windows_iso("small")
    dev = loop(300 * MiB)
    p = usbwriter(
        "--image", str(iso), "--device", dev, "--yes", "--no-probe",
        "--windows-bypass", "tpm,secureboot,ram,online-account",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "autounattend.xml: TPM 2.0 check bypassed" in p.stdout
    assert "OOBE BypassNRO" in p.stdout
    out = tmp_path / "autounattend.xml"
    mtools("mcopy", "-n", "-i", f"{dev}@@{MiB}", "::/autounattend.xml", str(out))
    body = out.read_text()
    ET.fromstring(body)
    for key in ("BypassTPMCheck", "BypassSecureBootCheck", "BypassRAMCheck", "BypassNRO"):
        assert key in body


def test_raw_mode_still_writes_the_image_raw(loop: Callable[..., str]) -> None:
    iso = windows_iso("small")
    dev = loop(64 * MiB)
    p = usbwriter(
        "--image", str(iso), "--device", dev, "--yes", "--json", "--no-probe", "--mode", "raw"
    )
    assert p.returncode == 0, p.stderr
    assert "files" not in result(p.stdout)
    with open(iso, "rb") as f:
        assert read_dev(dev, 32768, 2048) == (f.seek(32768), f.read(2048))[1]


def test_a_non_wim_file_over_4_gib_is_refused_before_the_first_byte(
    loop: Callable[..., str],
) -> None:
    iso = windows_iso("huge-file")
    dev = loop(8 * GiB)
    fill(dev, 2 * MiB)
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--no-probe")
    assert p.returncode == 4, p.stderr
    line = one_line_error(p.stderr)
    assert "sources/huge.cab" in line and "over FAT32's limit" in line
    assert read_dev(dev, 0, 2 * MiB) == b"\xaa" * (2 * MiB)


def test_a_wim_that_is_not_one_is_refused_before_the_first_byte(
    loop: Callable[..., str],
) -> None:
    for kind, words in (("bad-wim", "not a WIM file"), ("tiny-wim-bad", "lies outside")):
        iso = windows_iso(kind)
        dev = loop(8 * GiB)
        fill(dev, MiB)
        p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--no-probe")
        assert p.returncode == 1, p.stderr
        line = one_line_error(p.stderr)
        assert "sources/install.wim" in line and words in line, line
        assert read_dev(dev, 0, MiB) == b"\xaa" * MiB


def test_a_stick_smaller_than_the_files_is_refused(loop: Callable[..., str]) -> None:
    iso = windows_iso("big")
    dev = loop(2 * GiB)
    fill(dev, MiB)
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--no-probe")
    assert p.returncode == 4, p.stderr
    assert "more than the drive holds" in one_line_error(p.stderr)
    assert read_dev(dev, 0, MiB) == b"\xaa" * MiB


def test_install_wim_over_4_gib_is_split_and_joins_back(
    loop: Callable[..., str], tmp_path: Path
) -> None:
    iso = windows_iso("big")
    wim_size = dict(iso_files(iso))["/sources/install.wim"]
    assert wim_size > FAT32_LIMIT
    dev = loop(wim_size + 512 * MiB)
    start = time.monotonic()
    p = usbwriter("--image", str(iso), "--device", dev, "--yes", "--json", "--no-probe")
    took = time.monotonic() - start
    assert p.returncode == 0, p.stderr
    r = result(p.stdout)
    assert r["verified"] is True
    (split,) = r["files"]["split"]
    assert split["path"] == "/sources/install.wim" and split["verified_by_wimlib"] is True
    names = [part["path"] for part in split["parts"]]
    assert names[:2] == ["/sources/install.swm", "/sources/install2.swm"]
    check_table_and_fs(dev, wim_size + 512 * MiB)
    listing = stick_listing(dev)
    assert "/sources/install.wim" not in listing
    for part in split["parts"]:
        assert 0 < listing[part["path"]] == part["size"] <= FAT32_LIMIT
    # the parts, read back with mtools, join into the original WIM byte for byte
    local = []
    for part in names:
        out = tmp_path / os.path.basename(part)
        mtools("mcopy", "-n", "-i", f"{dev}@@{MiB}", f"::{part}", str(out))
        local.append(str(out))
    guid = iso_bytes(iso, "/sources/install.wim", 24, 16)
    set_guids = set()
    for name in local:  # the parts share one GUID, the set's (16 bytes at offset 24)
        with open(name, "rb") as swm:
            swm.seek(24)
            set_guids.add(swm.read(16))
    assert len(set_guids) == 1
    joined = tmp_path / "joined.wim"
    run(["wimlib-imagex", "join", str(joined), *local])
    for name in local:
        os.unlink(name)
    # the joined WIM keeps the set's GUID; with the original's put back, it is the original
    with open(joined, "r+b") as out:
        out.seek(24)
        assert out.read(16) in set_guids
        out.seek(24)
        out.write(guid)
    h = hashlib.sha256()
    with open(joined, "rb") as whole:
        while b := whole.read(8 * MiB):
            h.update(b)
    joined.unlink()
    assert h.hexdigest() == iso_digest(iso, "/sources/install.wim")
    # progress counted the split too, and never went backwards
    writes = [e for e in events(p.stdout) if e.get("event") == "progress" and e["phase"] == "write"]
    dones = [e["done"] for e in writes]
    assert dones == sorted(dones) and writes[-1]["done"] == writes[-1]["total"]
    assert writes[-1]["total"] > 2 * wim_size  # split, then its parts copied
    # wimlib read the WIM through a loop device over the ISO, gone with the run
    assert run(["losetup", "-j", str(iso)]).stdout == ""
    print(f"big file copy: {took:.1f} s")


def test_ctrl_c_stops_within_two_seconds_and_wipes_the_head(loop: Callable[..., str]) -> None:
    import signal

    iso = windows_iso("big")
    dev = loop(6 * GiB)
    proc = subprocess.Popen(
        [sys.executable, "-m", "usbwriter", "--image", str(iso), "--device", dev, "--yes",
         "--no-probe"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(6)
    begun = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    stopped = time.monotonic() - begun
    assert proc.returncode == 130, err
    assert stopped < 2.0, stopped
    assert "first MiB was wiped" in err
    assert read_dev(dev, 0, MiB) == bytes(MiB)
    # nothing of it left running (mcopy on the drive's partition, wimlib on its staging
    # folder), no loop device left over the ISO
    for pattern in (f"^mcopy .*@@{MiB}", "^wimlib-imagex split .*usbwriter-split-"):
        left = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
        assert left.stdout == "", pattern
    assert run(["losetup", "-j", str(iso)]).stdout == ""


def test_several_drives_each_get_the_files(loop: Callable[..., str]) -> None:
    iso = windows_iso("small")
    devs = [loop(300 * MiB), loop(300 * MiB)]
    p = usbwriter(
        "--image", str(iso), "--device", devs[0], "--device", devs[1], "--yes", "--no-probe"
    )
    assert p.returncode == 0, p.stderr
    assert "2 of 2 drives written and verified" in p.stdout + p.stderr
    for dev in devs:
        check_table_and_fs(dev, 300 * MiB)
        for path in ("/bootmgr", "/sources/install.wim", "/efi/boot/bootx64.efi"):
            assert stick_digest(dev, path) == iso_digest(iso, path), (dev, path)


def test_mtools_reaches_only_the_drive_held(loop: Callable[..., str]) -> None:
    """The tools open the drive again as /dev/fd/N; another medium under the same device
    (a new disk sequence) is refused before a tool runs."""
    import threading

    from usbwriter.windows.fat import FatVolume, layout_for

    dev = loop(64 * MiB)
    fd = os.open(dev, os.O_RDWR | os.O_EXCL | os.O_CLOEXEC)
    try:
        vol = FatVolume(fd, dev, layout_for(64 * MiB), threading.Event())
        vol.same_drive()  # the same drive: fine
        vol.seq = (vol.seq or 0) + 1000  # as if another stick had been plugged in
        with pytest.raises(Refused, match="a different drive answers under its name"):
            vol.put("/x.txt", iter([b"x"]))
    finally:
        os.close(fd)

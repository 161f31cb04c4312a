"""Windows-like installer ISOs, built once per test session with real tools.

    iso = windows_iso("small")     # Path, built on first use, then cached

Each is a UDF image made by ``genisoimage -udf -iso-level 3 -allow-limited-size``, as
a Windows 10/11 DVD is laid out: El Torito only (``boot/etfsboot.com``, no emulation),
``bootmgr`` at the root, ``efi/boot/bootx64.efi``, ``sources/boot.wim`` and
``sources/install.wim``, both real WIM files made by ``wimlib-imagex capture``.

- ``bootmgr`` is a 16-bit real-mode program that prints ``USBW-MARK bootmgr pc`` on the
  serial port, so a BIOS boot that chains it (GRUB's ntldr) is seen to arrive there.
- ``efi/boot/bootx64.efi`` is a standalone GRUB that prints ``USBW-MARK windows efi``.

Kinds:

- ``small``: install.wim of a few MiB (copied whole).
- ``big``: install.wim over 4 GiB of incompressible data (``--compress=none``): it must be
  split. About 4.2 GiB on disk.
- ``huge-file``: a small install.wim and ``sources/huge.cab``, 4 GiB of zeros (holes
  dug in the ISO): a file FAT32 cannot hold that is not a WIM.
- ``bad-wim``: install.wim over 4 GiB that is not a WIM (zeros with a few bytes).
- ``tiny-wim-bad``: install.wim of 1 MiB that starts like a WIM but is cut short.

Cached in $USBW_IMAGE_CACHE when set (kept), else in the per-process folder of
tests/helpers/images.py.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.images import cache_dir, make_images

MiB = 1 << 20
GiB = 1 << 30
VOLUME_ID = "CCCOMA_X64FRE_EN-US_DV9"
TOOLS = ("genisoimage", "wimlib-imagex", "grub-mkstandalone", "fallocate")
KINDS = ("small", "big", "huge-file", "bad-wim", "tiny-wim-bad")
BIG_PIECES = 4  # files of incompressible data in the big install.wim
BIG_PIECE = 1050 * MiB  # 4 x 1050 MiB = 4200 MiB: over 4 GiB, split into two parts

_lock = threading.Lock()
_built: dict[str, Path] = {}


def bootmgr_program(marker: str = "USBW-MARK bootmgr pc") -> bytes:
    """A real-mode program (loaded at segment:0 by GRUB's ntldr) that writes MARKER to
    COM1 and halts."""
    msg = (marker + "\r\n").encode() + b"\0"
    code = bytes(
        [
            0x0E, 0x1F,  # push cs; pop ds
            0xBE, 0x13, 0x00,  # mov si, 0x13 (the message)
            0xBA, 0xF8, 0x03,  # mov dx, 0x3f8
            0xAC,  # lodsb
            0x84, 0xC0,  # test al, al
            0x74, 0x03,  # jz halt
            0xEE,  # out dx, al
            0xEB, 0xF8,  # jmp lodsb
            0xF4,  # halt: hlt
            0xEB, 0xFD,  # jmp halt
        ]
    )  # fmt: skip
    assert len(code) == 0x13
    return (code + msg).ljust(4096, b"\0")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def _run(argv: list[str], **kw: object) -> None:
    env = dict(os.environ, LC_ALL="C")
    p = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr[-2000:]}")


def random_file(path: Path, size: int) -> None:
    """SIZE bytes from /dev/urandom (incompressible, different in every file)."""
    with open("/dev/urandom", "rb") as src, open(path, "wb") as out:
        left = size
        while left:
            chunk = src.read(min(left, 8 * MiB))
            out.write(chunk)
            left -= len(chunk)


def capture_wim(src: Path, out: Path) -> None:
    _run(["wimlib-imagex", "capture", str(src), str(out), "Windows", "--compress=none"])


def _tree(work: Path, kind: str) -> Path:
    tree = work / "tree"
    for d in ("boot", "efi/boot", "efi/microsoft/boot", "sources", "support/logging"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    (tree / "bootmgr").write_bytes(bootmgr_program())
    (tree / "bootmgr.efi").write_bytes(b"MZ" + bytes(510))
    (tree / "boot" / "etfsboot.com").write_bytes(b"\xfa\xf4" + bytes(4094))
    (tree / "boot" / "bcd").write_bytes(b"regf" + os.urandom(8188))
    (tree / "efi" / "microsoft" / "boot" / "bcd").write_bytes(b"regf" + os.urandom(8188))
    (tree / "setup.exe").write_bytes(b"MZ" + os.urandom(100_000))
    (tree / "autorun.inf").write_text("[AutoRun.Amd64]\r\nopen=setup.exe\r\n")
    (tree / "sources" / "lang.ini").write_text("[Available UI Languages]\r\nen-us = 3\r\n")
    (tree / "support" / "logging" / "Empty Folder Name.txt").write_bytes(b"")
    efi: Path = make_images.standalone_efi(work, "windows", "x86_64-efi", "bootx64.efi")
    shutil.copy(efi, tree / "efi" / "boot" / "bootx64.efi")
    boot_src = work / "boot-src"
    boot_src.mkdir()
    random_file(boot_src / "winpe.bin", 3 * MiB)
    capture_wim(boot_src, tree / "sources" / "boot.wim")
    shutil.rmtree(boot_src)
    wim = tree / "sources" / "install.wim"
    if kind in ("small", "huge-file"):
        src = work / "install-src"
        src.mkdir()
        random_file(src / "a.bin", 5 * MiB)
        random_file(src / "b.bin", 2 * MiB)
        capture_wim(src, wim)
        shutil.rmtree(src)
    if kind == "huge-file":
        with open(tree / "sources" / "huge.cab", "wb") as f:
            f.truncate(4 * GiB)
    elif kind == "big":
        src = work / "install-src"
        src.mkdir()
        for i in range(BIG_PIECES):
            random_file(src / f"piece{i}.bin", BIG_PIECE)
        capture_wim(src, wim)
        shutil.rmtree(src)
    elif kind == "bad-wim":
        with open(wim, "wb") as f:
            f.write(b"not a WIM file at all")
            f.truncate(4 * GiB + 64 * MiB)
    elif kind == "tiny-wim-bad":
        good = work / "good.wim"
        src = work / "install-src"
        src.mkdir()
        random_file(src / "a.bin", 2 * MiB)
        capture_wim(src, good)
        data = good.read_bytes()
        wim.write_bytes(data[: len(data) // 2])
        good.unlink()
        shutil.rmtree(src)
    return tree


def build(kind: str, out_dir: Path) -> Path:
    """Build the ISO of KIND in OUT_DIR (work files in a folder beside it, removed)."""
    work = out_dir / f"windows-{kind}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = out_dir / f"windows-{kind}.iso"
    try:
        tree = _tree(work, kind)
        _run(
            [
                "genisoimage", "-quiet", "-udf", "-iso-level", "3", "-allow-limited-size",
                "-V", VOLUME_ID, "-publisher", "MICROSOFT CORPORATION",
                "-b", "boot/etfsboot.com", "-no-emul-boot", "-boot-load-size", "8",
                "-hide", "boot.catalog", "-o", str(work / "out.iso"), str(tree),
            ]
        )  # fmt: skip
        if kind in ("huge-file", "bad-wim"):
            _run(["fallocate", "--dig-holes", str(work / "out.iso")])
        os.replace(work / "out.iso", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def windows_iso(kind: str = "small") -> Path:
    """The ISO of KIND, built on first use (skips the test when tools are missing)."""
    if kind not in KINDS:
        raise KeyError(f"no Windows-like ISO of kind {kind!r}; known: {', '.join(KINDS)}")
    with _lock:
        if kind in _built and _built[kind].exists():
            return _built[kind]
        lacking = missing_tools()
        if lacking:
            pytest.skip(f"the Windows-like ISO needs {', '.join(lacking)}")
        d = cache_dir()
        path = d / f"windows-{kind}.iso"
        if not path.exists():
            need = 10 * GiB if kind == "big" else 1 * GiB
            if shutil.disk_usage(d).free < need:
                pytest.skip(f"building windows-{kind}.iso needs {need // GiB} GiB free in {d}")
            build(kind, d)
        _built[kind] = path
        return path


def wim_header(path: Path) -> tuple[bytes, int, int]:
    """(magic, part number, total parts) of a WIM or SWM file."""
    with open(path, "rb") as f:
        head = f.read(48)
    part, total = struct.unpack_from("<HH", head, 40)
    return head[:8], part, total


def udf_entries(iso_path: Path) -> Iterator[tuple[str, int | None]]:
    """(UDF path, size) of every entry of the ISO, read with pycdlib; None for a folder."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        stack = ["/"]
        while stack:
            d = stack.pop()
            for child in iso.list_children(udf_path=d):
                if child is None:
                    continue
                name = child.file_identifier().decode()
                if name in (".", "..", ""):
                    continue
                path = d.rstrip("/") + "/" + name
                if child.is_dir():
                    stack.append(path)
                    yield path, None
                else:
                    yield path, child.get_data_length()
    finally:
        iso.close()

"""EFI loaders in FAT file systems (ESPs and El Torito EFI images), read with mtools.

mtools reads the FAT inside the image in place (`-i IMAGE@@OFFSET`); only the first few
KiB of each loader matter: the PE/COFF header names its machine (x64, ia32, aa64...).
Results are cached per file, offset and modification time (regular files only), and
boot.py reads a FAT once per offset: hybrid ISOs point their GPT ESP and their El Torito
EFI entry at the same bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import threading
from collections import OrderedDict

from usbwriter.boot.mbr import fat_bpb_ok, fat_size
from usbwriter.boot.model import EfiLoader
from usbwriter.boot.reader import ImageReader, u16le, u32le

log = logging.getLogger(__name__)

MACHINES = {
    0x8664: "x64",
    0x014C: "ia32",
    0xAA64: "aa64",
    0x01C2: "arm",
    0x01C4: "arm",
    0x5064: "riscv64",
    0x6264: "loongarch64",
    0x0200: "ia64",
}
REMOVABLE_NAMES = {
    "x64": "BOOTX64.EFI",
    "ia32": "BOOTIA32.EFI",
    "aa64": "BOOTAA64.EFI",
    "arm": "BOOTARM.EFI",
    "riscv64": "BOOTRISCV64.EFI",
    "loongarch64": "BOOTLOONGARCH64.EFI",
    "ia64": "BOOTIA64.EFI",
}
MAX_LOADERS = 32
MAX_LISTING_LINES = 2000
TIMEOUT = 30.0
_cache: OrderedDict[tuple[int, ...], tuple[tuple[EfiLoader, ...], str | None]] = OrderedDict()
_CACHE_SIZE = 128
_cache_lock = threading.Lock()


def pe_info(head: bytes) -> tuple[str, int | None, bool]:
    """(arch, machine, signed) from the start of a PE/COFF file."""
    if len(head) < 0x40 or head[:2] != b"MZ":
        return "not-pe", None, False
    pe = u32le(head, 0x3C)
    if pe + 24 > len(head) or head[pe : pe + 4] != b"PE\0\0":
        return "not-pe", None, False
    machine = u16le(head, pe + 4)
    opt = pe + 24
    signed = False
    if opt + 2 <= len(head):
        magic = u16le(head, opt)
        dirs = opt + (96 if magic == 0x10B else 112)
        nrva_at = opt + (92 if magic == 0x10B else 108)
        sec = dirs + 4 * 8
        if magic in (0x10B, 0x20B) and sec + 8 <= len(head) and u32le(head, nrva_at) > 4:
            signed = u32le(head, sec + 4) > 0
    return MACHINES.get(machine, "unknown"), machine, signed


def fat_region(r: ImageReader, offset: int) -> int | None:
    """The size of the FAT file system starting at offset, or None if there is none."""
    b = r.read_exact(offset, 512)
    if b is None or not fat_bpb_ok(b) or b[3:11] in (b"NTFS    ", b"EXFAT   "):
        return None
    return fat_size(b)


def _env() -> dict[str, str]:
    return dict(os.environ, LC_ALL="C", MTOOLS_SKIP_CHECK="1", MTOOLS_NO_VFAT="0")


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    log.debug("running %s", argv)
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_env(),
        timeout=TIMEOUT,
        check=False,
    )


def _list(image: str, offset: int) -> tuple[tuple[EfiLoader, ...], str | None]:
    target = f"{image}@@{offset}"
    try:
        p = _run(["mdir", "-i", target, "-/", "-b", "::/EFI"])
    except subprocess.TimeoutExpired:
        return (), "mtools took too long to list the FAT file system"
    err = p.stderr.decode("utf-8", "replace").strip()
    if p.returncode != 0:
        if "not found" in err:
            return (), None  # a FAT without an \EFI directory
        first = err.splitlines()[0] if err else f"mdir exited with {p.returncode}"
        return (), f"the FAT file system could not be read ({first})"
    names = []
    for line in p.stdout.decode("utf-8", "replace").splitlines()[:MAX_LISTING_LINES]:
        line = line.strip()
        if line.startswith("::") and not line.endswith("/") and line.upper().endswith(".EFI"):
            names.append(line[2:])
    loaders = []
    for name in names[:MAX_LOADERS]:
        try:
            c = _run(["mcopy", "-n", "-i", target, f"::{name}", "-"])
        except subprocess.TimeoutExpired:
            continue
        if c.returncode != 0:
            continue
        data = c.stdout
        arch, machine, signed = pe_info(data[:8192])
        want = REMOVABLE_NAMES.get(arch)
        loaders.append(
            EfiLoader(
                path=name,
                arch=arch,
                machine=machine,
                size=len(data),
                removable_path=want is not None and name.upper() == f"/EFI/BOOT/{want}",
                signed=signed,
            )
        )
    return tuple(loaders), None


def _file_key(r: ImageReader, offset: int, size: int) -> tuple[int, ...] | None:
    """Identity of a FAT inside a regular file (None for devices and in-memory images,
    whose contents can change unseen, and for a compressed image's temporary file)."""
    if r.tool_path != r.path or r.fd is None:
        return None
    try:
        st = os.fstat(r.fd)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, offset, size)


def efi_loaders(r: ImageReader, offset: int, size: int) -> tuple[tuple[EfiLoader, ...], str | None]:
    """The *.EFI files under \\EFI in the FAT at offset, or an error in words."""
    if shutil.which("mdir") is None or shutil.which("mcopy") is None:
        return (), "mtools is not installed, so EFI loaders could not be read"
    key = _file_key(r, offset, size)
    if key is not None:
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
    result = _list(r.tool_path, offset)
    if key is not None:
        with _cache_lock:
            _cache[key] = result
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return result


def has_file(r: ImageReader, offset: int, path: str) -> bool | None:
    """Whether PATH ("/bootmgr") is a file in the FAT at offset (FAT names match without
    regard to case); None when it could not be read (no mtools, a damaged FAT)."""
    if shutil.which("mdir") is None:
        return None
    want = "::/" + path.strip("/")
    if want == "::/" or any(c in path for c in "\0\n*?"):
        return False
    try:
        p = _run(["mdir", "-i", f"{r.tool_path}@@{offset}", "-b", want])
    except (subprocess.TimeoutExpired, OSError):
        return None
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0:
        return False if "not found" in err else None
    lines = p.stdout.decode("utf-8", "replace").splitlines()[:MAX_LISTING_LINES]
    return any(line.strip().casefold() == want.casefold() for line in lines)

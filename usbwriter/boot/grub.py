"""GRUB's i386-pc core image, read for its built-in configuration.

The MBR's boot.img loads core.img from the sector it records (0x5c). core.img is
diskboot.img (one sector), then lzma_decompress.img (startup_raw.S: the compressed size
at 0x08, the uncompressed size at 0x0c of it, then code up to a 16-byte boundary), then
the kernel and its modules as one raw LZMA stream (lc 3, lp 0, pb 2, a 64 KiB dictionary,
no end mark; util/mkimage.c), maybe Reed-Solomon redundancy after it. Past the kernel
lies the module list: "mimg", the header's size, the list's size, then entries (type,
size) of which type 2 is the configuration and 3 the prefix (include/grub/kernel.h).

The decompressor's length is recorded nowhere, so the stream's start is searched: each
16-byte boundary whose byte is 0 (a range coder's first byte) is tried, and only a
stream that decodes to exactly the recorded size and holds a well-formed module list is
taken. Everything is bounded; any damage gives a problem in words, never an exception.
"""

from __future__ import annotations

import lzma
import shlex
import struct
from dataclasses import dataclass

SECTOR = 512
COMPRESSED_SIZE = 0x08  # in lzma_decompress.img
UNCOMPRESSED_SIZE = 0x0C
MAX_CORE = 1 << 20  # what is read of core.img: it must fit before the first partition
MAX_KERNEL = 4 << 20  # the decompressed kernel and modules
FIRST_START, LAST_START = 0x200, 0x2000  # where lzma_decompress.img may end
MAX_TRIES = 96
MODULE_MAGIC = b"mimg"
OBJ_CONFIG, OBJ_PREFIX = 2, 3
MAX_MODULES = 4096
MAX_CONFIG = 64 << 10
FILTERS = [{"id": lzma.FILTER_LZMA1, "lc": 3, "lp": 0, "pb": 2, "dict_size": 1 << 16}]
CHAINING = ("ntldr", "chainloader")  # commands that hand the machine to another loader


@dataclass(frozen=True)
class CoreImage:
    """What was read from GRUB's core image."""

    config: str | None  # the built-in configuration (None: none, or not readable)
    prefix: str | None
    problem: str | None  # why the configuration could not be read


def _decode(data: bytes, start: int, csize: int, usize: int) -> bytes | None:
    try:
        d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=FILTERS)
        # zeros after the stream let the range coder finish its last symbols
        out = d.decompress(data[start : start + csize] + bytes(16), max_length=usize)
    except (lzma.LZMAError, ValueError, MemoryError):
        return None
    return out if len(out) == usize else None


def modules(kernel: bytes) -> tuple[str | None, str | None] | None:
    """(config, prefix) from the module list in the decompressed kernel; None when no
    well-formed list is found."""
    at = kernel.find(MODULE_MAGIC)
    while at != -1:
        found = _walk(kernel, at)
        if found is not None:
            return found
        at = kernel.find(MODULE_MAGIC, at + 1)
    return None


def _walk(kernel: bytes, at: int) -> tuple[str | None, str | None] | None:
    if at % 4 or at + 12 > len(kernel):
        return None
    header, size = struct.unpack_from("<II", kernel, at + 4)
    end = at + size
    if header not in (12, 16, 24) or size < header or end > len(kernel):
        return None
    pos = at + header
    config = prefix = None
    for _ in range(MAX_MODULES):
        if pos == end:
            return config, prefix
        if pos + 8 > end:
            return None
        kind, length = struct.unpack_from("<II", kernel, pos)
        if length < 8 or pos + length > end:
            return None
        body = kernel[pos + 8 : pos + min(length, 8 + MAX_CONFIG)]
        text = body.split(b"\0", 1)[0].decode("utf-8", "replace")
        if kind == OBJ_CONFIG and config is None:
            config = text
        elif kind == OBJ_PREFIX and prefix is None:
            prefix = text
        pos += length
    return None


def read_core(core: bytes) -> CoreImage:
    """The configuration built into an i386-pc core image (its first bytes, from disk)."""
    if len(core) < 2 * SECTOR:
        return CoreImage(None, None, "GRUB's core image is cut short")
    dec = core[SECTOR:MAX_CORE]
    csize, usize = struct.unpack_from("<II", dec, COMPRESSED_SIZE)
    if not 0 < csize <= len(dec) or not 0 < usize <= MAX_KERNEL:
        return CoreImage(None, None, "GRUB's core image has no sizes usbwriter can read")
    tries = 0
    for start in range(FIRST_START, min(LAST_START, len(dec) - csize) + 1, 16):
        if dec[start] != 0:
            continue
        tries += 1
        if tries > MAX_TRIES:
            break
        kernel = _decode(dec, start, csize, usize)
        if kernel is None:
            continue
        found = modules(kernel)
        if found is None:
            continue
        return CoreImage(found[0], found[1], None)
    return CoreImage(None, None, "GRUB's core image could not be decompressed")


def chain_target(config: str) -> tuple[str, str] | None:
    """(command, path) of the first command in CONFIG that chains another loader
    (ntldr /bootmgr, chainloader /x or +1), the device prefix "(hd0,msdos1)" dropped."""
    for line in config.splitlines()[:2000]:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split("#", 1)[0].split()
        if not words or words[0] not in CHAINING:
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if not args:
            continue
        path = args[0]
        if path.startswith("(") and ")" in path:
            path = path[path.index(")") + 1 :] or "/"
        return words[0], path
    return None

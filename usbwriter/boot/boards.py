"""Signs that a disk image is for a single-board computer, not a PC.

Read before the verdict, like every other fact:
- a U-Boot SPL where the board's boot ROM looks for it: Allwinner's ``eGON.BT0`` header
  at 8 KiB (or 128 KiB, where newer SoCs also look), Rockchip's idbloader at 32 KiB
  (sector 64: an ``RKNS``/``RKSS`` header on RK35xx, the ``0x0FF0AA55`` header, plain or
  RC4-encoded as the boot ROM expects it, on older SoCs);
- the files in the first partition (and the active or legacy-BIOS-bootable one, if
  another): a Raspberry Pi's boot files (``bootcode.bin``, ``start*.elf``,
  ``fixup*.dat``, ``bcm27*.dtb`` beside ``config.txt``) in a FAT file system, or the
  scripts U-Boot's distro boot loads (``boot.scr``, ``extlinux/extlinux.conf``, also
  under ``/boot``) in a FAT or ext2/3/4 file system.

FAT is read with mtools (as fat.py does), ext2/3/4 with debugfs (e2fsprogs, ``?offset=``);
without the tool the partition's files are not read, and the SPL signatures still count.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shutil
import subprocess

from usbwriter.boot.mbr import EXTENDED_TYPES, fat_bpb_ok
from usbwriter.boot.model import BoardSigns, BootPartition, Gpt, Mbr
from usbwriter.boot.reader import ImageReader, u16le

log = logging.getLogger(__name__)

# (offset, vendor, magic at offset, name for people)
SPL_SIGNATURES: tuple[tuple[int, str, bytes, str], ...] = (
    (8192 + 4, "allwinner", b"eGON.BT0", "Allwinner SPL (eGON.BT0)"),
    ((128 << 10) + 4, "allwinner", b"eGON.BT0", "Allwinner SPL (eGON.BT0)"),
    (32768, "rockchip", b"RKNS", "Rockchip idbloader (RKNS)"),
    (32768, "rockchip", b"RKSS", "Rockchip idbloader (RKSS)"),
    (32768, "rockchip", b"\x55\xaa\xf0\x0f", "Rockchip idbloader (0x0FF0AA55)"),
    # the same header as the boot ROM reads it: RC4-encoded with Rockchip's fixed key
    (32768, "rockchip", b"\x3b\x8c\xdc\xfc", "Rockchip idbloader (0x0FF0AA55, RC4)"),
)
RASPBERRY_PI_FILES = ("bootcode.bin", "start*.elf", "fixup*.dat", "bcm27*.dtb", "config.txt")
U_BOOT_FILES = (
    "/boot.scr",
    "/boot.scr.uimg",
    "/extlinux/extlinux.conf",
    "/boot/boot.scr",
    "/boot/boot.scr.uimg",
    "/boot/extlinux/extlinux.conf",
)
EXT_MAGIC_AT = 1024 + 56
MAX_PARTITIONS = 2
MAX_NAMES = 4000
TIMEOUT = 30.0


def raspberry_pi_files(files: tuple[str, ...]) -> tuple[str, ...]:
    """The Raspberry Pi boot files among paths found in a partition's root."""
    return tuple(
        f
        for f in files
        if f.count("/") == 1 and any(fnmatch.fnmatch(f[1:], p) for p in RASPBERRY_PI_FILES)
    )


def u_boot_files(files: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f for f in files if f in U_BOOT_FILES)


def read_spl(r: ImageReader) -> tuple[str | None, int | None, str | None]:
    """(vendor, offset, name) of a U-Boot SPL at an offset a boot ROM reads it from."""
    for offset, vendor, magic, name in SPL_SIGNATURES:
        if r.read(offset, len(magic)) == magic:
            return vendor, offset - 4 if vendor == "allwinner" else offset, name
    return None, None, None


def _candidates(mbr: Mbr | None, gpt: Gpt | None) -> list[tuple[str, int]]:
    """The first partition, and the one marked bootable if it is another."""
    found: list[tuple[str, int]] = []
    if gpt is not None and gpt.partitions:
        gparts = sorted(gpt.partitions, key=lambda p: p.index)
        for gp in [gparts[0], *[p for p in gparts if p.legacy_bios_bootable][:1]]:
            found.append((f"GPT partition {gp.index} ({gp.name or gp.type_name})", gp.offset))
    elif mbr is not None and mbr.signature and not mbr.protective:
        mparts = [
            p
            for p in sorted(mbr.partitions, key=lambda p: p.index)
            if p.type != 0 and p.type not in EXTENDED_TYPES and p.sectors
        ]
        for mp in [*mparts[:1], *[p for p in mparts if p.bootable][:1]]:
            found.append((f"MBR partition {mp.index} (type 0x{mp.type:02x})", mp.start_lba * 512))
    unique: list[tuple[str, int]] = []
    for c in found:
        if c[1] not in {u[1] for u in unique}:
            unique.append(c)
    return unique[:MAX_PARTITIONS]


def _env() -> dict[str, str]:
    return dict(os.environ, LC_ALL="C", MTOOLS_SKIP_CHECK="1", MTOOLS_NO_VFAT="0")


def _run(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    log.debug("running %s", argv)
    return subprocess.run(
        argv,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        env=_env(),
        timeout=TIMEOUT,
        check=False,
    )


def _fat_names(image: str, offset: int) -> tuple[tuple[str, ...], str | None]:
    """Paths (lower case) in the FAT's root, and in /boot, /extlinux, /boot/extlinux."""
    if shutil.which("mdir") is None:
        return (), "mtools is not installed, so its files could not be read"
    names: list[str] = []
    todo = ["/"]
    seen_dirs: set[str] = set()
    while todo:
        d = todo.pop(0)
        seen_dirs.add(d)
        try:
            p = _run(["mdir", "-b", "-i", f"{image}@@{offset}", f"::{d}"])
        except subprocess.TimeoutExpired:
            return tuple(names), "mtools took too long to list the FAT file system"
        if p.returncode != 0:
            if d == "/":
                err = (p.stderr.strip().splitlines() or [f"mdir exited with {p.returncode}"])[0]
                return (), f"the FAT file system could not be read ({err})"
            continue
        for line in p.stdout.splitlines()[:MAX_NAMES]:
            line = line.strip()
            if not line.startswith("::/"):
                continue
            path = line[2:].lower()
            if path.endswith("/"):
                sub = path.rstrip("/")
                if sub in ("/boot", "/extlinux", "/boot/extlinux") and sub not in seen_dirs:
                    todo.append(sub)
                continue
            names.append(path)
    return tuple(names), None


def _ext_names(image: str, offset: int) -> tuple[tuple[str, ...], str | None]:
    """Paths (lower case) in an ext2/3/4 root, /boot, /extlinux and /boot/extlinux."""
    if shutil.which("debugfs") is None:
        return (), "debugfs (e2fsprogs) is not installed, so its files could not be read"
    dirs = ("/", "/boot", "/extlinux", "/boot/extlinux")
    script = "".join(f"ls -p {d}\n" for d in dirs)
    try:
        p = _run(["debugfs", "-f", "-", f"{image}?offset={offset}"], stdin=script)
    except subprocess.TimeoutExpired:
        return (), "debugfs took too long to read the file system"
    names: list[str] = []
    current: str | None = None
    for line in p.stdout.splitlines()[:MAX_NAMES]:
        if line.startswith("debugfs: ls -p "):
            current = line.removeprefix("debugfs: ls -p ").strip()
            continue
        # /inode/mode/uid/gid/name/size/
        fields = line.strip().split("/")
        if current is None or len(fields) < 7 or fields[2].startswith("04"):
            continue  # a directory (mode 04xxxx), or not a listing line
        names.append(f"{current.rstrip('/')}/{fields[5]}".lower())
    if not names and p.returncode != 0:
        return (), "the ext file system could not be read"
    return tuple(names), None


def read_boards(r: ImageReader, mbr: Mbr | None, gpt: Gpt | None) -> BoardSigns:
    vendor, spl_offset, spl_name = read_spl(r)
    partitions = []
    tools_can_read = os.path.exists(r.tool_path)  # not an in-memory image
    for source, offset in _candidates(mbr, gpt):
        if not r.known(offset, 4096):
            partitions.append(BootPartition(source, offset, None, (), unread=True))
            continue
        head = r.read(offset, 2048)
        if not tools_can_read:
            partitions.append(BootPartition(source, offset, None, ()))
        elif fat_bpb_ok(head[:512]) and head[3:11] not in (b"NTFS    ", b"EXFAT   "):
            files, error = _fat_names(r.tool_path, offset)
            partitions.append(BootPartition(source, offset, "fat", _marked(files), error))
        elif len(head) >= EXT_MAGIC_AT + 2 and u16le(head, EXT_MAGIC_AT) == 0xEF53:
            files, error = _ext_names(r.tool_path, offset)
            partitions.append(BootPartition(source, offset, "ext", _marked(files), error))
        else:
            partitions.append(BootPartition(source, offset, None, ()))
    return BoardSigns(vendor, spl_offset, spl_name, tuple(partitions))


def _marked(files: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(raspberry_pi_files(files)) | set(u_boot_files(files))))

#!/usr/bin/env python3
"""Build small bootable (and deliberately unbootable) test images with real tools.

    python scripts/make_images.py OUTDIR [NAME ...]

With no NAME, builds every image whose tools are installed. Each image that is
meant to boot prints a marker on the serial port, ``USBW-MARK <name> <platform>``
(platform ``pc`` under BIOS, ``efi`` under UEFI), then halts or waits, so a test
that boots it under qemu can tell what really ran.

IMAGES maps each name to its builder, the tools it needs and the verdict a
careful reading of its boot records should give (``expect_bios``,
``expect_uefi``). The verdict tests check the report against real firmware, not
against these expectations; the unit tests use them as a second check.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MARK = "USBW-MARK"

GRUB_ISO_MODULES = (
    "normal configfile echo serial terminal test halt reboot iso9660 fat search "
    "search_fs_uuid part_acorn part_amiga part_apple part_bsd part_dfly part_dvh "
    "part_gpt part_msdos part_plan part_sun part_sunpc"
)
GRUB_STANDALONE_MODULES = "normal configfile echo serial terminal test halt memdisk tar"


@dataclass(frozen=True)
class ImageSpec:
    name: str
    build: Callable[[Path, Path], None]  # (output file, scratch directory)
    tools: tuple[str, ...]
    expect_bios: str
    expect_uefi: str
    description: str
    files: tuple[str, ...] = ()  # files that must exist (e.g. a grub platform)
    suffix: str = ""  # the file's suffix when not .img (raw-*) or .iso
    same_as: str = ""  # a compressed copy of this image (it prints this image's marker)


def marker(name: str, platform: str) -> str:
    return f"{MARK} {name} {platform}"


def run(argv: list[str], cwd: Path | None = None) -> None:
    env = dict(os.environ, LC_ALL="C", MTOOLS_SKIP_CHECK="1")
    p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")


def grub_cfg(name: str) -> str:
    return (
        "serial --unit=0 --speed=115200\n"
        "terminal_output serial console\n"
        'if [ "$grub_platform" = "efi" ]; then\n'
        f'  echo "{marker(name, "efi")}"\n'
        "else\n"
        f'  echo "{marker(name, "pc")}"\n'
        "fi\n"
        "halt\n"
    )


def grub_tree(work: Path, name: str) -> Path:
    root = work / "root"
    (root / "boot" / "grub").mkdir(parents=True, exist_ok=True)
    (root / "boot" / "grub" / "grub.cfg").write_text(grub_cfg(name))
    (root / "README.txt").write_text(f"usbwriter test image {name}\n")
    return root


def grub_mkrescue(out: Path, root: Path, platform_dir: str | None = None) -> None:
    argv = ["grub-mkrescue"]
    if platform_dir:
        argv += ["-d", platform_dir]
    argv += [
        "-o", str(out), "--compress=xz", "--fonts=", "--locales=", "--themes=",
        f"--install-modules={GRUB_ISO_MODULES}", str(root),
    ]  # fmt: skip
    run(argv)


def standalone_efi(work: Path, name: str, target: str, filename: str) -> Path:
    """A GRUB EFI program with its grub.cfg built in (needs no file system)."""
    cfg = work / f"{filename}.cfg"
    cfg.write_text(grub_cfg(name))
    out = work / filename
    run([
        "grub-mkstandalone", "-O", target, "-o", str(out), "--locales=", "--fonts=",
        "--themes=", f"--install-modules={GRUB_STANDALONE_MODULES}",
        f"boot/grub/grub.cfg={cfg}",
    ])  # fmt: skip
    return out


def fat_image(path: Path, size_kib: int, files: dict[str, Path]) -> Path:
    """A FAT file system image holding files (FAT path -> host file)."""
    if path.exists():
        path.unlink()
    run(["mkfs.vfat", "-C", "-n", "USBWESP", str(path), str(size_kib)])
    made: set[str] = set()
    for dest in files:
        parts = dest.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                run(["mmd", "-i", str(path), f"::/{d}"])
                made.add(d)
    for dest, src in files.items():
        run(["mcopy", "-i", str(path), str(src), f"::/{dest.strip('/')}"])
    return path


def efi_fat(work: Path, name: str, *, x64: bool = True, ia32: bool = False) -> Path:
    files: dict[str, Path] = {}
    if x64:
        files["EFI/BOOT/BOOTX64.EFI"] = standalone_efi(work, name, "x86_64-efi", "BOOTX64.EFI")
    if ia32:
        files["EFI/BOOT/BOOTIA32.EFI"] = standalone_efi(work, name, "i386-efi", "BOOTIA32.EFI")
    size = 1024 + sum(p.stat().st_size for p in files.values()) // 1024
    return fat_image(work / "efi.img", max(size, 1440), files)


def isolinux_tree(work: Path, name: str) -> Path:
    root = work / "sltree"
    iso = root / "isolinux"
    iso.mkdir(parents=True, exist_ok=True)
    shutil.copy("/usr/lib/ISOLINUX/isolinux.bin", iso)
    for mod in ("ldlinux.c32", "libcom32.c32", "cat.c32"):
        shutil.copy(f"/usr/lib/syslinux/modules/bios/{mod}", iso)
    (iso / "marker.txt").write_text(marker(name, "pc") + "\n")
    (iso / "isolinux.cfg").write_text(
        "SERIAL 0 115200\nPROMPT 0\nDEFAULT mark\nLABEL mark\n"
        "  COM32 cat.c32\n  APPEND /isolinux/marker.txt\n"
    )
    return root


# ---- builders -------------------------------------------------------------------------------


def build_grub_hybrid(out: Path, work: Path) -> None:
    grub_mkrescue(out, grub_tree(work, "grub-hybrid"))


def build_grub_bios_only(out: Path, work: Path) -> None:
    grub_mkrescue(out, grub_tree(work, "grub-bios-only"), "/usr/lib/grub/i386-pc")


def build_grub_uefi_only(out: Path, work: Path) -> None:
    grub_mkrescue(out, grub_tree(work, "grub-uefi-only"), "/usr/lib/grub/x86_64-efi")


def _eltorito_only(out: Path, work: Path, name: str, with_efi: bool) -> None:
    hybrid = work / "hybrid.iso"
    grub_mkrescue(hybrid, grub_tree(work, name))
    tree = work / "tree"
    run(["xorriso", "-osirrox", "on", "-indev", str(hybrid), "-extract", "/", str(tree)])
    run(["chmod", "-R", "u+w", str(tree)])
    argv = [
        "xorriso", "-as", "mkisofs", "-o", str(out), "-V", name.upper()[:32].replace("-", "_"),
        "-R", "-J", "-c", "boot.catalog", "-b", "boot/grub/i386-pc/eltorito.img",
        "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info",
    ]  # fmt: skip
    if with_efi:
        argv += ["-eltorito-alt-boot", "-e", "efi.img", "-no-emul-boot"]
    else:
        (tree / "efi.img").unlink(missing_ok=True)
    run([*argv, str(tree)])


def build_eltorito_bios_uefi(out: Path, work: Path) -> None:
    _eltorito_only(out, work, "eltorito-bios-uefi", True)


def build_eltorito_bios_only(out: Path, work: Path) -> None:
    _eltorito_only(out, work, "eltorito-bios-only", False)


def build_data_only(out: Path, work: Path) -> None:
    d = work / "data"
    (d / "docs").mkdir(parents=True)
    (d / "docs" / "hello.txt").write_text("hello\n" * 1000)
    (d / "README.txt").write_text("a plain data disc\n")
    run(["xorriso", "-as", "mkisofs", "-o", str(out), "-V", "DATA_ONLY", "-R", "-J", str(d)])


def build_data_md5(out: Path, work: Path) -> None:
    """Large enough (3 MB) that checkisomd5's fragment sums work as a second opinion."""
    import random

    d = work / "data"
    d.mkdir()
    (d / "noise.bin").write_bytes(random.Random(4).randbytes(3_000_000))
    (d / "README.txt").write_text("a data disc with an implanted MD5\n")
    run(["xorriso", "-as", "mkisofs", "-o", str(out), "-V", "DATA_MD5", "-R", "-J", str(d)])
    run(["implantisomd5", "--force", str(out)])


def build_syslinux_isohybrid(out: Path, work: Path) -> None:
    tree = isolinux_tree(work, "syslinux-isohybrid")
    run([
        "xorriso", "-as", "mkisofs", "-o", str(out), "-V", "SYSLINUX_HYBRID", "-R", "-J",
        "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot",
        "-boot-load-size", "4", "-boot-info-table", str(tree),
    ])  # fmt: skip
    run(["isohybrid", str(out)])


def build_syslinux_isohybrid_efi(out: Path, work: Path) -> None:
    name = "syslinux-isohybrid-efi"
    tree = isolinux_tree(work, name)
    efi = efi_fat(work, name)
    (tree / "boot").mkdir()
    shutil.copy(efi, tree / "boot" / "efi.img")
    run([
        "xorriso", "-as", "mkisofs", "-o", str(out), "-V", "SYSLINUX_HYBRID_EFI", "-R", "-J",
        "-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin", "-no-emul-boot",
        "-boot-load-size", "4", "-boot-info-table", "-eltorito-alt-boot",
        "-e", "boot/efi.img", "-no-emul-boot", str(tree),
    ])  # fmt: skip
    run(["isohybrid", "-u", str(out)])


def build_ia32_only(out: Path, work: Path) -> None:
    """UEFI-only ISO whose ESP (in the GPT and in El Torito) holds only an IA32 loader."""
    name = "ia32-only"
    efi = efi_fat(work, name, x64=False, ia32=True)
    tree = work / "tree"
    (tree / "boot").mkdir(parents=True)
    shutil.copy(efi, tree / "boot" / "efi.img")
    run([
        "xorriso", "-as", "mkisofs", "-o", str(out), "-V", "IA32_ONLY", "-R", "-J",
        "-c", "boot.catalog", "-e", "boot/efi.img", "-no-emul-boot",
        "-append_partition", "2", "0xef", str(efi), "-appended_part_as_gpt", str(tree),
    ])  # fmt: skip


def _pycdlib_add_tree(iso: object, root: Path) -> None:
    """Add a small host tree to a new pycdlib image (ISO level 3 names, Joliet, RR)."""
    add_dir = iso.add_directory  # type: ignore[attr-defined]
    add_file = iso.add_file  # type: ignore[attr-defined]
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in sorted(dirnames):
            p = "/" + str(rel / d).lstrip("./") if str(rel) != "." else "/" + d
            add_dir(p.upper(), rr_name=d, joliet_path=p)
        for f in sorted(filenames):
            p = "/" + str(rel / f) if str(rel) != "." else "/" + f
            stem, _, ext = f.upper().partition(".")
            iso_name = f"{stem[:30]}.{ext[:3]};1" if ext else f"{stem[:30]}.;1"
            iso_path = str(Path(p).parent).upper().rstrip("/") + "/" + iso_name.replace("-", "_")
            add_file(str(Path(dirpath) / f), iso_path=iso_path, rr_name=f, joliet_path=p)


def build_pycdlib_isohybrid(out: Path, work: Path) -> None:
    import pycdlib

    tree = isolinux_tree(work, "pycdlib-isohybrid")
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="PYCDLIB_HYBRID")
    _pycdlib_add_tree(iso, tree)
    iso.add_eltorito(
        "/ISOLINUX/ISOLINUX.BIN;1",
        bootcatfile="/ISOLINUX/BOOT.CAT;1",
        boot_load_size=4,
        boot_info_table=True,
    )
    iso.add_isohybrid()
    iso.write(str(out))
    iso.close()


def build_windows_like(out: Path, work: Path) -> None:
    """Shaped like a Windows installer disc: UDF, El Torito, no hybrid MBR, no EFI loader."""
    import pycdlib

    root = work / "win"
    (root / "sources").mkdir(parents=True)
    (root / "boot").mkdir()
    (root / "bootmgr").write_bytes(b"\0" * 4096)
    (root / "sources" / "install.wim").write_bytes(b"MSWIM\0\0\0" + b"\0" * 8184)
    # a BIOS boot image as on a real disc: only optical drives run it
    hybrid = work / "grub.iso"
    grub_mkrescue(hybrid, grub_tree(work, "windows-like"), "/usr/lib/grub/i386-pc")
    run([
        "xorriso", "-osirrox", "on", "-indev", str(hybrid), "-extract",
        "/boot/grub/i386-pc/eltorito.img", str(root / "boot" / "etfsboot.com"),
    ])  # fmt: skip
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, udf="2.60", vol_ident="WINDOWS_LIKE")
    iso.add_directory("/SOURCES", joliet_path="/sources", udf_path="/sources")
    iso.add_directory("/BOOT", joliet_path="/boot", udf_path="/boot")
    for rel, iso_path in (
        ("bootmgr", "/BOOTMGR.;1"),
        ("sources/install.wim", "/SOURCES/INSTALL.WIM;1"),
        ("boot/etfsboot.com", "/BOOT/ETFSBOOT.COM;1"),
    ):
        iso.add_file(str(root / rel), iso_path=iso_path, joliet_path="/" + rel, udf_path="/" + rel)
    iso.add_eltorito("/BOOT/ETFSBOOT.COM;1", bootcatfile="/BOOT/BOOT.CAT;1", boot_load_size=4)
    iso.write(str(out))
    iso.close()


def _raw_disk(out: Path, size_mib: int, sgdisk_args: list[str]) -> None:
    with open(out, "wb") as f:
        f.truncate(size_mib << 20)
    run(["sgdisk", *sgdisk_args, str(out)])


def _dd_into(out: Path, src: Path, offset: int) -> None:
    with open(src, "rb") as s, open(out, "r+b") as d:
        d.seek(offset)
        shutil.copyfileobj(s, d)


def build_raw_gpt_esp(out: Path, work: Path) -> None:
    loader = standalone_efi(work, "raw-gpt-esp", "x86_64-efi", "BOOTX64.EFI")
    _raw_disk(out, 8, ["-o", "-n", "1:2048:+4M", "-t", "1:ef00", "-c", "1:EFI system partition"])
    esp = fat_image(work / "esp.img", 4096, {"EFI/BOOT/BOOTX64.EFI": loader})
    _dd_into(out, esp, 2048 * 512)


def build_raw_mbr_fat(out: Path, work: Path) -> None:
    """MBR disk, one active FAT32-LBA partition with syslinux (BIOS) and a GRUB x64 loader."""
    name = "raw-mbr-fat"
    with open(out, "wb") as f:
        f.truncate(8 << 20)
    table = "label: dos\nstart=2048, type=c, bootable\n"
    p = subprocess.run(
        ["sfdisk", "-q", str(out)], input=table, text=True, capture_output=True, check=False
    )
    if p.returncode != 0:
        raise RuntimeError(f"sfdisk failed: {p.stderr.strip()}")
    loader = standalone_efi(work, name, "x86_64-efi", "BOOTX64.EFI")
    (work / "marker.txt").write_text(marker(name, "pc") + "\n")
    (work / "syslinux.cfg").write_text(
        "SERIAL 0 115200\nPROMPT 0\nDEFAULT mark\nLABEL mark\n"
        "  COM32 cat.c32\n  APPEND /marker.txt\n"
    )
    files = {
        "EFI/BOOT/BOOTX64.EFI": loader,
        "marker.txt": work / "marker.txt",
        "syslinux.cfg": work / "syslinux.cfg",
        "cat.c32": Path("/usr/lib/syslinux/modules/bios/cat.c32"),
        "libcom32.c32": Path("/usr/lib/syslinux/modules/bios/libcom32.c32"),
    }
    fat = fat_image(work / "part.img", 6 * 1024, files)
    run(["syslinux", "--install", str(fat)])
    _dd_into(out, fat, 2048 * 512)
    mbr = Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]
    with open(out, "r+b") as f:
        f.write(mbr)


def build_debian_style(out: Path, work: Path) -> None:
    """Laid out like Debian's installer ISOs: isohybrid MBR, isolinux, an EFI image in the
    tree marked by -isohybrid-gpt-basdat (MBR partition 2 of type 0xEF, and a GPT)."""
    name = "debian-style"
    tree = isolinux_tree(work, name)
    (tree / "boot" / "grub").mkdir(parents=True)
    shutil.copy(efi_fat(work, name), tree / "boot" / "grub" / "efi.img")
    run([
        "xorriso", "-as", "mkisofs", "-o", str(out), "-V", "DEBIAN_STYLE", "-r", "-J",
        "-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin",
        "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot",
        "-boot-load-size", "4", "-boot-info-table", "-eltorito-alt-boot",
        "-e", "boot/grub/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat", str(tree),
    ])  # fmt: skip


def build_ubuntu_style(out: Path, work: Path) -> None:
    """Laid out like Ubuntu's ISOs since 20.10: GRUB's hybrid MBR, an ESP appended as a GPT
    partition that the El Torito EFI entry points into (it is in no directory)."""
    name = "ubuntu-style"
    hybrid = work / "hybrid.iso"
    grub_mkrescue(hybrid, grub_tree(work, name))
    tree = work / "tree"
    run(["xorriso", "-osirrox", "on", "-indev", str(hybrid), "-extract", "/", str(tree)])
    run(["chmod", "-R", "u+w", str(tree)])
    efi = work / "efi.img"
    shutil.move(tree / "efi.img", efi)
    run([
        "xorriso", "-as", "mkisofs", "-o", str(out), "-V", "UBUNTU_STYLE", "-r", "-J",
        "--grub2-mbr", "/usr/lib/grub/i386-pc/boot_hybrid.img", "-partition_offset", "16",
        "--mbr-force-bootable", "-append_partition", "2", "28732ac11ff8d211ba4b00a0c93ec93b",
        str(efi), "-appended_part_as_gpt",
        "-iso_mbr_part_type", "a2a0d0ebe5b9334487c068b6b72699c7",
        "-c", "boot.catalog", "-b", "boot/grub/i386-pc/eltorito.img", "-no-emul-boot",
        "-boot-load-size", "4", "-boot-info-table", "--grub2-boot-info", "-eltorito-alt-boot",
        "-e", "--interval:appended_partition_2:::", "-no-emul-boot", str(tree),
    ])  # fmt: skip


def build_raw_fat_superfloppy(out: Path, work: Path) -> None:
    """A whole-disk FAT file system (no partition table) holding a GRUB x64 loader."""
    loader = standalone_efi(work, "raw-fat-superfloppy", "x86_64-efi", "BOOTX64.EFI")
    fat_image(out, 8 * 1024, {"EFI/BOOT/BOOTX64.EFI": loader})


def _sfdisk(out: Path, table: str) -> None:
    p = subprocess.run(
        ["sfdisk", "-q", str(out)], input=table, text=True, capture_output=True, check=False
    )
    if p.returncode != 0:
        raise RuntimeError(f"sfdisk failed: {p.stderr.strip()}")


def _mkfs_ext4(out: Path, offset: int, size_kib: int, label: str, tree: Path | None) -> None:
    argv = ["mkfs.ext4", "-q", "-F", "-L", label, "-E", f"offset={offset}"]
    if tree is not None:
        argv += ["-d", str(tree)]
    run([*argv, str(out), f"{size_kib}k"])


def build_raw_pi(out: Path, work: Path) -> None:
    """Laid out like Raspberry Pi OS: a DOS table, a FAT32 boot partition at 4 MiB with the
    firmware's files (small stand-ins), an ext4 root after it. No PC boot code."""
    with open(out, "wb") as f:
        f.truncate(96 << 20)
    _sfdisk(out, "label: dos\nstart=8192, size=81920, type=c\nstart=90112, type=83\n")
    run(["mkfs.vfat", "-F", "32", "-s", "1", "-n", "bootfs", "--offset", "8192", str(out),
         str(81920 // 2)])  # fmt: skip
    boot = work / "boot"
    boot.mkdir()
    files = {
        "bootcode.bin": b"\x00" * 512,
        "start4.elf": b"\x7fELF" + bytes(1020),
        "fixup4.dat": b"\x00" * 256,
        "config.txt": b"[all]\narm_64bit=1\nenable_uart=1\n",
        "cmdline.txt": b"console=serial0,115200 root=LABEL=rootfs rootwait\n",
    }
    for name, data in files.items():
        (boot / name).write_bytes(data)
        run(["mcopy", "-i", f"{out}@@{8192 * 512}", str(boot / name), f"::/{name}"])
    root = work / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("raspberrypi\n")
    _mkfs_ext4(out, 90112 * 512, (96 << 10) - 90112 // 2, "rootfs", root)


def build_raw_uboot_sunxi(out: Path, work: Path) -> None:
    """Laid out like an Allwinner board image (Armbian): an SPL with its eGON.BT0 header at
    8 KiB, U-Boot behind it, one ext4 partition from 4 MiB holding /boot/boot.scr."""
    with open(out, "wb") as f:
        f.truncate(24 << 20)
    _sfdisk(out, "label: dos\nstart=8192, type=83\n")
    spl = bytearray(32 << 10)
    spl[0:4] = b"\x5f\x00\x00\xea"  # the ARM branch over the header
    spl[4:12] = b"eGON.BT0"
    spl[16:20] = (len(spl)).to_bytes(4, "little")
    spl[20:24] = b"SPL\x02"
    with open(out, "r+b") as f:
        f.seek(8192)
        f.write(spl)
    root = work / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "boot.scr").write_bytes(b"'V" + bytes(62) + b"setenv bootargs\n")
    (root / "boot" / "armbianEnv.txt").write_text("verbosity=1\n")
    _mkfs_ext4(out, 8192 * 512, (24 << 10) - 4096, "armbi_root", root)


def build_raw_data_ext4(out: Path, work: Path) -> None:
    """A plain data disk: a GPT with one ext4 partition holding files, nothing to boot."""
    _raw_disk(out, 16, ["-o", "-n", "1:2048:0", "-t", "1:8300", "-c", "1:data"])
    tree = work / "data"
    (tree / "photos").mkdir(parents=True)
    (tree / "photos" / "a.txt").write_text("not a photo\n")
    _mkfs_ext4(out, 2048 * 512, (16 << 10) - 1024 - 17, "data", tree)


def _compressed_copy(of: str, argv: list[str]) -> Callable[[Path, Path], None]:
    """A builder writing ARGV's compression of the image OF (built first if need be)."""

    def builder(out: Path, work: Path) -> None:
        outdir = out.parent.parent  # build() works in a directory inside the output one
        spec = IMAGES[of]
        src = outdir / f"{of}{spec.suffix or ('.img' if of.startswith('raw-') else '.iso')}"
        if not src.exists():
            src = build(of, work)
        with open(out, "wb") as f:
            p = subprocess.run([*argv, str(src)], stdout=f, stderr=subprocess.PIPE, check=False)
        if p.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {p.stderr.decode(errors='replace').strip()}")

    return builder


XZ = ["xz", "-T0", "-c", "-k"]
ZSTD = ["zstd", "-q", "-c"]
GZIP = ["gzip", "-n", "-c"]
G = "/usr/lib/grub"
GRUB_TOOLS = ("grub-mkrescue", "xorriso", "mformat")
IMAGES: dict[str, ImageSpec] = {
    s.name: s
    for s in (
        ImageSpec("grub-hybrid", build_grub_hybrid, GRUB_TOOLS, "yes", "yes",
                  "grub-mkrescue BIOS+UEFI hybrid: El Torito, GRUB MBR, GPT with an ESP",
                  (f"{G}/i386-pc", f"{G}/x86_64-efi")),
        ImageSpec("grub-bios-only", build_grub_bios_only, GRUB_TOOLS, "yes", "no",
                  "grub-mkrescue for i386-pc only: GRUB MBR, no EFI", (f"{G}/i386-pc",)),
        ImageSpec("grub-uefi-only", build_grub_uefi_only, GRUB_TOOLS, "no", "yes",
                  "grub-mkrescue for x86_64-efi only: GPT with an ESP, no MBR boot code",
                  (f"{G}/x86_64-efi",)),
        ImageSpec("eltorito-bios-uefi", build_eltorito_bios_uefi, GRUB_TOOLS, "no",
                  "firmware-dependent", "El Torito BIOS+UEFI entries, no MBR or GPT",
                  (f"{G}/i386-pc", f"{G}/x86_64-efi")),
        ImageSpec("eltorito-bios-only", build_eltorito_bios_only, GRUB_TOOLS, "no", "no",
                  "El Torito BIOS entry only, no MBR", (f"{G}/i386-pc", f"{G}/x86_64-efi")),
        ImageSpec("data-only", build_data_only, ("xorriso",), "no", "no",
                  "plain data ISO, nothing bootable"),
        ImageSpec("data-md5", build_data_md5, ("xorriso", "implantisomd5"), "no", "no",
                  "plain data ISO with an implantisomd5 checksum"),
        ImageSpec("syslinux-isohybrid", build_syslinux_isohybrid, ("xorriso", "isohybrid"),
                  "yes", "no", "isolinux ISO made hybrid by isohybrid",
                  ("/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/modules/bios")),
        ImageSpec("syslinux-isohybrid-efi", build_syslinux_isohybrid_efi,
                  ("xorriso", "isohybrid", "grub-mkstandalone", "mkfs.vfat", "mcopy"),
                  "yes", "yes", "isolinux + GRUB EFI image, isohybrid -u (MBR 0xEF partition)",
                  ("/usr/lib/ISOLINUX/isolinux.bin", f"{G}/x86_64-efi")),
        ImageSpec("ia32-only", build_ia32_only,
                  ("xorriso", "grub-mkstandalone", "mkfs.vfat", "mcopy"), "no", "no",
                  "UEFI ISO whose ESP holds only an IA32 loader", (f"{G}/i386-efi",)),
        ImageSpec("pycdlib-isohybrid", build_pycdlib_isohybrid, (), "yes", "no",
                  "isolinux ISO and isohybrid MBR made by pycdlib",
                  ("/usr/lib/ISOLINUX/isohdpfx.bin", "/usr/lib/syslinux/modules/bios")),
        ImageSpec("windows-like", build_windows_like, GRUB_TOOLS, "no", "no",
                  "UDF + El Torito like a Windows installer, no hybrid MBR",
                  (f"{G}/i386-pc",)),
        ImageSpec("raw-gpt-esp", build_raw_gpt_esp,
                  ("sgdisk", "grub-mkstandalone", "mkfs.vfat", "mcopy"), "no", "yes",
                  "raw disk: GPT with an ESP holding a GRUB x64 loader", (f"{G}/x86_64-efi",)),
        ImageSpec("raw-mbr-fat", build_raw_mbr_fat,
                  ("sfdisk", "syslinux", "grub-mkstandalone", "mkfs.vfat", "mcopy"),
                  "yes", "yes", "raw disk: MBR, active FAT32 partition with syslinux and "
                  "an x64 loader", (f"{G}/x86_64-efi", "/usr/lib/syslinux/mbr/mbr.bin")),
        ImageSpec("debian-style", build_debian_style,
                  ("xorriso", "grub-mkstandalone", "mkfs.vfat", "mcopy"), "yes", "yes",
                  "isohybrid MBR + isolinux, EFI image via -isohybrid-gpt-basdat",
                  ("/usr/lib/ISOLINUX/isohdpfx.bin", f"{G}/x86_64-efi")),
        ImageSpec("ubuntu-style", build_ubuntu_style, GRUB_TOOLS, "yes", "yes",
                  "GRUB hybrid MBR, appended GPT ESP that El Torito points into",
                  (f"{G}/i386-pc/boot_hybrid.img", f"{G}/x86_64-efi")),
        ImageSpec("raw-fat-superfloppy", build_raw_fat_superfloppy,
                  ("grub-mkstandalone", "mkfs.vfat", "mcopy"), "no", "yes",
                  "raw disk: one FAT file system, no partition table, x64 loader",
                  (f"{G}/x86_64-efi",)),
        ImageSpec("raw-pi", build_raw_pi, ("sfdisk", "mkfs.vfat", "mcopy", "mkfs.ext4"),
                  "no", "no", "Raspberry Pi OS layout: FAT32 boot partition with the "
                  "firmware's files, ext4 root; no PC boot code"),
        ImageSpec("raw-uboot-sunxi", build_raw_uboot_sunxi, ("sfdisk", "mkfs.ext4"), "no", "no",
                  "Allwinner board layout: eGON.BT0 SPL at 8 KiB, ext4 with /boot/boot.scr"),
        ImageSpec("raw-data-ext4", build_raw_data_ext4, ("sgdisk", "mkfs.ext4"), "no", "no",
                  "a data disk: GPT, one ext4 partition with files"),
        ImageSpec("grub-hybrid-xz", _compressed_copy("grub-hybrid", XZ), (*GRUB_TOOLS, "xz"),
                  "yes", "yes", "grub-hybrid compressed with xz -T0",
                  (f"{G}/i386-pc", f"{G}/x86_64-efi"), ".iso.xz", "grub-hybrid"),
        ImageSpec("grub-hybrid-zst", _compressed_copy("grub-hybrid", ZSTD),
                  (*GRUB_TOOLS, "zstd"), "yes", "yes", "grub-hybrid compressed with zstd",
                  (f"{G}/i386-pc", f"{G}/x86_64-efi"), ".iso.zst", "grub-hybrid"),
        ImageSpec("grub-hybrid-gz", _compressed_copy("grub-hybrid", GZIP),
                  (*GRUB_TOOLS, "gzip"), "yes", "yes", "grub-hybrid compressed with gzip",
                  (f"{G}/i386-pc", f"{G}/x86_64-efi"), ".iso.gz", "grub-hybrid"),
    )
}  # fmt: skip


def missing_requirements(name: str) -> list[str]:
    """What this image needs that the machine lacks (commands or files)."""
    spec = IMAGES[name]
    missing = [t for t in spec.tools if shutil.which(t) is None]
    missing += [f for f in spec.files if not os.path.exists(f)]
    return missing


def build(name: str, outdir: Path) -> Path:
    """Build one image into outdir/NAME.img (or .iso); returns its path."""
    spec = IMAGES[name]
    suffix = spec.suffix or (".img" if name.startswith("raw-") else ".iso")
    out = outdir / f"{name}{suffix}"
    missing = missing_requirements(name)
    if missing:
        raise RuntimeError(f"cannot build {name}: missing {', '.join(missing)}")
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"usbw-{name}-", dir=outdir) as tmp:
        part = Path(tmp) / out.name
        spec.build(part, Path(tmp))
        os.replace(part, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("names", nargs="*", help=f"images to build (default: all): {', '.join(IMAGES)}")
    args = p.parse_args(argv)
    names = args.names or list(IMAGES)
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        print(f"make_images: unknown image(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    rc = 0
    for name in names:
        missing = missing_requirements(name)
        if missing:
            print(f"skip {name}: missing {', '.join(missing)}", file=sys.stderr)
            if args.names:
                rc = 1
            continue
        try:
            out = build(name, args.outdir)
        except RuntimeError as e:
            print(f"make_images: {e}", file=sys.stderr)
            rc = 1
            continue
        print(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())

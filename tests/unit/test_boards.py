"""Disk images that are not for PC firmware: a Raspberry Pi's, a U-Boot board's, a data
disk. The report says what each is for and that it will not boot a PC; PC disks and ISOs
stay what they were."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.images import build_image
from usbwriter.boot import BootReport, inspect_image, render_text
from usbwriter.boot.boards import SPL_SIGNATURES

MiB = 1 << 20
TOOLS = ("sfdisk", "sgdisk", "mkfs.vfat", "mformat", "mcopy", "mmd", "mkfs.ext4", "debugfs")


def need(*tools: str) -> None:
    lacking = [t for t in tools if shutil.which(t) is None]
    if lacking:
        pytest.skip(f"needs {', '.join(lacking)}")


def run(argv: list[str], stdin: str | None = None) -> None:
    env = {"LC_ALL": "C", "MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    p = subprocess.run(argv, input=stdin, text=True, capture_output=True, env=env, check=False)
    assert p.returncode == 0, f"{argv}: {p.stderr}"


def dos_disk(path: Path, size: int, table: str) -> Path:
    """A sparse file with a DOS partition table written by sfdisk."""
    need("sfdisk")
    with open(path, "wb") as f:
        f.truncate(size)
    run(["sfdisk", "-q", str(path)], stdin=f"label: dos\n{table}")
    return path


def fat_at(path: Path, offset: int, files: dict[str, bytes], tmp: Path) -> None:
    """A FAT file system made with mtools at OFFSET of the disk image, holding FILES."""
    need("mformat", "mcopy", "mmd")
    target = f"{path}@@{offset}"
    run(["mformat", "-i", target, "-T", str(32 * MiB // 512), "-h", "64", "-s", "32", "::"])
    made: set[str] = set()
    for name, data in files.items():
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                run(["mmd", "-i", target, f"::/{d}"])
                made.add(d)
        src = tmp / name.replace("/", "_")
        src.write_bytes(data)
        run(["mcopy", "-i", target, str(src), f"::/{name}"])


def kind_of(report: BootReport) -> tuple[str, str, str]:
    return report.image_kind, report.boot.bios, report.boot.uefi


def test_raspberry_pi_image() -> None:
    """Built like Raspberry Pi OS (sfdisk, mkfs.vfat --offset, mcopy: scripts/make_images.py)."""
    image = build_image("raw-pi")
    r = inspect_image(image)
    assert kind_of(r) == ("board:raspberry-pi", "no", "no")
    assert r.for_hardware == "a Raspberry Pi"
    assert r.boot.reasons[0].startswith(
        "This image is for a Raspberry Pi: MBR partition 1 (type 0x0c) is a FAT file system "
        "with bootcode.bin, config.txt, fixup4.dat and start4.elf"
    )
    assert r.boot.reasons[0].endswith("it will not boot a PC.")
    assert r.board is not None and r.board.spl is None
    assert r.board.partitions[0].files == (
        "/bootcode.bin", "/config.txt", "/fixup4.dat", "/start4.elf",
    )  # fmt: skip
    assert r.problems == () and r.compression is None and r.not_read == ()
    text = render_text(r)
    assert text.splitlines()[0] == f"{image}: disk image for a Raspberry Pi, 96.0 MiB"
    assert "Board boot files" in text
    d = json.loads(json.dumps(r.to_dict()))
    assert d["image_kind"] == "board:raspberry-pi" and d["for_hardware"] == "a Raspberry Pi"


def test_raspberry_pi_5_image_without_start_elf(tmp_path: Path) -> None:
    """A Pi 5 keeps its firmware in EEPROM: config.txt with the kernel and bcm2712 tree."""
    img = dos_disk(tmp_path / "pi5.img", 48 * MiB, "start=2048, size=73728, type=c\n")
    fat_at(img, MiB, {"config.txt": b"[all]\n", "bcm2712-rpi-5-b.dtb": b"\xd0\x0d\xfe\xed",
                      "kernel_2712.img": b"x", "overlays/README": b"x"}, tmp_path)  # fmt: skip
    r = inspect_image(img)
    assert kind_of(r) == ("board:raspberry-pi", "no", "no")
    assert "bcm2712-rpi-5-b.dtb and config.txt" in r.boot.reasons[0]


def test_config_txt_alone_is_not_a_raspberry_pi(tmp_path: Path) -> None:
    img = dos_disk(tmp_path / "data.img", 48 * MiB, "start=2048, size=73728, type=c\n")
    fat_at(img, MiB, {"config.txt": b"[all]\n", "notes.txt": b"x"}, tmp_path)
    r = inspect_image(img)
    assert kind_of(r) == ("data-disk", "no", "no")
    assert r.for_hardware == "a data disk"
    assert r.boot.reasons[0] == (
        "This is a data disk image: an MBR partition table with 1 partition (FAT32 (LBA)), "
        "but no boot code, no EFI loader and no board's boot files; it will not boot a PC."
    )


def test_allwinner_spl_at_8_kib() -> None:
    image = build_image("raw-uboot-sunxi")
    r = inspect_image(image)
    assert kind_of(r) == ("board:u-boot", "no", "no")
    assert r.for_hardware == "a board booting with U-Boot (Allwinner SPL)"
    assert r.board is not None
    assert (r.board.spl, r.board.spl_offset) == ("allwinner", 8192)
    assert r.boot.reasons[0] == (
        "This image is for a board booting with U-Boot: an Allwinner SPL (eGON.BT0) at byte "
        "8,192, where the board's boot ROM loads it from; it will not boot a PC."
    )
    # the ext4 partition was read too (debugfs): its boot script is listed
    assert r.board.partitions[0].files == ("/boot/boot.scr",) or shutil.which("debugfs") is None
    assert (
        render_text(r)
        .splitlines()[0]
        .endswith("disk image for a board booting with U-Boot (Allwinner SPL), 24.0 MiB")
    )


def _rc4(data: bytes) -> bytes:
    """Rockchip's boot ROM RC4 (fixed key), to check the encoded signature we look for."""
    key = [124, 78, 3, 4, 85, 5, 9, 7, 45, 44, 123, 56, 23, 13, 23, 17]
    s, j = list(range(256)), 0
    for i in range(256):
        j = (j + s[i] + key[i % 16]) % 256
        s[i], s[j] = s[j], s[i]
    out, i, j = bytearray(), 0, 0
    for b in data:
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(b ^ s[(s[i] + s[j]) % 256])
    return bytes(out)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"RKNS", "Rockchip idbloader (RKNS)"),
        ((0x0FF0AA55).to_bytes(4, "little"), "Rockchip idbloader (0x0FF0AA55)"),
        (_rc4((0x0FF0AA55).to_bytes(4, "little")), "Rockchip idbloader (0x0FF0AA55, RC4)"),
    ],
)
def test_rockchip_idbloader_at_32_kib(tmp_path: Path, header: bytes, name: str) -> None:
    img = dos_disk(tmp_path / "rk.img", 24 * MiB, "start=32768, type=83\n")
    with open(img, "r+b") as f:
        f.seek(32768)
        f.write(header + bytes(508))
    r = inspect_image(img)
    assert kind_of(r) == ("board:u-boot", "no", "no")
    assert r.board is not None and r.board.spl == "rockchip" and r.board.spl_name == name
    assert r.for_hardware == "a board booting with U-Boot (Rockchip idbloader)"


def test_rc4_signature_constant_is_the_encoded_header() -> None:
    encoded = [m for _, v, m, n in SPL_SIGNATURES if n.endswith("RC4)")]
    assert encoded == [_rc4(bytes.fromhex("55aaf00f"))] == [bytes.fromhex("3b8cdcfc")]


def test_extlinux_on_the_first_partition(tmp_path: Path) -> None:
    """No SPL (it may be in the board's SPI flash): U-Boot's distro boot reads the file."""
    img = dos_disk(tmp_path / "ext.img", 48 * MiB, "start=2048, size=73728, type=c, bootable\n")
    fat_at(img, MiB, {"extlinux/extlinux.conf": b"label l\n  kernel /Image\n",
                      "Image": b"x"}, tmp_path)  # fmt: skip
    r = inspect_image(img)
    assert kind_of(r) == ("board:u-boot", "no", "no")
    assert r.for_hardware == "a board booting with U-Boot (extlinux/extlinux.conf)"
    assert "MBR partition 1 (type 0x0c) holds extlinux/extlinux.conf" in r.boot.reasons[0]


def test_plain_data_disk_with_ext4() -> None:
    image = build_image("raw-data-ext4")
    r = inspect_image(image)
    assert kind_of(r) == ("data-disk", "no", "no")
    assert r.boot.reasons[0].startswith(
        "This is a data disk image: a GPT with 1 partition (data), but no boot code"
    )
    assert render_text(r).splitlines()[0] == f"{image}: disk image (a data disk), 16.0 MiB"


def _pe(machine: int) -> bytes:
    """The start of a PE/COFF file for MACHINE: enough for the report's reading."""
    head = bytearray(1024)
    head[0:2] = b"MZ"
    head[0x3C:0x40] = (0x80).to_bytes(4, "little")
    head[0x80:0x84] = b"PE\0\0"
    head[0x84:0x86] = machine.to_bytes(2, "little")
    head[0x98:0x9A] = (0x20B).to_bytes(2, "little")
    return bytes(head)


def test_uefi_disk_for_64_bit_arm(tmp_path: Path) -> None:
    need("sgdisk")
    img = tmp_path / "arm64.img"
    with open(img, "wb") as f:
        f.truncate(48 * MiB)
    run(["sgdisk", "-o", "-n", "1:2048:+34M", "-t", "1:ef00", str(img)])
    fat_at(img, MiB, {"EFI/BOOT/BOOTAA64.EFI": _pe(0xAA64)}, tmp_path)
    r = inspect_image(img)
    assert kind_of(r) == ("board:uefi", "no", "no")
    assert r.for_hardware == "a 64-bit ARM computer with UEFI firmware (aa64)"
    assert r.boot.reasons[0] == (
        "This image is for a 64-bit ARM computer with UEFI firmware (aa64): its only EFI "
        "loaders are for aa64; it will not boot a PC."
    )


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("grub-hybrid", "iso", "a PC (BIOS and UEFI)"),
        ("eltorito-bios-only", "iso", "a CD or DVD (its boot records are for optical drives)"),
        ("ia32-only", "iso", "a PC with 32-bit UEFI firmware (ia32)"),
        ("windows-like", "iso", "a Windows installer DVD (its files belong on a stick, copied)"),
        ("data-only", "data-iso", "a data disc (nothing to boot)"),
        ("raw-gpt-esp", "pc-disk", "a PC (UEFI)"),
        ("raw-mbr-fat", "pc-disk", "a PC (BIOS and UEFI)"),
        ("raw-fat-superfloppy", "pc-disk", "a PC (UEFI)"),
    ],
)
def test_pc_images_and_isos_keep_their_kind(name: str, kind: str, words: str) -> None:
    r = inspect_image(build_image(name), verify_checksum=False)
    assert (r.image_kind, r.for_hardware) == (kind, words)
    assert r.board is None or not r.board.spl
    if kind == "data-iso":
        assert r.boot.reasons[0] == (
            "This is an ISO image with no boot records (a data disc): written to a stick it "
            "boots nothing."
        )
    else:
        assert not r.boot.reasons[0].startswith("This is a data")

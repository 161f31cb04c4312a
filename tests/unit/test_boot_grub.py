"""The boot report reads GRUB's core image on a stick written by file copy: the MBR's
boot.img points at core.img, whose LZMA payload holds the built-in configuration; when
that chains a file (ntldr /bootmgr), the report checks the file is on the FAT partition
and says "BIOS: GRUB chains bootmgr". Hostile core images fall back to the plain GRUB
words and never raise.

The stick is an image file made here as file-copy mode makes one (GRUB's boot.img and
a core image from usbwriter.windows.grub.build, one active FAT32 partition at 1 MiB).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from usbwriter.boot import grub as boot_grub
from usbwriter.boot import inspect_image, render_text
from usbwriter.windows import grub

pytestmark = pytest.mark.skipif(
    grub.missing() is not None or shutil.which("mkfs.fat") is None or shutil.which("mcopy") is None,
    reason="needs GRUB for BIOS (grub-pc-bin, grub-common), dosfstools and mtools",
)

MiB = 1 << 20
DISK = 40 * MiB
START = MiB
ENV = dict(os.environ, LC_ALL="C", MTOOLSRC="/dev/null", MTOOLS_SKIP_CHECK="1")


def _run(*argv: str) -> None:
    p = subprocess.run(argv, capture_output=True, text=True, env=ENV, check=False)
    assert p.returncode == 0, p.stderr


@cache
def core_for(loader: str) -> grub.BiosBoot:
    return grub.build(loader, START)


def stick(path: Path, loader: str = "/bootmgr", files: tuple[str, ...] = ("bootmgr",)) -> Path:
    """An image of a stick as file-copy mode writes it, GRUB chaining LOADER, with FILES
    (at the FAT's root) beside efi/boot/bootx64.efi."""
    bios = core_for(loader)
    with open(path, "wb") as f:
        f.truncate(DISK)
    _run("mkfs.fat", "-F", "32", "-S", "512", "-s", "1", "--offset", str(START // 512),
         "-n", "CCCOMA_X64F", str(path), str((DISK - START) // 1024))  # fmt: skip
    target = f"{path}@@{START}"
    src = path.parent / "payload"
    src.write_bytes(b"\xeb\xfe" + bytes(1000))
    _run("mmd", "-i", target, "::/efi", "::/efi/boot")
    _run("mcopy", "-i", target, str(src), "::/efi/boot/bootx64.efi")
    for name in files:
        _run("mcopy", "-i", target, str(src), f"::/{name}")
    sector = bytearray(512)
    sector[:440] = bios.boot_code
    struct.pack_into("<I", sector, 440, 0x12345678)
    sector[446:462] = struct.pack(
        "<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x0C, b"\xfe\xff\xff", START // 512,
        (DISK - START) // 512,
    )  # fmt: skip
    sector[510:512] = b"\x55\xaa"
    with open(path, "r+b") as f:
        f.write(sector)
        f.write(bios.core)
    return path


def bios_reasons(reasons: tuple[str, ...]) -> list[str]:
    return [r for r in reasons if r.startswith("BIOS")]


def test_a_file_copy_stick_says_grub_chains_bootmgr(tmp_path: Path) -> None:
    r = inspect_image(str(stick(tmp_path / "stick.img")))
    assert r.boot.bios == "yes"
    assert bios_reasons(r.boot.reasons)[0].startswith("BIOS: GRUB chains bootmgr"), r.boot.reasons
    assert "MBR partition 1" in bios_reasons(r.boot.reasons)[0]
    d = r.to_dict()
    assert d["grub"]["chains"] == "/bootmgr" and d["grub"]["command"] == "ntldr"
    assert d["grub"]["found"] is True
    assert "ntldr /bootmgr" in d["grub"]["config"]
    text = render_text(r)
    assert "BIOS: GRUB chains bootmgr" in text
    assert "ntldr /bootmgr" in text


def test_another_loader_is_named_as_the_config_names_it(tmp_path: Path) -> None:
    r = inspect_image(str(stick(tmp_path / "stick.img", "/ntldr", ("ntldr",))))
    assert r.boot.bios == "yes"
    assert bios_reasons(r.boot.reasons)[0].startswith("BIOS: GRUB chains ntldr")


def test_the_chained_file_missing_from_the_partition_is_a_no(tmp_path: Path) -> None:
    r = inspect_image(str(stick(tmp_path / "stick.img", files=())))
    assert r.boot.bios == "no", r.boot.reasons
    why = bios_reasons(r.boot.reasons)[0]
    assert "/bootmgr" in why and "not on" in why, why
    assert r.to_dict()["grub"]["found"] is False


def test_a_damaged_core_image_falls_back_to_the_plain_words(tmp_path: Path) -> None:
    path = stick(tmp_path / "stick.img")
    with open(path, "r+b") as f:  # the compressed payload, past diskboot and the decompressor
        f.seek(512 + 512 + 4096)
        f.write(os.urandom(4096))
    r = inspect_image(str(path))
    assert r.boot.bios == "yes"
    assert bios_reasons(r.boot.reasons)[0].startswith("BIOS: the MBR carries GRUB boot code")
    assert r.grub is not None and r.grub.config is None and r.grub.problem
    render_text(r)


def test_core_parser_reads_the_config_of_a_real_core_image() -> None:
    core = boot_grub.read_core(core_for("/bootmgr").core)
    assert core.problem is None, core.problem
    assert core.config is not None and "ntldr /bootmgr" in core.config
    assert core.prefix == "/boot/grub"


@pytest.mark.parametrize(
    ("config", "want"),
    [
        ("ntldr /bootmgr\nboot\n", ("ntldr", "/bootmgr")),
        ("# ntldr /x\n  chainloader   '/efi/x.bin' # c\n", ("chainloader", "/efi/x.bin")),
        ("set root=(hd0,msdos1)\nntldr (hd0,msdos1)/BOOTMGR\n", ("ntldr", "/BOOTMGR")),
        ("chainloader +1\n", ("chainloader", "+1")),
        ("insmod part_msdos\nconfigfile /boot/grub/grub.cfg\n", None),
        ("ntldr\n", None),
        ("", None),
    ],
)
def test_config_chain_target(config: str, want: tuple[str, str] | None) -> None:
    assert boot_grub.chain_target(config) == want


@cache
def real_core() -> bytes:
    return core_for("/bootmgr").core


@settings(
    max_examples=int(400 * float(os.environ.get("USBW_FUZZ_SCALE", "1"))),
    deadline=timedelta(seconds=5),
    database=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 16 * 1024),
            st.one_of(
                st.binary(min_size=1, max_size=16),
                st.sampled_from(
                    [b"\0" * 4, b"\xff" * 4, struct.pack("<I", 1 << 31), b"mimg", b"\0"]
                ),
            ),
        ),
        max_size=6,
    ),
    cut=st.one_of(st.none(), st.integers(0, 140 * 1024)),
)
def test_fuzz_core_images(edits: list[tuple[int, bytes]], cut: int | None) -> None:
    """A mutated or cut core image: a CoreImage with or without a config, never raised."""
    b = bytearray(real_core())
    for off, data in edits:
        b[off : off + len(data)] = data
    if cut is not None:
        del b[cut:]
    core = boot_grub.read_core(bytes(b))
    assert core.config is None or isinstance(core.config, str)
    if core.config is not None:
        boot_grub.chain_target(core.config)


@settings(max_examples=300, deadline=timedelta(seconds=5), database=None)
@given(payload=st.binary(max_size=4096), at=st.integers(0, 4096))
def test_fuzz_module_lists(payload: bytes, at: int) -> None:
    """Module lists with any header and any entries are walked within their bounds."""
    b = bytearray(payload)
    b[at:at] = b"mimg" + struct.pack("<II", 12, len(payload) + 12)
    found = boot_grub.modules(bytes(b))
    if found is not None:
        config, prefix = found
        assert config is None or len(config) <= len(b)
        assert prefix is None or len(prefix) <= len(b)

"""The Windows-like test ISO is what the file-copy tests rely on: UDF with El Torito
only, bootmgr, the EFI loader and real WIM files."""

from __future__ import annotations

import subprocess

from tests.helpers.windows import VOLUME_ID, bootmgr_program, udf_entries, windows_iso


def test_small_iso_is_a_windows_installer() -> None:
    iso = windows_iso("small")
    names = {path for path, _ in udf_entries(iso)}
    for want in ("/bootmgr", "/boot/etfsboot.com", "/efi/boot/bootx64.efi",
                 "/sources/boot.wim", "/sources/install.wim"):  # fmt: skip
        assert want in names
    info = subprocess.run(
        ["wimlib-imagex", "info", "/dev/stdin"], input=b"", capture_output=True, check=False
    )
    assert info.returncode != 0  # (wimlib is there and refuses nonsense)
    with open(iso, "rb") as f:
        f.seek(16 * 2048 + 40)
        assert f.read(32).decode().strip() == VOLUME_ID
        f.seek(0)
        assert f.read(512)[510:] != b"\x55\xaa"  # no hybrid MBR: El Torito only


def test_bootmgr_program_ends_with_its_message() -> None:
    prog = bootmgr_program()
    assert prog[0x13:].startswith(b"USBW-MARK bootmgr pc\r\n\0")

"""File-copy mode's plan: raw or files and why, and the refusals before the first byte
(decide is pure: hand-built facts)."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from dataclasses import replace
from typing import Any

import pytest

from tests.unit.test_plan import image, stick
from usbwriter.errors import BadImage, BadInput, Refused
from usbwriter.jobs import BootFacts, Request, decide
from usbwriter.jobs.files import FilesFacts, files_summary
from usbwriter.windows import fat, unattend, wim

MiB = 1 << 20
GiB = 1 << 30

WINDOWS = BootFacts(
    "no",
    "no",
    ("This is a Windows installer image ...",),
    image_kind="iso",
    for_hardware="a Windows installer DVD (its files belong on a stick, copied)",
    windows_installer=True,
)
LINUX = BootFacts("yes", "yes", (), image_kind="iso", for_hardware="a PC (BIOS and UEFI)")


def files(**kw: Any) -> FilesFacts:
    base: dict[str, Any] = dict(
        label="CCCOMA_X64F",
        namespace="udf",
        files=900,
        folders=100,
        bytes=5 * GiB,
        sizes=(4 * GiB + 300 * MiB, 700 * MiB),
        split=(("/sources/install.wim", 4 * GiB + 300 * MiB),),
        bios_loader="/bootmgr",
        efi_loader="/efi/boot/bootx64.efi",
        staging="/var/tmp",
        staging_free=100 * GiB,
    )
    base.update(kw)
    return FilesFacts(**base)


def plan(boot: BootFacts = WINDOWS, size: int = 16 * GiB, fs: FilesFacts | None = None, **req: Any):  # type: ignore[no-untyped-def]
    target = replace(stick(), size=size)
    fs = fs if fs is not None else files()
    return decide(Request("x.iso", "/dev/sda", **req), image(size=5 * GiB), target, boot, files=fs)


def test_a_windows_installer_is_copied_by_file_and_the_plan_says_why() -> None:
    p = plan()
    assert p.ready, p.blockers
    assert p.mode == "files"
    assert "Windows installer" in p.mode_reason
    assert not any("will not boot" in str(w) for w in p.warnings)
    words = "\n".join(files_summary(p))
    assert "one active FAT32 partition 'CCCOMA_X64F'" in words
    assert "install.wim" in words and "install.swm" in words
    assert "BIOS: GRUB chains bootmgr" in words
    assert p.to_dict()["mode"] == "files"


def test_other_images_stay_raw_and_mode_raw_forces_raw() -> None:
    assert plan(LINUX).mode == "raw"
    forced = plan(mode="raw")
    assert forced.mode == "raw" and forced.files is None
    assert any("will not boot" in str(w) for w in forced.warnings)


def test_mode_files_forces_a_copy_of_any_iso() -> None:
    p = plan(LINUX, mode="files")
    assert p.mode == "files" and p.ready


def test_a_file_over_the_fat32_limit_that_is_not_a_wim_is_refused_by_name() -> None:
    p = plan(fs=files(too_large=(("/sources/huge.cab", 4 * GiB),)))
    assert not p.ready
    b = p.blockers[0]
    assert isinstance(b.error, Refused) and b.exit_code == 4 and not b.overridable
    assert "sources/huge.cab" in b.message and "4 GiB - 1" in b.message


def test_a_stick_smaller_than_the_files_is_refused() -> None:
    p = plan(size=4 * GiB)
    assert not p.ready
    assert "more than the drive holds" in p.blockers[0].message
    assert p.blockers[0].exit_code == 4


def test_a_stick_too_small_for_fat32_is_refused() -> None:
    p = plan(size=20 * MiB, fs=files(sizes=(1 * MiB,), split=(), bytes=MiB))
    assert "too small for a FAT32 file system" in p.blockers[0].message


def test_a_wim_that_is_not_one_is_refused() -> None:
    p = plan(fs=files(wim_problems=("/sources/install.wim: not a WIM file (no MSWIM header)",)))
    assert isinstance(p.blockers[0].error, BadImage)
    assert "sources/install.wim: not a WIM file" in p.blockers[0].message


def test_too_little_room_to_split_is_refused_naming_tmpdir() -> None:
    p = plan(fs=files(staging_free=1 * GiB))
    assert "set TMPDIR" in p.blockers[0].message
    # read in place (one run of the ISO), the WIM needs room for its parts only
    assert plan(fs=files(staging_free=5 * GiB)).ready
    copied = plan(fs=files(staging_free=5 * GiB, copied_out=4 * GiB + 300 * MiB))
    assert "set TMPDIR" in copied.blockers[0].message


def test_bypass_needs_files_mode_and_an_image_without_its_own_answer_file() -> None:
    raw = plan(LINUX, windows_bypass=("tpm",))
    assert isinstance(raw.blockers[0].error, BadInput)
    own = plan(fs=files(unattend="/Autounattend.xml"), windows_bypass=("tpm",))
    assert "Autounattend.xml" in own.blockers[0].message
    ok = plan(windows_bypass=("tpm", "online-account"))
    assert ok.ready
    assert any("BypassNRO" in line for line in files_summary(ok))


def test_a_compressed_iso_or_a_file_target_is_not_copied() -> None:
    from usbwriter.sources import SourceInfo

    src = SourceInfo(path="/x.iso.xz", format="xz", file_size=GiB, size=5 * GiB)
    p = decide(
        Request("x.iso.xz", "/dev/sda"),
        image(size=5 * GiB, source=src),
        replace(stick(), size=16 * GiB),
        WINDOWS,
        files=files(),
    )
    assert "decompress it first" in p.blockers[0].message


def test_delta_is_not_a_file_copy() -> None:
    assert isinstance(plan(delta=True).blockers[0].error, BadInput)


# --- the pieces -------------------------------------------------------------------------


def test_fat_label_from_the_volume_id() -> None:
    assert fat.fat_label("CCCOMA_X64FRE_EN-US_DV9") == "CCCOMA_X64F"
    assert fat.fat_label("Win11 é") == "WIN11 _"
    assert fat.fat_label("") == "WINDOWS"


def test_layout_clusters_and_mbr() -> None:
    lay = fat.layout_for(16 * GiB)
    assert lay.start == MiB and lay.cluster == 8192
    assert fat.layout_for(20 * GiB).cluster == 16384
    assert fat.layout_for(300 * MiB).cluster == 4096
    assert fat.layout_for(40 * MiB).size // fat.layout_for(40 * MiB).cluster >= 65525
    sector = fat.mbr(lay, b"\xeb\x63", disk_id=0x12345678)
    assert sector[510:] == b"\x55\xaa" and sector[:2] == b"\xeb\x63"
    boot, ptype = sector[446], sector[450]
    start, count = struct.unpack_from("<II", sector, 454)
    assert (boot, ptype, start * 512, count * 512) == (0x80, 0x0C, MiB, lay.size)


def test_wim_header_check() -> None:
    good = bytearray(208)
    good[:8] = wim.MAGIC
    struct.pack_into("<I", good, 8, 208)
    struct.pack_into("<HH", good, 40, 1, 1)
    struct.pack_into("<QQ", good, 48, 100, 1000)
    struct.pack_into("<QQ", good, 72, 100, 2000)
    assert wim.header_problem(bytes(good), 5000) is None
    assert "lies outside" in (wim.header_problem(bytes(good), 1500) or "")
    assert "no MSWIM" in (wim.header_problem(b"x" * 208, 5000) or "")
    struct.pack_into("<HH", good, 40, 2, 3)
    assert "part 2 of 3" in (wim.header_problem(bytes(good), 5000) or "")


def test_swm_names_as_setup_wants_them() -> None:
    assert wim.part_names("install.swm", 3) == ["install.swm", "install2.swm", "install3.swm"]
    assert wim.swm_name("install.esd") == "install.swm"


def test_wimlib_error_in_one_line() -> None:
    out = (
        "Splitting WIM: 0 MiB\r[ERROR] A WIM file is corrupt\n"
        "ERROR: Exiting with error code 43:\n   The WIM file is corrupt.\n"
    )
    assert wim.tool_error(out) == "A WIM file is corrupt"
    assert wim.tool_error(
        "ERROR: Exiting with error code 65:\n  Unexpectedly reached the end of the file.\n"
    ) == ("Unexpectedly reached the end of the file.")


@pytest.mark.parametrize("text", ["tpm,secureboot,ram,online-account", "all"])
def test_autounattend_sets_the_documented_keys(text: str) -> None:
    chosen = unattend.parse(text)
    xml = unattend.autounattend(chosen)
    root = ET.fromstring(xml)
    ns = {"u": "urn:schemas-microsoft-com:unattend"}
    passes = {s.get("pass") for s in root.findall("u:settings", ns)}
    assert passes == {"windowsPE", "specialize"}
    body = xml.decode()
    for key in ("BypassTPMCheck", "BypassSecureBootCheck", "BypassRAMCheck"):
        assert f"HKLM\\SYSTEM\\Setup\\LabConfig /v {key} /t REG_DWORD /d 1 /f" in body
    assert "CurrentVersion\\OOBE /v BypassNRO /t REG_DWORD /d 1 /f" in body


def test_bypass_choices_are_checked() -> None:
    assert unattend.parse("ram, tpm") == ("tpm", "ram")
    with pytest.raises(BadInput, match="unknown choice 'nope'"):
        unattend.parse("tpm,nope")
    only_lab = unattend.autounattend(("tpm",)).decode()
    assert "BypassNRO" not in only_lab and "specialize" not in only_lab

"""Boot reports on real images built by real tools, checked against xorriso's own report."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.helpers.images import ALL_NAMES, IMAGES, build_image, expected_verdict
from usbwriter.boot import BootReport, inspect_image, render_text

# xorriso reads ISOs, not their compressed copies
ISO_NAMES = [n for n in ALL_NAMES if not n.startswith("raw-") and not IMAGES[n].same_as]


def xorriso_report(path: Path) -> str:
    if shutil.which("xorriso") is None:
        pytest.skip("xorriso is not installed")
    p = subprocess.run(
        ["xorriso", "-indev", str(path), "-report_el_torito", "plain",
         "-report_system_area", "plain"],
        capture_output=True, text=True, check=True, env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return p.stdout


def rows(report: str, label: str) -> list[list[str]]:
    """xorriso report lines 'LABEL : fields...' split into fields."""
    out = []
    for line in report.splitlines():
        key, sep, rest = line.partition(":")
        if sep and key.strip() == label:
            out.append(rest.split())
    return out


@pytest.fixture(scope="module")
def reports() -> dict[str, BootReport]:
    return {}


def report_for(name: str, cache: dict[str, BootReport]) -> BootReport:
    if name not in cache:
        cache[name] = inspect_image(build_image(name))
    return cache[name]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_verdict_matches_design(name: str, reports: dict[str, BootReport]) -> None:
    r = report_for(name, reports)
    assert (r.boot.bios, r.boot.uefi) == expected_verdict(name), r.boot.reasons
    assert r.boot.reasons
    assert any(x.startswith("BIOS:") for x in r.boot.reasons)
    assert any(x.startswith("UEFI:") for x in r.boot.reasons)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_json_and_text(name: str, reports: dict[str, BootReport]) -> None:
    r = report_for(name, reports)
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d["boot"]) == {"bios", "uefi", "reasons"}
    assert d["boot"]["bios"] == r.boot.bios and d["boot"]["uefi"] == r.boot.uefi
    for key in ("iso", "eltorito", "mbr", "gpt", "apple_partition_map", "efi", "problems"):
        assert key in d
    text = render_text(r)
    head = text.splitlines()[:5]
    assert head[0].startswith(str(build_image(name)))
    assert any(f"BIOS (legacy): {r.boot.bios}" in line for line in head)
    assert any("UEFI (x86-64):" in line for line in head)
    assert r.problems == (), r.problems


@pytest.mark.parametrize("name", ISO_NAMES)
def test_eltorito_matches_xorriso(name: str, reports: dict[str, BootReport]) -> None:
    path = build_image(name)
    r = report_for(name, reports)
    x = xorriso_report(path)
    imgs = rows(x, "El Torito boot img")
    paths = {int(f[0]): f[1] for f in rows(x, "El Torito img path")}
    if not imgs:
        assert r.eltorito is None or not r.eltorito.entries
        return
    assert r.eltorito is not None and r.eltorito.validation_ok
    cat = rows(x, "El Torito catalog")
    assert r.eltorito.catalog_lba == int(cat[0][0])
    assert len(r.eltorito.entries) == len(imgs)
    for e, f in zip(r.eltorito.entries, imgs, strict=True):
        # N Pltf B Emul Ld_seg Hdpt Ldsiz LBA
        assert e.platform == {"BIOS": "x86", "UEFI": "efi"}.get(f[1], f[1])
        assert e.bootable == (f[2] == "y")
        assert e.emulation == {"none": "none"}.get(f[3], e.emulation)
        assert e.load_segment == int(f[4], 16)
        assert e.sector_count == int(f[6]) or (e.platform == "efi" and e.sector_count in (0, 1))
        assert e.load_rba == int(f[7])
        if int(f[0]) in paths:
            assert e.path is not None and e.path.lower() == paths[int(f[0])].lower()


@pytest.mark.parametrize("name", ISO_NAMES)
def test_system_area_matches_xorriso(name: str, reports: dict[str, BootReport]) -> None:
    path = build_image(name)
    r = report_for(name, reports)
    x = xorriso_report(path)
    mbr_rows = rows(x, "MBR partition")
    ours = r.mbr.partitions if r.mbr else ()
    assert [(p.index, p.status, p.type, p.start_lba, p.sectors) for p in ours] == [
        (int(f[0]), int(f[1], 16), int(f[2], 16), int(f[3]), int(f[4])) for f in mbr_rows
    ]
    summary = " ".join(" ".join(f) for f in rows(x, "System area summary"))
    if "grub2-mbr" in summary:
        assert r.mbr is not None and r.mbr.loader == "grub2"
    if "isohybrid" in summary:
        assert r.mbr is not None and r.mbr.loader == "isohybrid"
    if "protective-msdos-label" in summary:
        assert r.mbr is not None and (r.mbr.protective or r.mbr.partitions)
    gpt_types = rows(x, "GPT type GUID")
    gpt_spans = rows(x, "GPT start and size")
    if "GPT" in summary.split():
        assert r.gpt is not None and r.gpt.primary_ok
        ours_gpt = {p.index: p for p in r.gpt.partitions}
        for t, s in zip(gpt_types, gpt_spans, strict=True):
            p = ours_gpt[int(t[0])]
            assert p.type_guid == str(uuid.UUID(bytes_le=bytes.fromhex(t[1])))
            assert (p.first_lba, p.last_lba - p.first_lba + 1) == (int(s[1]), int(s[2]))
    else:
        assert r.gpt is None
    if "APM" in summary.split():
        assert r.apple_partition_map is not None
        names = [f[1] for f in rows(x, "APM partition name")]
        assert [p.name for p in r.apple_partition_map.partitions][-len(names) :] == names


def test_grub_hybrid_details(reports: dict[str, BootReport]) -> None:
    r = report_for("grub-hybrid", reports)
    assert r.kind == "iso9660" and r.iso is not None
    assert r.iso.volume_id == "ISOIMAGE" and r.iso.rock_ridge and not r.iso.udf
    assert r.size is not None and r.iso.block_size == 2048 and r.iso.volume_bytes <= r.size
    assert r.iso.creation_date and re.match(r"\d{4}-\d\d-\d\dT", r.iso.creation_date)
    assert r.mbr is not None and r.mbr.protective and r.mbr.loader_target_ok
    assert r.gpt is not None and r.gpt.backup_ok is True
    esp = [p for p in r.gpt.partitions if p.esp]
    assert len(esp) == 1
    vols = {v.via: v for v in r.efi}
    assert set(vols) == {"gpt", "eltorito"}
    arches = {ld.arch for ld in vols["gpt"].loaders if ld.removable_path}
    assert "x64" in arches
    x64 = [ld for ld in vols["gpt"].loaders if ld.path.upper() == "/EFI/BOOT/BOOTX64.EFI"]
    assert x64 and x64[0].machine == 0x8664


def test_raw_disks(reports: dict[str, BootReport]) -> None:
    g = report_for("raw-gpt-esp", reports)
    assert g.kind == "disk" and g.iso is None and g.eltorito is None
    assert g.gpt is not None and g.gpt.primary_ok and g.gpt.backup_ok
    assert g.mbr is not None and g.mbr.protective and not g.mbr.boot_code
    m = report_for("raw-mbr-fat", reports)
    assert m.mbr is not None and m.mbr.loader == "syslinux-mbr"
    assert [p.type for p in m.mbr.partitions] == [0x0C] and m.mbr.partitions[0].bootable
    assert m.efi[0].via == "mbr" and not m.efi[0].esp_type
    assert any("not typed as an ESP" in x for x in m.boot.reasons)


def test_isohybrid_efi_goes_through_mbr(reports: dict[str, BootReport]) -> None:
    r = report_for("syslinux-isohybrid-efi", reports)
    assert r.mbr is not None and not r.mbr.protective
    assert r.gpt is not None  # isohybrid -u writes one, but without a protective MBR...
    assert next(v.via for v in r.efi if v.loaders) == "mbr"  # ...so firmware reads the MBR


def test_ia32_only_is_not_x64(reports: dict[str, BootReport]) -> None:
    r = report_for("ia32-only", reports)
    assert r.boot.uefi == "no"
    loaders = [ld for v in r.efi for ld in v.loaders]
    assert loaders and {ld.arch for ld in loaders} == {"ia32"}
    assert any("only for ia32" in x for x in r.boot.reasons)


def test_eltorito_only_is_firmware_dependent(reports: dict[str, BootReport]) -> None:
    r = report_for("eltorito-bios-uefi", reports)
    assert r.mbr is None and r.gpt is None
    assert [v.via for v in r.efi] == ["eltorito"]
    assert any("El Torito" in x and "OVMF" in x for x in r.boot.reasons)
    assert any("only used when the image is a CD/DVD" in x for x in r.boot.reasons)


def test_windows_installer_words(reports: dict[str, BootReport]) -> None:
    r = report_for("windows-like", reports)
    assert r.windows_installer
    assert r.iso is not None and r.iso.udf and r.iso.joliet
    assert "Windows installer" in r.boot.reasons[0] and "will not boot" in r.boot.reasons[0]
    assert r.eltorito is not None and r.eltorito.entries[0].path == "/boot/etfsboot.com"


def test_data_disc_no_boot_records(reports: dict[str, BootReport]) -> None:
    r = report_for("data-only", reports)
    assert r.mbr is None and r.gpt is None and r.eltorito is None and r.efi == ()
    assert r.iso is not None and r.iso.volume_id == "DATA_ONLY"
    assert r.iso.joliet and r.iso.rock_ridge and r.iso.isomd5 is None


def test_implantisomd5_matches_and_checkisomd5_agrees(tmp_path: Path) -> None:
    path = build_image("data-md5")
    r = inspect_image(path)
    assert r.iso is not None and r.iso.isomd5 is not None
    assert r.iso.isomd5.checked and r.iso.isomd5.matches is True
    if shutil.which("checkisomd5"):
        assert subprocess.run(["checkisomd5", str(path)], capture_output=True).returncode == 0
    bad = tmp_path / "bad.iso"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    rb = inspect_image(bad)
    assert rb.iso is not None and rb.iso.isomd5 is not None and rb.iso.isomd5.matches is False
    assert any("does not match" in p for p in rb.problems)
    if shutil.which("checkisomd5"):
        assert subprocess.run(["checkisomd5", str(bad)], capture_output=True).returncode == 1
    skipped = inspect_image(path, verify_checksum=False)
    assert skipped.iso is not None and skipped.iso.isomd5 is not None
    assert not skipped.iso.isomd5.checked and skipped.iso.isomd5.matches is None

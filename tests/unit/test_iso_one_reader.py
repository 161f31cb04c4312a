"""One way of reading an ISO: the boot report, `ls`, extraction, backup and the app read
an image through the same reader, the same volume descriptor parser and the same walker,
so they name the same files and size the same volume; the app decodes a compressed image
once for its report and its plans."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers.isotrees import tool
from usbwriter.boot import inspect_image
from usbwriter.iso.contents import IsoImage

SECTOR = 2048
PVD = 16 * SECTOR


def eltorito_iso(out: Path, name: str) -> Path:
    """A plain ISO 9660 image (no Rock Ridge, Joliet or UDF) whose El Torito boot image is
    /NAME;1, built by pycdlib."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4)
    boot = bytes(range(256)) * 8
    iso.add_fp(io.BytesIO(boot), len(boot), f"/{name};1")
    iso.add_fp(io.BytesIO(b"x" * 100), 100, "/README.TXT;1")
    iso.add_eltorito(f"/{name};1", bootcatfile="/BOOT.CAT;1", media_name="noemul")
    iso.write(str(out))
    iso.close()
    return out


def renamed(src: Path, old: bytes, new: bytes) -> Path:
    """SRC with the one file identifier OLD (";1" included) replaced by NEW, same length."""
    assert len(old) == len(new)
    data = bytearray(src.read_bytes())
    at = data.find(b"%c%s" % (len(old), old))
    assert at > 0 and data.find(b"%c%s" % (len(old), old), at + 1) < 0
    data[at + 1 : at + 1 + len(old)] = new
    src.write_bytes(bytes(data))
    return src


@pytest.mark.parametrize(
    ("old", "new", "listed"),
    [
        (b"ABCD.;1", b"ABC..;1", "/ABC."),  # one "." is the empty extension's, not two
        (b"CAFE.;1", b"CAF\xc9.;1", "/CAF\xc9"),  # a Latin-1 byte is that letter
    ],
)
def test_the_boot_report_names_the_boot_image_as_ls_does(
    tmp_path: Path, old: bytes, new: bytes, listed: str
) -> None:
    path = renamed(eltorito_iso(tmp_path / "b.iso", old.decode()[:-2]), old, new)
    with IsoImage(str(path)) as iso:
        by_offset = {
            e.first_offset: e.path for e in iso.contents.by_path.values() if e.type == "file"
        }
    assert listed in by_offset.values()
    report = inspect_image(path)
    assert report.eltorito is not None
    entry = report.eltorito.entries[0]
    assert entry.path == by_offset[entry.load_rba * SECTOR] == listed


def patched_block_size(src: Path, size: int) -> Path:
    data = bytearray(src.read_bytes())
    data[PVD + 128 : PVD + 132] = size.to_bytes(2, "little") + size.to_bytes(2, "big")
    src.write_bytes(bytes(data))
    return src


@pytest.mark.parametrize("block", [4096, 1000])
def test_the_boot_report_and_a_disc_backup_size_the_volume_alike(
    tmp_path: Path, block: int
) -> None:
    """A logical block size ISO 9660 does not allow: the report said blocks x 2048, the
    backup of a disc blocks x the size recorded (twice the volume for 4096)."""
    from usbwriter.iso.descriptors import disc_volume_size

    path = patched_block_size(eltorito_iso(tmp_path / "v.iso", "BOOT.IMG"), block)
    report = inspect_image(path)
    assert report.iso is not None
    assert any("unusual logical block size" in p for p in report.problems)
    fd = os.open(path, os.O_RDONLY)
    try:
        backup = disc_volume_size(fd, 512, str(path))
    finally:
        os.close(fd)
    assert backup == report.iso.volume_bytes


@pytest.fixture
def zst_iso(tmp_path: Path) -> Path:
    src = tmp_path / "tree"
    (src / "boot").mkdir(parents=True)
    (src / "boot" / "big.bin").write_bytes(os.urandom(3 << 20))
    iso = tmp_path / "d.iso"
    subprocess.run(
        [tool("xorriso"), "-as", "mkisofs", "-R", "-J", "-o", str(iso), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run([tool("zstd"), "-q", "-1", str(iso)], check=True)
    return iso.with_name("d.iso.zst")


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The images whose decoding started (from their first byte), in order."""
    from usbwriter.sources.files import ImageSource

    seen: list[str] = []
    real_stream = ImageSource.stream

    def counted(self: ImageSource, **kw: bool) -> object:
        seen.append(self.path)
        return real_stream(self, **kw)

    monkeypatch.setattr(ImageSource, "stream", counted)
    return seen


def test_the_app_decodes_a_compressed_image_once_for_its_report_and_plans(
    zst_iso: Path, tmp_path: Path, starts: list[str]
) -> None:
    """The boot panel's report, the plan of the write and the plan made again when it
    starts: one decoding of the image, not three."""
    from usbwriter.jobs import Request
    from usbwriter.tui.services import Services

    services = Services.real()
    report = services.inspect_image(str(zst_iso))
    assert report["compression"]["format"] == "zstd"
    request = Request(str(zst_iso), str(tmp_path / "out.img"), to_file=True, force=True)
    first = services.plan(request)
    again = services.plan(request)
    assert first.boot is not None and again.boot is not None
    assert first.boot.compression == "zstd"
    assert starts == [str(zst_iso)]


def test_a_changed_image_is_inspected_again(
    zst_iso: Path, tmp_path: Path, starts: list[str]
) -> None:
    from usbwriter.jobs import Request
    from usbwriter.tui.services import Services

    services = Services.real()
    services.inspect_image(str(zst_iso))
    raw = zst_iso.with_suffix("")
    subprocess.run([tool("zstd"), "-q", "-f", "-3", str(raw), "-o", str(zst_iso)], check=True)
    services.plan(Request(str(zst_iso), str(tmp_path / "out.img"), to_file=True, force=True))
    assert len(starts) == 2


def test_damaged_compressed_data_is_named_with_the_byte_it_stopped_at(
    zst_iso: Path, tmp_path: Path
) -> None:
    """A compressed ISO cut short: reading a file past the cut says the file and where in
    the image decoding stopped, and the error carries that offset."""
    from usbwriter.errors import BadImage

    cut = tmp_path / "cut.iso.zst"
    data = zst_iso.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with IsoImage(str(cut)) as iso:
        big = iso.contents.lookup("/boot/big.bin")
        with pytest.raises(BadImage) as e:
            iso.data.pread(big.first_offset, big.size)
    assert str(cut) in e.value.message and "\n" not in e.value.message
    assert e.value.offset is not None and 0 < e.value.offset < big.first_offset + big.size
    assert f"at byte {e.value.offset:,} of the image" in e.value.message


def test_a_read_error_names_the_image_and_the_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A drive or file that fails to read part of an ISO (EIO from the sector at BAD on):
    the listing still reads (its folders lie before), and reading a file stored there
    says the image, the byte and the cause, as the boot report's reads used to."""
    import errno

    from usbwriter.errors import UsbWriterError

    src = tmp_path / "tree"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(4 << 20))
    iso = tmp_path / "e.iso"
    subprocess.run(
        [tool("xorriso"), "-as", "mkisofs", "-R", "-J", "-o", str(iso), str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    bad = iso.stat().st_size - (2 << 20)
    real_pread = os.pread

    def failing(fd: int, n: int, offset: int) -> bytes:
        if offset + n > bad and os.path.samefile(f"/proc/self/fd/{fd}", iso):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", failing)
    with IsoImage(str(iso)) as image:
        big = image.contents.lookup("/big.bin")
        with pytest.raises(UsbWriterError) as e:
            image.data.pread(big.first_offset, big.size)
    msg = e.value.message
    assert str(iso) in msg and "Input/output error" in msg and "\n" not in msg
    assert e.value.offset is not None and big.first_offset <= e.value.offset < bad
    assert f"at byte {e.value.offset:,}" in msg

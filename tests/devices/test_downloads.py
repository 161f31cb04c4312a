"""Images as downloaded, written from the command line onto real loop devices: sums
files and signatures checked before the first byte, and 'usbwriter hash'."""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, read_dev
from tests.devices.test_cli import ndjson, one_line_error, usbwriter
from tests.helpers.gpg import Gpg, key_pair, run

pytestmark = ROOT_ONLY
NAME = "raspios-lite.img.xz"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gpg, Gpg]]:
    yield from key_pair(tmp_path_factory)


@pytest.fixture
def download(tmp_path: Path) -> tuple[Path, bytes]:
    """A folder as a browser leaves it: an .img.xz (random data, so it is not what is
    being tested whether it boots) and its SHA256SUMS made by sha256sum."""
    folder = tmp_path / "Downloads"
    folder.mkdir()
    data = os.urandom(3 * MiB) + bytes(2 * MiB)
    (folder / NAME).write_bytes(lzma.compress(data))
    (folder / "SHA256SUMS").write_text(run(["sha256sum", NAME], cwd=folder))
    return folder / NAME, data


def write(image: Path, dev: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json", *extra)


def test_good_line_then_written(loop: LoopFactory, download: tuple[Path, bytes]) -> None:
    image, data = download
    dev = loop(16 * MiB)
    p = write(image, dev)
    assert p.returncode == 0, p.stderr
    receipt = ndjson(p.stdout)[-1]
    assert receipt["checksum"]["status"] == "matched"
    assert receipt["checksum"]["sums_file"].endswith("SHA256SUMS")
    assert "SHA256SUMS line matched" in p.stderr
    assert read_dev(dev, 0, len(data)) == data


def test_wrong_hash_refuses_with_both_hashes(
    loop: LoopFactory, download: tuple[Path, bytes]
) -> None:
    image, _ = download
    sums = image.parent / "SHA256SUMS"
    good = sums.read_text().split()[0]
    bad = ("0" if good[0] != "0" else "1") + good[1:]
    sums.write_text(sums.read_text().replace(good, bad))
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(image, dev)
    assert p.returncode == 4, p.stderr
    line = one_line_error(p.stderr)
    assert good in line and bad in line and "nothing was written" in line
    assert read_dev(dev, 0, MiB) == b"\xaa" * MiB


def test_given_checksum(loop: LoopFactory, download: tuple[Path, bytes]) -> None:
    image, _ = download
    dev = loop(16 * MiB)
    digest = hashlib.sha512(image.read_bytes()).hexdigest()
    assert write(image, dev, "--checksum", f"sha512:{digest}").returncode == 0
    fill(dev, MiB)
    p = write(image, dev, "--checksum", f"sha512:{'0' * 128}")
    assert p.returncode == 4 and read_dev(dev, 0, MiB) == b"\xaa" * MiB
    p = write(image, dev, "--checksum", "sha256:abc")
    assert p.returncode == 2, p.stderr


def test_missing_line_and_no_sums_are_said(loop: LoopFactory, download: tuple[Path, bytes]) -> None:
    image, _ = download
    dev = loop(16 * MiB)
    (image.parent / "SHA256SUMS").write_text(f"{'0' * 64}  another.iso\n")
    p = write(image, dev)
    assert p.returncode == 0, p.stderr
    assert f"no line for {NAME}" in p.stderr
    assert ndjson(p.stdout)[-1]["checksum"]["status"] == "no-entry"
    (image.parent / "SHA256SUMS").unlink()
    p = write(image, dev)
    assert p.returncode == 0 and ndjson(p.stdout)[-1]["checksum"]["status"] == "none"


def test_signatures(loop: LoopFactory, download: tuple[Path, bytes], keys: tuple[Gpg, Gpg]) -> None:
    signer, other = keys
    image, _ = download
    sums = image.parent / "SHA256SUMS"
    signer.sign(sums)
    dev = loop(16 * MiB)
    # Signed, and the keyring given: the signer's fingerprint is in the receipt.
    p = write(image, dev, "--keyring", str(signer.keyring))
    assert p.returncode == 0, p.stderr
    check = ndjson(p.stdout)[-1]["checksum"]
    assert check["signature"]["status"] == "valid"
    assert check["signature"]["fingerprint"] == signer.fingerprint
    # Signed, no keyring: written, and it says the signature was not checked.
    p = write(image, dev)
    assert p.returncode == 0 and "signature not checked" in p.stderr
    # Another key's keyring: refused.
    fill(dev, MiB)
    p = write(image, dev, "--keyring", str(other.keyring))
    assert p.returncode == 4, p.stderr
    assert read_dev(dev, 0, MiB) == b"\xaa" * MiB
    # Sums edited after signing (the hash line still matches the image): refused.
    sums.write_text(sums.read_text() + f"{'0' * 64}  added-later.iso\n")
    p = write(image, dev, "--keyring", str(signer.keyring))
    assert p.returncode == 4, p.stderr
    assert "bad signature" in one_line_error(p.stderr).lower()
    assert read_dev(dev, 0, MiB) == b"\xaa" * MiB


def test_hash_command_agrees_with_coreutils(download: tuple[Path, bytes]) -> None:
    image, data = download
    p = usbwriter("hash", str(image), "--alg", "sha256", "--alg", "md5", "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["format"] == "xz"
    assert result["file"]["sha256"] == run(["sha256sum", str(image)]).split()[0]
    assert result["file"]["md5"] == run(["md5sum", str(image)]).split()[0]
    assert result["image"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert result["image"]["size"] == len(data)

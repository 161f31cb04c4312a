"""What a checksum or a signature vouches for is what is written, on real loop devices.

An image changed in place between the check and the write (same inode and size: what
an editor, a second download or an attacker with write access does while the
confirmation waits) is refused at the end of the write, its head wiped; --keyring
demands a good signature over a matching line; --sums demands the image's line; a
bmap found beside a vouched-for image is used only if the same sums file vouches for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, random_file, read_dev, run
from tests.devices.test_cli import ndjson, one_line_error, usbwriter
from tests.helpers.gpg import Gpg, key_pair
from tests.helpers.terminal import run_on_terminal
from usbwriter import jobs
from usbwriter.errors import Refused
from usbwriter.jobs.several import plan_many, run_many

pytestmark = ROOT_ONLY

ZEROS = bytes(MiB)
OLD = b"\xaa" * MiB


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gpg, Gpg]]:
    yield from key_pair(tmp_path_factory)


def sums_for(folder: Path, *names: str) -> Path:
    sums = folder / "SHA256SUMS"
    sums.write_text(run(["sha256sum", *names], cwd=folder).stdout)
    return sums


def tamper(path: Path, offset: int = 2 * MiB, n: int = MiB) -> None:
    """Change N bytes in place: the same inode, the same size, new bytes."""
    before = os.stat(path)
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(n)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))
    after = os.stat(path)
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)


@pytest.fixture
def signed(tmp_path: Path, keys: tuple[Gpg, Gpg]) -> tuple[Path, Gpg]:
    """An 8 MiB image (random: not what is tested whether it boots) with a signed
    SHA256SUMS beside it."""
    folder = tmp_path / "Downloads"
    folder.mkdir()
    image = random_file(folder / "live.img", 8 * MiB, seed=7)
    keys[0].sign(sums_for(folder, image.name))
    return image, keys[0]


def test_image_changed_while_the_prompt_waits_is_refused(
    loop: LoopFactory, signed: tuple[Path, Gpg]
) -> None:
    image, signer = signed
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    argv = [sys.executable, "-m", "usbwriter", "--image", str(image), "--device", dev]
    argv += ["--force", "--keyring", str(signer.keyring)]
    rc, screen = run_on_terminal(argv, b"yes\n", on_prompt=lambda: tamper(image))
    assert rc == 4, screen
    assert "changed since its checksum was checked" in screen, screen
    assert "signed by" not in screen.split("changed since")[-1]
    assert read_dev(dev, 0, MiB) == ZEROS  # wiped: nothing that looks bootable


def _plan(image: Path, dev: str, **kw: object) -> jobs.Plan:
    plan = jobs.plan(jobs.Request(str(image), dev, force=True, **kw))  # type: ignore[arg-type]
    assert plan.ready, plan.blockers
    assert plan.checksum is not None and plan.checksum.status == "matched"
    return plan


@pytest.mark.parametrize("mode", ["plain", "delta", "bmap"])
def test_changed_between_plan_and_run_is_refused_and_wiped(
    loop: LoopFactory, tmp_path: Path, mode: str
) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    image = folder / "disk.img"
    with open(image, "wb") as f:  # mapped: the first 3 MiB; 5 MiB of holes after
        f.write(os.urandom(3 * MiB))
        f.truncate(8 * MiB)
    extra: dict[str, object] = {"delta": mode == "delta"}
    if mode == "bmap":
        bmap = folder / "disk.img.bmap"
        run(["bmaptool", "create", "-o", str(bmap), str(image)])
        extra["bmap"] = str(bmap)
    sums_for(folder, image.name)
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    plan = _plan(image, dev, **extra)
    if mode == "bmap":  # read only where mapped: the bmap's range checksums see it
        tamper(image, offset=2 * MiB, n=4096)
        with pytest.raises(Refused, match="does not match its bmap"):
            jobs.run(plan)
    else:  # in the zeros past 3 MiB: only the file's checksum can see it
        tamper(image, offset=6 * MiB, n=4096)
        with pytest.raises(Refused, match="changed since its checksum was checked") as info:
            jobs.run(plan)
        assert "sha256 of the bytes written is" in str(info.value)
    assert read_dev(dev, 0, MiB) == ZEROS


def test_bmap_write_reads_only_mapped_ranges_and_says_what_proves_them(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """An image whose bmap has a checksum for every range is read only where it maps:
    a change in a hole is neither read nor written, and the receipt does not claim the
    sums' digest was confirmed on bytes it never read."""
    folder = tmp_path / "dl"
    folder.mkdir()
    image = folder / "disk.img"
    with open(image, "wb") as f:
        f.write(os.urandom(3 * MiB))
        f.truncate(8 * MiB)
    bmap = folder / "disk.img.bmap"
    run(["bmaptool", "create", "-o", str(bmap), str(image)])
    sums_for(folder, image.name)
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    plan = _plan(image, dev, bmap=str(bmap))
    tamper(image, offset=6 * MiB, n=4096)
    receipt = jobs.run(plan)
    assert receipt.verified and receipt.coverage is not None
    assert receipt.coverage.read_only_mapped and receipt.image_blake3 is None
    assert receipt.checksum is not None and not receipt.checksum.confirmed
    assert read_dev(dev, 0, 3 * MiB) == image.read_bytes()[: 3 * MiB]
    assert read_dev(dev, 6 * MiB, 4096) == OLD[:4096]  # unmapped: left as it was


def test_compressed_file_changed_in_place_is_refused(loop: LoopFactory, tmp_path: Path) -> None:
    """A zstd file without content checksum whose raw blocks are changed still
    decompresses: only the sums' digest of the file can tell."""
    folder = tmp_path / "dl"
    folder.mkdir()
    raw = random_file(tmp_path / "disk.img", 6 * MiB, seed=3)
    image = folder / "disk.img.zst"
    run(["zstd", "-q", "-1", "--no-check", "-o", str(image), str(raw)])
    sums_for(folder, image.name)
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    plan = _plan(image, dev)
    tamper(image, offset=3 * MiB + 1000, n=16)  # inside a raw block, not its header
    with pytest.raises(Refused, match="changed since its checksum was checked"):
        jobs.run(plan)
    assert read_dev(dev, 0, MiB) == ZEROS


def test_several_drives_refuse_a_changed_image(loop: LoopFactory, tmp_path: Path) -> None:
    folder = tmp_path / "dl"
    folder.mkdir()
    image = random_file(folder / "disk.img", 6 * MiB, seed=5)
    sums_for(folder, image.name)
    devs = [loop(16 * MiB), loop(16 * MiB)]
    for d in devs:
        fill(d, 16 * MiB)
    plans = plan_many(jobs.Request(str(image), devs[0], force=True), devs)
    tamper(image)
    results = run_many(plans)
    for d, r in zip(devs, results, strict=True):
        assert isinstance(r.error, Refused), r
        assert "changed since its checksum was checked" in str(r.error)
        assert read_dev(d, 0, MiB) == ZEROS


def test_receipt_says_the_checksum_was_confirmed_on_the_bytes_written(
    loop: LoopFactory, signed: tuple[Path, Gpg]
) -> None:
    image, signer = signed
    dev = loop(16 * MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json",
                  "--keyring", str(signer.keyring))  # fmt: skip
    assert p.returncode == 0, p.stderr
    check = ndjson(p.stdout)[-1]["checksum"]
    assert check["confirmed_on_write"] is True
    assert "confirmed on the bytes written" in check["message"]


# --keyring and --sums: what the user asked to be vouched for --------------------------


def write(image: Path, dev: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json", *extra)


@pytest.mark.parametrize(
    "case", ["unsigned", "no-sums", "no-line", "given-checksum", "signature-deleted"]
)
def test_keyring_refuses_anything_short_of_a_good_signature(
    loop: LoopFactory, signed: tuple[Path, Gpg], case: str
) -> None:
    image, signer = signed
    sums = image.parent / "SHA256SUMS"
    extra: list[str] = ["--keyring", str(signer.keyring)]
    if case == "unsigned":  # an attacker's image with a sums file of its own
        (image.parent / "SHA256SUMS.gpg").unlink()
        sums_for(image.parent, image.name)
    elif case == "signature-deleted":
        (image.parent / "SHA256SUMS.gpg").unlink()
    elif case == "no-sums":
        sums.unlink()
        (image.parent / "SHA256SUMS.gpg").unlink()
    elif case == "no-line":
        sums.write_text(f"{'0' * 64}  another.iso\n")
        signer.sign(sums)
    else:
        digest = run(["sha256sum", str(image)]).stdout.split()[0]
        extra += ["--checksum", f"sha256:{digest}"]
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(image, dev, *extra)
    assert p.returncode == 4, p.stderr
    line = one_line_error(p.stderr)
    assert "no good signature vouches for it" in line and "nothing was written" in line
    assert read_dev(dev, 0, MiB) == OLD


def test_named_sums_file_without_the_images_line_refuses(loop: LoopFactory, tmp_path: Path) -> None:
    image = random_file(tmp_path / "disk.img", 2 * MiB)
    sums = tmp_path / "OTHER.SUMS"
    sums.write_text(f"{'0' * 64}  another.iso\n")
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(image, dev, "--sums", str(sums))
    assert p.returncode == 4, p.stderr
    assert "no line for disk.img" in one_line_error(p.stderr)
    assert read_dev(dev, 0, MiB) == OLD
    # the image itself named as the sums file, with a slash: not read as sums
    p = write(image, dev, "--sums", f"{image}/")
    assert p.returncode == 2, p.stderr
    assert read_dev(dev, 0, MiB) == OLD


# a bmap beside a vouched-for image --------------------------------------------------


@pytest.fixture
def sparse(tmp_path: Path) -> tuple[Path, Path]:
    """An 8 MiB image of which 1 MiB is mapped, its bmap beside it."""
    folder = tmp_path / "dl"
    folder.mkdir()
    image = folder / "rootfs.img"
    with open(image, "wb") as f:
        f.write(os.urandom(MiB))
        f.truncate(8 * MiB)
    bmap = folder / "rootfs.img.bmap"
    run(["bmaptool", "create", "-o", str(bmap), str(image)])
    return image, bmap


def test_bmap_not_in_the_signed_sums_is_not_used(
    loop: LoopFactory, sparse: tuple[Path, Path], keys: tuple[Gpg, Gpg]
) -> None:
    image, bmap = sparse
    signer = keys[0]
    signer.sign(sums_for(image.parent, image.name))
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(image, dev, "--keyring", str(signer.keyring))
    assert p.returncode == 0, p.stderr
    assert "is not vouched for by" in p.stderr
    receipt = ndjson(p.stdout)[-1]
    assert receipt.get("coverage") is None and receipt["bytes_written"] == 8 * MiB
    assert read_dev(dev, 0, 8 * MiB) == image.read_bytes()  # the holes are zeros now
    # named by the user: their choice, and the headline says what it proves
    fill(dev, 16 * MiB)
    p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force",
                  "--keyring", str(signer.keyring), "--bmap", str(bmap))  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "holds the ranges of" in p.stdout + p.stderr
    assert f"holds {image}\n" not in p.stdout + p.stderr
    assert read_dev(dev, MiB, MiB) == OLD


def test_bmap_in_the_signed_sums_is_used_and_a_wrong_one_refused(
    loop: LoopFactory, sparse: tuple[Path, Path], keys: tuple[Gpg, Gpg]
) -> None:
    image, bmap = sparse
    signer = keys[0]
    sums = sums_for(image.parent, image.name, bmap.name)
    signer.sign(sums)
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(image, dev, "--keyring", str(signer.keyring))
    assert p.returncode == 0, p.stderr
    assert ndjson(p.stdout)[-1]["coverage"]["mode"] == "bmap"
    assert read_dev(dev, MiB, MiB) == OLD  # unmapped: left as it was
    # a bmap that is not the one the signed sums list (swapped for one that maps less,
    # say): refused before the first byte
    sums.write_text(sums.read_text().replace(sums.read_text().split()[2], "0" * 64))
    signer.sign(sums)
    fill(dev, 16 * MiB)
    p = write(image, dev, "--keyring", str(signer.keyring))
    assert p.returncode == 4, p.stderr
    assert "is not the one" in one_line_error(p.stderr)
    assert read_dev(dev, 0, MiB) == OLD


def test_member_for_an_image_that_is_no_zip_is_a_usage_error(
    loop: LoopFactory, tmp_path: Path
) -> None:
    image = random_file(tmp_path / "disk.img", 2 * MiB)
    dev = loop(16 * MiB)
    fill(dev, 16 * MiB)
    p = write(image, dev, "--member", "disk.img")
    assert p.returncode == 2, p.stderr
    assert "--member names a file inside a zip archive" in one_line_error(p.stderr)
    assert read_dev(dev, 0, MiB) == OLD

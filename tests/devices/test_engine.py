"""The one engine on real loop devices: one write loop and one read-back under every
job, each drive at its own pace, errors blamed on their culprit."""

from __future__ import annotations

import bz2
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, fill, random_file, read_dev, run
from tests.devices.test_cli import ndjson, usbwriter
from usbwriter import jobs
from usbwriter.errors import BadImage
from usbwriter.jobs.several import plan_many, run_many
from usbwriter.progress import Progress

pytestmark = ROOT_ONLY
OLD = b"\xaa" * MiB


def test_several_drives_from_an_image_of_unknown_size_show_real_progress(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """A .bz2 records no size: each drive's progress follows the file, not a total of 0."""
    data = os.urandom(3 * MiB) + bytes(3 * MiB)
    image = tmp_path / "disk.img.bz2"
    image.write_bytes(bz2.compress(data))
    devs = [loop(16 * MiB), loop(16 * MiB)]
    seen: dict[str, list[Progress]] = {d: [] for d in devs}
    plans = plan_many(jobs.Request(str(image), devs[0], force=True), devs)
    results = run_many(plans, progress=lambda d, p: seen[d].append(p))
    for d, r in zip(devs, results, strict=True):
        assert r.receipt is not None and r.receipt.verified, r
        writes = [p for p in seen[d] if p.phase == "write"]
        assert writes and all(p.total == image.stat().st_size and p.by_file for p in writes)
        assert writes[-1].done == writes[-1].total
        assert read_dev(d, 0, len(data)) == data
    p = usbwriter("--image", str(image), "--device", devs[0], "--device", devs[1], "--yes",
                  "--force")  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "/ 0 B" not in p.stderr


def test_an_odd_error_in_the_read_back_wipes_the_head(
    loop: LoopFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only a drive's I/O error: whatever fails in the read-back of one drive leaves
    no stick that looks bootable."""
    import usbwriter.jobs.write as runner

    image = random_file(tmp_path / "disk.img", 3 * MiB)
    dev = loop(16 * MiB)

    def failing(*args: object, **kw: object) -> object:
        raise BadImage(f"{image}: xz data damaged near byte 12 of the file", path=str(image))

    monkeypatch.setattr(runner, "read_back", failing)
    with pytest.raises(BadImage, match="first MiB was wiped"):
        jobs.run(jobs.plan(jobs.Request(str(image), dev, force=True)))
    assert read_dev(dev, 0, MiB) == bytes(MiB)


def test_a_stream_that_cannot_start_fails_every_drive_without_a_hang(
    loop: LoopFactory, tmp_path: Path
) -> None:
    """A zip whose member's header is damaged after the plan (its directory, which the
    plan read, intact): no drive's stream can start; every drive fails at once, none is
    left waiting, none is changed."""
    image = tmp_path / "disk.zip"
    with zipfile.ZipFile(image, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("disk.img", os.urandom(MiB) + bytes(2 * MiB))
    devs = [loop(16 * MiB), loop(16 * MiB)]
    for d in devs:
        fill(d, 16 * MiB)
    plans = plan_many(jobs.Request(str(image), devs[0], force=True), devs)
    data = bytearray(image.read_bytes())
    assert data[30:38] == b"disk.img"  # the member's name in its local header
    data[30:31] = b"X"  # zipfile finds the names in the directory and the header differ
    with open(image, "r+b") as f:  # in place: the same inode the plan looked at
        f.write(data)
    done: list[object] = []

    def run() -> None:
        try:
            done.append(run_many(plans))
        except BaseException as e:
            done.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout=30)
    assert done, "run_many did not return"
    assert isinstance(done[0], list), done[0]
    for d, r in zip(devs, done[0], strict=True):
        assert r.error is not None and r.receipt is None, r
        assert "nothing on the drive was changed" in r.error.message
        assert read_dev(d, 0, MiB) == OLD


def test_a_bmap_is_used_for_several_drives(loop: LoopFactory, tmp_path: Path) -> None:
    image = tmp_path / "rootfs.img"
    with open(image, "wb") as f:
        f.write(os.urandom(MiB))
        f.seek(4 * MiB)
        f.write(os.urandom(MiB))
        f.truncate(8 * MiB)
    run(["bmaptool", "create", "-o", str(image) + ".bmap", str(image)])
    devs = [loop(16 * MiB), loop(16 * MiB)]
    for d in devs:
        fill(d, 16 * MiB)
    p = usbwriter("--image", str(image), "--device", devs[0], "--device", devs[1], "--yes",
                  "--force", "--json")  # fmt: skip
    assert p.returncode == 0, p.stderr
    results = [e for e in ndjson(p.stdout) if e.get("event") == "result"]
    assert len(results) == 2 and all(r["coverage"]["mode"] == "bmap" for r in results)
    for d in devs:
        assert read_dev(d, 0, MiB) == image.read_bytes()[:MiB]
        assert read_dev(d, 2 * MiB, MiB) == OLD  # unmapped: left as it was


def test_a_fast_drive_does_not_wait_for_a_slow_one(loop: LoopFactory, tmp_path: Path) -> None:
    """Each drive reads the image itself: the fast one is done long before the slow one
    (a generous bound: no speed is asserted, only that they are not in lock step)."""
    from tests.helpers.throttle import blkio_group, enter

    image = random_file(tmp_path / "disk.img", 16 * MiB)
    fast, slow = loop(32 * MiB), loop(32 * MiB)
    argv = ["--image", str(image), "--device", fast, "--device", slow, "--yes", "--force"]
    with blkio_group(slow, 4 * MiB, 256 * MiB) as group:
        fast_devno = run(["lsblk", "-dno", "MAJ:MIN", fast]).stdout.strip()
        (group / "blkio.throttle.write_bps_device").write_text(f"{fast_devno} {64 * MiB}")
        start = time.monotonic()
        proc = subprocess.Popen(
            [*USBWRITER, *argv, "--json"],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: enter(group),
        )
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    results = {e["device"]["path"]: e for e in ndjson(out) if e.get("event") == "result"}
    assert results[fast]["write_seconds"] * 2 < results[slow]["write_seconds"], results
    assert time.monotonic() - start > results[slow]["write_seconds"]


USBWRITER = [sys.executable, "-m", "usbwriter"]


def test_the_read_back_compares_a_raw_image_and_hashes_a_compressed_one(
    loop: LoopFactory, tmp_path: Path
) -> None:
    import lzma

    raw = random_file(tmp_path / "disk.img", 3 * MiB)
    packed = tmp_path / "disk.img.xz"
    packed.write_bytes(lzma.compress(raw.read_bytes()))
    dev = loop(16 * MiB)
    for image, proof in ((raw, "compared"), (packed, "hashed")):
        p = usbwriter("--image", str(image), "--device", dev, "--yes", "--force", "--json")
        assert p.returncode == 0, p.stderr
        result = ndjson(p.stdout)[-1]
        assert result["verify_proof"] == proof
        assert result["device_blake3"] == result["image"]["blake3"]

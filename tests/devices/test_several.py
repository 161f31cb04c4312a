"""One image to several drives at once, on real loop devices: read once, each drive
written and read back on its own, one failing drive does not stop the others."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT_ONLY, LoopFactory, MiB, random_file, read_dev

pytestmark = [pytest.mark.root, ROOT_ONLY]

USBWRITER = [sys.executable, "-m", "usbwriter"]


def several(
    image: Path, devices: list[str], *extra: str, json_mode: bool = True
) -> subprocess.CompletedProcess[str]:
    argv = [*USBWRITER, "--image", str(image), "--yes", "--force", *extra]
    if json_mode:
        argv.append("--json")
    for dev in devices:
        argv += ["--device", dev]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


def events(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_one_failing_drive_leaves_the_others_verified(
    loop: LoopFactory, failing_loop: str, tmp_path: Path
) -> None:
    image = random_file(tmp_path / "lab.img", 24 * MiB + 4096, seed=21)
    good = [loop(32 * MiB) for _ in range(3)]
    drives = [good[0], failing_loop, good[1], good[2]]
    done = several(image, drives)
    assert done.returncode == 1, done.stderr  # the worst of 0, 0, 0 and 1
    evs = events(done.stdout)
    summary = evs[-1]
    assert summary["event"] == "summary" and summary["exit_code"] == 1
    rows = {r["device"]: r for r in summary["drives"]}  # type: ignore[attr-defined]
    assert [rows[d]["exit_code"] for d in drives] == [0, 1, 0, 0]
    results = [e for e in evs if e["event"] == "result"]
    assert sorted(e["device_path"] for e in results) == sorted(good)  # type: ignore[type-var]
    assert all(e["verified"] is True for e in results)
    failed = [e for e in evs if e["event"] == "error"]
    assert [e["device_path"] for e in failed] == [failing_loop]
    assert "No space left" in str(failed[0]["message"])
    data = image.read_bytes()
    for dev in good:
        assert read_dev(dev, 0, len(data)) == data
    assert read_dev(failing_loop, 0, MiB) == bytes(MiB)  # wiped, does not look bootable
    # Each drive reported its own progress.
    seen = {e.get("device") for e in evs if e["event"] == "progress"}
    assert set(good) <= seen
    # The failing drive was reported (and wiped) as it failed, before the read-back.
    dropped = [e for e in evs if e["event"] == "drive_failed"]
    assert [e["device"] for e in dropped] == [failing_loop]
    assert "No space left" in str(dropped[0]["message"]) and "wiped" in str(dropped[0]["message"])
    verifying = [
        i for i, e in enumerate(evs) if e["event"] == "progress" and e["phase"] == "verify"
    ]
    assert evs.index(dropped[0]) < verifying[0]
    text = several(image, drives, json_mode=False)
    said = [line for line in text.stderr.splitlines() if "the other drives go on" in line]
    assert len(said) == 1 and failing_loop in said[0], text.stderr


def test_same_drive_twice_is_a_usage_error(loop: LoopFactory, tmp_path: Path) -> None:
    image = random_file(tmp_path / "a.img", 2 * MiB)
    dev = loop(8 * MiB)
    done = several(image, [dev, dev])
    assert done.returncode == 2 and "twice" in done.stderr


def test_a_refused_drive_refuses_them_all(
    loop: LoopFactory, mounted_ext4: tuple[str, Path], tmp_path: Path
) -> None:
    image = random_file(tmp_path / "a.img", 2 * MiB)
    free = loop(8 * MiB)
    before = read_dev(free, 0, MiB)
    mounted, _ = mounted_ext4
    done = several(image, [free, mounted])
    assert done.returncode == 4 and "mounted" in done.stderr, done.stderr
    assert read_dev(free, 0, MiB) == before  # nothing was written anywhere


def test_ctrl_c_stops_every_drive_within_two_seconds(loop: LoopFactory, tmp_path: Path) -> None:
    from tests.helpers.throttle import blkio_group, interrupt_after

    image = random_file(tmp_path / "big.img", 64 * MiB, seed=5)
    drives = [loop(96 * MiB) for _ in range(2)]
    argv = [*USBWRITER, "--image", str(image), "--yes", "--force"]
    for dev in drives:
        argv += ["--device", dev]
    with blkio_group(drives[0], 8 * MiB, 8 * MiB) as group:
        (group / "blkio.throttle.write_bps_device").write_text(f"{run_majmin(drives[1])} {8 * MiB}")
        stop = interrupt_after(argv, group, 2.0)
    assert stop.returncode == 130, stop.stderr
    assert stop.seconds < 2.0, stop.seconds
    for dev in drives:
        assert read_dev(dev, 0, MiB) == bytes(MiB)  # nothing that looks bootable


def run_majmin(dev: str) -> str:
    import os

    st = os.stat(dev)
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"


def test_each_drive_re_reads_its_partitions_and_an_odd_read_back_error_stays_its_own(
    loop: LoopFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each written drive has the kernel re-read its partition table, as a single write
    does. A read-back that fails with an error of no known kind (here a RuntimeError on
    one drive) is that drive's failure, its head wiped; the other drive is verified."""
    import usbwriter.jobs.write as runner
    from usbwriter.engine.readback import read_back as real
    from usbwriter.jobs import Request
    from usbwriter.jobs.several import plan_many, run_many

    image = random_file(tmp_path / "a.img", 6 * MiB + 5, seed=9)
    good, odd = loop(16 * MiB, partscan=True), loop(16 * MiB, partscan=True)

    def verify(drive: object, *args: object, **kw: object) -> object:
        if getattr(drive, "path", "") == odd:
            raise RuntimeError("something no one foresaw")
        return real(drive, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(runner, "read_back", verify)
    plans = plan_many(Request(str(image), good, force=True), [good, odd])
    results = {r.path: r for r in run_many(plans)}
    ok = results[good].receipt
    assert ok is not None and ok.verified and ok.write is not None
    assert ok.write.partitions_reread is True
    bad = results[odd]
    assert bad.error is not None and "something no one foresaw" in bad.error.message
    assert "first MiB was wiped" in bad.error.message and bad.exit_code == 1
    assert read_dev(odd, 0, MiB) == bytes(MiB)

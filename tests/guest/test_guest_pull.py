"""A USB stick pulled out while usbwriter writes it and two others at once.

Three emulated sticks in the guest (usb-bot + scsi-hd on xHCI, writes throttled by
qemu to 4 MB/s so the write lasts a few seconds); the host watches the NDJSON
progress in the shared folder and, once the second stick is 8 MiB into the image,
removes it over QMP (device_del: the guest sees a USB disconnect, as when a stick is
pulled). The pulled stick must be named at once and fail alone; the other two go on,
are read back and verified, and the exit code is the worst of the three. Then a fourth
stick (reads throttled too) is written alone and pulled 8 MiB into its read-back: exit
1, one error naming the drive and the offset, no traceback, no hang.
"""

from __future__ import annotations

import json
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import random_file
from tests.guest import harness
from tests.guest.harness import Guest, GuestResult

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or ""),
]

MiB = 1 << 20
IMAGE_SIZE = 24 * MiB
PULL_AT = 8 * MiB
SERIALS = ("USBW-PL-0001", "USBW-PL-0002", "USBW-PL-0003")  # the second one is pulled
ALONE = "USBW-PL-0004"  # written alone, pulled while it is read back


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class PullRun:
    result: GuestResult
    events: list[dict[str, Any]]  # the several-drive step's NDJSON
    devices: list[str]  # /dev/sdX of each stick, in the order of SERIALS, then ALONE
    image: Path
    sticks: list[Path]  # their image files on the host
    pulled_after: float  # seconds from pulling the second stick to the next read-back


def _wait_for_progress(g: Guest, live: str, device: str | None, phase: str) -> None:
    """Until the NDJSON in share/LIVE says DEVICE (any, for None) is PULL_AT into PHASE."""
    path = g.share / live
    deadline = time.monotonic() + 120
    while True:
        text = path.read_text() if path.exists() else ""
        done = [e.get("done", 0) for e in _events(text.rsplit("\n", 1)[0])
                if e.get("phase") == phase and device in (None, e.get("device"))]  # fmt: skip
        if done and max(done) >= PULL_AT:
            return
        if time.monotonic() > deadline or (g.share / "rc").exists():
            raise AssertionError(f"{live}: no {phase} progress:\n{text[-2000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pull_run(tmp_path_factory: pytest.TempPathFactory, module_stick_file: Any) -> PullRun:
    """Two steps in one guest: three sticks written at once, the second pulled while it
    is written; then one stick written alone, pulled while it is read back."""
    work = tmp_path_factory.mktemp("pull")
    image = random_file(work / "lab.img", IMAGE_SIZE, seed=31)
    files = [module_stick_file(f"pull{i}", 48 * MiB, random_head=4 * MiB) for i in range(4)]
    sticks = [
        harness.Stick(f, serial, "SanDisk", "Cruzer", write_bps=4_000_000, read_bps=4_000_000)
        for f, serial in zip(files, (*SERIALS, ALONE), strict=True)
    ]
    by_serial = [f"$(readlink -f /dev/disk/by-id/usb-*_{s}-0:0)" for s in (*SERIALS, ALONE)]
    img = shlex.quote(str(image))
    command = "\n".join(
        [
            "udevadm settle",
            f"export A={by_serial[0]} B={by_serial[1]} C={by_serial[2]} D={by_serial[3]}",
            'echo "$A $B $C $D" >"$GUEST_SHARE/devices"',
            f'step several sh -c \'python -m usbwriter --image {img} --device "$A" '
            '--device "$B" --device "$C" --yes --force --json >"$GUEST_SHARE/several.live"\'',
            f'step alone sh -c \'python -m usbwriter --image {img} --device "$D" '
            '--yes --force --json >"$GUEST_SHARE/alone.live"\'',
        ]
    )
    with Guest(command, sticks=sticks, timeout=240) as g:
        devices = g.wait_for_file("devices", timeout=120).split()
        _wait_for_progress(g, "several.live", devices[1], "write")
        g.unplug(sticks[1])
        pulled = time.monotonic()
        _wait_for_progress(g, "alone.live", None, "verify")
        pulled_after = time.monotonic() - pulled
        g.unplug(sticks[3])
        result = g.wait()
    print(result.timings())
    events = _events(result.files.get("several.live", ""))
    return PullRun(result, events, devices, image, files, pulled_after)


def test_the_pulled_stick_fails_alone(pull_run: PullRun) -> None:
    run, evs = pull_run.result, pull_run.events
    st = run.step("several")
    a, b, c, _ = pull_run.devices
    summary = evs[-1] if evs else {}
    assert summary.get("event") == "summary", f"{st.stderr}\n{run.describe()}"
    rows = {r["device"]: r for r in summary["drives"]}
    assert rows[a]["exit_code"] == 0 and rows[c]["exit_code"] == 0, summary
    assert rows[b]["exit_code"] != 0 and rows[b]["error"], summary
    assert st.returncode == summary["exit_code"] == rows[b]["exit_code"], summary
    assert "Traceback" not in st.stderr, st.stderr


def test_the_pulled_stick_is_named_at_once(pull_run: PullRun) -> None:
    evs = pull_run.events
    _, b, _, _ = pull_run.devices
    dropped = [e for e in evs if e["event"] == "drive_failed"]
    assert [e["device"] for e in dropped] == [b], dropped
    verifying = [i for i, e in enumerate(evs) if e.get("phase") == "verify"]
    assert verifying and evs.index(dropped[0]) < verifying[0], "named only after the writes"


def test_the_other_sticks_are_verified_and_hold_the_image(pull_run: PullRun) -> None:
    evs = pull_run.events
    a, _, c, _ = pull_run.devices
    results = {e["device_path"]: e for e in evs if e["event"] == "result"}
    assert set(results) == {a, c}, sorted(results)
    assert all(r["verified"] is True for r in results.values())
    data = pull_run.image.read_bytes()
    for stick in (pull_run.sticks[0], pull_run.sticks[2]):
        with open(stick, "rb") as f:
            assert f.read(len(data)) == data, stick


def test_pulling_a_stick_does_not_hang(pull_run: PullRun) -> None:
    # The other two still write 16 MiB at 4 MB/s and are read back: well under a minute
    # before the next step's read-back is under way.
    assert pull_run.pulled_after < 60, pull_run.pulled_after


def test_a_stick_pulled_during_its_read_back(pull_run: PullRun) -> None:
    """Exit 1 with one line naming the drive and the offset; no traceback, no hang."""
    run = pull_run.result
    st = run.step("alone")
    evs = _events(run.files.get("alone.live", ""))
    assert st.returncode == 1, f"{st.returncode}\n{st.stderr}\n{run.describe()}"
    errors = [e for e in evs if e["event"] == "error"]
    assert len(errors) == 1, evs[-3:]
    device = pull_run.devices[3]
    message = errors[0]["message"]
    assert device in message and "reading" in message and "offset" in message, message
    assert errors[0]["exit_code"] == 1 and errors[0]["fault"] == "device", errors[0]
    assert "Traceback" not in st.stderr, st.stderr
    assert st.seconds < 60, st.seconds

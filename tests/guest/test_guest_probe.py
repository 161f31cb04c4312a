"""usbwriter probe against fake-capacity USB sticks in a qemu guest, beside f3probe.

Fakes are served to qemu's USB stick over NBD by nbdkit (tests/helpers/nbdfake.py):
each reports 1 GiB and keeps 64 MiB, one wrapping (offset modulo 64 MiB), one dropping
the writes past 64 MiB (reads there return zeros); a third reports 256 MiB and keeps
128 MiB, wrapping; a fourth stick is genuine. One guest boot runs every step (3 GiB of
memory: f3probe allocates over 2 GiB to save blocks):

- ``usbwriter probe --json`` and ``f3probe`` on each stick: they agree on the genuine
  stick, on the one that drops writes and on the one that keeps half; on the one that
  keeps a sixteenth f3probe 8.0 says "damaged", as it does on its own emulation of that
  stick (tests/unit/test_f3_geometry.py); the probing times are compared;
- the wrapping stick: a 200 MiB image is refused before the first byte (the stick's
  bytes hashed before and after), a 32 MiB image is written and verified;
- the dropping stick: a 100 MiB image written with --no-probe fails its verify, which
  names dropped writes;
- the genuine stick: its whole bytes hashed before and after a non-destructive probe.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.guest import harness
from tests.guest.harness import Guest, GuestResult, Stick
from tests.helpers.nbdserve import serve_fake

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or ""),
]

MiB = 1 << 20
GiB = 1 << 30
WRAP, DROP, GENUINE = "USBW-FAKE-WRAP", "USBW-FAKE-DROP", "USBW-GENUINE-1"
HALF = "USBW-FAKE-HALF"


def _by_serial(serial: str) -> str:
    return f"$(readlink -f /dev/disk/by-id/usb-*_{shlex.quote(serial)}-0:0)"


def _random_file(path: Path, size: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(size // MiB):
            f.write(os.urandom(MiB))
    return path


HASH = 'dd if="$1" bs=1M count="$2" iflag=direct status=none | sha256sum | cut -d" " -f1'


@dataclass(frozen=True)
class ProbeRun:
    result: GuestResult
    genuine_before: str
    genuine_after: str


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeRun]:
    tmp = tmp_path_factory.mktemp("probe")
    wrap_back = _random_file(tmp / "wrap.real", 64 * MiB)
    drop_back = _random_file(tmp / "drop.real", 64 * MiB)
    half_back = _random_file(tmp / "half.real", 128 * MiB)
    genuine = _random_file(tmp / "genuine.img", 128 * MiB)
    big = _random_file(tmp / "big.img", 200 * MiB)
    mid = _random_file(tmp / "mid.img", 100 * MiB)
    small = _random_file(tmp / "small.img", 32 * MiB)
    genuine_before = _sha256(genuine)
    with ExitStack() as stack:
        wrap_sock = stack.enter_context(
            serve_fake(wrap_back, tmp / "wrap.sock", size="1G", mode="wrap")
        )
        drop_sock = stack.enter_context(
            serve_fake(drop_back, tmp / "drop.sock", size="1G", mode="drop")
        )
        half_sock = stack.enter_context(
            serve_fake(half_back, tmp / "half.sock", size="256M", mode="wrap")
        )
        sticks = [
            Stick(wrap_back, WRAP, "Generic", "Flash Disk", nbd=wrap_sock),
            Stick(half_back, HALF, "Generic", "USB Disk", nbd=half_sock),
            Stick(drop_back, DROP, "Generic", "Mass Storage", nbd=drop_sock),
            Stick(genuine, GENUINE, "SanDisk", "Cruzer Blade"),
        ]
        q = shlex.quote
        uw = "python -m usbwriter"
        command = "\n".join(
            [
                f"hash() {{ {HASH}; }}",
                f"wrap={_by_serial(WRAP)}",
                f"drop={_by_serial(DROP)}",
                f"genuine={_by_serial(GENUINE)}",
                f"half={_by_serial(HALF)}",
                'echo "$wrap $drop $genuine" >"$GUEST_SHARE/devices"',
                # the genuine stick, hashed whole around a non-destructive probe
                'step genuine-before hash "$genuine" 128',
                f'step probe-genuine {uw} probe "$genuine" --json',
                'step genuine-after hash "$genuine" 128',
                'step f3-genuine f3probe "$genuine"',
                # the stick that wraps around
                f'step probe-wrap {uw} probe "$wrap" --json',
                'step f3-wrap f3probe "$wrap"',
                'step wrap-before hash "$wrap" 64',
                f'step write-big {uw} --image {q(str(big))} --device "$wrap" --yes --force',
                'step wrap-after hash "$wrap" 64',
                f'step write-small {uw} --image {q(str(small))} --device "$wrap" --yes '
                "--force --json",
                # the stick that drops writes
                # the stick that keeps half of what it reports, wrapping
                f'step probe-half {uw} probe "$half" --json',
                'step f3-half f3probe "$half"',
                f'step probe-drop {uw} probe "$drop" --json',
                f'step probe-drop-text {uw} probe "$drop"',
                'step f3-drop f3probe "$drop"',
                f'step write-drop {uw} --image {q(str(mid))} --device "$drop" --yes --force '
                "--no-probe",
            ]
        )
        with Guest(command, sticks=sticks, timeout=600, memory_mb=3072) as g:
            result = g.wait()
        print(result.timings())
        keep = os.environ.get("USBWRITER_GUEST_KEEP")
        if keep:  # the steps' outputs, to read after a failure
            for name, text in result.files.items():
                (Path(keep) / name).write_text(text)
    yield ProbeRun(result, genuine_before, _sha256(genuine))


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(MiB):
            h.update(block)
    return h.hexdigest()


def _probe_json(run: GuestResult, step: str) -> dict[str, Any]:
    st = run.step(step)
    assert st.stdout.strip(), f"{step}: rc {st.returncode}\n{st.stderr}\n{run.describe()}"
    obj: dict[str, Any] = json.loads(st.stdout.strip().splitlines()[-1])
    return obj


def _f3_usable(run: GuestResult, step: str) -> tuple[str, int]:
    """f3probe's verdict (good, wraparound, limbo...) and usable size in bytes."""
    out = run.step(step).stdout + run.step(step).stderr
    if "is the real thing" in out:
        m = re.search(r"Announced size:.*\((\d+) blocks\)", out)
        assert m, out
        return "good", int(m.group(1)) * 512
    kind = re.search(r"counterfeit of type (\w+)|is (damaged)", out)
    m = re.search(r"\*Usable\* size:.*\((\d+) blocks\)", out)
    assert kind and m, out
    return kind.group(1) or kind.group(2), int(m.group(1)) * 512


def test_probe_finds_the_wrapping_stick_and_agrees_with_f3probe(probe_run: ProbeRun) -> None:
    run = probe_run.result
    d = _probe_json(run, "probe-wrap")
    assert run.step("probe-wrap").returncode == 3
    assert d["reported_size"] == 1 * GiB
    assert d["usable_size"] == 64 * MiB
    assert d["verdict"] == "wraps"
    assert 64 * MiB in d["failed_offsets"]
    assert d["write_bytes_per_second"] and d["read_bytes_per_second"]
    assert d["restored"] is True
    # f3probe 8.0 first sizes a write cache by writing blocks in the drive's upper half:
    # on a drive that keeps less than half they land on one another, and it calls the
    # drive "damaged", 0 bytes usable: so it does on its own emulation of this stick
    # (tests/unit/test_f3_geometry.py). usbwriter writes the top first and the first
    # MiB last, so the wrap shows as the first MiB's tag coming back at 64 MiB.
    assert _f3_usable(run, "f3-wrap") == ("damaged", 0), run.step("f3-wrap").stdout


def test_a_stick_that_keeps_half_wraps_for_both_probes(probe_run: ProbeRun) -> None:
    """Where f3probe can tell (the fake keeps at least half), it and usbwriter agree."""
    run = probe_run.result
    d = _probe_json(run, "probe-half")
    assert run.step("probe-half").returncode == 3
    assert (d["verdict"], d["reported_size"], d["usable_size"]) == ("wraps", 256 * MiB, 128 * MiB)
    assert d["restored"] is True
    assert _f3_usable(run, "f3-half") == ("wraparound", 128 * MiB), run.step("f3-half").stdout


def test_an_image_too_large_for_the_wrapping_stick_is_refused_before_the_first_byte(
    probe_run: ProbeRun,
) -> None:
    run = probe_run.result
    st = run.step("write-big")
    assert st.returncode == 4, st.stderr
    assert "holds only 64.0 MiB of the 1.0 GiB it reports" in st.stderr
    assert "nothing was written" in st.stderr
    before, after = run.step("wrap-before"), run.step("wrap-after")
    assert before.returncode == 0 and len(before.stdout.strip()) == 64
    assert before.stdout == after.stdout


def test_an_image_that_fits_the_wrapping_stick_is_written_and_verified(
    probe_run: ProbeRun,
) -> None:
    run = probe_run.result
    st = run.step("write-small")
    assert st.returncode == 0, st.stderr
    receipt = [json.loads(line) for line in st.stdout.splitlines() if line.strip()][-1]
    assert receipt["verified"] is True
    assert receipt["probe"]["verdict"] == "wraps"
    assert receipt["probe"]["usable_size"] == 64 * MiB
    assert "onto earlier blocks: 64.0 MiB usable of 1.0 GiB" in st.stderr  # said before writing


def test_dropped_writes_are_named_by_the_probe_and_by_a_failed_verify(
    probe_run: ProbeRun,
) -> None:
    run = probe_run.result
    d = _probe_json(run, "probe-drop")
    assert d["verdict"] == "drops_writes"
    assert d["usable_size"] == 64 * MiB
    assert d["restored"] is True
    assert "dropped" in run.step("probe-drop-text").stdout
    f3_kind, f3_usable = _f3_usable(run, "f3-drop")
    assert f3_kind != "good" and f3_usable == d["usable_size"], run.step("f3-drop").stdout
    st = run.step("write-drop")
    assert st.returncode == 3, st.stderr
    assert "differs from" in st.stderr
    assert "zeros came back where the image has data: the drive dropped the writes" in st.stderr


def test_a_genuine_stick_passes_whole_and_keeps_its_bytes(probe_run: ProbeRun) -> None:
    run = probe_run.result
    d = _probe_json(run, "probe-genuine")
    assert run.step("probe-genuine").returncode == 0
    assert d["verdict"] == "genuine"
    assert d["usable_size"] == d["reported_size"] == 128 * MiB
    assert d["failed_offsets"] == []
    before, after = run.step("genuine-before"), run.step("genuine-after")
    assert len(before.stdout.strip()) == 64 and before.stdout == after.stdout
    assert probe_run.genuine_before == probe_run.genuine_after  # (after f3probe too)
    assert _f3_usable(run, "f3-genuine") == ("good", 128 * MiB)


def _f3_seconds(run: GuestResult, step: str) -> float:
    """f3probe's own 'Probe time: 1.23s' (or ms, or min)."""
    m = re.search(r"Probe time: ([\d.]+)\s*(ms|s|min)", run.step(step).stdout)
    assert m, run.step(step).stdout
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "min": 60.0}[m.group(2)]


def test_usbwriter_probe_is_not_slower_than_f3probe(probe_run: ProbeRun) -> None:
    """The probing on each one's own clock: usbwriter's 'seconds' less its speed run (a
    measurement f3probe does not make), f3probe's 'Probe time'. The speed run and the
    steps' wall-clock times (which add the interpreter's start over the guest's 9p
    root) are printed beside."""
    run = probe_run.result
    sticks = ("genuine", "wrap", "half", "drop")
    results = {s: _probe_json(run, f"probe-{s}") for s in sticks}
    ours = {s: round(d["seconds"] - d["speed_seconds"], 3) for s, d in results.items()}
    speed = {s: d["speed_seconds"] for s, d in results.items()}
    f3 = {s: _f3_seconds(run, f"f3-{s}") for s in sticks}
    walls = {s: (run.step(f"probe-{s}").seconds, run.step(f"f3-{s}").seconds) for s in sticks}
    print(
        f"probing seconds: usbwriter {ours} (and its speed run {speed}); f3probe {f3}; "
        f"wall (usbwriter, f3probe) {walls}"
    )
    for s in sticks:
        assert ours[s] <= f3[s], (s, ours, f3)

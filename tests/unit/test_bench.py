"""The benchmark script's own logic: which cases run, what it reads from usbwriter's
NDJSON (the benchmark itself needs root and minutes: scripts/bench.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import bench
import bench_modes


def cases(*argv: str) -> list[str]:
    return bench.selected_cases(bench.parser().parse_args(list(argv)))


def test_every_case_runs_by_default_and_each_can_be_chosen_or_left_out() -> None:
    assert cases() == list(bench.CASES)
    for case in ("memory", "bmap-cache", "mixed"):
        assert cases("--only", case) == [case]
        assert case not in cases(f"--skip-{case}")
    assert cases("--only", "mixed", "--only", "memory") == ["memory", "mixed"]


def test_every_write_mode_case_is_one_bench_modes_runs() -> None:
    assert set(bench.MODES) == set(bench_modes.CASES)
    assert set(bench.MODES) <= set(bench.CASES)


def line(obj: dict[str, object]) -> bytes:
    return (json.dumps(obj) + "\n").encode()


@pytest.mark.parametrize(
    ("event", "first"),
    [
        ({"event": "boot", "bios": "no"}, False),
        ({"event": "progress", "phase": "checksum", "done": 4194304, "total": 8}, False),
        ({"event": "progress", "phase": "write", "done": 0, "total": 8}, False),
        ({"event": "progress", "phase": "write", "done": 4194304, "total": 8}, True),
        ({"event": "progress", "device": "/dev/loop1", "phase": "write", "done": 1}, True),
        ({"event": "result", "verified": True, "write_seconds": 1.0}, False),
    ],
)
def test_the_first_byte_is_the_first_write_progress_with_bytes_done(
    event: dict[str, object], first: bool
) -> None:
    assert bench.first_written(line(event)) is first


def test_each_drive_of_several_has_its_own_phases() -> None:
    out = b"".join(
        [
            line({"event": "progress", "device": "/dev/loop1", "phase": "write", "done": 1}),
            line(
                {
                    "event": "result",
                    "device_path": "/dev/loop1",
                    "verified": True,
                    "write_seconds": 0.7,
                    "verify_seconds": 0.3,
                }
            ),
            line(
                {
                    "event": "result",
                    "device_path": "/dev/loop2",
                    "verified": True,
                    "write_seconds": 2.7,
                    "verify_seconds": 1.3,
                }
            ),
            line({"event": "summary", "drives": [], "exit_code": 0}),
        ]
    ).decode()
    runs = bench_modes.several_result(out, 5.0, 1, ["/dev/loop1", "/dev/loop2"])
    assert runs["/dev/loop1"]["write"] == 0.7
    assert runs["/dev/loop2"]["write"] == 2.7
    assert runs["/dev/loop2"]["phases"] == pytest.approx(4.0)


def test_a_run_without_read_back_has_no_verify_phase() -> None:
    result = {"event": "result", "verified": False, "write_seconds": 1.5, "verify_seconds": None}
    run = bench_modes.receipt_run(result, 1.8, 1, verify=False)
    assert run["write"] == 1.5
    assert "verify" not in run and "phases" not in run
    with pytest.raises(SystemExit):
        bench_modes.receipt_run(result, 1.8, 1)

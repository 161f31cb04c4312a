#!/usr/bin/env python3
"""Benchmark usbwriter against dd and bmaptool, side by side, on the same device.

Run as root after scripts/test.sh or scripts/demo.sh has set up .venv:

    sudo .venv/bin/python scripts/bench.py [--size-mib 1024] [--rounds 5]

Two scenarios, each on a loop device over /dev/shm, tools interleaved round by round:
- device-bound: the loop device throttled by the cgroup v1 blkio controller to a fast
  USB 3 stick (200 MB/s write, 400 MB/s read). The physical limit of write + read-back
  is size/200 MB/s + size/400 MB/s.
- CPU-bound: the same loop device unthrottled, so the tools' own overheads show.

usbwriter runs as the real command (`usbwriter --image I --device D --yes --force
--json`: write, then O_DIRECT read-back verify, process start included); dd writes
with `bs=4M oflag=direct conv=fsync` and reads back with `bs=4M iflag=direct`;
bmaptool runs `copy --nobmap` (write only). Medians and ratios are printed, and the
peak RSS of each usbwriter run (from wait4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
CGROUP = Path("/sys/fs/cgroup/blkio/usbwriter-bench")
WRITE_BPS = 200_000_000
READ_BPS = 400_000_000


def sh(argv: list[str]) -> str:
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(argv, check=True, text=True, capture_output=True, env=env).stdout


def make_image(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


@contextmanager
def loop_device(backing: Path, size: int) -> Iterator[str]:
    with open(backing, "wb") as f:
        f.truncate(size)
    dev = sh(["losetup", "-f", "--show", str(backing)]).strip()
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        backing.unlink(missing_ok=True)


@contextmanager
def throttled(dev: str) -> Iterator[Path]:
    majmin = sh(["lsblk", "-dno", "MAJ:MIN", dev]).strip()
    CGROUP.mkdir(exist_ok=True)
    try:
        (CGROUP / "blkio.throttle.write_bps_device").write_text(f"{majmin} {WRITE_BPS}")
        (CGROUP / "blkio.throttle.read_bps_device").write_text(f"{majmin} {READ_BPS}")
        yield CGROUP
    finally:
        for f in ("blkio.throttle.write_bps_device", "blkio.throttle.read_bps_device"):
            with suppress(OSError):
                (CGROUP / f).write_text(f"{majmin} 0")
        for _ in range(50):
            try:
                CGROUP.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def usbwriter_run(image: Path, dev: str, cgroup: Path | None) -> dict[str, float]:
    argv = [
        str(PYTHON),
        "-m",
        "usbwriter",
        "--image",
        str(image),
        "--device",
        dev,
        "--yes",
        "--force",
        "--json",
    ]
    seconds, rss, out = timed_rss(argv, cgroup)
    result = json.loads(out.strip().splitlines()[-1])
    if not result.get("verified"):
        raise SystemExit(f"bench: usbwriter did not verify: {result}")
    return {
        "total": seconds,
        "write": result["write_seconds"],
        "verify": result["verify_seconds"],
        "rss": rss,
    }


def timed_rss(argv: list[str], cgroup: Path | None) -> tuple[float, int, str]:
    """Like timed(), with the child's own peak RSS from wait4."""

    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    out_path = Path("/dev/shm") / f"usbwriter-bench-{os.getpid()}.out"
    with open(out_path, "wb") as out_f:
        start = time.perf_counter()
        p = subprocess.Popen(
            argv,
            stdout=out_f,
            stderr=subprocess.DEVNULL,
            preexec_fn=enter,
            env=dict(os.environ, LC_ALL="C"),
        )
        _, status, usage = os.wait4(p.pid, 0)
        seconds = time.perf_counter() - start
        p.returncode = os.waitstatus_to_exitcode(status)
    out = out_path.read_text()
    out_path.unlink()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({p.returncode}): {out[-400:]}")
    return seconds, usage.ru_maxrss * 1024, out


def dd_run(image: Path, dev: str, size: int, cgroup: Path | None) -> dict[str, float]:
    w, _, _ = timed_rss(
        ["dd", f"if={image}", f"of={dev}", "bs=4M", "oflag=direct", "conv=fsync", "status=none"],
        cgroup,
    )
    r, _, _ = timed_rss(
        [
            "dd",
            f"if={dev}",
            "of=/dev/null",
            "bs=4M",
            "iflag=direct",
            f"count={size // (4 * MiB)}",
            "status=none",
        ],
        cgroup,
    )
    return {"total": w + r, "write": w, "verify": r}


def bmaptool_run(image: Path, dev: str, cgroup: Path | None) -> dict[str, float]:
    w, _, _ = timed_rss(["bmaptool", "-q", "copy", "--nobmap", str(image), dev], cgroup)
    return {"total": w, "write": w}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def scenario(
    name: str,
    image: Path,
    dev: str,
    size: int,
    rounds: int,
    cgroup: Path | None,
    with_bmaptool: bool,
) -> dict[str, list[dict[str, float]]]:
    tools: dict[str, Callable[[], dict[str, float]]] = {
        "usbwriter": lambda: usbwriter_run(image, dev, cgroup),
        "dd": lambda: dd_run(image, dev, size, cgroup),
    }
    if with_bmaptool:
        tools["bmaptool"] = lambda: bmaptool_run(image, dev, cgroup)
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
    for i in range(rounds):
        order = list(tools) if i % 2 == 0 else list(reversed(tools))
        for t in order:
            runs[t].append(tools[t]())
        print(f"  {name}: round {i + 1}/{rounds} done", file=sys.stderr)
    return runs


def report(
    name: str, runs: dict[str, list[dict[str, float]]], size: int, limit: float | None
) -> list[str]:
    mb = size / 1e6
    lines = [f"\n## {name} ({size // MiB} MiB image, medians of {len(runs['usbwriter'])})", ""]
    lines.append("| tool | write s | write MB/s | read-back s | read MB/s | total s |")
    lines.append("|---|---|---|---|---|---|")
    for tool, rs in runs.items():
        w = median(rs, "write")
        v = median(rs, "verify") if "verify" in rs[0] else None
        t = median(rs, "total")
        vs = f"{v:.2f} | {mb / v:.0f}" if v else "- | -"
        lines.append(f"| {tool} | {w:.2f} | {mb / w:.0f} | {vs} | {t:.2f} |")
    uw = median(runs["usbwriter"], "total")
    dd = median(runs["dd"], "total")
    lines.append("")
    lines.append(f"usbwriter write+verify / dd write+read: {uw / dd:.3f} x")
    if limit is not None:
        lines.append(f"usbwriter write+verify / physical limit ({limit:.2f} s): {uw / limit:.3f} x")
        lines.append(f"dd write+read / physical limit: {dd / limit:.3f} x")
    if "bmaptool" in runs:
        bw = median(runs["bmaptool"], "write")
        lines.append(
            f"usbwriter write / bmaptool copy --nobmap: "
            f"{median(runs['usbwriter'], 'write') / bw:.3f} x"
        )
    rss = max(r["rss"] for r in runs["usbwriter"])
    lines.append(f"usbwriter peak RSS: {rss / MiB:.1f} MiB")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device-rounds", type=int, default=3)
    ap.add_argument("--skip-device-bound", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (loop devices, cgroups)")
    if not PYTHON.exists():
        raise SystemExit("bench: run scripts/test.sh or scripts/demo.sh first to create .venv")
    size = args.size_mib * MiB
    shm = Path("/dev/shm")
    image = shm / f"usbwriter-bench-{os.getpid()}.iso"
    print(f"bench: building a {args.size_mib} MiB random image", file=sys.stderr)
    make_image(image, size)
    out: list[str] = [
        "# usbwriter benchmark",
        "",
        f"kernel {os.uname().release}, {os.cpu_count()} cores; loop device over /dev/shm",
    ]
    try:
        with loop_device(shm / f"usbwriter-bench-{os.getpid()}.stick", size + 64 * MiB) as dev:
            runs = scenario("CPU-bound", image, dev, size, args.rounds, None, True)
            out += report("CPU-bound: loop over /dev/shm, unthrottled", runs, size, None)
            if not args.skip_device_bound:
                limit = size / WRITE_BPS + size / READ_BPS
                with throttled(dev) as cg:
                    runs = scenario("device-bound", image, dev, size, args.device_rounds, cg, False)
                out += report(
                    "device-bound: throttled to 200 MB/s write, 400 MB/s read", runs, size, limit
                )
    finally:
        image.unlink(missing_ok=True)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Bench cases for the write modes that write less or write to several drives.

Run through scripts/bench.py (`--only bmap`, `--only delta`, `--only several`, or
`--skip-bmap` and the like). Every case runs on loop devices over /dev/shm throttled to
a fast USB 3 stick (200 MB/s write, 400 MB/s read, one cgroup with a limit per device),
rounds interleaved, medians printed with ratios, the target beside each and PASS or
MISS. usbwriter runs as the real command with `--yes --force --json`; its write and
verify phases are the receipt's `write_seconds` and `verify_seconds`, "wall" is the
whole command (process start, planning and boot report included).

- bmap: a 1 GiB ext4 image about 30% used (random files, `mkfs.ext4 -d`), its bmap from
  `bmaptool create`. usbwriter `--bmap F` (write phase) against `bmaptool copy --bmap F
  IMAGE DEV` (checks the ranges' checksums, reads nothing back); usbwriter `--bmap F`
  write+verify against a whole write+verify of the same image (`--no-bmap`).
- delta: the same image on the drive first; `--delta` with (a) the same image,
  (b) 5% of its MiB blocks changed (every 20th), (c) every MiB block changed, each
  against a plain write+verify of the image. The drive is put back to the image
  between runs with an unthrottled dd (not timed).
- several: four throttled loop devices, `--device` x4 with the 1 GiB image against the
  same command with one of them; each drive's rate (image bytes / its write+verify
  seconds) over the single drive's, and the peak RSS of the usbwriter process (VmHWM
  polled from /proc).

Everything is made in a temporary directory in /dev/shm and removed afterwards, loop
devices and the cgroup included, also on Ctrl-C or an error.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from bench import (
    FS_SIZE,
    PYTHON,
    READ_BPS,
    WRITE_BPS,
    MiB,
    loop_device,
    run_polled,
    sh,
    stop,
    throttled,
    timed_rss,
)

Run = dict[str, float]
FS_USED = 300 * MiB  # bytes of files put in the ext4 image (about 30% of 1 GiB)
STICK = FS_SIZE + 64 * MiB  # each loop device: the image and some room after it
CHANGE = 4096  # bytes overwritten in each changed MiB block
DRIVES = 4


@dataclass(frozen=True)
class Images:
    base: Path  # the ext4 image, 30% used
    bmap: Path  # its bmap (not beside the image: each run says whether to use it)
    some: Path  # 5% of its MiB blocks changed, spread evenly
    every: Path  # every MiB block changed
    mapped: int  # bytes the bmap maps


@contextmanager
def scratch() -> Iterator[Path]:
    """A temporary directory in /dev/shm, removed on the way out."""
    with tempfile.TemporaryDirectory(prefix="usbwriter-bench-", dir="/dev/shm") as d:
        yield Path(d)


def random_tree(root: Path, total: int) -> None:
    """Files of random bytes, 64 KiB to 16 MiB each, TOTAL bytes in all."""
    rng = random.Random(20240601)
    sizes = [64 * 1024, 256 * 1024, MiB, 4 * MiB, 16 * MiB]
    left, i = total, 0
    while left > 0:
        n = min(left, rng.choice(sizes))
        d = root / f"d{i // 16:02d}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / f"f{i:04d}.bin", "wb") as f:
            f.write(os.urandom(n))
        left -= n
        i += 1


def changed_copy(src: Path, dst: Path, blocks: list[int]) -> None:
    """A sparse copy of SRC with CHANGE random bytes overwritten in each MiB block listed."""
    sh(["cp", "--sparse=always", str(src), str(dst)])
    fd = os.open(dst, os.O_WRONLY)
    try:
        for b in blocks:
            os.pwrite(fd, os.urandom(CHANGE), b * MiB + MiB // 2)
    finally:
        os.close(fd)


def build_images(tmp: Path) -> Images:
    print(
        f"bench: building a {FS_SIZE // MiB} MiB ext4 image with {FS_USED // MiB} MiB of "
        "random files, its bmap and two changed copies",
        file=sys.stderr,
    )
    tree = tmp / "tree"
    random_tree(tree, FS_USED)
    base = tmp / "fs30.img"
    with open(base, "wb") as f:
        f.truncate(FS_SIZE)
    try:
        sh(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(base)])
    finally:
        shutil.rmtree(tree)
    bmap = tmp / "fs30.bmap"
    sh(["bmaptool", "-q", "create", "-o", str(bmap), str(base)])
    mapped = int(_bmap_field(bmap, "MappedBlocksCount")) * int(_bmap_field(bmap, "BlockSize"))
    blocks = FS_SIZE // MiB
    some = tmp / "fs30-some.img"
    changed_copy(base, some, [b for b in range(blocks) if b % 20 == 10])
    every = tmp / "fs30-every.img"
    changed_copy(base, every, list(range(blocks)))
    return Images(base, bmap, some, every, mapped)


def _bmap_field(bmap: Path, tag: str) -> str:
    return (ElementTree.parse(bmap).getroot().findtext(tag) or "").strip()


# --- running the tools ------------------------------------------------------------------


def usbwriter_argv(image: Path, devs: list[str], *extra: str) -> list[str]:
    argv = [str(PYTHON), "-m", "usbwriter", "--image", str(image)]
    for d in devs:
        argv += ["--device", d]
    return [*argv, *extra, "--yes", "--force", "--json"]


def receipt_run(result: dict[str, Any], wall: float, rss: int) -> Run:
    if not result.get("verified"):
        raise SystemExit(f"bench: usbwriter did not verify: {result}")
    w, v = float(result["write_seconds"]), float(result["verify_seconds"])
    run: Run = {"write": w, "verify": v, "phases": w + v, "total": wall, "rss": rss}
    cov = result.get("coverage")
    if cov is not None:
        run["written"] = cov["written"]
        run["spans"] = cov["spans"]
        run["unchanged"] = cov["unchanged"]
        run["untouched"] = cov["untouched"]
        run["switched"] = -1 if cov["switched_to_full_at"] is None else cov["switched_to_full_at"]
    return run


def usbwriter_one(image: Path, dev: str, cgroup: Path, *extra: str) -> Run:
    wall, rss, out = timed_rss(usbwriter_argv(image, [dev], *extra), cgroup)
    return receipt_run(json.loads(out.strip().splitlines()[-1]), wall, rss)


def bmaptool_copy(images: Images, dev: str, cgroup: Path) -> Run:
    argv = ["bmaptool", "-q", "copy", "--bmap", str(images.bmap), str(images.base), dev]
    wall, rss, _ = timed_rss(argv, cgroup)
    return {"write": wall, "total": wall, "rss": rss}


def restore(image: Path, dev: str) -> None:
    """Put IMAGE on DEV, unthrottled (outside the cgroup), not timed."""
    sh(["dd", f"if={image}", f"of={dev}", "bs=4M", "oflag=direct", "conv=fsync", "status=none"])


def rounds_of(name: str, cases: dict[str, Callable[[], Run]], rounds: int) -> dict[str, list[Run]]:
    """CASES run ROUNDS times, the order reversed every other round."""
    runs: dict[str, list[Run]] = {c: [] for c in cases}
    for i in range(rounds):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for c in order:
            runs[c].append(cases[c]())
        print(f"  {name}: round {i + 1}/{rounds} done", file=sys.stderr)
    return runs


# --- reporting ------------------------------------------------------------------------------


def med(runs: list[Run], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def verdict(value: float, target: float, at_most: bool = True) -> str:
    ok = value <= target if at_most else value >= target
    return f"(target {'≤' if at_most else '≥'} {target:.2f}): {'PASS' if ok else 'MISS'}"


def per_round(a: list[Run], b: list[Run], key_a: str, key_b: str) -> str:
    return ", ".join(f"{x[key_a] / y[key_b]:.3f}" for x, y in zip(a, b, strict=True))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def row(name: str, rs: list[Run]) -> str:
    def cell(key: str) -> str:
        return f"{med(rs, key):.2f}" if key in rs[0] else "-"

    rss = max(r["rss"] for r in rs) / MiB
    return (
        f"| {name} | {cell('write')} | {cell('verify')} | {cell('phases')} | {cell('total')} "
        f"| {rss:.1f} |"
    )


TABLE = [
    "| run | write s | verify s | write+verify s | wall s | peak RSS MiB |",
    "|---|---|---|---|---|---|",
]


def ratio_line(
    label: str, a: list[Run], b: list[Run], target: float, key_a: str, key_b: str
) -> str:
    r = med(a, key_a) / med(b, key_b)
    return f"{label}: {r:.3f} x {verdict(r, target)}; per round {per_round(a, b, key_a, key_b)}"


def header(title: str, n: int, load_before: str) -> list[str]:
    return [
        f"\n## {title}, medians of {n}",
        "",
        f"throttled to {WRITE_BPS / 1e6:.0f} MB/s write, {READ_BPS / 1e6:.0f} MB/s read; "
        f"load average (1, 5, 15 min) before {load_before}, after {load()}",
        "",
    ]


# --- the cases -----------------------------------------------------------------------------


def bmap_case(images: Images, rounds: int) -> list[str]:
    before = load()
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch())
        dev = stack.enter_context(loop_device(tmp / "stick", STICK))
        cg = stack.enter_context(throttled(dev))
        cases: dict[str, Callable[[], Run]] = {
            "usbwriter --bmap": lambda: usbwriter_one(
                images.base, dev, cg, "--bmap", str(images.bmap)
            ),
            "bmaptool copy --bmap": lambda: bmaptool_copy(images, dev, cg),
            "usbwriter --no-bmap": lambda: usbwriter_one(images.base, dev, cg, "--no-bmap"),
        }
        runs = rounds_of("bmap", cases, rounds)
    ub, bt, full = (
        runs["usbwriter --bmap"],
        runs["bmaptool copy --bmap"],
        runs["usbwriter --no-bmap"],
    )
    written = med(ub, "written")
    lines = header(
        f"bmap: {FS_SIZE // MiB} MiB ext4 image, {images.mapped / MiB:.0f} MiB mapped "
        f"({100 * images.mapped / FS_SIZE:.0f}%)",
        rounds,
        before,
    )
    lines += [*TABLE, row("usbwriter --bmap", ub), row("bmaptool copy --bmap (no read-back)", bt)]
    lines += [row("usbwriter --no-bmap", full), ""]
    lines.append(
        f"usbwriter --bmap wrote {written / MiB:.1f} MiB in {med(ub, 'spans'):.0f} spans, left "
        f"{med(ub, 'untouched') / MiB:.1f} MiB untouched; device floor for the mapped bytes: "
        f"write {images.mapped / WRITE_BPS:.2f} s, read-back {images.mapped / READ_BPS:.2f} s"
    )
    lines.append(
        ratio_line(
            "usbwriter --bmap write phase / bmaptool copy wall", ub, bt, 1.05, "write", "write"
        )
    )
    lines.append(
        f"  (for scale: usbwriter --bmap wall, write and read-back, / bmaptool copy wall: "
        f"{med(ub, 'total') / med(bt, 'total'):.3f} x)"
    )
    lines.append(
        ratio_line(
            "usbwriter --bmap write+verify / --no-bmap write+verify",
            ub,
            full,
            0.35,
            "phases",
            "phases",
        )
    )
    lines.append(ratio_line("  same, wall / wall", ub, full, 0.35, "total", "total"))
    return lines


def delta_case(images: Images, rounds: int) -> list[str]:
    before = load()
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch())
        dev = stack.enter_context(loop_device(tmp / "stick", STICK))
        cg = stack.enter_context(throttled(dev))
        holds: list[Path | None] = [None]

        def on_base(image: Path, *extra: str) -> Callable[[], Run]:
            """A timed usbwriter run; a delta run starts with the base image on the drive."""

            def go() -> Run:
                if extra and holds[0] != images.base:
                    restore(images.base, dev)
                run = usbwriter_one(image, dev, cg, "--no-bmap", *extra)
                holds[0] = image
                return run

            return go

        cases = {
            "plain": on_base(images.base),
            "delta, same image": on_base(images.base, "--delta"),
            "delta, 5% of blocks changed": on_base(images.some, "--delta"),
            "delta, every block changed": on_base(images.every, "--delta"),
        }
        runs = rounds_of("delta", cases, rounds)
    plain = runs["plain"]
    targets = {
        "delta, same image": 0.40,
        "delta, 5% of blocks changed": 0.45,
        "delta, every block changed": 1.10,
    }
    lines = header(
        f"delta: {FS_SIZE // MiB} MiB ext4 image over itself, 5% and 100% of its MiB blocks "
        "changed",
        rounds,
        before,
    )
    lines += [*TABLE, row("usbwriter plain (--no-bmap)", plain)]
    lines += [row(f"usbwriter {name}", runs[name]) for name in targets]
    lines.append("")
    for name, target in targets.items():
        rs = runs[name]
        sw = med(rs, "switched")
        lines.append(
            f"{name}: wrote {med(rs, 'written') / MiB:.1f} MiB in {med(rs, 'spans'):.0f} spans, "
            f"{med(rs, 'unchanged') / MiB:.1f} MiB found equal"
            + (f", written plainly from byte {sw:.0f}" if sw >= 0 else "")
        )
        lines.append(
            ratio_line("  write+verify / plain write+verify", rs, plain, target, "phases", "phases")
        )
        lines.append(ratio_line("  wall / plain wall", rs, plain, target, "total", "total"))
    return lines


def parallel(argvs: list[list[str]], cgroup: Path) -> list[float]:
    """Run ARGVS at once in CGROUP; the seconds each took."""

    def enter() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    start = time.perf_counter()
    procs = [subprocess.Popen(a, preexec_fn=enter) for a in argvs]
    took: list[float | None] = [None] * len(procs)
    try:
        while None in took:
            for i, p in enumerate(procs):
                if took[i] is None and p.poll() is not None:
                    took[i] = time.perf_counter() - start
                    if p.returncode != 0:
                        raise SystemExit(f"bench: {' '.join(argvs[i])} failed ({p.returncode})")
            time.sleep(0.005)
    finally:
        for p in procs:
            stop(p)
    return [t or 0.0 for t in took]


def dd_parallel(image: Path, devs: list[str], cgroup: Path) -> dict[str, Run]:
    """dd to every drive at once, then dd reads every drive back at once."""
    writes = parallel(
        [
            ["dd", f"if={image}", f"of={d}", "bs=4M", "oflag=direct", "conv=fsync", "status=none"]
            for d in devs
        ],
        cgroup,
    )
    count = f"count={FS_SIZE // (4 * MiB)}"
    reads = parallel(
        [
            ["dd", f"if={d}", "of=/dev/null", "bs=4M", "iflag=direct", count, "status=none"]
            for d in devs
        ],
        cgroup,
    )
    return {
        d: {"write": w, "verify": r, "phases": w + r, "total": w + r, "rss": 0}
        for d, w, r in zip(devs, writes, reads, strict=True)
    }


def several_result(out: str, wall: float, rss: int, devs: list[str]) -> dict[str, Run]:
    events = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    summary = events[-1]
    if summary.get("event") != "summary" or summary.get("exit_code") != 0:
        raise SystemExit(f"bench: usbwriter on several drives did not succeed: {summary}")
    results = {e["device_path"]: e for e in events if e.get("event") == "result"}
    return {d: receipt_run(results[d], wall, rss) for d in devs}


def several_case(images: Images, rounds: int) -> list[str]:
    before = load()
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch())
        devs = [stack.enter_context(loop_device(tmp / f"stick{i}", STICK)) for i in range(DRIVES)]
        cg = stack.enter_context(throttled(*devs))
        multi: list[dict[str, Run]] = []

        def one() -> Run:
            wall, peak, out = run_polled(usbwriter_argv(images.base, devs[:1], "--no-bmap"), cg)
            return receipt_run(
                json.loads(out.strip().splitlines()[-1]), wall, peak.get("python", 0)
            )

        def many() -> Run:
            wall, peak, out = run_polled(usbwriter_argv(images.base, devs, "--no-bmap"), cg)
            rss = peak.get("python", 0)
            multi.append(several_result(out, wall, rss, devs))
            return {"total": wall, "rss": rss}

        dd: list[dict[str, Run]] = []

        def dd_many() -> Run:
            dd.append(dd_parallel(images.base, devs, cg))
            return {"total": max(r["phases"] for r in dd[-1].values()), "rss": 0}

        cases = {"one drive": one, f"{DRIVES} drives": many, f"dd x{DRIVES}": dd_many}
        runs = rounds_of("several", cases, rounds)
    single = runs["one drive"]
    size = FS_SIZE
    s_rate = size / med(single, "phases")
    lines = header(
        f"several drives: {FS_SIZE // MiB} MiB image to {DRIVES} throttled loop devices at once",
        rounds,
        before,
    )
    lines += [
        "| drive | write s | verify s | write+verify s | write MB/s | read MB/s "
        "| rate MB/s | rate / one drive's |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def drive_row(name: str, rs: list[Run]) -> tuple[str, float]:
        w, v, p = med(rs, "write"), med(rs, "verify"), med(rs, "phases")
        rate = size / p
        return (
            f"| {name} | {w:.2f} | {v:.2f} | {p:.2f} | {size / w / 1e6:.0f} | {size / v / 1e6:.0f} "
            f"| {rate / 1e6:.0f} | {rate / s_rate:.3f} |",
            rate / s_rate,
        )

    lines.append(drive_row(f"{devs[0]} alone", single)[0])
    ratios = []
    for d in devs:
        text, r = drive_row(f"{d} (one of {DRIVES})", [m[d] for m in multi])
        lines.append(text)
        ratios.append((d, r))
    limit = size / WRITE_BPS + size / READ_BPS
    for d in devs:
        text, _ = drive_row(f"dd to {d} (one of {DRIVES} dd at once)", [m[d] for m in dd])
        lines.append(text)
    lines.append("")
    lines.append(
        f"(the throttle's limit for one drive: {size / WRITE_BPS:.2f} s write, "
        f"{size / READ_BPS:.2f} s read, {limit:.2f} s in all; the dd rows show what this "
        f"machine gives {DRIVES} drives at once without usbwriter; the last column divides "
        "by usbwriter's rate alone)"
    )
    for d, r in ratios:
        per = ", ".join(
            f"{s['phases'] / m[d]['phases']:.3f}" for s, m in zip(single, multi, strict=True)
        )
        lines.append(
            f"{d}: rate with {DRIVES} drives / alone: {r:.3f} x "
            f"{verdict(r, 0.8, at_most=False)}; per round {per}"
        )
    one_wall, many_wall = med(single, "total"), med(runs[f"{DRIVES} drives"], "total")
    lines.append(
        f"wall: one drive {one_wall:.2f} s, {DRIVES} drives {many_wall:.2f} s "
        f"({DRIVES * one_wall / many_wall:.2f} x the work per second of one)"
    )
    rss_one = max(r["rss"] for r in single) / MiB
    rss_many = max(r["rss"] for r in runs[f"{DRIVES} drives"]) / MiB
    lines.append(
        f"peak RSS of usbwriter (VmHWM): {DRIVES} drives {rss_many:.1f} MiB "
        f"{verdict(rss_many, 150)} (one drive {rss_one:.1f} MiB)"
    )
    return lines


CASES: dict[str, Callable[[Images, int], list[str]]] = {
    "bmap": bmap_case,
    "delta": delta_case,
    "several": several_case,
}


def run_cases(names: list[str], rounds: int, emit: Callable[[list[str]], None]) -> None:
    """Build the images once, run each named case and hand its report lines to EMIT."""
    with scratch() as tmp:
        images = build_images(tmp)
        for name in names:
            emit(CASES[name](images, rounds))


__all__ = ["CASES", "run_cases"]

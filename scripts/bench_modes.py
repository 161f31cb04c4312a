"""Bench cases for the write modes that write less or write to several drives.

Run through scripts/bench.py (`--only bmap`, `--only bmap-cache`, `--only delta`,
`--only several`, `--only mixed`, or `--skip-bmap` and the like). Every case runs on
loop devices over /dev/shm throttled to a fast USB 3 stick (200 MB/s write, 400 MB/s
read, one cgroup with a limit per device; mixed: three speeds), rounds interleaved,
medians printed with ratios, the target beside each and PASS or MISS. usbwriter runs
as the real command with `--yes --force --json`; its write and verify phases are the
receipt's `write_seconds` and `verify_seconds`, "wall" is the whole command (process
start, planning and boot report included).

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
- bmap-cache: the bmap image copied to a disk (`--work-dir`, removed afterwards), its
  bmap made again there. Each run either cold (`posix_fadvise(POSIX_FADV_DONTNEED)` on
  the image and the bmap just before; checked first with fincore and by timing a cold
  read of the file against a warm one) or warm (both read just before): usbwriter
  `--bmap F --no-verify` (write phase) against `bmaptool copy --bmap F`, and usbwriter
  `--bmap F` write+verify against a warm `--no-bmap` write+verify.
- mixed: three loop devices throttled to 200, 100 and 50 MB/s write (400, 200 and
  100 MB/s read), a 128 MiB random image and its .zst (`zstd -T0`): usbwriter writing
  each drive alone, and the three in one command; each drive's write phase with the
  others (its own result object's `write_seconds`) over its write phase alone.

Everything is made in a temporary directory in /dev/shm (bmap-cache's image in one in
--work-dir) and removed afterwards, loop devices and the cgroup included, also on
Ctrl-C or an error.
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
from contextlib import ExitStack, contextmanager, suppress
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
    load,
    loop_device,
    make_image,
    run_polled,
    sh,
    stop,
    throttled,
    timed_rss,
    verdict,
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


def receipt_run(result: dict[str, Any], wall: float, rss: int, verify: bool = True) -> Run:
    """The phases of a usbwriter run from its result object (one that read back must have
    verified; with --no-verify the verify phase is 0)."""
    if verify and not result.get("verified"):
        raise SystemExit(f"bench: usbwriter did not verify: {result}")
    if result.get("event") != "result" or result.get("write_seconds") is None:
        raise SystemExit(f"bench: usbwriter did not write: {result}")
    w = float(result["write_seconds"])
    run: Run = {"write": w, "total": wall, "rss": rss}
    if verify:
        run["verify"] = float(result["verify_seconds"])
        run["phases"] = w + run["verify"]
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
    result = json.loads(out.strip().splitlines()[-1])
    return receipt_run(result, wall, rss, verify="--no-verify" not in extra)


def bmaptool_copy(image: Path, bmap: Path, dev: str, cgroup: Path) -> Run:
    argv = ["bmaptool", "-q", "copy", "--bmap", str(bmap), str(image), dev]
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


def per_round(a: list[Run], b: list[Run], key_a: str, key_b: str) -> str:
    return ", ".join(f"{x[key_a] / y[key_b]:.3f}" for x, y in zip(a, b, strict=True))


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
            "bmaptool copy --bmap": lambda: bmaptool_copy(images.base, images.bmap, dev, cg),
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


# --- drives of mixed speeds -------------------------------------------------------------

MIXED_SIZE = 128 * MiB
MIXED = ((200_000_000, 400_000_000), (100_000_000, 200_000_000), (50_000_000, 100_000_000))


def zstd_copy(src: Path, dst: Path) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        subprocess.run(["zstd", "-T0", "-q", "-c"], stdin=fi, stdout=fo, check=True)


def mixed_case(ctx: Context) -> list[str]:
    """Three drives of different speeds: each drive's write phase alone and with the
    other two in the same command (its own result object's write_seconds)."""
    before = load()
    kinds = ("raw", ".zst")
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch())
        print(
            f"bench: a {MIXED_SIZE // MiB} MiB random image and its .zst for drives of mixed "
            "speeds",
            file=sys.stderr,
        )
        raw = tmp / "random.img"
        make_image(raw, MIXED_SIZE)
        zst = tmp / "random.img.zst"
        zstd_copy(raw, zst)
        images = dict(zip(kinds, (raw, zst), strict=True))
        devs = [
            stack.enter_context(loop_device(tmp / f"stick{i}", MIXED_SIZE + 64 * MiB))
            for i in range(len(MIXED))
        ]
        cg = stack.enter_context(throttled(*devs, rates=MIXED))
        together: dict[str, list[dict[str, Run]]] = {k: [] for k in kinds}

        def alone(image: Path, dev: str) -> Callable[[], Run]:
            return lambda: usbwriter_one(image, dev, cg)

        def many(kind: str) -> Callable[[], Run]:
            def go() -> Run:
                wall, rss, out = timed_rss(usbwriter_argv(images[kind], devs), cg)
                together[kind].append(several_result(out, wall, rss, devs))
                return {"total": wall, "rss": rss}

            return go

        cases: dict[str, Callable[[], Run]] = {}
        for kind in kinds:
            for d in devs:
                cases[f"{kind} {d} alone"] = alone(images[kind], d)
            cases[f"{kind} together"] = many(kind)
        runs = rounds_of("mixed", cases, ctx.rounds)
        zst_size = zst.stat().st_size
    speeds = ", ".join(f"{w / 1e6:.0f}/{r / 1e6:.0f}" for w, r in MIXED)
    lines = [
        f"\n## mixed speeds: {MIXED_SIZE // MiB} MiB random image (raw, and .zst of the same "
        f"bytes: {zst_size / 1e6:.0f} MB) to {len(devs)} drives of different speeds, alone and "
        f"together, medians of {ctx.rounds}",
        "",
        f"throttled to {speeds} MB/s write/read; load average (1, 5, 15 min) before {before}, "
        f"after {load()}",
        "",
        "| image | drive (write MB/s) | device floor write s | alone write s "
        "| together write s | together / alone | alone verify s | together verify s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for kind in kinds:
        for d, (wbps, _) in zip(devs, MIXED, strict=True):
            one = runs[f"{kind} {d} alone"]
            all3 = [m[d] for m in together[kind]]
            r = med(all3, "write") / med(one, "write")
            lines.append(
                f"| {kind} | {d} ({wbps / 1e6:.0f}) | {MIXED_SIZE / wbps:.2f} "
                f"| {med(one, 'write'):.2f} | {med(all3, 'write'):.2f} | {r:.3f} "
                f"| {med(one, 'verify'):.2f} | {med(all3, 'verify'):.2f} |"
            )
            verdicts.append(
                f"{kind}, {d} at {wbps / 1e6:.0f} MB/s: write together / alone {r:.3f} x "
                f"{verdict(r, 1.15)}; per round {per_round(all3, one, 'write', 'write')}"
            )
        slowest = med(runs[f"{kind} {devs[-1]} alone"], "total")
        wall = med(runs[f"{kind} together"], "total")
        verdicts.append(
            f"{kind}: wall of the command for all {len(devs)} {wall:.2f} s, the slowest "
            f"drive's alone {slowest:.2f} s"
        )
    rss = max(r["rss"] for k in kinds for r in runs[f"{k} together"]) / MiB
    return [*lines, "", *verdicts, f"peak RSS of usbwriter for {len(devs)} drives: {rss:.1f} MiB"]


# --- bmap from a cold and a warm page cache ---------------------------------------------------


def evict(*paths: Path) -> None:
    """Drop PATHS' pages from the page cache (written back first: dirty pages stay)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_through(path: Path) -> float:
    """Read PATH through the page cache (so it is cached afterwards); the seconds taken."""
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(4 * MiB):
            pass
    return time.perf_counter() - start


def resident(path: Path) -> int:
    """Bytes of PATH in the page cache (util-linux fincore)."""
    return int(sh(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)]).strip())


def bmap_cache_case(ctx: Context) -> list[str]:
    """A bmap write with the image cold (evicted from the page cache) and warm, against
    bmaptool copy in the same state; the image on a disk, not in tmpfs, so it can be
    evicted."""
    images = ctx.images
    before = load()
    ctx.work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        tmp = stack.enter_context(scratch())
        disk = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=ctx.work)))
        image, bmap = disk / "fs30.img", disk / "fs30.bmap"
        sh(["cp", "--sparse=always", str(images.base), str(image)])
        sh(["bmaptool", "-q", "create", "-o", str(bmap), str(image)])
        mapped = int(_bmap_field(bmap, "MappedBlocksCount")) * int(_bmap_field(bmap, "BlockSize"))
        # Eviction works here? A cold read of the file must be slower than a warm one, and
        # fincore must see none of it cached.
        evict(image, bmap)
        left = resident(image)
        cold_read = read_through(image)
        warm_read = read_through(image)
        if left > mapped // 100:
            raise SystemExit(
                f"bench: {left} bytes of {image} stay cached after POSIX_FADV_DONTNEED "
                "(is --work-dir on tmpfs?)"
            )
        dev = stack.enter_context(loop_device(tmp / "stick", STICK))
        cg = stack.enter_context(throttled(dev))

        def cold(run: Callable[[], Run]) -> Callable[[], Run]:
            def go() -> Run:
                evict(image, bmap)
                return run()

            return go

        def warm(run: Callable[[], Run]) -> Callable[[], Run]:
            def go() -> Run:
                read_through(image)
                read_through(bmap)
                return run()

            return go

        def uw(*extra: str) -> Callable[[], Run]:
            return lambda: usbwriter_one(image, dev, cg, *extra)

        bmap_args = ("--bmap", str(bmap))
        cases: dict[str, Callable[[], Run]] = {}
        for state, prepare in (("cold", cold), ("warm", warm)):
            cases[f"usbwriter --bmap --no-verify, {state}"] = prepare(uw(*bmap_args, "--no-verify"))
            cases[f"bmaptool copy --bmap, {state}"] = prepare(
                lambda: bmaptool_copy(image, bmap, dev, cg)
            )
            cases[f"usbwriter --bmap, {state}"] = prepare(uw(*bmap_args))
        cases["usbwriter --no-bmap, warm"] = warm(uw("--no-bmap"))
        runs = rounds_of("bmap-cache", cases, ctx.rounds)
        fs_type = sh(["findmnt", "-no", "FSTYPE", "-T", str(disk)]).strip()
    lines = header(
        f"bmap from a cold and a warm page cache: {FS_SIZE // MiB} MiB ext4 image on "
        f"{fs_type} in {ctx.work}, {mapped / MiB:.0f} MiB mapped",
        ctx.rounds,
        before,
    )
    lines += [
        f"cold: POSIX_FADV_DONTNEED on the image and the bmap before the run (fincore: "
        f"{left} bytes of the image cached after it; reading the image file: cold "
        f"{cold_read:.2f} s, warm {warm_read:.2f} s); warm: both read just before the run",
        "",
        *TABLE,
    ]
    lines += [row(name, rs) for name, rs in runs.items()]
    lines.append("")
    for state in ("cold", "warm"):
        lines.append(
            ratio_line(
                f"{state}: usbwriter --bmap --no-verify write phase / bmaptool copy wall",
                runs[f"usbwriter --bmap --no-verify, {state}"],
                runs[f"bmaptool copy --bmap, {state}"],
                1.05,
                "write",
                "write",
            )
        )
    full = runs["usbwriter --no-bmap, warm"]
    for state in ("cold", "warm"):
        lines.append(
            ratio_line(
                f"{state}: usbwriter --bmap write+verify / warm --no-bmap write+verify",
                runs[f"usbwriter --bmap, {state}"],
                full,
                0.35,
                "phases",
                "phases",
            )
        )
    lines.append(
        f"(device floor for the mapped bytes: write {mapped / WRITE_BPS:.2f} s, read-back "
        f"{mapped / READ_BPS:.2f} s)"
    )
    return lines


# --- windows: file copy against a raw write -------------------------------------------------


@contextmanager
def root_throttled(dev: str) -> Iterator[None]:
    """DEV limited to a stick's speed in the root blkio cgroup: every writer is held to
    it, the kernel's flusher threads too (a file copy's buffered writes are written back
    by them, which a child cgroup's limit would not see)."""
    root = Path("/sys/fs/cgroup/blkio")
    majmin = sh(["lsblk", "-dno", "MAJ:MIN", dev]).strip()
    try:
        (root / "blkio.throttle.write_bps_device").write_text(f"{majmin} {WRITE_BPS}")
        (root / "blkio.throttle.read_bps_device").write_text(f"{majmin} {READ_BPS}")
        yield
    finally:
        for f in ("blkio.throttle.write_bps_device", "blkio.throttle.read_bps_device"):
            with suppress(OSError):
                (root / f).write_text(f"{majmin} 0")


def windows_iso(work: Path) -> tuple[Path, bool]:
    """The Windows-like ISO with an install.wim over 4 GiB (tests/helpers/windows.py):
    from $USBW_IMAGE_CACHE when built there, else built in WORK (removed afterwards)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.helpers.windows import build

    cache = os.environ.get("USBW_IMAGE_CACHE")
    if cache and (Path(cache) / "windows-big.iso").exists():
        return Path(cache) / "windows-big.iso", False
    print("bench: building the Windows-like ISO (about 4.2 GiB)", file=sys.stderr)
    return build("big", work), True


def windows_case(ctx: Context) -> list[str]:
    """usbwriter --mode files of the Windows-like ISO (install.wim over 4 GiB, split)
    against --mode raw of the same ISO, on one loop device over /dev/shm throttled to
    200 MB/s write, 400 MB/s read for every writer; write and read back each time."""
    before = load()
    iso, made = windows_iso(ctx.work)
    size = iso.stat().st_size
    runs: dict[str, list[Run]] = {}
    try:
        with ExitStack() as stack:
            tmp = stack.enter_context(scratch())
            dev = stack.enter_context(loop_device(tmp / "stick", size + 512 * MiB))
            stack.enter_context(root_throttled(dev))

            def one(mode: str) -> Run:
                argv = usbwriter_argv(iso, [dev], "--mode", mode, "--no-probe")
                start = time.monotonic()
                p = subprocess.run(argv, capture_output=True, text=True, check=False)
                wall = time.monotonic() - start
                if p.returncode != 0:
                    raise SystemExit(f"bench: usbwriter --mode {mode} failed: {p.stderr[-500:]}")
                lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
                result = next(x for x in lines if x.get("event") == "result")
                run = receipt_run(result, wall, 0)
                files = result.get("files")
                run["bytes"] = float(files["bytes_copied"] if files else result["bytes_written"])
                return run

            runs = rounds_of(
                "windows", {"files": lambda: one("files"), "raw": lambda: one("raw")}, ctx.rounds
            )
    finally:
        if made:
            iso.unlink(missing_ok=True)
    lines = header(
        "windows: file copy of a Windows-like ISO against a raw write", ctx.rounds, before
    )
    lines += [
        f"ISO {size / MiB:.0f} MiB (install.wim over 4 GiB, split into .swm parts); files "
        f"copied {med(runs['files'], 'bytes') / MiB:.0f} MiB; raw write "
        f"{med(runs['raw'], 'bytes') / MiB:.0f} MiB; limits on the root blkio cgroup",
        "",
        *TABLE,
        row("usbwriter --mode files", runs["files"]),
        row("usbwriter --mode raw", runs["raw"]),
        "",
        ratio_line(
            "files / raw, whole command", runs["files"], runs["raw"], 1.15, "total", "total"
        ),
        ratio_line(
            "files / raw, write+verify", runs["files"], runs["raw"], 1.15, "phases", "phases"
        ),
        f"(device floor: write {size / WRITE_BPS:.1f} s, read-back {size / READ_BPS:.1f} s)",
    ]
    return lines


@dataclass
class Context:
    """What a case is given: its rounds, a folder on a disk (WORK) and the ext4 images in
    /dev/shm, built when a case first asks for them."""

    rounds: int
    tmp: Path
    work: Path
    built: Images | None = None

    @property
    def images(self) -> Images:
        if self.built is None:
            self.built = build_images(self.tmp)
        return self.built


CASES: dict[str, Callable[[Context], list[str]]] = {
    "bmap": lambda c: bmap_case(c.images, c.rounds),
    "bmap-cache": bmap_cache_case,
    "delta": lambda c: delta_case(c.images, c.rounds),
    "several": lambda c: several_case(c.images, c.rounds),
    "mixed": mixed_case,
    "windows": windows_case,
}


def run_cases(names: list[str], rounds: int, emit: Callable[[list[str]], None], work: Path) -> None:
    """Run each named case and hand its report lines to EMIT; the ext4 images are built
    once, when first needed. WORK is a folder on a disk."""
    with scratch() as tmp:
        ctx = Context(rounds, tmp, work)
        for name in names:
            emit(CASES[name](ctx))


__all__ = ["CASES", "run_cases"]

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

Compressed images, on the same throttled device: a 1 GiB ext4 image about half filled
with files copied from /usr, compressed with `zstd -T0` and `xz -T0` (kept in --work-dir
and reused by later runs). usbwriter's write phase (the receipt's `write_seconds`) is
compared with `zstd -dc F | dd of=DEV bs=4M oflag=direct iflag=fullblock conv=fsync` and
`xz -dc -T0 F | dd ...`, interleaved round by round; its verify phase is shown beside
it, and the peak RSS of the usbwriter process and of the decompressor it runs (VmHWM,
polled from /proc). --skip-compressed leaves these cases out, --compressed-only runs
only them.

Memory speed (`memory`): the CPU-bound setup against dd alone, with its target
(usbwriter's write and verify, the receipt's seconds, at most 1.5 x `dd ... oflag=direct
conv=fsync` + `dd ... iflag=direct`), its whole command beside it, and usbwriter's time
to first byte apart: from process start to the first NDJSON write progress event with
done > 0, read from the pipe as it comes.

The write modes, each on throttled loop devices (scripts/bench_modes.py): bmap (a 1 GiB
ext4 image 30% used: usbwriter --bmap against bmaptool copy --bmap and against a whole
write), bmap-cache (the same with the image on a disk in --work-dir, evicted from the
page cache before a run and read just before it), delta (--delta over the same image,
5% changed, all changed, against a plain write), several (--device x4 against one
drive: each drive's rate, peak RSS) and mixed (three drives at 200, 100 and 50 MB/s:
each drive's write phase with the others against alone, raw and .zst).

File copy (`windows`, scripts/bench_modes.py): usbwriter --mode files of a Windows-like
ISO whose install.wim is over 4 GiB (split with wimlib) against --mode raw of the same
ISO, the loop device limited in the root blkio cgroup (the page cache's writeback too).

Cases: cpu-bound, device-bound, memory, compressed, bmap, bmap-cache, delta, several,
mixed, windows. All run by default; `--only CASE` (repeatable) runs only those, `--skip-CASE`
leaves one out. `--tree DIR` runs the usbwriter of another source tree (a git worktree
of an older commit) for before/after figures: every usbwriter command runs as
`python -m usbwriter` in that folder, and the report names the package it imported.
Each report gives the load average beside its figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

MiB = 1 << 20
ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
# Per process: two benches at once must not share (or remove) each other's limits.
CGROUP = Path(f"/sys/fs/cgroup/blkio/usbwriter-bench-{os.getpid()}")
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
    """A loop device over BACKING, allocated in full first: a first write into a sparse
    tmpfs file also allocates its pages, which made the first run of a case slower."""
    try:
        with open(backing, "wb") as f:
            os.posix_fallocate(f.fileno(), 0, size)
        dev = sh(["losetup", "-f", "--show", str(backing)]).strip()
    except BaseException:
        backing.unlink(missing_ok=True)
        raise
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", dev], check=False)
        backing.unlink(missing_ok=True)


@contextmanager
def throttled(*devs: str, rates: Sequence[tuple[int, int]] = ()) -> Iterator[Path]:
    """A cgroup that limits each of DEVS to a stick's speed (the limits are per device):
    RATES[i] is (write, read) bytes per second for DEVS[i], a fast USB 3 stick's when
    not given."""
    majmins = [sh(["lsblk", "-dno", "MAJ:MIN", dev]).strip() for dev in devs]
    limits = list(rates) or [(WRITE_BPS, READ_BPS)] * len(devs)
    if len(limits) != len(devs):
        raise ValueError("throttled: one (write, read) rate a device")
    CGROUP.mkdir(exist_ok=True)
    try:
        for majmin, (write_bps, read_bps) in zip(majmins, limits, strict=True):
            (CGROUP / "blkio.throttle.write_bps_device").write_text(f"{majmin} {write_bps}")
            (CGROUP / "blkio.throttle.read_bps_device").write_text(f"{majmin} {read_bps}")
        yield CGROUP
    finally:
        for majmin in majmins:
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
    seconds, rss, out, first = timed_ndjson(argv, cgroup)
    result = json.loads(out.strip().splitlines()[-1])
    if not result.get("verified"):
        raise SystemExit(f"bench: usbwriter did not verify: {result}")
    run = {
        "total": seconds,
        "write": result["write_seconds"],
        "verify": result["verify_seconds"],
        "rss": rss,
    }
    if first is not None:
        run["first"] = first
    return run


def first_written(line: bytes) -> bool:
    """Whether LINE of usbwriter's NDJSON is a write progress event with bytes written."""
    if b'"progress"' not in line:
        return False
    event = json.loads(line)
    return bool(event.get("phase") == "write" and event.get("done", 0) > 0)


def timed_ndjson(argv: list[str], cgroup: Path | None) -> tuple[float, int, str, float | None]:
    """Like timed_rss() for usbwriter --json, its stdout read from a pipe as it comes: also
    the seconds from process start to the first write progress event with done > 0 (the
    first chunk of the image written), None if there was none."""

    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    lines: list[bytes] = []
    first: float | None = None
    start = time.perf_counter()
    p = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=enter,
        env=dict(os.environ, LC_ALL="C"),
    )
    try:
        assert p.stdout is not None
        for line in p.stdout:
            if first is None and first_written(line):
                first = time.perf_counter() - start
            lines.append(line)
        _, status, usage = os.wait4(p.pid, 0)
    except BaseException:
        stop(p)
        raise
    seconds = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    out = b"".join(lines).decode()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({p.returncode}): {out[-400:]}")
    return seconds, usage.ru_maxrss * 1024, out, first


def timed_rss(argv: list[str], cgroup: Path | None) -> tuple[float, int, str]:
    """Like timed(), with the child's own peak RSS from wait4."""

    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    out_path = Path("/dev/shm") / f"usbwriter-bench-{os.getpid()}.out"
    try:
        with open(out_path, "wb") as out_f:
            start = time.perf_counter()
            p = subprocess.Popen(
                argv,
                stdout=out_f,
                stderr=subprocess.DEVNULL,
                preexec_fn=enter,
                env=dict(os.environ, LC_ALL="C"),
            )
            try:
                _, status, usage = os.wait4(p.pid, 0)
            except BaseException:
                stop(p)
                raise
            seconds = time.perf_counter() - start
            p.returncode = os.waitstatus_to_exitcode(status)
        out = out_path.read_text()
    finally:
        out_path.unlink(missing_ok=True)
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({p.returncode}): {out[-400:]}")
    return seconds, usage.ru_maxrss * 1024, out


def stop(p: subprocess.Popen[bytes]) -> None:
    """On Ctrl-C or an error: end a child still running (SIGTERM: usbwriter wipes the
    head and lets go of the drive), so its loop device and cgroup can be removed."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


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


def busy_seconds() -> float:
    """CPU time spent by the whole machine so far (every CPU, kernel threads included:
    the loop device's workers copy the bytes of both tools)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def blake3_seconds(size: int) -> float:
    """One blake3 pass over SIZE bytes on one thread, 4 MiB updates as usbwriter hashes
    (best of 3 over 256 MiB, scaled)."""
    import blake3

    data = memoryview(os.urandom(256 * MiB))
    best = float("inf")
    for _ in range(3):
        h = blake3.blake3()
        start = time.perf_counter()
        for i in range(0, len(data), 4 * MiB):
            h.update(data[i : i + 4 * MiB])
        best = min(best, time.perf_counter() - start)
    return best * size / len(data)


def cpu_floor(runs: dict[str, list[dict[str, float]]], size: int) -> list[str]:
    """What usbwriter's write+verify cannot go below here: it does all of dd's work
    (read the image, the loop device's copies) plus two blake3 passes (while writing,
    reading back), spread at best over every CPU, with no start-up at all."""
    cores = os.cpu_count() or 1
    dd_cpu = median(runs["dd"], "cpu")
    hash_s = blake3_seconds(size)
    floor = (dd_cpu + 2 * hash_s) / cores
    dd = median(runs["dd"], "total")
    uw_cpu = median(runs["usbwriter"], "cpu")
    return [
        f"CPU time of the whole machine per run (medians): usbwriter {uw_cpu:.2f} s, "
        f"dd {dd_cpu:.2f} s; one blake3 pass on one thread: {hash_s:.3f} s "
        f"({size / hash_s / 1e9:.2f} GB/s)",
        f"floor for usbwriter here: (dd's CPU + 2 blake3 passes) / {cores} CPUs = "
        f"{floor:.2f} s without any start-up = {floor / dd:.3f} x dd",
    ]


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def verdict(value: float, target: float, at_most: bool = True) -> str:
    ok = value <= target if at_most else value >= target
    return f"(target {'≤' if at_most else '≥'} {target:.2f}): {'PASS' if ok else 'MISS'}"


def load() -> str:
    """The load average (1, 5, 15 min), as uptime prints it."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
            before = busy_seconds()
            r = tools[t]()
            r["cpu"] = busy_seconds() - before
            runs[t].append(r)
        print(f"  {name}: round {i + 1}/{rounds} done", file=sys.stderr)
    return runs


def report(
    name: str, runs: dict[str, list[dict[str, float]]], size: int, limit: float | None
) -> list[str]:
    mb = size / 1e6
    lines = [f"\n## {name} ({size // MiB} MiB image, medians of {len(runs['usbwriter'])})", ""]
    lines += [f"load average (1, 5, 15 min) after the runs: {load()}", ""]
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


def memory_report(runs: dict[str, list[dict[str, float]]], size: int, before: str) -> list[str]:
    """Memory speed: usbwriter's whole command against dd's write and read, the 1.5 x
    target, and usbwriter's time to the first chunk written."""
    uw, dd = runs["usbwriter"], runs["dd"]
    n = len(uw)
    lines = [
        f"\n## memory speed: {size // MiB} MiB random image, loop over /dev/shm, unthrottled, "
        f"medians of {n}",
        "",
        f"load average (1, 5, 15 min) before {before}, after {load()}",
        "",
        "| run | write s | read-back s | total s | CPU s (whole machine) |",
        "|---|---|---|---|---|",
        f"| usbwriter --image IMG --device DEV --yes --force --json | {median(uw, 'write'):.2f} "
        f"| {median(uw, 'verify'):.2f} | {median(uw, 'total'):.2f} | {median(uw, 'cpu'):.2f} |",
        f"| dd bs=4M oflag=direct conv=fsync, then dd bs=4M iflag=direct "
        f"| {median(dd, 'write'):.2f} | {median(dd, 'verify'):.2f} | {median(dd, 'total'):.2f} "
        f"| {median(dd, 'cpu'):.2f} |",
        "",
    ]
    # The target: the write and the verify, start-up reported apart (time to first byte).
    work = [x["write"] + x["verify"] for x in uw]
    r = statistics.median(work) / median(dd, "total")
    per = ", ".join(f"{w / b['total']:.3f}" for w, b in zip(work, dd, strict=True))
    lines.append(
        f"usbwriter write+verify (the receipt's write and verify seconds) / dd write + dd "
        f"read: {r:.3f} x {verdict(r, 1.5)}; per round {per}"
    )
    whole = median(uw, "total") / median(dd, "total")
    per = ", ".join(f"{a['total'] / b['total']:.3f}" for a, b in zip(uw, dd, strict=True))
    lines.append(
        f"usbwriter whole command (start-up, plan and exit included) / dd write + dd read: "
        f"{whole:.3f} x; per round {per}"
    )
    firsts = [x["first"] for x in uw if "first" in x]
    if firsts:
        lines.append(
            f"usbwriter time to first byte written (process start to the first NDJSON write "
            f"progress event with done > 0, read from the pipe): median "
            f"{statistics.median(firsts):.3f} s, {min(firsts):.3f}-{max(firsts):.3f} s; "
            f"per round {', '.join(f'{x:.3f}' for x in firsts)}"
        )
    rss = max(x["rss"] for x in uw)
    lines.append(f"usbwriter peak RSS: {rss / MiB:.1f} MiB")
    return lines


# --- compressed images -------------------------------------------------------------------

FS_SIZE = 1024 * MiB
FS_FILL = FS_SIZE // 2
COMPRESSORS = {
    "zst": (["zstd", "-T0", "-q", "-c"], ["zstd", "-dc"]),
    "xz": (["xz", "-T0", "-c"], ["xz", "-dc", "-T0"]),
}


def build_fs_image(work: Path) -> Path:
    """A 1 GiB ext4 image about half filled with files copied from /usr (kept in WORK)."""
    image = work / "ext4.img"
    if image.exists():
        return image
    part = work / "ext4.img.part"
    print("bench: building a 1 GiB ext4 image of files from /usr", file=sys.stderr)
    with open(part, "wb") as f:
        f.truncate(FS_SIZE)
    sh(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(part)])
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    sh(["mount", "-o", "loop", str(part), str(mnt)])
    try:
        copied = 0
        for dirpath, dirnames, filenames in os.walk("/usr"):
            dirnames.sort()
            for name in sorted(filenames):
                src = Path(dirpath) / name
                if copied >= FS_FILL or src.is_symlink() or not src.is_file():
                    continue
                dst = mnt / src.relative_to("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                with suppress(OSError):
                    shutil.copyfile(src, dst)
                    copied += src.stat().st_size
            if copied >= FS_FILL:
                break
    finally:
        sh(["umount", str(mnt)])
    part.rename(image)
    return image


def compressed_files(work: Path) -> dict[str, Path]:
    """ext4.img.zst and ext4.img.xz, made once and kept in WORK."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    image: Path | None = None
    for ext, (compress, _) in COMPRESSORS.items():
        f = work / f"ext4.img.{ext}"
        if not f.exists():
            image = image or build_fs_image(work)
            print(
                f"bench: {' '.join(compress)} {image.name} (kept for later runs)", file=sys.stderr
            )
            tmp = f.with_suffix(f.suffix + ".part")
            with open(image, "rb") as src, open(tmp, "wb") as dst:
                subprocess.run(compress, stdin=src, stdout=dst, check=True)
            tmp.rename(f)
        out[ext] = f
    return out


class PeakRss:
    """Polls VmHWM of a process and of every process below it until it exits; the
    highest seen per command name (the Python process as 'python')."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _below(self, pid: int) -> list[int]:
        found = []
        with suppress(OSError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with suppress(OSError):
                    kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                    for k in kids:
                        found += [int(k), *self._below(int(k))]
        return found

    def _sample(self) -> None:
        for pid in [self.pid, *self._below(self.pid)]:
            with suppress(OSError, ValueError, StopIteration):
                status = Path(f"/proc/{pid}/status").read_text().splitlines()
                name = status[0].split()[1]
                hwm = next(x for x in status if x.startswith("VmHWM:"))
                kib = int(hwm.split()[1])
                name = "python" if name.startswith("python") else name
                self.peak[name] = max(self.peak.get(name, 0), kib * 1024)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.02)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_polled(argv: list[str], cgroup: Path | None) -> tuple[float, dict[str, int], str]:
    """(wall seconds, peak RSS by command name, stdout) of ARGV run in CGROUP."""

    def enter() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    start = time.perf_counter()
    p = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=enter,
        env=dict(os.environ, LC_ALL="C"),
    )
    poll = PeakRss(p.pid)
    try:
        out, err = p.communicate()
    except BaseException:
        stop(p)
        poll.stop()
        raise
    seconds = time.perf_counter() - start
    peak = poll.stop()
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} failed ({p.returncode}): {err[-400:]!r}")
    return seconds, peak, out.decode()


def usbwriter_compressed(f: Path, dev: str, cgroup: Path | None) -> dict[str, float]:
    argv = [str(PYTHON), "-m", "usbwriter", "--image", str(f), "--device", dev]
    seconds, peak, out = run_polled([*argv, "--yes", "--force", "--json"], cgroup)
    result = json.loads(out.strip().splitlines()[-1])
    if not result.get("verified"):
        raise SystemExit(f"bench: usbwriter did not verify {f}: {result}")
    return {
        "total": seconds,
        "write": result["write_seconds"],
        "verify": result["verify_seconds"],
        "rss": peak.get("python", 0),
        "tool_rss": max((v for k, v in peak.items() if k in ("xz", "zstd")), default=0),
    }


def pipeline(f: Path, ext: str, dev: str, cgroup: Path | None) -> dict[str, float]:
    decompress = " ".join(COMPRESSORS[ext][1])
    cmd = (
        f"{decompress} '{f}' | dd of='{dev}' bs=4M oflag=direct iflag=fullblock conv=fsync "
        "status=none"
    )
    seconds, peak, _ = run_polled(["bash", "-o", "pipefail", "-c", cmd], cgroup)
    return {"write": seconds, "tool_rss": peak.get(COMPRESSORS[ext][1][0], 0)}


def decompress_only(f: Path, ext: str) -> dict[str, float]:
    """The decompressor alone, output discarded: the CPU floor of any writer."""
    cmd = f"{' '.join(COMPRESSORS[ext][1])} '{f}' > /dev/null"
    seconds, _, _ = run_polled(["bash", "-c", cmd], None)
    return {"write": seconds}


def compressed_scenario(
    files: dict[str, Path], dev: str, rounds: int, cgroup: Path | None
) -> dict[str, list[dict[str, float]]]:
    cases: dict[str, Callable[[], dict[str, float]]] = {}
    for ext, f in files.items():
        cases[f"usbwriter {ext}"] = functools.partial(usbwriter_compressed, f, dev, cgroup)
        cases[f"pipeline {ext}"] = functools.partial(pipeline, f, ext, dev, cgroup)
        cases[f"decompress {ext}"] = functools.partial(decompress_only, f, ext)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for i in range(rounds):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))
        for name in order:
            runs[name].append(cases[name]())
        print(f"  compressed: round {i + 1}/{rounds} done", file=sys.stderr)
    return runs


def compressed_report(
    files: dict[str, Path], runs: dict[str, list[dict[str, float]]], target: float
) -> list[str]:
    mb = FS_SIZE / 1e6
    limit = FS_SIZE / WRITE_BPS
    n = len(next(iter(runs.values())))
    lines = [
        f"\n## compressed: 1 GiB ext4 image (half /usr files), throttled device, medians of {n}",
        "",
        f"device write limit: {limit:.2f} s (1 GiB at {WRITE_BPS / 1e6:.0f} MB/s); load "
        f"average (1, 5, 15 min) after the runs: {load()}",
        "",
        "| file | size MB | decompress alone s | dd pipeline write s | usbwriter write s "
        "| write / pipeline | usbwriter verify s | usbwriter total s | usbwriter RSS MiB "
        "| its decompressor RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for ext, f in files.items():
        uw, pp = runs[f"usbwriter {ext}"], runs[f"pipeline {ext}"]
        w, p = median(uw, "write"), median(pp, "write")
        alone = median(runs[f"decompress {ext}"], "write")
        rss = max(r["rss"] for r in uw) / MiB
        tool = max(r["tool_rss"] for r in uw) / MiB
        lines.append(
            f"| .{ext} | {f.stat().st_size / 1e6:.0f} | {alone:.2f} | "
            f"{p:.2f} ({mb / p:.0f} MB/s) | {w:.2f} ({mb / w:.0f} MB/s) | {w / p:.3f} | "
            f"{median(uw, 'verify'):.2f} | {median(uw, 'total'):.2f} | {rss:.1f} | {tool:.1f} |"
        )
        floor = max(limit, alone)
        verdicts.append(
            f".{ext}: usbwriter write / pipeline = {w / p:.3f} x (target {target} x: "
            f"{'met' if w / p <= target else 'NOT met'}); per round: "
            + ", ".join(f"{a['write'] / b['write']:.3f}" for a, b in zip(uw, pp, strict=True))
            + f"; pipeline / floor max(device, decompress alone) {p / floor:.3f} x, "
            f"usbwriter / floor {w / floor:.3f} x"
        )
        verdicts.append(
            f".{ext}: usbwriter peak RSS {rss:.1f} MiB (target 100 MiB: "
            f"{'met' if rss < 100 else 'NOT met'}); the {COMPRESSORS[ext][1][0]} it runs "
            f"{tool:.1f} MiB, the pipeline's {max(r['tool_rss'] for r in pp) / MiB:.1f} MiB"
        )
    return [*lines, "", *verdicts]


CASES = (
    "cpu-bound",
    "device-bound",
    "memory",
    "compressed",
    "bmap",
    "bmap-cache",
    "delta",
    "several",
    "mixed",
    "windows",
)
MODES = ("bmap", "bmap-cache", "delta", "several", "mixed", "windows")  # in bench_modes.py


def selected_cases(args: argparse.Namespace) -> list[str]:
    """The cases to run, in CASES order: --only's (or all), less the --skip-... ones."""
    if args.compressed_only:
        if args.only or args.skip_compressed:
            raise SystemExit("bench: --compressed-only excludes --only and --skip-compressed")
        return ["compressed"]
    chosen = set(args.only or CASES)
    for case in CASES:
        if getattr(args, f"skip_{case.replace('-', '_')}"):
            chosen.discard(case)
    if not chosen:
        raise SystemExit("bench: every case is skipped")
    return [c for c in CASES if c in chosen]


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5, help="rounds of cpu-bound and memory")
    ap.add_argument("--device-rounds", type=int, default=3, help="rounds of device-bound")
    ap.add_argument("--compressed-rounds", type=int, default=3)
    ap.add_argument(
        "--modes-rounds",
        type=int,
        default=3,
        help="rounds of the bmap, bmap-cache, delta, several and mixed cases",
    )
    ap.add_argument(
        "--only",
        action="append",
        choices=CASES,
        metavar="CASE",
        help=f"run only this case (repeatable): {', '.join(CASES)}",
    )
    ap.add_argument("--skip-cpu-bound", action="store_true", help="no unthrottled run")
    ap.add_argument("--skip-device-bound", action="store_true", help="no throttled raw run")
    ap.add_argument("--skip-compressed", action="store_true", help="no compressed images")
    ap.add_argument("--compressed-only", action="store_true", help="only compressed images")
    ap.add_argument("--skip-bmap", action="store_true", help="no bmap write")
    ap.add_argument("--skip-delta", action="store_true", help="no delta writes")
    ap.add_argument("--skip-several", action="store_true", help="no write to several drives")
    ap.add_argument("--skip-memory", action="store_true", help="no memory-speed run against dd")
    ap.add_argument(
        "--skip-bmap-cache", action="store_true", help="no bmap write from a cold and a warm cache"
    )
    ap.add_argument("--skip-mixed", action="store_true", help="no drives of mixed speeds")
    ap.add_argument(
        "--skip-windows", action="store_true", help="no file copy of a Windows-like ISO"
    )
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/var/tmp/usbwriter-bench"),
        help="where the ext4 image and its compressed files are kept between runs (on a disk, "
        "not tmpfs: the bmap-cache case evicts an image from the page cache there)",
    )
    ap.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="the source tree whose usbwriter runs (python -m usbwriter from that folder, "
        "e.g. a git worktree of an older commit); default: this one",
    )
    return ap


def main() -> int:
    args = parser().parse_args()
    cases = selected_cases(args)
    if os.geteuid() != 0:
        raise SystemExit("bench: run as root (loop devices, cgroups)")
    if not PYTHON.exists():
        raise SystemExit("bench: run scripts/test.sh or scripts/demo.sh first to create .venv")
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))  # clean up as on Ctrl-C
    size = args.size_mib * MiB
    shm = Path("/dev/shm")
    work = args.work_dir.resolve()
    imported = use_tree(args.tree.resolve())

    def emit(lines: list[str]) -> None:
        print("\n".join(lines), flush=True)

    emit(
        [
            "# usbwriter benchmark",
            "",
            f"kernel {os.uname().release}, {os.cpu_count()} cores; loop device over /dev/shm; "
            f"cases: {', '.join(cases)}",
            f"usbwriter from {imported} ({tree_commit(args.tree.resolve())}); "
            f"load average (1, 5, 15 min) at the start: {load()}",
        ]
    )
    if "memory" in cases:
        image = shm / f"usbwriter-bench-{os.getpid()}.iso"
        try:
            print(f"bench: building a {args.size_mib} MiB random image", file=sys.stderr)
            make_image(image, size)
            stick = shm / f"usbwriter-bench-{os.getpid()}.stick"
            with loop_device(stick, size + 64 * MiB) as dev:
                before = load()
                runs = scenario("memory", image, dev, size, args.rounds, None, False)
            emit(memory_report(runs, size, before))
        finally:
            image.unlink(missing_ok=True)
    if "compressed" in cases:
        files = compressed_files(work)
        stick = shm / f"usbwriter-bench-{os.getpid()}.stick"
        with loop_device(stick, FS_SIZE + 64 * MiB) as dev, throttled(dev) as cg:
            runs = compressed_scenario(files, dev, args.compressed_rounds, cg)
        emit(compressed_report(files, runs, 0.95))
    if "cpu-bound" in cases or "device-bound" in cases:
        image = shm / f"usbwriter-bench-{os.getpid()}.iso"
        try:
            print(f"bench: building a {args.size_mib} MiB random image", file=sys.stderr)
            make_image(image, size)
            stick = shm / f"usbwriter-bench-{os.getpid()}.stick"
            with loop_device(stick, size + 64 * MiB) as dev:
                if "cpu-bound" in cases:
                    runs = scenario("CPU-bound", image, dev, size, args.rounds, None, True)
                    emit(report("CPU-bound: loop over /dev/shm, unthrottled", runs, size, None))
                    emit(cpu_floor(runs, size))
                if "device-bound" in cases:
                    limit = size / WRITE_BPS + size / READ_BPS
                    with throttled(dev) as cg:
                        runs = scenario(
                            "device-bound", image, dev, size, args.device_rounds, cg, False
                        )
                    emit(
                        report(
                            "device-bound: throttled to 200 MB/s write, 400 MB/s read",
                            runs,
                            size,
                            limit,
                        )
                    )
        finally:
            image.unlink(missing_ok=True)
    modes = [c for c in cases if c in MODES]
    if modes:
        from bench_modes import run_cases

        run_cases(modes, args.modes_rounds, emit, work)
    return 0


def use_tree(tree: Path) -> str:
    """Run every usbwriter of this bench from TREE (`python -m usbwriter` finds the
    package in the working folder before the installed one); its modules compiled first
    (with PYTHONDONTWRITEBYTECODE set, each run would compile them again, ~0.1 s). The
    path of the usbwriter package that imports there."""
    if not (tree / "usbwriter" / "__main__.py").is_file():
        raise SystemExit(f"bench: {tree} has no usbwriter package")
    os.chdir(tree)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run(
        [str(PYTHON), "-m", "compileall", "-q", "usbwriter"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    return sh([str(PYTHON), "-c", "import usbwriter; print(usbwriter.__file__)"]).strip()


def tree_commit(tree: Path) -> str:
    """TREE's commit, and whether its files differ from it."""
    try:
        head = sh(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"]).strip()
        dirty = sh(
            ["git", "--no-optional-locks", "-C", str(tree), "status", "--porcelain", "usbwriter"]
        )
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"commit {head}" + (", with changes not committed" if dirty.strip() else "")


if __name__ == "__main__":
    raise SystemExit(main())

"""WIM files: a header check before the first byte, the split with wimlib-imagex into
parts each under FAT32's limit, and wimlib's verification of the parts as a set."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

from usbwriter.errors import BadImage, Cancelled, InternalError

MiB = 1 << 20
FAT32_LIMIT = (4 << 30) - 1  # the largest file FAT32 holds
PART_MIB = 256  # parts of a quarter GiB: each is copied while wimlib writes the next
HEADER_SIZE = 208
MAGIC = b"MSWIM\0\0\0"
SUFFIXES = (".wim", ".esd")
TOOL = "wimlib-imagex"


def is_wim_name(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def header_problem(head: bytes, size: int) -> str | None:
    """Why HEAD (a file's first 208 bytes) is not the header of a whole WIM of SIZE bytes
    that wimlib could split; None when it looks like one."""
    if len(head) < HEADER_SIZE or head[:8] != MAGIC:
        return "not a WIM file (no MSWIM header)"
    (cb,) = struct.unpack_from("<I", head, 8)
    if cb != HEADER_SIZE:
        return f"not a WIM file this tool knows (header size {cb})"
    part, total = struct.unpack_from("<HH", head, 40)
    if (part, total) != (1, 1):
        return f"already part {part} of {total} of a split WIM"
    for name, at in (("lookup table", 48), ("XML data", 72)):
        raw, offset = struct.unpack_from("<QQ", head, at)
        length = raw & ((1 << 56) - 1)
        if offset + length > size or length == 0:
            return f"damaged: its {name} lies outside the file"
    return None


def part_names(base: str, count: int) -> list[str]:
    """install.swm, install2.swm, ... as Windows Setup looks for them."""
    stem = base[: -len(".swm")] if base.endswith(".swm") else base
    return [f"{stem}.swm" if i == 1 else f"{stem}{i}.swm" for i in range(1, count + 1)]


def swm_name(wim_name: str) -> str:
    """install.wim -> install.swm (the first part's name)."""
    return os.path.splitext(wim_name)[0] + ".swm"


def tool_error(output: str) -> str:
    """wimlib's own complaint in one line."""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", output) if ln.strip()]
    tagged = [ln for ln in lines if ln.startswith("[ERROR]")]
    if tagged:
        return tagged[0].removeprefix("[ERROR]").strip()
    for i, ln in enumerate(lines):
        if ln.startswith("ERROR:") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[-1] if lines else "no message"


_SPLIT_RE = re.compile(r"(\d+) MiB of (\d+) MiB")
_PART_RE = re.compile(r"part (\d+) of (\d+)")


@dataclass(frozen=True)
class Split:
    parts: tuple[str, ...]  # paths of the parts, in order
    sizes: tuple[int, ...]


def _run(
    argv: list[str],
    cancel: threading.Event,
    on_line: Callable[[str], None] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> tuple[int, str]:
    """Run ARGV, killed (by its PID) on CANCEL; (exit status, its output)."""
    proc = subprocess.Popen(
        argv,
        pass_fds=pass_fds,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, LC_ALL="C"),
        start_new_session=True,
    )
    assert proc.stdout is not None
    out: list[bytes] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            if cancel.is_set() and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        buf = b""
        while True:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out.append(chunk)
            if on_line is not None:
                buf += chunk
                *lines, buf = re.split(rb"[\r\n]", buf)
                for ln in lines:
                    on_line(ln.decode("utf-8", "replace"))
        code = proc.wait()
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        watcher.join()
    if cancel.is_set():
        raise Cancelled("cancelled while wimlib-imagex ran")
    return code, b"".join(out).decode("utf-8", "replace")


def split(
    wim: str,
    out_dir: str,
    name: str,
    cancel: threading.Event,
    on_bytes: Callable[[int], None] | None = None,
    *,
    shown: str = "",
    on_part: Callable[[str], None] | None = None,
    pass_fds: tuple[int, ...] = (),
) -> Split:
    """Split WIM into OUT_DIR/NAME (install.swm), OUT_DIR/install2.swm, ... each at most
    PART_MIB MiB (one resource larger makes its part larger; none may pass FAT32's
    limit); BadImage with wimlib's own error in one line when it cannot. ON_BYTES is told
    of the bytes written so far, ON_PART of each part as soon as wimlib has finished it
    (wimlib writes them one after the other), so it can be copied while the next is
    written."""
    first = os.path.join(out_dir, name)
    seen = [0]
    finished: list[str] = []

    def part_done(count: int) -> None:
        while len(finished) < count:
            path = os.path.join(out_dir, part_names(name, len(finished) + 1)[-1])
            size = os.path.getsize(path)
            if size > FAT32_LIMIT:
                raise BadImage(
                    f"{shown or wim}: a single resource makes part {os.path.basename(path)} "
                    f"{size} bytes, over FAT32's limit; it cannot be copied to FAT32"
                )
            finished.append(path)
            if on_part is not None:
                on_part(path)

    def line(text: str) -> None:
        m = _SPLIT_RE.search(text)
        if m and on_bytes is not None:
            done = int(m.group(1)) * MiB
            if done > seen[0]:
                on_bytes(done - seen[0])
                seen[0] = done
        p = _PART_RE.search(text)
        if p:
            part_done(int(p.group(1)) - 1)  # writing part N: the parts before it are done

    argv = [TOOL, "split", wim, first, str(PART_MIB)]
    code, output = _run(argv, cancel, line, pass_fds)
    if code != 0:
        raise BadImage(f"{shown or wim}: wimlib-imagex could not split it: {tool_error(output)}")
    count = 0
    while os.path.exists(os.path.join(out_dir, part_names(name, count + 1)[-1])):
        count += 1
    if count == 0:
        raise InternalError(f"{shown or wim}: wimlib-imagex split made no parts")
    part_done(count)
    paths = tuple(finished)
    return Split(paths, tuple(os.path.getsize(p) for p in paths))


def verify(parts: tuple[str, ...], cancel: threading.Event, *, shown: str = "") -> None:
    """wimlib-imagex verify of the split set (every resource's SHA-1, the metadata)."""
    folder = os.path.dirname(parts[0])
    stem = os.path.splitext(os.path.basename(parts[0]))[0]
    ref = os.path.join(folder, f"{stem}*.swm")
    code, output = _run([TOOL, "verify", parts[0], f"--ref={ref}"], cancel)
    if code != 0:
        raise BadImage(f"{shown or parts[0]}: wimlib-imagex verify failed: {tool_error(output)}")


# --- the WIM inside the ISO, as a device wimlib can open ---------------------------------

LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LO_FLAGS_READ_ONLY = 1
LO_FLAGS_AUTOCLEAR = 4


def loop_over(fd: int, offset: int, length: int) -> int:
    """A read-only loop device over LENGTH bytes at OFFSET of the file open on FD (the
    image checked by the job), cleared by the kernel when its last user closes it: the
    descriptor returned. wimlib reads a WIM inside an ISO through it without a copy.
    OSError when loop devices are not available."""
    import fcntl

    size = -(-length // 512) * 512  # a loop device's size is whole sectors
    info = struct.pack(
        "<QQQQQIIII64s64s32sQQ",
        0, 0, 0, offset, size, 0, 0, 0, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
        b"usbwriter-wim", b"", b"", 0, 0,
    )  # fmt: skip
    config = struct.pack("<II", fd, 0) + info + bytes(64)
    ctl = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(10):
            n = fcntl.ioctl(ctl, LOOP_CTL_GET_FREE)
            try:
                dev = os.open(f"/dev/loop{n}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.ioctl(dev, LOOP_CONFIGURE, config)
            except OSError as e:
                os.close(dev)
                if e.errno == 16:  # EBUSY: taken meanwhile
                    continue
                raise
            return dev
    finally:
        os.close(ctl)
    raise OSError(16, "no free loop device")

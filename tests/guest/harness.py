"""A small Linux guest under qemu that sees emulated USB sticks with real kernel drivers.

The guest boots Debian's own kernel (``linux-image-amd64``) under TCG, with an initramfs
made of busybox-static and the few modules it needs. It mounts the host's ``/``
read-only over 9p (tmpfs overlays on /etc, /root, /var, /home and /tmp, a tmpfs /run),
switches root into it, starts ``systemd-udevd``, triggers and settles the USB, SCSI and
block devices, runs one shell command in the project directory with the project's
Python, writes the command's exit code and output to a read-write 9p share, and
reboots, which ends qemu (``-no-reboot``). USB sticks are ``usb-bot`` + ``scsi-hd``
devices on a ``qemu-xhci`` controller, so the guest sees real USB mass-storage disks
with vendor, product, serial and removable flags; more can be plugged and unplugged
over QMP while the command runs. Optical drives (``Disc``) are USB DVD drives:
``usb-bot`` + ``scsi-cd`` on the same controller, seen as ``/dev/srN`` through the
sr driver, with read errors injected at chosen sectors by qemu's blkdebug driver.

Typical use::

    with Guest("python -m usbwriter list --json", sticks=[Stick(img, "S1")]) as g:
        result = g.wait()

The share is mounted in the guest at the same absolute path as on the host
(``Guest.share``, ``$GUEST_SHARE`` in the guest), so the host and the guest can hand
files to each other by path, e.g. a ``ready`` file the guest writes when it wants the
host to plug a stick (see ``Guest.wait_for_file``).

Built artefacts (the uncompressed kernel and the initramfs) are cached in
``$USBWRITER_GUEST_CACHE`` or ``<tmpdir>/usbwriter-guest``, keyed on the kernel version
and a hash of what goes into them. qemu is always killed by its own PID, with hard
timeouts, and each guest's temporary directory is removed on exit.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import logging
import lzma
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
MAX_SHARE_FILE = 16 << 20
QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"

#: Modules the initramfs loads, in order, with their parameters. Their dependencies
#: are resolved with ``modprobe --show-depends`` when the initramfs is built.
MODULES: tuple[tuple[str, str], ...] = (
    ("virtio_pci", ""),
    ("9pnet_virtio", ""),
    ("9p", ""),
    ("overlay", ""),
    ("xhci_pci", ""),
    ("usb_storage", "delay_use=0"),
    ("sd_mod", ""),
    ("sr_mod", ""),  # optical drives (Disc): sr_mod and cdrom
)

#: Directories of the host root that get a writable tmpfs overlay in the guest.
OVERLAYS = ("etc", "root", "var", "home", "tmp")

KERNEL_CMDLINE = (
    "console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off nokaslr tsc=reliable "
    "no_timer_check random.trust_cpu=on i8042.noaux i8042.nokbd i8042.nopnp "
    "acpi=noirq cryptomgr.notests rdinit=/init"
)

INIT = r"""#!/bin/sh
# PID 1 of the initramfs: modules, host root over 9p, overlays, switch_root.
export PATH=/bin
fail() { echo "guest-init: $*" >/dev/console; reboot -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
while read -r mod args; do
    insmod "/lib/modules/$mod" $args 2>/dev/null || echo "guest-init: insmod $mod failed"
done </modules.list
for x in $(cat /proc/cmdline); do
    case "$x" in
        guest.share=*) SHARE="${x#guest.share=}" ;;
    esac
done
[ -n "$SHARE" ] || fail "no guest.share= on the kernel command line"
R=/newroot
mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose hostroot $R \
    || fail "cannot mount the host root over 9p"
mount -t tmpfs -o mode=0755,size=50% tmpfs $R/run || fail "tmpfs /run"
for d in __OVERLAYS__; do
    mkdir -p $R/run/guest/ovl/$d/u $R/run/guest/ovl/$d/w
    mount -t overlay overlay \
        -o lowerdir=$R/$d,upperdir=$R/run/guest/ovl/$d/u,workdir=$R/run/guest/ovl/$d/w $R/$d \
        || fail "overlay on /$d"
done
chmod 1777 $R/tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=none share "$R$SHARE" \
    || fail "cannot mount the share at $SHARE"
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount --move /proc $R/proc
mount --move /sys $R/sys
mkdir -p $R/run/guest/bin
cp /bin/busybox /stage2 $R/run/guest/bin/
exec switch_root $R /run/guest/bin/busybox sh /run/guest/bin/stage2 "$SHARE"
"""

STAGE2 = r"""# Runs in the host root (read-only, with overlays): udevd, then the command.
SHARE="$1"
B=/run/guest/bin/busybox
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /run/udev
: >"$SHARE/t-userspace"
UDEVD=/lib/systemd/systemd-udevd
[ -x "$UDEVD" ] || UDEVD=/usr/lib/systemd/systemd-udevd
if [ ! -e "$SHARE/no-udevd" ]; then
    "$UDEVD" --daemon --resolve-names=never >/dev/null 2>&1
    udevadm trigger --settle --action=add --subsystem-match=usb --subsystem-match=scsi \
        --subsystem-match=block
fi
: >"$SHARE/t-command"
/bin/sh "$SHARE/command.sh" </dev/null >"$SHARE/stdout" 2>"$SHARE/stderr"
echo $? >"$SHARE/rc.tmp"
$B mv "$SHARE/rc.tmp" "$SHARE/rc"
$B sync
$B reboot -f
"""


#: Shell function available to guest commands: ``step NAME CMD ARGS...`` runs CMD with
#: its output in share/NAME.out and NAME.err and its exit code in NAME.rc, and always
#: succeeds, so one guest run can do several independent checks (``GuestResult.step``).
STEP_FUNCTION = r"""step() {
    _step=$1; shift
    read -r _t0 _ </proc/uptime
    "$@" >"$GUEST_SHARE/$_step.out" 2>"$GUEST_SHARE/$_step.err"
    _rc=$?
    read -r _t1 _ </proc/uptime
    echo "$_t0 $_t1" >"$GUEST_SHARE/$_step.time"
    echo $_rc >"$GUEST_SHARE/$_step.rc"
}"""


class GuestError(Exception):
    """The guest could not be built, booted or driven (not a failure of the command)."""


@dataclass(frozen=True)
class Stick:
    """An emulated USB mass-storage disk: usb-bot + scsi-hd over a raw image file."""

    image: Path
    serial: str
    vendor: str = "QEMU"
    product: str = "USB Stick"
    removable: bool = True
    read_only: bool = False
    name: str = ""  # qemu id; derived from the serial when empty
    write_bps: int = 0  # qemu throttles writes to this many bytes a second (0: no limit)
    read_bps: int = 0  # and reads
    nbd: Path | None = None  # an NBD server's unix socket to serve the disk (image unused)

    @property
    def qid(self) -> str:
        return self.name or "stick-" + re.sub(r"[^A-Za-z0-9]", "", self.serial)

    @property
    def node(self) -> str:
        return self.qid + "-blk"

    def qemu_args(self) -> list[str]:
        ro = ",readonly=on" if self.read_only else ""
        if self.write_bps:
            ro += f",throttling.bps-write={self.write_bps}"
        if self.read_bps:
            ro += f",throttling.bps-read={self.read_bps}"
        return [
            "-drive",
            f"if=none,id={self.node},file={_qemu_escape(self._file())},format=raw{ro}",
            "-device",
            f"usb-bot,bus=xhci.0,id={self.qid},serial={_qemu_escape(self.serial)}",
            "-device",
            ",".join(self._scsi_props()),
        ]

    def _file(self) -> str:
        return f"nbd:unix:{self.nbd}" if self.nbd is not None else str(self.image)

    def _scsi_props(self) -> list[str]:
        return [
            "scsi-hd",
            f"bus={self.qid}.0",
            f"drive={self.node}",
            f"id={self.qid}-hd",
            f"removable={'on' if self.removable else 'off'}",
            f"vendor={_qemu_escape(self.vendor)}",
            f"product={_qemu_escape(self.product)}",
            f"serial={_qemu_escape(self.serial)}",
        ]


@dataclass(frozen=True)
class Disc:
    """An optical drive with a disc in it: a USB DVD drive (usb-bot + scsi-cd).

    The guest sees it as ``/dev/srN`` (2048-byte logical sectors) with ID_BUS=usb and
    ID_SERIAL_SHORT=``serial``. ``read_errors`` are 512-byte sectors of ``image`` that
    fail every read with ``read_errno``: qemu's blkdebug driver sits between the raw
    format and the file, so a guest read of any drive sector that contains one of them
    fails, however often it is retried. The errno decides what the drive answers, and
    so what the guest's read() fails with (observed with qemu 7.2 and Linux 6.1):

    - EIO (5): CHECK CONDITION, ABORTED COMMAND (I/O process terminated); read() EIO;
    - ENODATA (61): MEDIUM ERROR, unrecovered read error, as from a scratched disc;
      the kernel logs "critical medium error" and read() fails with ENODATA.
    """

    image: Path
    serial: str
    vendor: str = "QEMU"
    product: str = "DVD-ROM"
    read_errors: tuple[int, ...] = ()
    read_errno: int = errno.EIO
    name: str = ""  # qemu id; derived from the serial when empty

    @property
    def qid(self) -> str:
        return self.name or "disc-" + re.sub(r"[^A-Za-z0-9]", "", self.serial)

    @property
    def node(self) -> str:
        return self.qid + "-blk"

    def blkdebug_config(self) -> str:
        """blkdebug rules: every read touching one of ``read_errors`` fails."""
        return "".join(
            f'[inject-error]\nevent = "read_aio"\nerrno = "{self.read_errno}"\n'
            f'sector = "{sector}"\nonce = "off"\n\n'
            for sector in sorted(set(self.read_errors))
        )

    def qemu_args(self, blkdebug_config: Path | None = None) -> list[str]:
        """qemu's arguments; ``blkdebug_config`` (a file holding ``blkdebug_config()``)
        is required when the disc has read errors."""
        image = _qemu_escape(str(self.image))
        if self.read_errors:
            if blkdebug_config is None:
                raise GuestError(f"{self.qid}: read errors need a blkdebug config file")
            source = (
                f"file.driver=blkdebug,file.config={_qemu_escape(str(blkdebug_config))},"
                f"file.image.driver=file,file.image.filename={image}"
            )
        else:
            source = f"file={image}"
        drive = f"if=none,id={self.node},media=cdrom,readonly=on,rerror=report,format=raw,{source}"
        return [
            "-drive",
            drive,
            "-device",
            f"usb-bot,bus=xhci.0,id={self.qid},serial={_qemu_escape(self.serial)}",
            "-device",
            ",".join(
                [
                    "scsi-cd",
                    f"bus={self.qid}.0",
                    f"drive={self.node}",
                    f"id={self.qid}-cd",
                    f"vendor={_qemu_escape(self.vendor)}",
                    f"product={_qemu_escape(self.product)}",
                    f"serial={_qemu_escape(self.serial)}",
                ]
            ),
        ]


def _qemu_escape(value: str) -> str:
    """Escape a value for qemu's comma-separated option syntax."""
    return value.replace(",", ",,")


@dataclass(frozen=True)
class Step:
    """What one ``step NAME CMD ...`` of a guest command left in the share."""

    returncode: int | None  # None: the step did not run (or did not finish)
    stdout: str
    stderr: str
    seconds: float  # guest time, NaN when unknown


@dataclass(frozen=True)
class GuestResult:
    returncode: int
    stdout: str
    stderr: str
    console: str
    #: Every regular file the share held when the guest stopped (name -> text).
    files: dict[str, str]
    #: Seconds from starting qemu to the guest's userspace, to the command, and to exit.
    boot_seconds: float
    command_start_seconds: float
    total_seconds: float

    def step(self, name: str) -> Step:
        rc = self.files.get(f"{name}.rc", "").strip()
        times = self.files.get(f"{name}.time", "").split()
        seconds = float(times[1]) - float(times[0]) if len(times) == 2 else float("nan")
        return Step(
            int(rc) if rc else None,
            self.files.get(f"{name}.out", ""),
            self.files.get(f"{name}.err", ""),
            seconds,
        )

    def timings(self) -> str:
        """One line: boot, each step's duration (guest clock) and the total."""
        steps = sorted(
            (n[:-5] for n in self.files if n.endswith(".time")),
            key=lambda n: float(self.files[n + ".time"].split()[0]),
        )
        parts = [f"userspace {self.boot_seconds:.1f}", f"command {self.command_start_seconds:.1f}"]
        parts += [f"{n} {self.step(n).seconds:.1f}" for n in steps]
        parts.append(f"total {self.total_seconds:.1f} s")
        return "guest: " + ", ".join(parts)

    def describe(self) -> str:
        """Everything useful to understand a failure, for assertion messages."""
        steps = sorted(n[:-3] for n in self.files if n.endswith(".rc"))
        parts = [f"guest command exited {self.returncode}", f"--- stdout\n{self.stdout}"]
        parts.append(f"--- stderr\n{self.stderr[-3000:]}")
        for name in steps:
            st = self.step(name)
            parts.append(f"--- step {name}: rc {st.returncode}\n{st.stderr[-2000:]}")
        parts.append(f"--- console (tail)\n{self.console[-3000:]}")
        return "\n".join(parts)

    def check(self) -> GuestResult:
        if self.returncode != 0:
            raise GuestError(self.describe())
        return self


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class Artifacts:
    kernel_version: str
    vmlinux: Path
    initramfs: Path


def find_kernel() -> tuple[str, Path]:
    """The newest /boot/vmlinuz-* that has its modules installed (Debian's kernel)."""
    found: list[tuple[tuple[int, ...], str, Path]] = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        kver = vmlinuz.name.removeprefix("vmlinuz-")
        if (Path("/lib/modules") / kver / "modules.dep").exists():
            key = tuple(int(n) for n in re.findall(r"\d+", kver))
            found.append((key, kver, vmlinuz))
    if not found:
        raise GuestError("no /boot/vmlinuz-* with modules in /lib/modules (linux-image-amd64)")
    _, kver, path = max(found)
    return kver, path


def cache_root() -> Path:
    env = os.environ.get("USBWRITER_GUEST_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "usbwriter-guest"


def build_artifacts(cache: Path | None = None) -> Artifacts:
    """Build (once) the uncompressed kernel and the initramfs for the installed kernel."""
    kver, vmlinuz = find_kernel()
    modules = resolve_modules(kver)
    h = hashlib.sha256()
    for part in (kver, INIT, STAGE2, " ".join(OVERLAYS), repr(modules)):
        h.update(part.encode())
        h.update(b"\0")
    st = vmlinuz.stat()
    h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    key = f"{kver}-{h.hexdigest()[:12]}"
    root = cache or cache_root()
    final = root / key
    if (final / "initramfs.cpio").exists() and (final / "vmlinux").exists():
        return Artifacts(kver, final / "vmlinux", final / "initramfs.cpio")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
    try:
        (work / "vmlinux").write_bytes(extract_vmlinux(vmlinuz))
        (work / "initramfs.cpio").write_bytes(build_initramfs(modules))
        try:
            work.rename(final)
        except OSError:
            if not (final / "initramfs.cpio").exists():  # not a concurrent build: a real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("built guest kernel and initramfs for %s in %.1f s", kver, time.monotonic() - t0)
    return Artifacts(kver, final / "vmlinux", final / "initramfs.cpio")


def extract_vmlinux(vmlinuz: Path) -> bytes:
    """The uncompressed ELF kernel inside a bzImage (booting it saves the decompression)."""
    data = vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise GuestError(f"{vmlinuz}: no XZ-compressed kernel found inside")
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = dec.decompress(data[start:])
    if not out.startswith(b"\x7fELF"):
        raise GuestError(f"{vmlinuz}: the XZ payload is not an ELF kernel")
    return out


def resolve_modules(kver: str) -> list[tuple[Path, str]]:
    """Module files in load order, each once, with the parameters of the named ones."""
    ordered: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for mod, params in MODULES:
        out = subprocess.run(
            ["modprobe", "-S", kver, "--show-depends", mod],
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, LC_ALL="C"),
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[0] != "insmod":
                continue  # "builtin X"
            path = Path(parts[1])
            if path in seen:
                continue
            seen.add(path)
            is_named = path.name.split(".")[0].replace("-", "_") == mod.replace("-", "_")
            ordered.append((path, params if is_named else ""))
    return ordered


class _Cpio:
    """A minimal writer of the newc cpio format (no root needed for device nodes)."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.ino = 1

    def add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0
        )  # fmt: skip
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % f for f in fields) + encoded
        self.out += b"\0" * (-len(self.out) % 4)
        self.out += data
        self.out += b"\0" * (-len(self.out) % 4)

    def dir(self, name: str) -> None:
        self.add(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self.add(name, stat.S_IFREG | perm, data)

    def finish(self) -> bytes:
        self.add("TRAILER!!!", 0)
        return bytes(self.out)


MODULE_SIG_MAGIC = b"~Module signature appended~\n"


def strip_module_signature(data: bytes) -> bytes:
    """A module without its appended signature: checking it costs time under TCG."""
    if not data.endswith(MODULE_SIG_MAGIC):
        return data
    end = len(data) - len(MODULE_SIG_MAGIC)
    # struct module_signature (12 bytes) ends with the signature length, big-endian.
    sig_len = int.from_bytes(data[end - 4 : end], "big")
    return data[: end - 12 - sig_len]


def build_initramfs(modules: Sequence[tuple[Path, str]]) -> bytes:
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"):
        cpio.dir(d)
    cpio.add("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
    cpio.add("dev/null", stat.S_IFCHR | 0o666, rdev=(1, 3))
    cpio.file("bin/busybox", Path(BUSYBOX).read_bytes(), 0o755)
    for applet in ("sh", "mount", "insmod", "mkdir", "cat", "cp", "chmod", "echo",
                   "switch_root", "poweroff"):  # fmt: skip
        cpio.add(f"bin/{applet}", stat.S_IFLNK | 0o777, b"busybox")
    listing = []
    for path, params in modules:
        cpio.file(f"lib/modules/{path.name}", strip_module_signature(path.read_bytes()))
        listing.append(f"{path.name} {params}".rstrip())
    cpio.file("modules.list", ("\n".join(listing) + "\n").encode())
    cpio.file("init", INIT.replace("__OVERLAYS__", " ".join(OVERLAYS)).encode(), 0o755)
    cpio.file("stage2", STAGE2.encode(), 0o755)
    return cpio.finish()


# --------------------------------------------------------------------------- QMP


class Qmp:
    """A QMP client over a unix socket: commands, and the events seen so far."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.timeout = timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                if time.monotonic() > deadline:
                    self.sock.close()
                    raise GuestError(f"QMP socket {path}: cannot connect: {e}") from e
                time.sleep(0.02)
        self.buf = b""
        self.events: list[dict[str, Any]] = []
        self._read_message(deadline)  # the greeting
        self.execute("qmp_capabilities")

    def close(self) -> None:
        self.sock.close()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError("QMP: timed out waiting for qemu")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError as e:
                raise GuestError("QMP: timed out waiting for qemu") from e
            if not chunk:
                raise GuestError("QMP: qemu closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        msg: dict[str, Any] = json.loads(line)
        return msg

    def execute(self, command: str, **arguments: Any) -> Any:
        req: dict[str, Any] = {"execute": command}
        if arguments:
            req["arguments"] = arguments
        log.debug("QMP > %s", req)
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read_message(deadline)
            if "event" in msg:
                log.debug("QMP event %s", msg)
                self.events.append(msg)
                continue
            if "error" in msg:
                err = msg["error"]
                raise GuestError(f"QMP {command}: {err.get('class')}: {err.get('desc')}")
            return msg.get("return")

    def wait_event(self, name: str, timeout: float, **data: Any) -> dict[str, Any]:
        """Wait for (and consume) an event whose data contains ``data``."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev["event"] == name and all(
                    ev.get("data", {}).get(k) == v for k, v in data.items()
                ):
                    self.events.remove(ev)
                    return ev
            msg = self._read_message(deadline)
            if "event" in msg:
                log.debug("QMP event %s", msg)
                self.events.append(msg)


# --------------------------------------------------------------------------- guest


_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _set_pdeathsig() -> None:
    """In the child before exec: qemu gets SIGKILL if the process (thread) that started it
    dies, so a killed test run leaves no guest behind."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def skip_reason() -> str | None:
    """Why guest tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: the guest mounts the host root over 9p (run as root)"
    if not qemu_available():
        return f"{QEMU} is not installed (apt-get install qemu-system-x86)"
    return None


@dataclass
class Guest:
    """One guest run: boots on ``__enter__`` (or ``start()``), ``wait()`` for the result.

    ``command`` is a shell script run by ``/bin/sh`` in ``cwd`` with the project's
    Python first on PATH; ``env`` adds variables. ``sticks`` are attached at boot; more
    can be plugged with ``plug()`` and removed with ``unplug()`` while it runs.
    ``discs`` are optical drives, attached at boot.
    """

    command: str
    sticks: Sequence[Stick] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = REPO
    memory_mb: int = 512
    timeout: float = 120.0
    udev: bool = True
    python: Path = field(default_factory=lambda: Path(sys.executable))
    discs: Sequence[Disc] = ()

    def __post_init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.qmp: Qmp | None = None
        self.tmp: Path | None = None
        self.t0 = 0.0
        self.plugged: dict[str, Stick] = {}
        self.result: GuestResult | None = None

    # ---- lifecycle

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def share(self) -> Path:
        """The read-write directory shared with the guest (the same path in the guest)."""
        if self.tmp is None:
            raise GuestError("the guest has not been started")
        return self.tmp / "share"

    def start(self) -> None:
        reason = skip_reason()
        if reason:
            raise GuestError(reason)
        art = build_artifacts()
        self.tmp = Path(tempfile.mkdtemp(prefix="usbwriter-guest-run."))
        if re.search(r"\s", str(self.tmp)):
            raise GuestError(f"{self.tmp}: a temporary path with spaces cannot be shared")
        try:
            self._start(art)
        except BaseException:
            self.close()
            raise

    def _start(self, art: Artifacts) -> None:
        assert self.tmp is not None
        share = self.share
        share.mkdir()
        if not self.udev:
            (share / "no-udevd").touch()
        venv_bin = self.python.parent
        env = {
            "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",
            "GUEST_SHARE": str(share),
            **self.env,
        }
        script = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        script += [STEP_FUNCTION, f"cd {shlex.quote(str(self.cwd))}", self.command, ""]
        (share / "command.sh").write_text("\n".join(script))
        qmp_path = self.tmp / "qmp.sock"
        argv = [
            QEMU,
            "-nodefaults",
            "-no-user-config",
            "-M", "pc,accel=tcg",
            "-cpu", "max",
            "-smp", "1",
            "-m", str(self.memory_mb),
            "-display", "none",
            "-monitor", "none",
            "-no-reboot",
            "-kernel", str(art.vmlinux),
            "-initrd", str(art.initramfs),
            "-append", f"{KERNEL_CMDLINE} guest.share={share}",
            "-serial", f"file:{self.tmp / 'console.log'}",
            "-qmp", f"unix:{qmp_path},server=on,wait=off",
            "-virtfs",
            "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-virtfs", f"local,path={share},mount_tag=share,security_model=none",
            "-device", "qemu-xhci,id=xhci",
        ]  # fmt: skip
        for stick in self.sticks:
            argv += stick.qemu_args()
            self.plugged[stick.qid] = stick
        for disc in self.discs:
            config = None
            if disc.read_errors:
                config = self.tmp / f"{disc.qid}.blkdebug"
                config.write_text(disc.blkdebug_config())
            argv += disc.qemu_args(config)
        log.debug("starting guest: %s", shlex.join(argv))
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=open(self.tmp / "qemu.out", "wb"),  # noqa: SIM115 (closed with the process)
            stderr=subprocess.STDOUT,
            preexec_fn=_set_pdeathsig,
        )
        try:
            self.qmp = Qmp(qmp_path, timeout=10.0)
        except GuestError:
            self._raise_if_exited()
            raise

    def close(self) -> None:
        """Kill qemu (by its own PID) if still running, and remove the temporary files."""
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("qemu (pid %d) did not die after SIGKILL", self.proc.pid)
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # ---- results

    def _console(self) -> str:
        assert self.tmp is not None
        try:
            return (self.tmp / "console.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _qemu_output(self) -> str:
        assert self.tmp is not None
        try:
            return (self.tmp / "qemu.out").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _raise_if_exited(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None and not (self.share / "rc").exists():
            raise GuestError(
                f"qemu exited with {self.proc.returncode} before the command finished\n"
                f"--- qemu\n{self._qemu_output()[-3000:]}\n--- console\n{self._console()[-3000:]}"
            )

    def _deadline_left(self) -> float:
        return self.t0 + self.timeout - time.monotonic()

    def _timed_out(self, what: str) -> GuestError:
        return GuestError(
            f"guest: timed out {what} ({time.monotonic() - self.t0:.0f} s after start)\n"
            f"--- console (tail)\n{self._console()[-3000:]}"
        )

    def wait_for_file(self, name: str, timeout: float = 60.0) -> str:
        """Wait until the guest creates ``share/name``; return its content."""
        path = self.share / name
        deadline = min(time.monotonic() + timeout, self.t0 + self.timeout)
        while not path.exists():
            self._raise_if_exited()
            if (self.share / "rc").exists():
                raise GuestError(
                    f"the guest command finished without writing {name}\n"
                    f"--- stdout\n{self._read('stdout')}\n--- stderr\n{self._read('stderr')}"
                )
            if time.monotonic() > deadline:
                raise self._timed_out(f"waiting for {name}")
            time.sleep(0.05)
        return path.read_text()

    def _read(self, name: str) -> str:
        try:
            return (self.share / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self) -> GuestResult:
        """Wait for the command and the guest's power-off; the command's result."""
        if self.result is not None:
            return self.result
        assert self.proc is not None
        try:
            self.proc.wait(timeout=max(0.0, self._deadline_left()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise self._timed_out("waiting for the command") from None
        total = time.monotonic() - self.t0
        rc_text = self._read("rc").strip()
        if not rc_text:
            fail = "initramfs: " + self._read_initramfs_failure()
            raise GuestError(
                f"the guest powered off without running the command ({fail})\n"
                f"--- qemu\n{self._qemu_output()[-3000:]}\n--- console\n{self._console()[-5000:]}"
            )
        self.result = GuestResult(
            returncode=int(rc_text),
            stdout=self._read("stdout"),
            stderr=self._read("stderr"),
            console=self._console(),
            files=self._share_files(),
            boot_seconds=self._stamp("t-userspace"),
            command_start_seconds=self._stamp("t-command"),
            total_seconds=total,
        )
        log.info(
            "guest: userspace at %.1f s, command at %.1f s, done at %.1f s (rc %d)",
            self.result.boot_seconds,
            self.result.command_start_seconds,
            total,
            self.result.returncode,
        )
        return self.result

    def _share_files(self) -> dict[str, str]:
        files = {}
        for p in sorted(self.share.iterdir()):
            if p.is_file() and p.stat().st_size <= MAX_SHARE_FILE:
                files[p.name] = p.read_text(errors="replace")
        return files

    def _read_initramfs_failure(self) -> str:
        m = re.findall(r"guest-init: (.*)", self._console())
        return m[-1] if m else "see the console"

    def _stamp(self, name: str) -> float:
        """A guest timestamp as seconds since qemu started (guest clock ~ host clock)."""
        assert self.tmp is not None
        if not (self.share / name).exists():
            return float("nan")
        # The guest's clock is set from the emulated RTC (whole seconds), so measure the
        # file's modification time on the host instead: 9p writes are synchronous.
        mtime = (self.share / name).stat().st_mtime
        return mtime - (time.time() - (time.monotonic() - self.t0))

    # ---- hot-plug

    def _qmp(self) -> Qmp:
        if self.qmp is None:
            raise GuestError("the guest is not running")
        return self.qmp

    def plug(self, stick: Stick) -> None:
        """Hot-plug a stick: a raw block node, usb-bot, scsi-hd, then attach it."""
        qmp = self._qmp()
        if stick.qid in self.plugged:
            raise GuestError(f"a stick with id {stick.qid} is already plugged")
        qmp.execute(
            "blockdev-add",
            driver="raw",
            **{"node-name": stick.node, "read-only": stick.read_only},
            file={"driver": "file", "filename": str(stick.image), "read-only": stick.read_only},
        )
        qmp.execute("device_add", driver="usb-bot", bus="xhci.0", id=stick.qid, serial=stick.serial)
        qmp.execute(
            "device_add",
            driver="scsi-hd",
            bus=f"{stick.qid}.0",
            drive=stick.node,
            id=f"{stick.qid}-hd",
            removable=stick.removable,
            vendor=stick.vendor,
            product=stick.product,
            serial=stick.serial,
        )
        qmp.execute("qom-set", path=stick.qid, property="attached", value=True)
        self.plugged[stick.qid] = stick

    def unplug(self, stick: Stick | str, timeout: float = 30.0) -> None:
        """Unplug a stick and wait until qemu has removed it and released its image."""
        qid = stick if isinstance(stick, str) else stick.qid
        qmp = self._qmp()
        known = self.plugged.pop(qid, None)
        qmp.execute("device_del", id=qid)
        qmp.wait_event("DEVICE_DELETED", timeout, device=f"{qid}-hd")
        qmp.wait_event("DEVICE_DELETED", timeout, device=qid)
        node = known.node if known else qid + "-blk"
        if known is not None and known in self.sticks:
            return  # a -drive made at boot goes away with its device
        qmp.execute("blockdev-del", **{"node-name": node})


def run(
    command: str,
    sticks: Iterable[Stick] = (),
    *,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    udev: bool = True,
    discs: Iterable[Disc] = (),
) -> GuestResult:
    """Boot a guest with ``sticks`` and ``discs``, run ``command`` in it, return its result."""
    with Guest(
        command, sticks=list(sticks), timeout=timeout, env=env or {}, udev=udev, discs=list(discs)
    ) as g:
        return g.wait()


def make_image(path: Path, size: int) -> Path:
    """A sparse raw image file for a stick."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def parse_stick(spec: str) -> Stick:
    """``IMG:SERIAL[:VENDOR[:PRODUCT[:FLAGS]]]``, FLAGS a comma list of ``fixed``, ``ro``."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 5:
        raise ValueError(f"{spec}: expected IMG:SERIAL[:VENDOR[:PRODUCT[:FLAGS]]]")
    image, serial = Path(parts[0]), parts[1]
    vendor = parts[2] if len(parts) > 2 else "QEMU"
    product = parts[3] if len(parts) > 3 else "USB Stick"
    flags = set(parts[4].split(",")) if len(parts) > 4 else set()
    if flags - {"fixed", "ro", ""}:
        raise ValueError(f"{spec}: unknown flags {sorted(flags - {'fixed', 'ro'})}")
    return Stick(
        image, serial, vendor, product, removable="fixed" not in flags, read_only="ro" in flags
    )


def parse_disc(spec: str) -> Disc:
    """``IMG:SERIAL[:SECTOR,...]``: a disc image, the drive's serial, and the 512-byte
    sectors that fail to read."""
    parts = spec.split(":")
    if len(parts) < 2 or len(parts) > 3:
        raise ValueError(f"{spec}: expected IMG:SERIAL[:SECTOR,...]")
    errors = tuple(int(s) for s in parts[2].split(",") if s) if len(parts) > 2 else ()
    return Disc(Path(parts[0]), parts[1], read_errors=errors)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.guest.harness [--stick SPEC]... [--disc SPEC]... COMMAND``.

    One guest run. A stick's SPEC is ``IMG:SERIAL[:VENDOR[:PRODUCT[:FLAGS]]]`` (see
    ``parse_stick``), a disc's ``IMG:SERIAL[:SECTOR,...]`` (see ``parse_disc``). Prints
    the command's output and the measured times; exits with the command's exit code.
    """
    import argparse

    p = argparse.ArgumentParser(prog="python -m tests.guest.harness")
    p.add_argument("--stick", action="append", default=[], metavar="SPEC")
    p.add_argument("--disc", action="append", default=[], metavar="SPEC")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--no-udev", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("command")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    sticks = [parse_stick(spec) for spec in args.stick]
    discs = [parse_disc(spec) for spec in args.disc]
    res = run(args.command, sticks, timeout=args.timeout, udev=not args.no_udev, discs=discs)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    sys.stderr.write(
        f"[guest: userspace {res.boot_seconds:.1f} s, command {res.command_start_seconds:.1f} s,"
        f" total {res.total_seconds:.1f} s, rc {res.returncode}]\n"
    )
    return res.returncode


if __name__ == "__main__":
    raise SystemExit(main())

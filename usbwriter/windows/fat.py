"""The stick's layout (an MBR with one active FAT32 partition over the drive) and its
FAT32 file system, written with mtools on the held descriptor: each tool gets the drive
as /dev/fd/N (the descriptor checked against the plan, passed to the child) at the
partition's offset, so nothing is mounted and no other path to the drive is opened.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from usbwriter.errors import Cancelled, DeviceFault, Refused

MiB = 1 << 20
SECTOR = 512
PART_START = MiB  # the partition's first byte; the gap before it holds GRUB's core
LABEL_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-!#$%&'()@^`{}~ ")
MBR_MAX_SECTORS = 0xFFFFFFFF
FAT32_MIN_CLUSTERS = 65525
KICK_EVERY = 32 * MiB  # bytes handed to mcopy between two pushes of its writes to the drive
BAD_CHARS = set('"*/:<>?\\|') | {chr(c) for c in range(32)}


def fat_label(volume_id: str) -> str:
    """The volume ID as a FAT label: upper case, FAT's characters, 11 at most."""
    label = "".join(c if c in LABEL_CHARS else "_" for c in volume_id.upper().strip())
    return label[:11].rstrip() or "WINDOWS"


def name_problem(name: str) -> str | None:
    """Why FAT cannot hold a file named NAME (None when it can)."""
    if any(c in BAD_CHARS for c in name):
        return "has a character FAT does not allow"
    if name.endswith((" ", ".")):
        return "ends with a space or a dot"
    if len(name) > 255:
        return "is longer than 255 characters"
    return None


@dataclass(frozen=True)
class Layout:
    """Where the partition lies and how its file system is made."""

    disk_size: int
    start: int  # bytes
    size: int  # bytes
    cluster: int  # bytes

    @property
    def sectors(self) -> int:
        return self.size // SECTOR

    @property
    def fat_bytes(self) -> int:
        """Both FATs' size (4 bytes a cluster each), rounded up to a cluster."""
        clusters = self.size // self.cluster
        one = -(-clusters * 4 // self.cluster) * self.cluster
        return 2 * one

    def capacity(self) -> int:
        """Bytes left for folders and files once the FATs and reserved sectors are made."""
        return self.size - self.fat_bytes - 32 * SECTOR - self.cluster

    def on_disk(self, sizes: Iterable[int], folders: int) -> int:
        """Bytes the files of SIZES and FOLDERS folders take on this file system."""
        c = self.cluster
        return sum(-(-s // c) * c for s in sizes) + folders * c


def layout_for(disk_size: int) -> Layout:
    """One partition from 1 MiB to the drive's end (or 2 TiB, MBR's limit); clusters as
    Windows chooses for FAT32 (4 KiB up to 8 GiB, 8 KiB to 16, 16 KiB to 32, 32 KiB
    beyond), smaller when a small drive would have too few clusters for FAT32."""
    size = min(disk_size - PART_START, MBR_MAX_SECTORS * SECTOR) // MiB * MiB
    size = max(size, 0)
    gib = 1 << 30
    cluster = 4096 if size <= 8 * gib else 8192 if size <= 16 * gib else 16384
    if size > 32 * gib:
        cluster = 32768
    while cluster > SECTOR and size // cluster < FAT32_MIN_CLUSTERS + 1024:
        cluster //= 2
    return Layout(disk_size, PART_START, size, cluster)


def mbr(layout: Layout, boot_code: bytes = b"", disk_id: int | None = None) -> bytes:
    """Sector 0: BOOT_CODE (up to 440 bytes), a disk signature, one active FAT32 (LBA)
    partition, 0x55AA."""
    if len(boot_code) > 440:
        raise ValueError("boot code over 440 bytes")
    sector = bytearray(SECTOR)
    sector[: len(boot_code)] = boot_code
    if disk_id is None:
        disk_id = int.from_bytes(os.urandom(4), "little") or 1
    struct.pack_into("<I", sector, 440, disk_id)
    start, count = layout.start // SECTOR, layout.size // SECTOR
    entry = struct.pack("<B3sB3sII", 0x80, b"\xfe\xff\xff", 0x0C, b"\xfe\xff\xff", start, count)
    sector[446 : 446 + 16] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


class ToolFailed(DeviceFault):
    pass


def _env() -> dict[str, str]:
    # No user's mtools configuration, no check of the boot sector's geometry.
    return dict(os.environ, LC_ALL="C", MTOOLSRC="/dev/null", MTOOLS_SKIP_CHECK="1")


class FatVolume:
    """The FAT32 file system at LAYOUT.start on the drive held by FD (DEV names it)."""

    def __init__(self, fd: int, dev: str, layout: Layout, cancel: threading.Event) -> None:
        from usbwriter.identity import disk_seq

        self.fd, self.dev, self.layout, self.cancel = fd, dev, layout, cancel
        self.spec = f"/dev/fd/{fd}@@{layout.start}"
        self.rdev = os.fstat(fd).st_rdev
        self.seq = disk_seq(fd)

    def same_drive(self) -> None:
        """What a tool opening /dev/fd/N reaches is the drive held: the same device
        number and disk sequence (not another stick plugged in after this one was pulled,
        under the same name). Checked before every tool."""
        from usbwriter.identity import disk_seq

        if self.cancel.is_set():
            raise Cancelled(f"write to {self.dev} cancelled")
        try:
            fd = os.open(f"/dev/fd/{self.fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise DeviceFault(
                f"{self.dev}: could not be opened again ({e.strerror}); was it pulled out?",
                path=self.dev,
                errno=e.errno,
            ) from None
        try:
            rdev, seq = os.fstat(fd).st_rdev, disk_seq(fd)
        finally:
            os.close(fd)
        if rdev != self.rdev or (self.seq is not None and seq != self.seq):
            raise Refused(
                f"{self.dev}: a different drive answers under its name now (disk sequence "
                f"{self.seq} -> {seq}); stopped",
                path=self.dev,
            )

    def push(self) -> None:
        """Start writing to the drive what the tools have left in the page cache, and drop
        the pages already written. mtools writes through the page cache, which the kernel
        would otherwise write back only past its dirty threshold (gigabytes) or after 30
        seconds, leaving the drive idle meanwhile and the rest for the final sync. Does not
        wait for the writes (the final sync does)."""
        try:
            os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError as e:
            raise DeviceFault(
                f"{self.dev}: could not start writing to the drive: {e.strerror}",
                path=self.dev,
                errno=e.errno,
            ) from None

    def _run(self, argv: list[str], what: str, *, pass_fd: bool = True) -> str:
        if pass_fd:
            self.same_drive()
        elif self.cancel.is_set():
            raise Cancelled(f"write to {self.dev} cancelled")
        p = subprocess.run(
            argv,
            capture_output=True,
            env=_env(),
            pass_fds=(self.fd,) if pass_fd else (),
            check=False,
        )
        if p.returncode != 0:
            why = _last_line(p.stderr)
            raise ToolFailed(f"{self.dev}: {what} failed: {why}", path=self.dev)
        return p.stdout.decode("utf-8", "replace")

    def format(self, label: str, write: Callable[[memoryview, int], None], tmp: str) -> None:
        """Make the empty FAT32 file system as mkfs.fat makes it (its free-cluster count
        kept, so mtools keeps it right), in a sparse file in TMP, then write what mkfs.fat
        wrote (boot sectors, FSINFO, both FATs, the root folder) through WRITE (the held
        descriptor) at the partition's offset."""
        from usbwriter.engine.blockio import aligned_buffer

        lay = self.layout
        image = os.path.join(tmp, "fat32.img")
        self._run(
            [
                "mkfs.fat", "-F", "32", "-n", label, "-S", str(SECTOR),
                "-s", str(lay.cluster // SECTOR), "-h", str(lay.start // SECTOR),
                "-i", f"{int.from_bytes(os.urandom(4), 'little'):08x}", "--mbr=n",
                "-C", image, str(lay.size // 1024),
            ],
            "making the FAT32 file system (mkfs.fat)",
            pass_fd=False,
        )  # fmt: skip
        buf = aligned_buffer(4 * MiB)
        view = memoryview(buf)
        fd = os.open(image, os.O_RDONLY | os.O_CLOEXEC)
        try:
            for start, end in _data_ranges(fd, lay.size):
                pos = start
                while pos < end:
                    if self.cancel.is_set():
                        raise Cancelled(f"write to {self.dev} cancelled")
                    n = min(len(buf), end - pos)
                    got = os.preadv(fd, [view[:n]], pos)
                    if got != n:
                        raise DeviceFault(f"{image}: short read of the new file system")
                    write(view[:n], lay.start + pos)
                    pos += n
        finally:
            os.close(fd)
            os.unlink(image)

    def mkdirs(self, folders: list[str]) -> None:
        """Make FOLDERS (parents before children) in a few mmd calls."""
        for i in range(0, len(folders), 200):
            batch = [f"::{f}" for f in folders[i : i + 200]]
            self._run(["mmd", "-D", "s", "-i", self.spec, *batch], "making folders (mmd)")

    def _mcopy(self, args: list[str], *, into: bool) -> subprocess.Popen[bytes]:
        """mcopy ARGS on the held drive (checked to be it first), its own session so it is
        killed alone: fed on standard input (INTO the stick) or read from its output."""
        self.same_drive()
        return subprocess.Popen(
            ["mcopy", *args],
            stdin=subprocess.PIPE if into else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL if into else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            pass_fds=(self.fd,),
            start_new_session=True,
        )

    def put(self, path: str, chunks: Iterator[memoryview | bytes]) -> None:
        """Copy the bytes of CHUNKS into PATH (a new file) through mcopy's standard input;
        stops within a chunk of a cancel (mcopy killed by its PID)."""
        proc = self._mcopy(["-D", "o", "-i", self.spec, "-", f"::{path}"], into=True)
        assert proc.stdin is not None and proc.stderr is not None
        since = 0
        try:
            for chunk in chunks:
                if self.cancel.is_set():
                    raise Cancelled(f"write to {self.dev} cancelled")
                proc.stdin.write(chunk)
                since += len(chunk)
                if since >= KICK_EVERY:
                    self.push()
                    since = 0
            proc.stdin.close()
            err = proc.stderr.read()
            code = proc.wait()
        except BrokenPipeError:
            err = proc.stderr.read()
            code = proc.wait()
            code = code or 1
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            proc.stderr.close()
        if code != 0:
            raise ToolFailed(
                f"{self.dev}: copying {path} onto the stick failed (mcopy): {_last_line(err)}",
                path=self.dev,
            )
        self.push()

    def get(self, path: str, sink: Callable[[bytes], None], chunk: int = 4 * MiB) -> int:
        """Read PATH from the stick's file system into SINK; the bytes read."""
        proc = self._mcopy(["-n", "-i", self.spec, f"::{path}", "-"], into=False)
        assert proc.stdout is not None and proc.stderr is not None
        total = 0
        try:
            while True:
                if self.cancel.is_set():
                    raise Cancelled(f"read-back of {self.dev} cancelled")
                b = os.read(proc.stdout.fileno(), chunk)
                if not b:
                    break
                total += len(b)
                sink(b)
            err = proc.stderr.read()
            code = proc.wait()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        if code != 0:
            raise ToolFailed(
                f"{self.dev}: reading {path} back from the stick failed (mcopy): {_last_line(err)}",
                path=self.dev,
            )
        return total

    def listing(self) -> str:
        return self._run(["mdir", "-/", "-a", "-b", "-i", self.spec, "::/"], "listing (mdir)")


def _data_ranges(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ranges of a sparse file that hold data (4 KiB aligned), up to SIZE."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past pos
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        start -= start % 4096
        end = min(size, -(-end // 4096) * 4096)
        yield start, end
        pos = end


def _last_line(err: bytes) -> str:
    lines = [
        ln.strip()
        for ln in err.decode("utf-8", "replace").splitlines()
        if ln.strip() and "Could not get geometry" not in ln
    ]
    return lines[-1] if lines else "no message"

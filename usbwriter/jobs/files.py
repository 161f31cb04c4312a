"""File-copy mode: a stick made from an ISO's files instead of its raw bytes.

A Windows 10/11 installer ISO is UDF with El Torito only: written raw to a stick it
boots nowhere, and its ``sources/install.wim`` is over FAT32's 4 GiB limit. This mode
gives the stick an MBR with one active FAT32 partition over the whole drive, copies
every file and folder of the ISO onto it (UDF names, read with pycdlib through
usbwriter.iso.contents; nothing is mounted), splits a WIM over the limit into
install.swm, install2.swm... with wimlib, installs GRUB for BIOS to chain /bootmgr, and
reads every file back from the stick's file system.

*plan*: ``look_at_files`` reads the ISO's directory (the facts); ``decide.choose_mode`` and
``check_files`` decide, purely. *run*: ``copy_files`` on the job's held descriptor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from usbwriter.errors import (
    BadImage,
    BadInput,
    Cancelled,
    DeviceFault,
    Refused,
    UsbWriterError,
)
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.units import human_size
from usbwriter.windows import fat, wim

if TYPE_CHECKING:
    from usbwriter.engine.target import Target
    from usbwriter.iso.contents import Contents, Entry
    from usbwriter.iso.source import ImageBytes
    from usbwriter.jobs.model import BootFacts, ImageFacts, Plan, Request, TargetFacts
    from usbwriter.receipt import Receipt
    from usbwriter.sources import ImageSource

log = logging.getLogger(__name__)

MiB = 1 << 20
CHUNK = 4 * MiB
MODES = ("auto", "raw", "files")
BIOS_LOADERS = ("/bootmgr", "/ntldr")
EFI_LOADERS = ("/efi/boot/bootx64.efi", "/efi/boot/bootia32.efi", "/efi/boot/bootaa64.efi")
SPLIT_MARGIN = 64 * MiB  # a split's parts hold a little more than the WIM


# --- the facts --------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesFacts:
    """What the ISO holds, as far as copying it to FAT32 goes."""

    label: str  # the FAT label made of its volume ID
    namespace: str  # "udf", "joliet", ...
    files: int
    folders: int
    bytes: int  # every file's size added up
    sizes: tuple[int, ...] = ()  # each file's size (what they take on the stick)
    split: tuple[tuple[str, int], ...] = ()  # WIM/ESD files over the limit: path, size
    copied_out: int = 0  # bytes of those to copy out of the image first (not in one run)
    too_large: tuple[tuple[str, int], ...] = ()  # other files over the limit
    wim_problems: tuple[str, ...] = ()  # a WIM to split that is not one (one line each)
    bad_names: tuple[str, ...] = ()  # names FAT cannot hold, or differing only in case
    bios_loader: str | None = None  # "/bootmgr" as the ISO spells it; None: none
    efi_loader: str | None = None
    unattend: str | None = None  # the ISO's own autounattend.xml
    staging: str = ""  # the folder where a WIM is split
    staging_free: int = 0
    grub_missing: str | None = None  # what the machine lacks for BIOS boot code
    error: UsbWriterError | None = None

    @property
    def split_bytes(self) -> int:
        return sum(n for _, n in self.split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "files": self.files,
            "folders": self.folders,
            "bytes": self.bytes,
            "split": [{"path": p, "size": n} for p, n in self.split],
            "bios_loader": self.bios_loader,
            "efi_loader": self.efi_loader,
        }


def _find_ci(contents: Contents, candidates: tuple[str, ...]) -> str | None:
    """The first of CANDIDATES the ISO holds as a file, regardless of case, as it spells it."""
    for want in candidates:
        parts = tuple(p for p in want.split("/") if p)
        here: tuple[str, ...] = ()
        for part in parts:
            kids = contents.children.get(here, [])
            match = next((e for e in kids if e.name.lower() == part), None)
            if match is None:
                break
            here = match.parts
        else:
            entry = contents.by_path.get(here)
            if entry is not None and entry.type == "file":
                return entry.path
    return None


def look_at_files(image: ImageFacts) -> FilesFacts:
    """Read the ISO's directory (nothing else) and what copying it to FAT32 means."""
    from usbwriter.iso.contents import read_contents
    from usbwriter.iso.source import image_bytes
    from usbwriter.sources import open_image

    empty = FilesFacts(label="", namespace="", files=0, folders=0, bytes=0)
    try:
        with open_image(image.path, member=image.source.member if image.source else None) as src:
            data = image_bytes(src)
            try:
                contents = read_contents(data)
                facts = _facts(contents, data)
            finally:
                data.close()
    except UsbWriterError as e:
        return FilesFacts(**{**empty.__dict__, "error": e})
    return facts


def _facts(contents: Contents, data: ImageBytes) -> FilesFacts:
    from usbwriter.windows import grub

    files = folders = total = copied_out = 0
    sizes: list[int] = []
    split: list[tuple[str, int]] = []
    too_large: list[tuple[str, int]] = []
    problems: list[str] = []
    bad: list[str] = []
    for folder, kids in contents.children.items():
        seen: dict[str, str] = {}
        for e in kids:
            why = fat.name_problem(e.name)
            if why is not None:
                bad.append(f"{e.path} {why}")
            low = e.name.lower()
            if low in seen:
                bad.append(f"{e.path} and {seen[low]} differ only in case")
            seen[low] = e.path
        del folder
    for e in contents.walk(contents.root):
        if e.type == "dir":
            folders += 1
            continue
        if e.type != "file":
            bad.append(f"{e.path} is a {e.type}, which FAT cannot hold")
            continue
        files += 1
        total += e.size
        sizes.append(e.size)
        if wim.is_wim_name(e.name):
            why = wim.header_problem(_read(data, e, 0, wim.HEADER_SIZE), e.size)
            if why is not None:
                problems.append(f"{e.path}: {why}")
        if e.size > wim.FAT32_LIMIT:
            if wim.is_wim_name(e.name):
                split.append((e.path, e.size))
                if _run_of(e, 0) is None:
                    copied_out += e.size
            else:
                too_large.append((e.path, e.size))
    staging = tempfile.gettempdir()
    try:
        free = shutil.disk_usage(staging).free
    except OSError:
        free = 0
    volume_id = _volume_id(data)
    return FilesFacts(
        label=fat.fat_label(volume_id),
        namespace=contents.namespace,
        files=files,
        folders=folders,
        bytes=total,
        sizes=tuple(sizes),
        split=tuple(split),
        copied_out=copied_out,
        too_large=tuple(too_large),
        wim_problems=tuple(problems),
        bad_names=tuple(bad),
        bios_loader=_find_ci(contents, BIOS_LOADERS),
        efi_loader=_find_ci(contents, EFI_LOADERS),
        unattend=_find_ci(contents, ("/autounattend.xml",)),
        staging=staging,
        staging_free=free,
        grub_missing=grub.missing(),
    )


def _volume_id(data: ImageBytes) -> str:
    pvd = data.pread(16 * 2048, 2048)
    if len(pvd) == 2048 and pvd[1:6] == b"CD001":
        return pvd[40:72].decode("ascii", "replace").strip()
    return "WINDOWS"


def _read(data: ImageBytes, entry: Entry, offset: int, n: int) -> bytes:
    """N bytes of ENTRY's file from OFFSET (fewer at its end), through its extents."""
    out = bytearray()
    pos = 0
    for start, length in entry.extents:
        if pos + length <= offset:
            pos += length
            continue
        skip = max(0, offset - pos)
        want = min(length - skip, n - len(out))
        if want <= 0:
            break
        if start < 0:
            out += bytes(want)
        else:
            got = data.pread(start + skip, want)
            if len(got) != want:
                raise BadImage(f"{data.path}: {entry.path} is cut short", path=data.path)
            out += got
        pos += length
        if len(out) >= n:
            break
    return bytes(out)


def _chunks(data: ImageBytes, entry: Entry, size: int = CHUNK) -> Iterator[bytes]:
    for start, length in entry.extents:
        done = 0
        while done < length:
            n = min(size, length - done)
            if start < 0:
                yield bytes(n)
            else:
                b = data.pread(start + done, n)
                if len(b) != n:
                    raise BadImage(f"{data.path}: {entry.path} is cut short", path=data.path)
                yield b
            done += n


# --- the decisions (pure) ---------------------------------------------------------------


def check_files(
    request: Request,
    mode: str,
    image: ImageFacts,
    target: TargetFacts,
    boot: BootFacts | None,
    files: FilesFacts | None,
    block: Callable[[UsbWriterError], None],
) -> None:
    """The refusals of a file copy, before the first byte (what the stick will boot is
    told by ``files_summary``)."""
    if mode != "files":
        if request.windows_bypass:
            block(BadInput("--windows-bypass needs file-copy mode (--mode files)"))
        return
    if request.delta or request.bmap:
        block(BadInput("--mode files copies files: --delta and --bmap do not apply"))
        return
    name = image.requested
    if boot is not None and boot.image_kind not in ("iso", "data-iso"):
        block(BadInput(f"{name}: --mode files copies the files of an ISO image; this is not one"))
        return
    if image.source is not None and image.source.compressed:
        block(
            BadInput(
                f"{name}: --mode files needs the ISO itself, not a {image.source.format} file; "
                "decompress it first",
                path=name,
            )
        )
        return
    if target.kind != "block":
        block(BadInput(f"{target.requested}: --mode files writes a drive, not a file"))
        return
    if files is None:
        return
    if files.error is not None:
        block(files.error)
        return
    for path, size in files.too_large:
        block(
            Refused(
                f"{name}: {path.lstrip('/')} is {human_size(size)}, over FAT32's limit of 4 GiB "
                "- 1 byte, and is not a WIM that could be split; nothing was written",
                path=name,
            )
        )
    for why in files.wim_problems:
        block(BadImage(f"{name}: {why.lstrip('/')}; nothing was written", path=name))
    if files.bad_names:
        more = f" (and {len(files.bad_names) - 1} more)" if len(files.bad_names) > 1 else ""
        block(
            Refused(
                f"{name}: {files.bad_names[0].lstrip('/')}{more}: FAT32 cannot hold it; "
                "nothing was written",
                path=name,
            )
        )
    layout = fat.layout_for(target.size)
    if layout.size // layout.cluster < fat.FAT32_MIN_CLUSTERS:
        block(
            Refused(
                f"{target.requested}: too small for a FAT32 file system "
                f"({human_size(target.size)}; it needs at least 34 MiB); nothing was written",
                path=target.requested,
            )
        )
        return
    need = layout.on_disk(files.sizes, files.folders) + len(files.split) * SPLIT_MARGIN
    if request.windows_bypass:
        need += layout.cluster
    if need > layout.capacity():
        block(
            Refused(
                f"{target.requested}: the files of {name} take {human_size(need)} on FAT32, "
                f"more than the drive holds ({human_size(layout.capacity())} free after "
                "formatting); nothing was written",
                path=target.requested,
            )
        )
    if files.split:
        # the parts; and a copy of a WIM that wimlib cannot read in place
        stage = files.split_bytes + files.copied_out + SPLIT_MARGIN
        if stage > files.staging_free:
            block(
                Refused(
                    f"{name}: splitting {files.split[0][0].lstrip('/')} needs "
                    f"{human_size(stage)} free in {files.staging}, which has "
                    f"{human_size(files.staging_free)}; set TMPDIR to a folder with room",
                    path=name,
                )
            )
    if request.windows_bypass and files.unattend is not None:
        block(
            Refused(
                f"{name}: it holds its own {files.unattend.lstrip('/')}; --windows-bypass "
                "would replace it. Nothing was written",
                path=name,
            )
        )


def files_summary(plan: Plan) -> list[str]:
    """What the stick will be, for the report and the confirmation."""
    f = plan.files
    if f is None:
        return [f"Mode: file copy ({plan.mode_reason})"]
    lines = [f"Mode: file copy: {plan.mode_reason}"]
    lines.append(
        f"  The stick gets an MBR partition table with one active FAT32 partition "
        f"'{f.label}' over the whole drive, and the image's {f.files} files in "
        f"{f.folders} folders ({human_size(f.bytes)})."
    )
    for path, size in f.split:
        lines.append(
            f"  {path.lstrip('/')} ({human_size(size)}) is split with wimlib into "
            f"{wim.swm_name(os.path.basename(path))}, ... each under 4 GiB."
        )
    lines.append(
        "  UEFI: boots from " + f.efi_loader.lstrip("/")
        if f.efi_loader
        else "  UEFI: no EFI loader in the image"
    )
    if f.bios_loader and f.grub_missing is None:
        lines.append(f"  BIOS: GRUB chains {f.bios_loader.lstrip('/')}")
    elif f.bios_loader:
        lines.append(f"  BIOS: no (this machine lacks {f.grub_missing})")
    else:
        lines.append("  BIOS: no (the image has no BIOS loader, bootmgr)")
    if plan.request.windows_bypass:
        from usbwriter.windows import unattend

        for c in plan.request.windows_bypass:
            lines.append(f"  Added: autounattend.xml: {unattend.WORDS[c]}")
    return lines


# --- the result -------------------------------------------------------------------------


@dataclass(frozen=True)
class SplitResult:
    path: str  # the WIM in the ISO
    size: int
    parts: tuple[tuple[str, int], ...]  # each part's path on the stick and size
    verified_by_wimlib: bool


@dataclass(frozen=True)
class FilesResult:
    """What a file copy made and what its read-back proved."""

    label: str
    partition_start: int
    partition_size: int
    cluster: int
    files: int
    folders: int
    bytes_copied: int
    files_verified: int = 0
    bytes_verified: int = 0
    split: tuple[SplitResult, ...] = ()
    added: tuple[str, ...] = ()  # what the stick holds that the ISO does not, in words
    bios: str = ""  # "GRUB chains bootmgr" or why not
    uefi: str = ""
    mismatch: str | None = None  # the first file that differs

    def to_dict(self) -> dict[str, Any]:
        return {
            "layout": {
                "table": "mbr",
                "partition": {
                    "type": "FAT32 (0x0c), active",
                    "start": self.partition_start,
                    "size": self.partition_size,
                    "label": self.label,
                    "cluster": self.cluster,
                },
            },
            "files": self.files,
            "folders": self.folders,
            "bytes_copied": self.bytes_copied,
            "files_verified": self.files_verified,
            "bytes_verified": self.bytes_verified,
            "split": [
                {
                    "path": s.path,
                    "size": s.size,
                    "parts": [{"path": p, "size": n} for p, n in s.parts],
                    "verified_by_wimlib": s.verified_by_wimlib,
                }
                for s in self.split
            ],
            "added": list(self.added),
            "bios": self.bios,
            "uefi": self.uefi,
            "mismatch": self.mismatch,
        }

    def rows(self) -> list[tuple[str, str]]:
        """(label, words) for the receipt, one fact a row."""
        rows = [
            (
                "layout",
                f"MBR, one active FAT32 partition '{self.label}' at "
                f"{human_size(self.partition_start)}, {human_size(self.partition_size)} "
                f"({self.cluster // 1024} KiB clusters)",
            ),
            (
                "files",
                f"{self.files} files in {self.folders} folders, "
                f"{human_size(self.bytes_copied)} copied",
            ),
        ]
        for s in self.split:
            names = ", ".join(f"{os.path.basename(p)} ({human_size(n)})" for p, n in s.parts)
            check = "; the set verified by wimlib" if s.verified_by_wimlib else ""
            rows.append(
                ("split", f"{s.path.lstrip('/')} ({human_size(s.size)}) into {names}{check}")
            )
        rows += [("added", a) for a in self.added]
        rows.append(("boot", f"UEFI: {self.uefi}; BIOS: {self.bios}"))
        if self.mismatch:
            rows.append(("differs", f"{self.mismatch} differs from the image's"))
        return rows

    def describe(self) -> list[str]:
        """The rows as lines: a one-word label, then the words."""
        return [f"  {label:7} {words}" for label, words in self.rows()]


# --- the run ----------------------------------------------------------------------------


@dataclass
class _Copied:
    path: str  # on the stick
    size: int
    digest: bytes
    entry: Entry | None = None


@dataclass
class _Totals:
    copied: list[_Copied] = field(default_factory=list)
    bytes: int = 0


def _hasher() -> Any:
    from blake3 import blake3

    return blake3(max_threads=1)


def copy_files(
    plan: Plan,
    src: ImageSource,
    tgt: Target,
    unmounted: tuple[str, ...] = (),
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    notify: Callable[[str], None] | None = None,
) -> Receipt:
    """Make the stick on TGT (held) from the ISO on SRC (checked): see the module's
    docstring. Any failure or a cancel wipes the first MiB through TGT."""
    from usbwriter.engine.target import failed_write, wipe_note

    cancel = cancel or threading.Event()
    try:
        return _copy(plan, src, tgt, unmounted, progress, cancel, notify)
    except BaseException as e:
        wiped = tgt.wipe_head()
        raise failed_write(e, tgt.path, wipe_note(wiped)) from None


def _copy(
    plan: Plan,
    src: ImageSource,
    tgt: Target,
    unmounted: tuple[str, ...],
    progress: ProgressCallback | None,
    cancel: threading.Event,
    notify: Callable[[str], None] | None,
) -> Receipt:
    from usbwriter.engine.blockio import aligned_buffer, reread_partitions
    from usbwriter.iso.contents import read_contents
    from usbwriter.iso.source import image_bytes
    from usbwriter.windows import grub, unattend

    facts = plan.files
    assert facts is not None
    if not tgt.is_block:
        raise BadInput(f"{tgt.path}: --mode files writes a drive, not a file")
    layout = fat.layout_for(tgt.size)
    data = image_bytes(src, cancel)
    started = time.monotonic()
    stage = tempfile.mkdtemp(prefix="usbwriter-split-", dir=facts.staging or None)
    halt = _Either(cancel)  # the split stops on a cancel, or when this run fails
    splitter: _Splitter | None = None
    try:
        contents = read_contents(data)
        entries = [e for e in contents.walk(contents.root)]
        folders = [e.path for e in entries if e.type == "dir"]
        split_paths = {p for p, _ in facts.split}
        plain = sorted(
            (e for e in entries if e.type == "file" and e.path not in split_paths),
            key=lambda e: e.first_offset,
        )
        wims = [e for e in entries if e.path in split_paths]
        bios = None
        if facts.bios_loader and facts.grub_missing is None:
            bios = grub.build(facts.bios_loader, layout.start)
        extra = (
            unattend.autounattend(plan.request.windows_bypass)
            if plan.request.windows_bypass
            else None
        )
        raw_fd = None if src.info.compressed else src.fd
        # A WIM to split counts as split and as its parts copied; once more when it must
        # be copied out of the image first (not one run of bytes in an uncompressed one).
        total = sum(e.size for e in plain) + sum(
            e.size * (2 if _run_of(e, raw_fd) else 3) for e in wims
        )
        meter = Meter("write", total, progress)
        # The first change: the head zeroed (no table, nothing bootable until the end).
        if cancel.is_set():
            raise Cancelled(f"write to {tgt.path} cancelled before it started; device unchanged")
        tgt.wipe_head()
        splitter = _Splitter(data, raw_fd, wims, stage, halt, meter, plan.image.requested)
        splitter.start()  # wimlib starts at once, beside the file system and the files
        vol = fat.FatVolume(tgt.fd, tgt.path, layout, cancel)
        vol.format(facts.label, tgt.write, stage)
        vol.mkdirs(folders)
        done = _Totals()
        lock = threading.Lock()
        for e in plain:
            _put(vol, e.path, _chunks(data, e), e.size, done, meter, lock, e)
        log.info("%s: %d files copied; the split's parts next", tgt.path, len(done.copied))
        for path, part in splitter.parts():  # each as soon as wimlib has finished it
            log.info("%s: copying %s", tgt.path, path)
            _put(vol, path, _file_chunks(part), os.path.getsize(part), done, meter, lock)
        splitter.copied.set()
        splits = splitter.done
        added: list[str] = []
        if extra is not None:
            _put(vol, "/" + unattend.NAME, iter([extra]), len(extra), done, meter, lock)
            added = [f"{unattend.NAME}: {unattend.WORDS[c]}" for c in plan.request.windows_bypass]
        meter.finish()
        # Last of the writing: the partition table and the BIOS boot code.
        head = aligned_buffer(MiB)
        view = memoryview(head)
        view[:512] = fat.mbr(layout, bios.boot_code if bios else b"")
        if bios is not None:
            view[512 : 512 + len(bios.core)] = bios.core
        log.info("%s: every file copied; flushing", tgt.path)
        tgt.sync()
        tgt.write(view, 0)
        tgt.sync()
        log.info("%s: flushed; the partition table and boot code written", tgt.path)
        write_seconds = time.monotonic() - started
        result = FilesResult(
            label=facts.label,
            partition_start=layout.start,
            partition_size=layout.size,
            cluster=layout.cluster,
            files=len(done.copied),
            folders=len(folders),
            bytes_copied=done.bytes,
            split=tuple(_split_result(s) for s in splits),
            added=tuple(added),
            bios=(
                f"GRUB chains {facts.bios_loader.lstrip('/')}"
                if bios is not None and facts.bios_loader
                else "no BIOS loader in the image"
                if not facts.bios_loader
                else f"not installed ({facts.grub_missing})"
            ),
            uefi=(f"from {facts.efi_loader.lstrip('/')}" if facts.efi_loader else "no EFI loader"),
        )
        checked = None
        if plan.request.verify:
            result, checked = _verify(vol, tgt, bytes(view), done, result, progress, cancel)
        # wimlib's check of the parts as a set ran beside the copy and the read-back; a
        # failure fails the run (the head wiped) before any receipt
        splitter.join_verify()
        result = replace(result, split=tuple(_split_result(s) for s in splits))
        reread_partitions(tgt.fd)
        if checked is not None and not checked.verified:
            wiped: bool | None = tgt.wipe_head()
        else:
            wiped = None
        return _receipt(plan, tgt, src, result, done, write_seconds, checked, unmounted, wiped)
    finally:
        halt.set()
        if splitter is not None:
            splitter.stop()
        data.close()
        shutil.rmtree(stage, ignore_errors=True)


def _split_result(s: _SplitDone) -> SplitResult:
    return SplitResult(
        s.entry.path,
        s.entry.size,
        tuple(zip(s.stick_paths, s.split.sizes, strict=True)),
        s.verified,
    )


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                return
            yield b


def _put(
    vol: fat.FatVolume,
    path: str,
    chunks: Iterator[bytes],
    size: int,
    done: _Totals,
    meter: Meter,
    lock: threading.Lock,
    entry: Entry | None = None,
) -> None:
    h = _hasher()
    got = [0]

    def counted() -> Iterator[bytes]:
        for b in chunks:
            h.update(b)
            got[0] += len(b)
            with lock:
                meter.advance(len(b))
            yield b

    vol.put(path, counted())
    if got[0] != size:
        raise BadImage(f"{path}: read {got[0]} bytes of {size} from the image")
    done.copied.append(_Copied(path, size, h.digest(), entry))
    done.bytes += size


@dataclass
class _SplitDone:
    entry: Entry
    split: wim.Split
    stick_paths: tuple[str, ...]
    verified: bool = False


class _Either(threading.Event):
    """Set when set itself or when the cancel it watches is."""

    def __init__(self, cancel: threading.Event) -> None:
        super().__init__()
        self.cancel = cancel

    def is_set(self) -> bool:
        return self.cancel.is_set() or super().is_set()


def _run_of(entry: Entry, fd: int | None) -> tuple[int, int] | None:
    """(offset, length) when ENTRY's bytes lie in one run of an uncompressed image (FD)."""
    if fd is None or not entry.extents:
        return None
    start, pos = entry.extents[0][0], entry.extents[0][0]
    for off, length in entry.extents:
        if off != pos or off < 0:
            return None
        pos += length
    return start, pos - start


class _Splitter:
    """Splits each WIM with wimlib on a thread of its own while the other files are
    copied, handing each part over as soon as it is finished; then verifies the parts as
    a set. wimlib reads a WIM lying in one run of an uncompressed image through a
    read-only loop device over that run (cleared when closed); any other is copied out
    to the staging folder first."""

    def __init__(
        self,
        data: ImageBytes,
        raw_fd: int | None,
        wims: list[Entry],
        stage: str,
        cancel: threading.Event,
        meter: Meter,
        image: str,
    ) -> None:
        self.data, self.raw_fd, self.wims, self.stage = data, raw_fd, wims, stage
        self.cancel, self.meter, self.image = cancel, meter, image
        self.lock = threading.Lock()
        self.done: list[_SplitDone] = []
        self.queue: queue.Queue[tuple[str, str] | BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="wim-split", daemon=True)
        self.verifier: threading.Thread | None = None
        self.verify_error: BaseException | None = None
        self.copied = threading.Event()  # set once every part is on the stick

    def stop(self) -> None:
        """Wait for the split thread (its wimlib killed by then: the halt is set)."""
        for t in (self.thread, self.verifier):
            if t is not None and t.is_alive():
                t.join(10)

    def start(self) -> None:
        if self.wims:
            self.thread.start()
        else:
            self.queue.put(None)

    def _advance(self, n: int) -> None:
        with self.lock:
            self.meter.advance(n)

    def _source(self, e: Entry, folder: str) -> tuple[str, tuple[int, ...], int | None]:
        """(path wimlib opens, descriptors to pass it, a descriptor to close after)."""
        run = _run_of(e, self.raw_fd)
        if run is not None and self.raw_fd is not None:
            try:
                dev = wim.loop_over(self.raw_fd, run[0], run[1])
            except OSError as err:
                log.info("no loop device for %s (%s): copying it out first", e.path, err)
            else:
                return f"/dev/fd/{dev}", (dev,), dev
        whole = os.path.join(folder, e.name)
        with open(whole, "wb") as f:
            for b in _chunks(self.data, e):
                if self.cancel.is_set():
                    raise Cancelled("cancelled")
                f.write(b)
                self._advance(len(b))
        if run is not None:  # counted twice in the total: once more now
            with self.lock:
                self.meter.total += e.size
        return whole, (), None

    def _run(self) -> None:
        try:
            for i, e in enumerate(self.wims):
                folder = os.path.join(self.stage, str(i))
                os.mkdir(folder, 0o700)
                source, fds, hold = self._source(e, folder)
                parts_dir = os.path.join(folder, "parts")
                os.mkdir(parts_dir, 0o700)
                name = wim.swm_name(e.name)
                shown = f"{self.image}: {e.path.lstrip('/')}"
                parent = e.path.rsplit("/", 1)[0]
                told = [0]

                def split_bytes(n: int, told: list[int] = told, most: int = e.size) -> None:
                    n = min(n, most - told[0])
                    if n > 0:
                        told[0] += n
                        self._advance(n)

                def part(path: str, parent: str = parent) -> None:
                    self.queue.put((f"{parent}/{os.path.basename(path)}", path))

                try:
                    s = wim.split(
                        source, parts_dir, name, self.cancel, split_bytes,
                        shown=shown, on_part=part, pass_fds=fds,
                    )  # fmt: skip
                finally:
                    if hold is not None:
                        os.close(hold)  # the loop device clears itself
                    elif os.path.exists(source):
                        os.unlink(source)
                with self.lock:  # wimlib tells whole MiB; the parts' copy is their size
                    self.meter.total += sum(s.sizes) - e.size
                if e.size > told[0]:
                    self._advance(e.size - told[0])
                stick = tuple(f"{parent}/{os.path.basename(p)}" for p in s.parts)
                self.done.append(_SplitDone(e, s, stick))
            self.verifier = threading.Thread(target=self._verify, name="wim-verify", daemon=True)
            self.verifier.start()
            self.queue.put(None)
        except BaseException as exc:
            self.queue.put(exc)

    def parts(self) -> Iterator[tuple[str, str]]:
        """(path on the stick, staged file) of each part, as it is finished."""
        while True:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.cancel.is_set():
                    raise Cancelled("cancelled") from None
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def _verify(self) -> None:
        try:
            for d in self.done:
                wim.verify(d.split.parts, self.cancel, shown=f"{self.image}: {d.entry.path}")
                d.verified = True
        except BaseException as exc:
            self.verify_error = exc
            return
        # Once copied too, the staged parts go now, beside the read-back: removing
        # gigabytes of files takes a second or more, which the run's end would wait for.
        while not self.copied.wait(0.2):
            if self.cancel.is_set():
                return
        for d in self.done:
            for part in d.split.parts:
                with contextlib.suppress(OSError):
                    os.unlink(part)

    def join_verify(self) -> None:
        if self.verifier is None:
            return
        while self.verifier.is_alive():
            self.verifier.join(0.2)
        if self.verify_error is not None:
            raise self.verify_error


def _verify(
    vol: fat.FatVolume,
    tgt: Target,
    head: bytes,
    done: _Totals,
    result: FilesResult,
    progress: ProgressCallback | None,
    cancel: threading.Event,
) -> tuple[FilesResult, Any]:
    """Drop the drive's cached pages, then read back the first MiB through the held
    descriptor (O_DIRECT) and every file through the stick's file system."""

    from usbwriter.engine.blockio import aligned_buffer, drop_cache, pread_into, same_bytes
    from usbwriter.engine.readback import COMPARED, VerifyResult

    start = time.monotonic()
    tgt.sync()
    drop_cache(tgt.fd)
    _flush_buffers(tgt.fd)
    total = len(head) + sum(c.size for c in done.copied)
    meter = Meter("verify", total, progress)
    buf = aligned_buffer(len(head))
    n = pread_into(tgt.fd, memoryview(buf), 0)
    mismatch: str | None = None
    offset: int | None = None
    if n != len(head) or not same_bytes(memoryview(buf)[: len(head)], memoryview(bytearray(head))):
        mismatch, offset = "the partition table and boot code (first MiB)", 0
    meter.advance(len(head))
    files = checked_bytes = 0
    for c in done.copied if mismatch is None else []:
        h = _hasher()

        def sink(b: bytes, h: Any = h) -> None:
            h.update(b)
            meter.advance(len(b))

        got = vol.get(c.path, sink)
        if got != c.size or h.digest() != c.digest:
            mismatch = c.path
            break
        files += 1
        checked_bytes += got
    seconds = meter.finish()
    del start
    verified = mismatch is None
    res = VerifyResult(
        verified=verified,
        mismatch_offset=offset,
        device_blake3=None,
        expected_blake3=None,
        size=len(head) + checked_bytes,
        seconds=seconds,
        page_cache_bypassed=True,
        proof=COMPARED,
    )
    return replace(
        result, files_verified=files, bytes_verified=checked_bytes, mismatch=mismatch
    ), res


def _flush_buffers(fd: int) -> None:
    """BLKFLSBUF: write back and drop the block device's buffers, so tools reading it
    next read the drive."""
    import fcntl

    try:
        fcntl.ioctl(fd, 0x1261)
    except OSError as e:
        raise DeviceFault(f"could not drop the drive's cache: {e.strerror}") from None


def _receipt(
    plan: Plan,
    tgt: Target,
    src: ImageSource,
    result: FilesResult,
    done: _Totals,
    seconds: float,
    checked: Any,
    unmounted: tuple[str, ...],
    wiped: bool | None,
) -> Receipt:
    from dataclasses import replace as _replace

    from usbwriter.engine.target import WriteResult
    from usbwriter.jobs.write import device_info
    from usbwriter.receipt import Receipt

    written = WriteResult(
        image_path=plan.image.requested,
        image_size=src.size or 0,
        blake3=None,
        device=tgt.path,
        bytes_written=done.bytes + MiB,
        seconds=seconds,
        direct_io=False,
        partitions_reread=True,
    )
    receipt = Receipt(
        image_path=plan.image.requested,
        image_size=src.size or 0,
        device=device_info(plan, unmounted),
        write=written,
        verify=checked,
        unmounted=unmounted,
        wiped_first_mib=wiped,
        source=src.info,
        checksum=plan.checksum,
    )
    return _replace(receipt, files=result)

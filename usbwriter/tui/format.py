"""Plain functions that turn core data into the words the screens show.

Kept free of widgets so they can be tested without running the app. What may be
chosen, and why not, is in ``rules``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usbwriter.compression import SUFFIXES
from usbwriter.units import human_duration, human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk
    from usbwriter.progress import Progress

#: Names the file browser and the path completion offer, also with any compression
#: format's suffix (``usbwriter.compression.SUFFIXES``) after them.
IMAGE_SUFFIXES = (".iso", ".img", ".raw", ".bin", ".dd")


def one_line(e: BaseException) -> str:
    """An error as the app shows it: usbwriter's own in its words, anything else named
    as an internal error. Never a traceback."""
    from usbwriter.errors import UsbWriterError

    if isinstance(e, UsbWriterError):
        return " ".join(str(e).split()) or e.code
    return f"internal error: {type(e).__name__}: {e}"


def is_image_name(name: str) -> bool:
    """'x.iso', 'x.img.xz' -> True; 'notes.txt' -> False."""
    lower = name.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            return lower.endswith(IMAGE_SUFFIXES) or "." not in lower
    return lower.endswith(IMAGE_SUFFIXES)


def is_compressed(path: str) -> bool:
    return path.lower().endswith(SUFFIXES)


def start_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where the file browser opens: the (invoking user's) Downloads, else the cwd."""
    env = os.environ if environ is None else environ
    homes: list[Path] = []
    sudo_user = env.get("SUDO_USER")
    if sudo_user:
        try:
            import pwd

            homes.append(Path(pwd.getpwnam(sudo_user).pw_dir))
        except (KeyError, ImportError):
            pass
    if env.get("HOME"):
        homes.append(Path(env["HOME"]))
    for home in homes:
        downloads = home / "Downloads"
        if downloads.is_dir():
            return downloads
    return Path.cwd()


# --------------------------------------------------------------------------- drives


def drive_mounts(disk: Disk) -> str:
    return ", ".join(mp for _, mp in disk.mounted) or "-"


def drive_name(disk: Disk) -> str:
    """'SanDisk Cruzer', or 'loop: stick.img', or 'mmc disk'."""
    return disk.description


def drive_line(disk: Disk, *, serial: bool = True) -> str:
    """'SanDisk Cruzer, 14.3 GiB, /dev/sdb, serial 4C53...'."""
    parts = [drive_name(disk), human_size(disk.size), disk.path]
    if serial and disk.serial:
        parts.append(f"serial {disk.serial}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- boot report

VERDICT_WORDS = {
    "yes": "will boot",
    "no": "will not boot",
    "firmware-dependent": "depends on the PC: only some firmware boots it",
    "unknown": "not known without decompressing the whole image",
}


def verdict_of(report: Mapping[str, Any] | None) -> tuple[str, str, tuple[str, ...]]:
    """(bios, uefi, reasons) from a report dict; 'unknown' when there is none."""
    boot: Mapping[str, Any] = (report or {}).get("boot") or {}
    reasons = tuple(str(r) for r in boot.get("reasons") or ())
    return str(boot.get("bios", "unknown")), str(boot.get("uefi", "unknown")), reasons


def verdict_words(value: str) -> str:
    return VERDICT_WORDS.get(value, "unknown")


def _list(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, Mapping)]
    return []


PLATFORMS = {"x86": "BIOS", "efi": "UEFI", "powerpc": "PowerPC", "mac": "Mac"}


def boot_details(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows for the boot panel, from ``BootReport.to_dict()``:
    volume, size, El Torito entries, partition tables, EFI loaders, problems."""
    rows: list[tuple[str, str]] = []
    kind = str(report.get("kind") or "disk")
    iso: Mapping[str, Any] = report.get("iso") or {}
    if iso:
        extras = [
            name
            for key, name in (("joliet", "Joliet"), ("rock_ridge", "Rock Ridge"), ("udf", "UDF"))
            if iso.get(key)
        ]
        fs = "ISO 9660" + (f" + {', '.join(extras)}" if extras else "")
        rows.append(("Volume", f"{iso.get('volume_id') or '(no label)'}  [{fs}]"))
    else:
        rows.append(("Image", "UDF volume" if kind == "udf" else "disk image (no ISO 9660)"))
    image_kind = str(report.get("image_kind") or "")
    if image_kind.startswith("board:") or image_kind in ("data-disk", "data-iso"):
        rows.append(("For", f"{report.get('for_hardware') or '?'}: not a PC"))
    size = report.get("size")
    if isinstance(size, int):
        rows.append(("Size", f"{human_size(size)} ({size:,} bytes)"))
    packed: Mapping[str, Any] = report.get("compression") or {}
    if packed:
        rows.append(("Compressed", _compression_text(packed)))
    not_read = [str(n) for n in report.get("not_read") or ()]
    if not_read:
        rows.append(("Not read", "; ".join(not_read)))
    if iso or report.get("eltorito"):
        rows.append(("El Torito", _eltorito_text(report.get("eltorito") or {})))
    rows.append(("Partitions", _partition_text(report)))
    rows.append(("EFI loaders", _loader_text(report) or "none found"))
    big = _list(iso.get("files_over_4gib")) if iso else []
    if big:
        rows.append(("Large files", f"{len(big)} over 4 GiB (FAT32 cannot hold them)"))
    md5 = iso.get("isomd5") if iso else None
    if isinstance(md5, Mapping) and md5.get("checked"):
        ok = md5.get("matches")
        rows.append(("Checksum", "implanted MD5 matches" if ok else "implanted MD5 does NOT match"))
    if report.get("windows_installer"):
        rows.append(("Note", "a Windows installer: writing it raw does not make it bootable"))
    problems = [str(p) for p in report.get("problems") or ()]
    if problems:
        rows.append(("Problems", "; ".join(problems)))
    return rows


def _compression_text(packed: Mapping[str, Any]) -> str:
    """The words `usbwriter inspect` prints for a compressed file, on one line."""
    from usbwriter.boot.text import compression_words, image_size_words, read_words

    fmt, file_size = str(packed.get("format") or "?"), int(packed.get("file_size") or 0)
    size = packed.get("image_size")
    inside = image_size_words(
        size if isinstance(size, int) else None,
        str(packed.get("size_from") or ""),
        str(packed.get("size_is") or "exact"),
    )
    read = read_words(int(packed.get("decompressed") or 0), bool(packed.get("whole")))
    return f"{compression_words(fmt, file_size)}; image {inside}; read: {read}"


def _eltorito_text(eltorito: Mapping[str, Any]) -> str:
    entries = _list(eltorito.get("entries"))
    if not entries:
        return "none (the image cannot boot as a CD)"
    parts = []
    for e in entries:
        platform = PLATFORMS.get(str(e.get("platform")), str(e.get("platform") or "?"))
        text = platform
        if e.get("path"):
            text += f" {e['path']}"
        elif isinstance(e.get("size"), int):
            text += f" image ({human_size(e['size'])})"
        emulation = e.get("emulation")
        if emulation and emulation != "none":
            text += f" ({emulation} emulation)"
        if not e.get("bootable", True):
            text += " (not bootable)"
        parts.append(text)
    return "; ".join(parts)


def _partition_text(report: Mapping[str, Any]) -> str:
    mbr: Mapping[str, Any] = report.get("mbr") or {}
    gpt: Mapping[str, Any] = report.get("gpt") or {}
    bits: list[str] = []
    if mbr and mbr.get("signature", True):
        if mbr.get("hybrid"):
            label = "hybrid MBR"
        elif mbr.get("protective"):
            label = "protective MBR"
        else:
            label = "MBR"
        if mbr.get("boot_code"):
            loader = mbr.get("loader_name") or mbr.get("loader")
            label += f" with boot code ({loader})" if loader else " with boot code"
        parts = [p for p in _list(mbr.get("partitions")) if p.get("type") not in (0, 0xEE)]
        if parts:
            label += ": " + ", ".join(
                f"{p.get('type_name') or hex(int(p.get('type') or 0))}"
                f"{' (active)' if p.get('bootable') else ''}"
                for p in parts
            )
        bits.append(label)
    if gpt:
        names = []
        for p in _list(gpt.get("partitions")):
            name = "EFI system partition" if p.get("esp") else str(p.get("type_name") or "?")
            if isinstance(p.get("size"), int):
                name += f" {human_size(p['size'])}"
            names.append(name)
        text = "GPT" if gpt.get("primary_ok", True) else "GPT (damaged)"
        if names:
            text += ": " + ", ".join(names)
        bits.append(text)
    return "; ".join(bits) if bits else "none"


ARCH_ORDER = ("x64", "ia32", "aa64", "arm", "riscv64", "loongarch64")


def _loader_text(report: Mapping[str, Any]) -> str:
    """'x64, ia32 in GPT partition 2 (EFI system partition); x64 in El Torito entry 2'."""
    out = []
    for volume in _list(report.get("efi")):
        archs = {str(loader.get("arch") or "?") for loader in _list(volume.get("loaders"))}
        archs.discard("not-pe")
        if not archs:
            continue
        ordered = sorted(archs, key=lambda a: (ARCH_ORDER.index(a) if a in ARCH_ORDER else 99, a))
        out.append(f"{', '.join(ordered)} in {volume.get('source') or 'a FAT volume'}")
    return "; ".join(out)


def check_words(p: Progress) -> str:
    """A slow step before a write's confirmation, how far it is and how long is left:
    the read of a compressed image's first part for its boot report, the checksum."""
    if p.phase == "inspect":
        what = f"Reading the image's first {human_size(p.total)} for its boot report"
    elif p.phase == "checksum":
        what = "Checking the image's checksum"
    else:
        what = f"{p.phase.capitalize()}"
    if p.done >= p.total:
        return f"{what}: done"
    left = f", {human_duration(p.eta)} left" if p.eta is not None else ""
    return f"{what}: {100 * p.fraction:.0f}%{left}"

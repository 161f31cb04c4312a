"""Plain functions that turn core data into the words the screens show.

Kept free of widgets so they can be tested without running the app.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk

#: Names the file browser and the path completion offer.
IMAGE_SUFFIXES = (".iso", ".img", ".raw", ".bin", ".dd")
#: Compressed images: listed, but they must be decompressed before writing.
COMPRESSED_SUFFIXES = (".gz", ".xz", ".bz2", ".zst", ".lz4", ".zip")


def is_image_name(name: str) -> bool:
    """'x.iso', 'x.img.xz' -> True; 'notes.txt' -> False."""
    lower = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            return lower.endswith(IMAGE_SUFFIXES) or "." not in lower
    return lower.endswith(IMAGE_SUFFIXES)


def is_compressed(path: str) -> bool:
    return path.lower().endswith(COMPRESSED_SUFFIXES)


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


def drive_fits(disk: Disk, image_size: int | None) -> bool:
    return image_size is None or image_size <= disk.size


def drive_choosable(disk: Disk, image_size: int | None) -> bool:
    """May the user pick this drive as the target (for this image)?"""
    return disk.eligible and disk.size > 0 and drive_fits(disk, image_size)


def drive_status(disk: Disk, image_size: int | None) -> str:
    """One short phrase: 'ready', why it cannot be chosen, or what to know."""
    if not disk.eligible:
        if disk.is_system:
            return "system disk: " + "; ".join(
                r.removeprefix("system disk: ") for r in disk.reasons
            )
        return "; ".join(disk.reasons) or "not eligible"
    if not drive_fits(disk, image_size):
        assert image_size is not None
        return f"image does not fit ({human_size(image_size)} > {human_size(disk.size)})"
    if disk.mounted:
        return "mounted: will be unmounted"
    return "ready"


def drive_mounts(disk: Disk) -> str:
    return ", ".join(mp for _, mp in disk.mounted) or "-"


def drive_name(disk: Disk) -> str:
    return " ".join(x for x in (disk.vendor, disk.model) if x) or f"{disk.bus} disk"


def drive_line(disk: Disk) -> str:
    """'SanDisk Cruzer, 14.3 GiB, /dev/sdb, serial 4C53...' for the confirmation."""
    parts = [drive_name(disk), human_size(disk.size), disk.path]
    if disk.serial:
        parts.append(f"serial {disk.serial}")
    return ", ".join(parts)


def visible(disk: Disk, show_all: bool) -> bool:
    """The default view shows the drives a user would flash; --all shows every disk."""
    return show_all or (disk.user_drive and disk.size > 0)


def device_dict(disk: Disk, identity: Any = None) -> dict[str, Any]:
    """What the receipt records about the target."""
    info: dict[str, Any] = {
        "path": disk.path,
        "major": disk.major,
        "minor": disk.minor,
        "size": disk.size,
        "vendor": disk.vendor,
        "model": disk.model,
        "serial": disk.serial,
        "bus": disk.bus,
    }
    if identity is not None and hasattr(identity, "to_dict"):
        info.update({k: v for k, v in identity.to_dict().items() if v not in (None, "", [])})
    info["path"] = disk.path
    return info


# --------------------------------------------------------------------------- boot report

VERDICT_WORDS = {
    "yes": "will boot",
    "no": "will not boot",
    "firmware-dependent": "depends on the PC: only some firmware boots it",
}


def verdict_of(report: Mapping[str, Any] | None) -> tuple[str, str, tuple[str, ...]]:
    """(bios, uefi, reasons) from a report dict; 'unknown' when there is none."""
    boot: Mapping[str, Any] = (report or {}).get("boot") or {}
    reasons = tuple(str(r) for r in boot.get("reasons") or ())
    return str(boot.get("bios", "unknown")), str(boot.get("uefi", "unknown")), reasons


def will_boot(report: Mapping[str, Any] | None) -> bool:
    """True unless the report says it boots on neither firmware."""
    if report is None:
        return False
    bios, uefi, _ = verdict_of(report)
    return not (bios == "no" and uefi == "no")


def verdict_words(value: str) -> str:
    return VERDICT_WORDS.get(value, "unknown")


def _items(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return [v for v in value if isinstance(v, Mapping)]
    return []


def _first(d: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = d.get(key)
        if value not in (None, "", [], {}):
            return value
    return None


def boot_details(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows for the boot panel: volume, size, El Torito, partitions, EFI."""
    rows: list[tuple[str, str]] = []
    iso: Mapping[str, Any] = report.get("iso9660") or report.get("iso") or {}
    kind = str(report.get("kind") or report.get("format") or ("iso9660" if iso else "raw"))
    volume = _first(iso, "volume_id", "volume") or _first(report, "volume_id", "volume")
    if iso or volume:
        extras = [
            name
            for key, name in (("joliet", "Joliet"), ("rock_ridge", "Rock Ridge"), ("udf", "UDF"))
            if iso.get(key)
        ]
        text = str(volume or "(no volume id)")
        if extras:
            text += f"  (ISO 9660 with {', '.join(extras)})"
        rows.append(("Volume", text))
    else:
        rows.append(("Image", "raw disk image" if kind in ("raw", "disk") else kind))
    size = _first(report, "size", "image_size")
    if isinstance(size, int):
        rows.append(("Size", f"{human_size(size)} ({size:,} bytes)"))

    entries = _items(
        _first(report, "el_torito", "eltorito")
        and (
            _first(report.get("el_torito") or {}, "entries")
            if isinstance(report.get("el_torito"), Mapping)
            else report.get("el_torito")
        )
    )
    if entries:
        parts = []
        for e in entries:
            platform = str(_first(e, "platform_name", "platform") or "?")
            where = _first(e, "path", "image_path")
            emulation = _first(e, "emulation", "media")
            text = platform
            if emulation:
                text += f" {emulation}"
            if where:
                text += f" {where}"
            parts.append(text)
        rows.append(("El Torito", "; ".join(parts)))
    elif iso:
        rows.append(("El Torito", "none (not bootable as a CD)"))

    rows.append(("Partitions", _partition_text(report)))
    loaders = _loader_text(report)
    rows.append(("EFI loaders", loaders or "none found"))
    return rows


def _partition_text(report: Mapping[str, Any]) -> str:
    mbr: Mapping[str, Any] = report.get("mbr") or {}
    gpt: Mapping[str, Any] = report.get("gpt") or {}
    bits: list[str] = []
    if mbr:
        label = "protective MBR" if mbr.get("protective") else "MBR"
        if mbr.get("boot_code") or mbr.get("has_boot_code"):
            loader = _first(mbr, "loader", "boot_loader")
            label += f" with boot code{f' ({loader})' if loader else ''}"
        parts = _items(mbr.get("partitions"))
        if parts and not mbr.get("protective"):
            label += f", {len(parts)} partition{'s' if len(parts) != 1 else ''}"
        bits.append(label)
    if gpt and (gpt.get("valid", True) or gpt.get("partitions")):
        parts = _items(gpt.get("partitions"))
        names = []
        for p in parts:
            name = str(_first(p, "type_name", "kind", "name") or "partition")
            if p.get("esp") or p.get("is_esp"):
                name = "EFI system partition"
            names.append(name)
        text = "GPT"
        if names:
            text += ": " + ", ".join(names)
        bits.append(text)
    return " + ".join(bits) if bits else "none"


def _loader_text(report: Mapping[str, Any]) -> str:
    loaders = _items(_first(report, "efi_loaders", "loaders"))
    out = []
    for item in loaders:
        arch = _first(item, "arch", "architecture")
        path = _first(item, "path", "file")
        source = _first(item, "source", "where", "via")
        text = str(path or "?")
        if arch:
            text = f"{arch} {text}"
        if source:
            text += f" (in {source})"
        out.append(text)
    return "; ".join(out)

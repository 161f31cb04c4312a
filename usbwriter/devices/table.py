"""``usbwriter list``: sizes and the plain-text table of disks."""

from __future__ import annotations

from collections.abc import Iterable

from usbwriter.devices.model import Disk
from usbwriter.devices.names import clean_name


def format_size(size: int) -> str:
    """1.9 GiB, 64.0 MiB, 512 B."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def format_disk_table(disks: Iterable[Disk]) -> str:
    """A plain-text table for ``usbwriter list``: one line per disk, then its status."""
    rows = [("DEVICE", "SIZE", "BUS", "RM", "RO", "VENDOR / MODEL", "SERIAL", "STATUS")]
    for d in disks:
        if d.eligible:
            status = "ok: " + (d.notes[0] if d.notes else "eligible")
            if d.mounted:
                status += "; mounted (needs --unmount)"
        else:
            status = "no: " + "; ".join(d.reasons)
        rows.append(
            (
                d.path,
                format_size(d.size),
                d.bus,
                "yes" if d.removable else "no",
                "yes" if d.read_only else "no",
                clean_name(d.description, 40),
                clean_name(d.serial, 24) or "-",
                status,
            )
        )
    if len(rows) == 1:
        return "no drives found"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        lines.append("  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines)

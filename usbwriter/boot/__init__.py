"""The boot report: read an image's boot records and say how a stick written with it boots.

    report = inspect_image("distro.iso")
    report.boot.bios, report.boot.uefi, report.boot.reasons
    report.to_dict()       # JSON-able
    render_text(report)    # for people, verdict first

Reading comes first and yields facts: `reader` (bounded reads), `iso9660`, `eltorito`,
`mbr` (with the Apple partition map), `gpt`, `fat` (mtools) and `boards` (a board's SPL
and boot files); a compressed image is read from its first part (`compressed`).
`verdict` then decides from those facts alone, without I/O, and says what the image is
for (`classify`). `report` ties the two together (`inspect_image`), `model` holds the
report's dataclasses and `text` renders it for people.
"""

from __future__ import annotations

from usbwriter.boot.model import (
    AppleMap,
    BoardSigns,
    BootPartition,
    BootReport,
    Compression,
    EfiLoader,
    EfiVolume,
    ElTorito,
    ElToritoEntry,
    Gpt,
    GptPartition,
    IsoMd5,
    IsoVolume,
    LargeFile,
    Mbr,
    MbrPartition,
    Verdict,
)
from usbwriter.boot.report import NotADiskImage, inspect_image
from usbwriter.boot.text import render_text

__all__ = [
    "AppleMap",
    "BoardSigns",
    "BootPartition",
    "BootReport",
    "Compression",
    "EfiLoader",
    "EfiVolume",
    "ElTorito",
    "ElToritoEntry",
    "Gpt",
    "GptPartition",
    "IsoMd5",
    "IsoVolume",
    "LargeFile",
    "Mbr",
    "MbrPartition",
    "NotADiskImage",
    "Verdict",
    "inspect_image",
    "render_text",
]

"""What a write job is made of: the request, the facts read about it, and the plan.

All frozen dataclasses. ``facts.py`` reads the facts from the system (changing
nothing); ``decide.py`` turns request and facts into a ``Plan``, purely; ``run.py``
carries a plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from usbwriter.errors import UsbWriterError

if TYPE_CHECKING:
    from usbwriter.checksums import ChecksumCheck
    from usbwriter.devices import Disk, MountEntry
    from usbwriter.identity import Identity
    from usbwriter.jobs.files import FilesFacts
    from usbwriter.sources import SourceInfo
    from usbwriter.sources.bmap import Bmap

#: One thing a device's bytes live on: ("disk", name) or ("file", "major:minor", "inode").
Footprint = frozenset[tuple[str, ...]]


@dataclass(frozen=True)
class Request:
    """What the user asked for."""

    image: str
    device: str
    verify: bool = True
    force: bool = False  # write an image that boots on neither BIOS nor UEFI
    unmount: bool = False  # unmount the target's file systems first
    to_file: bool = False  # the target may be a regular file (created when missing)
    member: str | None = None  # the file to write from a zip archive
    checksum: str | None = None  # "sha256:HEX": check the file against this
    sums: str | None = None  # a sums file to check against (else those found beside it)
    keyrings: tuple[str, ...] = ()  # a good signature by one of these is required
    strict_keys: bool = False  # refuse a signature whose key has expired since
    bmap: str | None = None  # a bmaptool block map: write only the mapped ranges
    no_bmap: bool = False  # ignore a bmap found beside the image
    # compare the drive first, write only the chunks that differ; None: as the drive
    # suggests (it seems to hold an image of this size already: jobs/suggest.py)
    delta: bool | None = False
    mode: str = "auto"  # "raw", "files" (copy an ISO's files onto FAT32) or "auto"
    windows_bypass: tuple[str, ...] = ()  # files mode: "tpm", "secureboot", "ram", ...
    probe: bool = True  # test the drive for fake capacity before the first byte


@dataclass(frozen=True)
class ImageFacts:
    """The image as found: ``kind`` is file, block, missing, directory, fifo, char,
    socket or other; ``footprint`` what its bytes live on."""

    requested: str
    path: str
    kind: str
    size: int | None = 0  # the image's (decompressed); None when only decompressing tells
    dev: int = 0
    ino: int = 0
    rdev: int = 0
    footprint: Footprint = frozenset()
    error: UsbWriterError | None = None  # it could not even be looked at
    source: SourceInfo | None = None  # the file's format, sizes, zip members

    @property
    def file_size(self) -> int:
        return self.source.file_size if self.source is not None else self.size or 0

    def describe(self) -> str:
        """'4.2 MiB', or 'xz: 1.1 GiB file, 4.0 GiB image'."""
        from usbwriter.units import human_size

        return self.source.describe() if self.source is not None else human_size(self.size or 0)


@dataclass(frozen=True)
class TargetFacts:
    """The target as found: ``kind`` is block, partition, file, missing, directory, fifo,
    char, socket or other. ``node`` is the resolved path the job opens (symlinks followed
    once, here). ``mounts`` are the mounts of file systems on the target; ``foreign`` are
    other mounts stacked on top of or inside those."""

    requested: str
    node: str
    kind: str
    disk: Disk | None = None
    size: int = 0
    dev: int = 0  # a regular file: its file system and inode
    ino: int = 0
    rdev: int = 0  # a drive or partition: its device number
    parent_disk: str | None = None  # for a partition node: its whole disk
    footprint: Footprint = frozenset()
    mounts: tuple[MountEntry, ...] = ()
    foreign: tuple[MountEntry, ...] = ()
    stacked: tuple[str, ...] = ()  # a regular file: the loop devices over it
    error: UsbWriterError | None = None
    link: str | None = None  # the path given is a symbolic link: where it points


@dataclass(frozen=True)
class BootFacts:
    """The boot report's verdict: will the written stick boot, and why; and what the image
    is for (``image_kind``: "iso", "data-iso", "pc-disk", "board:raspberry-pi",
    "board:u-boot", "board:uefi", "data-disk", "unknown-disk", or "not-a-disk-image" when
    it is none: see usbwriter.boot.verdict.classify)."""

    bios: str
    uefi: str
    reasons: tuple[str, ...] = ()
    unreadable: str | None = None  # why the boot records could not be read
    image_kind: str = ""  # "" when not known (the records could not be read)
    for_hardware: str = ""  # in words: "a Raspberry Pi", "a PC (BIOS and UEFI)"
    compression: str | None = None  # the verdict is of the image inside this format
    not_read: tuple[str, ...] = ()  # what lies past the part of a compressed image read
    windows_installer: bool = False  # a Windows installer ISO: its files belong on a stick

    @property
    def bootable(self) -> bool:
        return self.unreadable is None and (self.bios != "no" or self.uefi != "no")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"bios": self.bios, "uefi": self.uefi, "reasons": list(self.reasons)}
        if self.unreadable is not None:
            d["unreadable"] = self.unreadable
        if self.image_kind:
            d["image_kind"] = self.image_kind
            d["for_hardware"] = self.for_hardware
        if self.compression is not None:
            d["compression"] = self.compression
            d["not_read"] = list(self.not_read)
        return d


@dataclass(frozen=True)
class Blocker:
    """Why the job may not run. ``overridable``: a person shown the warning may confirm
    past it (an image that will not boot); everything else stands."""

    error: UsbWriterError
    overridable: bool = False

    @property
    def code(self) -> str:
        return self.error.code

    @property
    def exit_code(self) -> int:
        return self.error.exit_code

    @property
    def message(self) -> str:
        return self.error.message


#: What a plan's warning is about, so a face can place it: "fit" (the image's size is
#: not known, or only roughly), "unmount" (mounts to be unmounted first), "boot" (it will
#: not boot a PC, or its records could not be read), "large-drive" (a drive larger than a
#: stick), "checksum" (a note on the file's checksum or signature), "bmap" (a block map
#: used or not used), "confirmed" (a refusal a person confirmed past).
WarningCode = Literal["fit", "unmount", "boot", "large-drive", "checksum", "bmap", "confirmed"]


@dataclass(frozen=True)
class PlanWarning:
    """Something the plan will do, or could not check, that a person should read before
    saying yes: ``code`` says what it is about, ``message`` says it in one line."""

    code: WarningCode
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Plan:
    """The decision: run it only when ``ready``. Nothing has been changed to make it."""

    request: Request
    image: ImageFacts
    target: TargetFacts
    boot: BootFacts | None
    identity: Identity | None
    blockers: tuple[Blocker, ...] = ()
    warnings: tuple[PlanWarning, ...] = ()
    unmounts: tuple[MountEntry, ...] = field(default=())
    checksum: ChecksumCheck | None = None  # the file as downloaded, against its sums
    bmap: Bmap | None = None  # the block map to write by (given, or found beside the image)
    mode: str = "raw"  # "raw": the image's bytes; "files": its files copied onto FAT32
    mode_reason: str = ""  # why that mode, in words
    files: FilesFacts | None = None  # files mode: what the ISO holds
    delta_suggested: bool = False  # the drive seems to hold an image of this size already
    # the block map beside the image, read or failing, whether used or not: a plan chosen
    # the other way (delta or not) is decided again from it without reading anything
    bmap_seen: Bmap | UsbWriterError | None = None

    @property
    def ready(self) -> bool:
        return not self.blockers

    @property
    def hard_blocked(self) -> bool:
        """Blocked by something no confirmation lifts."""
        return any(not b.overridable for b in self.blockers)

    @property
    def needs_confirmation_only(self) -> bool:
        """Blocked only by what a person may confirm past (shown the warning)."""
        return bool(self.blockers) and all(b.overridable for b in self.blockers)

    def confirmed(self) -> Plan:
        """The plan after a person saw the warnings and said yes: overridable blockers
        become warnings. Non-overridable blockers stay."""
        kept = tuple(b for b in self.blockers if not b.overridable)
        moved = tuple(PlanWarning("confirmed", b.message) for b in self.blockers if b.overridable)
        return replace(self, blockers=kept, warnings=self.warnings + moved)

    def raise_if_blocked(self) -> None:
        if self.blockers:
            raise self.blockers[0].error

    @property
    def unmount_points(self) -> tuple[str, ...]:
        return tuple(m.mountpoint for m in self.unmounts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "plan",
            "image": self.image.path,
            "device": self.target.requested,
            "ready": self.ready,
            "blockers": [b.error.to_dict() | {"overridable": b.overridable} for b in self.blockers],
            "warnings": [w.message for w in self.warnings],
            "unmount": [{"device": m.source, "mountpoint": m.mountpoint} for m in self.unmounts],
            "boot": self.boot.to_dict() if self.boot is not None else None,
            "checksum": self.checksum.to_dict() if self.checksum is not None else None,
            "bmap": self.bmap.to_dict() if self.bmap is not None else None,
            "delta": self.request.delta,
            "mode": self.mode,
            "mode_reason": self.mode_reason,
            "files": self.files.to_dict() if self.files is not None else None,
        }

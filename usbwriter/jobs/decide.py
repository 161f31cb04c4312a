"""The plan's decisions: a pure function of the request and the facts read before.

No I/O here, so every refusal, warning and unmount list can be tested on hand-built
facts (tests/unit/test_plan.py), and both front ends act on the same decisions.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Protocol

from usbwriter.devices import DEV
from usbwriter.errors import BadInput, Refused, UsbWriterError
from usbwriter.identity import Identity
from usbwriter.jobs.model import (
    Blocker,
    BootFacts,
    Footprint,
    ImageFacts,
    Plan,
    PlanWarning,
    Request,
    TargetFacts,
)
from usbwriter.outputs import KERNEL_TREES
from usbwriter.sources import not_a_drive, not_an_image
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.checksums import ChecksumCheck
    from usbwriter.devices import MountEntry
    from usbwriter.jobs.files import FilesFacts
    from usbwriter.sources.bmap import Bmap


def decide(
    request: Request,
    image: ImageFacts,
    target: TargetFacts,
    boot: BootFacts | None,
    checksum: ChecksumCheck | UsbWriterError | None = None,
    bmap: Bmap | UsbWriterError | None = None,
    files: FilesFacts | None = None,
) -> Plan:
    blockers: list[Blocker] = []
    warnings: list[PlanWarning] = []

    def block(error: UsbWriterError, *, overridable: bool = False) -> None:
        blockers.append(Blocker(error, overridable))

    image_ok = _check_image(image, block)
    target_ok = _check_target(request, image, target, block)
    identity = _identity(target) if target_ok else None
    mode, mode_reason = choose_mode(request, boot)
    if image_ok and target_ok:
        if mode == "files" or request.windows_bypass:
            from usbwriter.jobs.files import check_files  # (loaded for a file copy only)

            check_files(request, mode, image, target, boot, files, block)
        shared = image.footprint & target.footprint
        if shared:
            block(_overlap(image, target, shared))
        fit = _fit(image, target) if mode == "raw" else None  # files: check_files
        if isinstance(fit, UsbWriterError):
            block(fit)
        elif fit:
            warnings.append(PlanWarning("fit", fit))
    unmounts = _unmounts(request, target, block) if target_ok else ()
    if unmounts:
        warnings.append(_unmount_note(unmounts))
    if image_ok and boot is not None and mode == "raw":
        _check_boot(request, image, boot, block, warnings)
    if target_ok and target.disk is not None:
        warnings.extend(
            PlanWarning("large-drive", f"{target.requested}: {n}")
            for n in target.disk.notes
            if "larger than" in n
        )
    checked = None
    if request.keyrings and image_ok and image.kind != "file":
        block(
            Refused(
                f"{image.requested}: --keyring needs a signed sums file for an image file; "
                "a drive given as the image has none",
                path=image.requested,
            )
        )
    if isinstance(checksum, UsbWriterError):
        block(checksum)
    elif checksum is not None:
        checked = checksum
        refusal, note = _checksum_verdict(request, checksum)
        if refusal is not None:
            block(refusal)
        elif note:
            warnings.append(PlanWarning("checksum", note))
    used_bmap = _check_bmap(request, image, bmap, checked, block, warnings) if image_ok else None
    return Plan(
        request=request,
        image=image,
        target=target,
        boot=boot,
        identity=identity,
        blockers=tuple(blockers),
        warnings=tuple(warnings),
        unmounts=unmounts,
        checksum=checked,
        bmap=used_bmap if mode == "raw" else None,
        mode=mode,
        mode_reason=mode_reason,
        files=files if mode == "files" else None,
    )


def choose_mode(request: Request, boot: BootFacts | None) -> tuple[str, str]:
    """("raw" or "files", why)."""
    mode = getattr(request, "mode", "auto")
    if mode == "raw":
        return "raw", "--mode raw: the image's bytes are written as they are"
    if mode == "files":
        return "files", "--mode files: the ISO's files are copied onto a FAT32 partition"
    if boot is not None and boot.windows_installer:
        return "files", (
            "a Windows installer image: written raw it would boot nowhere, so its files are "
            "copied onto a FAT32 partition (--mode raw writes it raw anyway)"
        )
    return "raw", ""


def wants_files(request: Request, image: ImageFacts, boot: BootFacts | None) -> bool:
    """Whether the plan copies files, so the ISO's directory is to be read."""
    readable = image.error is None and image.kind == "file"
    return readable and choose_mode(request, boot)[0] == "files"


def _check_bmap(
    request: Request,
    image: ImageFacts,
    bmap: Bmap | UsbWriterError | None,
    checksum: ChecksumCheck | None,
    block: _Block,
    warnings: list[PlanWarning],
) -> Bmap | None:
    """The bmap to write by: refused when it cannot be read or does not describe this
    image; not combined with --delta (an explicit one is a usage error). When a checksum
    vouches for the image, a bmap found beside it is used only if the same sums file
    vouches for it too (one it lists wrongly is refused); one named with --bmap is the
    user's choice."""
    if request.delta and request.bmap:
        block(BadInput("--delta and --bmap: choose one (a delta write compares every chunk)"))
        return None
    if bmap is None or request.delta:
        return None
    if isinstance(bmap, UsbWriterError):
        block(bmap)
        return None
    fits = image.source.may_be(bmap.image_size) if image.source else image.size == bmap.image_size
    if image.size is not None and not fits:
        block(
            Refused(
                f"{image.requested}: its bmap {bmap.path} says the image is "
                f"{bmap.image_size} bytes, but it is {image.size} bytes; wrong bmap? "
                "(--no-bmap writes it whole)",
                path=bmap.path,
            )
        )
        return None
    if not request.bmap and checksum is not None and checksum.status == "matched":
        covered = checksum.covers(bmap.path)
        vouches = "the checksum given" if checksum.sums_file is None else checksum.sums_file
        if covered is not None and covered.status == "mismatch":
            block(
                Refused(
                    f"{image.requested}: its bmap {bmap.path} is not the one {vouches} lists "
                    f"({covered.why}); nothing was written (--no-bmap writes the whole image)",
                    path=bmap.path,
                )
            )
            return None
        if covered is None or covered.status != "matched":
            warnings.append(
                PlanWarning(
                    "bmap",
                    f"{image.requested}: the bmap found beside it, {bmap.path}, is not vouched "
                    f"for by {vouches}, which vouches for the image; writing the whole image "
                    "(name it with --bmap to write only its ranges)",
                )
            )
            return None
    if not request.bmap:
        warnings.append(
            PlanWarning(
                "bmap",
                f"{image.requested}: writing only the ranges mapped in {bmap.path} "
                "(--no-bmap writes the whole image)",
            )
        )
    return bmap


#: what a plan without an image (restore) looks at in place of one
NO_IMAGE = ImageFacts(requested="", path="", kind="none", size=None)


def decide_target(request: Request, target: TargetFacts) -> Plan:
    """The plan of a job that changes a drive without writing an image to it (restore):
    the target's refusals, its unmounts and its pinned identity, as for a write."""
    blockers: list[Blocker] = []

    def block(error: UsbWriterError, *, overridable: bool = False) -> None:
        blockers.append(Blocker(error, overridable))

    if target.error is None and target.kind in ("file", "missing"):
        block(
            BadInput(f"{target.requested}: no such device", path=target.requested)
            if target.kind == "missing"
            else not_a_drive(target.requested, target.kind)
        )
        target_ok = False
    else:
        target_ok = _check_target(request, NO_IMAGE, target, block)
    unmounts = _unmounts(request, target, block) if target_ok else ()
    warnings = []
    if unmounts:
        warnings.append(_unmount_note(unmounts))
    return Plan(
        request=request,
        image=NO_IMAGE,
        target=target,
        boot=None,
        identity=_identity(target) if target_ok else None,
        blockers=tuple(blockers),
        warnings=tuple(warnings),
        unmounts=unmounts,
    )


def _checksum_verdict(request: Request, check: ChecksumCheck) -> tuple[Refused | None, str | None]:
    """A refusal or a note for the warnings. Refused: a mismatch; a bad signature; a
    named sums file (--sums) without the image's line; and with --keyring anything short
    of a good signature by one of its keys over the line that matched (no sums file, no
    line, an unsigned or unverifiable sums file, a checksum given by hand), and with
    --strict-keys a key that has expired since."""
    name = request.image
    words = check.describe()
    if check.status == "mismatch":
        return Refused(f"{name}: checksum mismatch: {words}; nothing was written", path=name), None
    if check.status == "no-entry" and request.sums is not None:
        return Refused(f"{name}: {words}; nothing was written", path=name), None
    sig = check.signature
    if request.keyrings:
        why = None
        if check.status != "matched":
            why = words
        elif sig is None:
            why = f"{words}; --keyring needs a signed sums file, not a checksum given by hand"
        elif not sig.valid:
            why = words
        elif sig.key_expired and request.strict_keys:
            why = f"{words}; refused with --strict-keys"
        if why is not None:
            return (
                Refused(
                    f"{name}: no good signature vouches for it ({why}); nothing was written",
                    path=name,
                ),
                None,
            )
        return None, (f"{name}: {words}" if sig is not None and sig.key_expired else None)
    if check.status != "matched":
        return None, f"{name}: {words}"
    if sig is None or sig.status in ("valid", "unsigned"):
        return None, None
    if sig.status == "bad":
        return Refused(f"{name}: {words}; nothing was written", path=name), None
    return None, f"{name}: {words}"


def check_image(image: ImageFacts) -> UsbWriterError | None:
    """Why the image cannot be read as one (None when it can)."""
    if image.error is not None:
        return image.error
    if image.kind not in ("file", "block"):
        return not_an_image(image.requested, image.kind)
    return image.source.member_problem(image.requested) if image.source else None


def _fit(image: ImageFacts, target: TargetFacts) -> UsbWriterError | str | None:
    """A refusal when the image surely does not fit, a warning when that is not known."""
    if target.kind != "block":
        return None
    src = image.source
    if image.size is None:
        fmt = src.format if src else ""
        return (
            f"{image.requested}: the image's size is not recorded in the {fmt} file; whether "
            "it fits is checked while writing (progress follows the file)"
        )
    if image.size <= target.size:
        return None
    words = (
        f"{target.requested}: the image {image.requested} ({human_size(image.size)}) does not "
        f"fit on the device ({human_size(target.size)})"
    )
    if src is not None and src.size_is == "about":
        return f"{words}, going by its {src.size_from}; checked while writing"
    return Refused(words, path=target.requested)


def _check_boot(
    request: Request,
    image: ImageFacts,
    boot: BootFacts,
    block: _Block,
    warnings: list[PlanWarning],
) -> None:
    """Refuse (a person may confirm past it, or pass --force) only what is clearly a
    mistake: a file that is not a disk or ISO image, an ISO with no boot records (a data
    disc), boot records that could not be read. An image that will not boot a PC but is
    made for something else (a board's, a data disk) is written with a warning. A
    compressed image's facts are those of the image inside."""
    name = image.requested
    why = None
    if boot.unreadable is not None:  # not a disk or ISO image at all, or damaged
        why = f"its boot records could not be read ({boot.unreadable})"
    elif boot.image_kind == "data-iso":
        why = (
            "it will not boot on BIOS or UEFI; it is an ISO image with no boot records "
            "(a data disc)"
        )
    if why is not None:
        if request.force:
            warnings.append(PlanWarning("boot", f"{name}: {why}; writing it anyway (--force)"))
        else:
            block(
                Refused(f"{name}: {why}; use --force to write it", path=image.path),
                overridable=True,
            )
        return
    boots = boot.bios == "yes" or boot.uefi in ("yes", "firmware-dependent")
    if boots:
        return
    if boot.image_kind.startswith("board:"):
        why = f"this image is for {boot.for_hardware}; it will not boot a PC"
    elif boot.image_kind == "data-disk":
        why = "this image is a data disk; it will not boot a PC"
    elif "unknown" in (boot.bios, boot.uefi):
        why = "whether it boots on BIOS or UEFI is not known without decompressing the whole image"
    else:
        why = "it will not boot on BIOS or UEFI from a USB stick"
    warnings.append(PlanWarning("boot", f"{name}: {why}"))


def _check_image(image: ImageFacts, block: _Block) -> bool:
    error = check_image(image)
    if error is not None:
        block(error)
    return error is None


def _check_target(request: Request, image: ImageFacts, target: TargetFacts, block: _Block) -> bool:
    name = target.requested
    if target.error is not None:
        block(target.error)
        return False
    swapped = image.kind == "block" and target.kind in ("file", "missing")
    if swapped:
        block(
            Refused(
                f"{name}: is {'a regular file' if target.kind == 'file' else 'no device'}, "
                f"and the image {image.requested} is a drive: are --image and --device "
                "swapped? Nothing was written",
                path=name,
            )
        )
        return False
    if target.kind in ("missing", "file") and request.to_file:
        refusal = _file_target_refusal(target)
        if refusal is not None:
            block(refusal)
            return False
    if target.kind == "missing":
        if request.to_file:
            return True
        block(
            BadInput(
                f"{name}: no such device (to write the image into a new file, add --to-file)",
                path=name,
            )
        )
        return False
    if target.kind == "file":
        if target.stacked:
            loops = ", ".join(f"{DEV}/{n}" for n in target.stacked)
            block(
                Refused(
                    f"{name}: backs {loops} (a loop device over it); writing it would "
                    "corrupt whatever uses that; detach it first (losetup -d)",
                    path=name,
                )
            )
            return False
        if request.to_file:
            return True
        block(
            Refused(
                f"{name}: is a regular file, not a drive; nothing was written (to write the "
                "image into this file, add --to-file)",
                path=name,
            )
        )
        return False
    if target.kind == "partition":
        whole = f" {DEV}/{target.parent_disk}" if target.parent_disk else ""
        block(Refused(f"{name}: is a partition; write to the whole disk{whole}", path=name))
        return False
    if target.kind != "block":
        block(not_a_drive(name, target.kind))
        return False
    disk = target.disk
    if disk is not None and disk.reasons:
        block(
            Refused(
                f"{disk.path} ({disk.description}): refused: {'; '.join(disk.reasons)}",
                path=name,
            )
        )
        return False
    below = sorted(i[1] for i in target.footprint if i[0] == "disk" and disk and i[1] != disk.name)
    if below:
        # A dm/md volume or a loop over a device: writing it writes the drives below.
        block(
            Refused(
                f"{name}: stands on {', '.join(f'{DEV}/{d}' for d in below)} (a "
                "device-mapper, md or loop device over a drive); write to a drive itself",
                path=name,
            )
        )
        return False
    return True


def _file_target_refusal(target: TargetFacts) -> Refused | None:
    """Why a regular file (or a new one) may not be written at this path: it is reached
    through a symbolic link (whoever could plant it would choose what root writes), or
    it lies under /dev, /proc or /sys (a mistyped /dev/sdX must not become a file in
    /dev): the rule of every output usbwriter makes."""
    name = target.requested
    if target.link is not None:
        return Refused(
            f"{name}: is a symbolic link (to {target.link}); a file target is never reached "
            "through a link: give the file itself",
            path=name,
        )
    node = target.node
    for top in KERNEL_TREES:
        if node == top or node.startswith(top + "/"):
            what = "no such device" if target.kind == "missing" else "not a device"
            return Refused(
                f"{name}: {what}, and a file is never written under {top}; check the name",
                path=name,
            )
    return None


def _unmounts(request: Request, target: TargetFacts, block: _Block) -> tuple[MountEntry, ...]:
    if not target.mounts:
        return ()
    listed = ", ".join(f"{m.source} on {m.mountpoint}" for m in target.mounts)
    if not request.unmount:
        block(
            Refused(
                f"{target.requested}: mounted: {listed}; unmount first or pass --unmount",
                path=target.requested,
            )
        )
        return ()
    if target.foreign:
        stacked = ", ".join(f"{m.source} on {m.mountpoint}" for m in target.foreign)
        block(
            Refused(
                f"{target.requested}: other file systems are mounted on top of or inside its "
                f"mounts ({stacked}); unmount those first. Nothing was unmounted",
                path=target.requested,
            )
        )
        return ()
    # Deepest first, later mounts before earlier ones at the same depth.
    return tuple(
        sorted(target.mounts, key=lambda m: (-m.mountpoint.rstrip("/").count("/"), -m.mount_id))
    )


def _unmount_note(unmounts: tuple[MountEntry, ...]) -> PlanWarning:
    return PlanWarning(
        "unmount",
        "will unmount first: " + ", ".join(f"{m.source} on {m.mountpoint}" for m in unmounts),
    )


def _overlap(image: ImageFacts, target: TargetFacts, shared: Footprint) -> Refused:
    names = []
    for item in sorted(shared):
        if item[0] == "disk":
            names.append(f"{DEV}/{item[1]}")
        else:
            names.append(
                "the image file itself"
                if (image.kind == "file" and f"{image.ino}" == item[2])
                else f"a backing file (inode {item[2]})"
            )
    return Refused(
        f"{target.requested}: refused: it overlaps the image {image.requested} (both on "
        f"{', '.join(names)}); writing it would destroy the image while it is read",
        path=target.requested,
    )


def _identity(target: TargetFacts) -> Identity | None:
    if target.kind == "block" and target.disk is not None:
        return Identity.from_disk(target.disk, requested=target.requested)
    if target.kind in ("file", "missing"):
        exists = target.kind == "file"
        return Identity(
            path=target.node,
            major=None,
            minor=None,
            size=target.size,
            diskseq=None,
            serial="",
            backing_file=None,
            kind="file",
            requested=target.requested,
            file_device=target.dev if exists else None,
            file_inode=target.ino if exists else None,
            model=os.path.basename(target.node),
        )
    return None


class _Block(Protocol):
    def __call__(self, error: UsbWriterError, *, overridable: bool = False) -> None: ...

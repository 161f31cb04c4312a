"""Read the facts a plan decides on: the image, the target, the boot verdict.

Everything here only looks (stat, sysfs, /proc/self/mountinfo, the image's boot
records); nothing is opened for writing, nothing unmounted. Paths are resolved once,
here: the job later opens exactly ``TargetFacts.node`` and checks that what it opened
is what was looked at.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from usbwriter.devices import (
    Snapshot,
    disk_from_info,
    image_disks,
    read_block_info,
    read_snapshot,
    sys_path_of,
)
from usbwriter.errors import BadImage, Cancelled, DeviceFault, UsbWriterError, os_error
from usbwriter.jobs.model import BootFacts, Footprint, ImageFacts, Request, TargetFacts
from usbwriter.progress import ProgressCallback
from usbwriter.sources import kind_of, open_image

if TYPE_CHECKING:
    from usbwriter.checksums import ChecksumCheck
    from usbwriter.sources.bmap import Bmap


def _devno(dev: int) -> str:
    return f"{os.major(dev)}:{os.minor(dev)}"


def look_at_image(path: str, snapshot: Snapshot, *, member: str | None = None) -> ImageFacts:
    """What the image is (stat first, so a FIFO cannot hang this; a regular file is then
    opened without blocking to read its format and sizes) and what its bytes live on."""
    try:
        st = os.stat(path)
    except OSError as e:
        return ImageFacts(path, path, "missing", error=os_error(path, e, "read the image"))
    real = os.path.realpath(path)
    kind = kind_of(st.st_mode)
    footprint: Footprint = frozenset()
    size: int | None = st.st_size
    source = None
    if kind == "file":
        try:
            with open_image(real, member=member) as opened:
                source = opened.info
        except UsbWriterError as e:
            return ImageFacts(path, real, kind, size=size, error=e)
        size = source.size
        footprint = frozenset(
            {("file", _devno(st.st_dev), str(st.st_ino))}
            | {("disk", d) for d in image_disks(real, snapshot)}
            | snapshot.footprint(_devno(st.st_dev), through_files=True)
        )
    elif kind == "block":
        footprint = snapshot.footprint(_devno(st.st_rdev), through_files=True)
        size = block_size_of(st.st_rdev)
    return ImageFacts(
        requested=path,
        path=real,
        kind=kind,
        size=size,
        dev=st.st_dev,
        ino=st.st_ino,
        rdev=st.st_rdev,
        footprint=footprint,
        source=source,
    )


def block_size_of(rdev: int) -> int:
    try:
        with open(os.path.join(sys_path_of(_devno(rdev)), "size")) as f:
            return int(f.read().strip()) * 512
    except (OSError, ValueError):
        return 0


def look_at_target(path: str, snapshot: Snapshot) -> TargetFacts:
    """What the target is: a whole disk (with its mounts and what is stacked on them), a
    partition, a regular file, nothing, or something else."""
    if not os.path.lexists(path):
        return TargetFacts(path, os.path.abspath(path), "missing")
    real = os.path.realpath(path)
    link = _link_target(path)
    try:
        st = os.stat(real)
    except OSError as e:
        if not os.path.exists(real):  # a dangling symlink
            return TargetFacts(path, real, "missing", link=link)
        return TargetFacts(path, real, "other", error=os_error(path, e, "look at the device"))
    kind = kind_of(st.st_mode)
    if kind == "file":
        loops = tuple(
            n.name
            for n in snapshot.nodes
            if n.backing_inode == st.st_ino and n.backing_devno == _devno(st.st_dev)
        )
        return TargetFacts(
            path,
            real,
            "file",
            size=st.st_size,
            dev=st.st_dev,
            ino=st.st_ino,
            footprint=frozenset({("file", _devno(st.st_dev), str(st.st_ino))}),
            stacked=loops,
            link=link,
        )
    if kind != "block":
        return TargetFacts(path, real, kind)
    devno = _devno(st.st_rdev)
    sys_path = sys_path_of(devno)
    if not os.path.isdir(sys_path):
        return TargetFacts(
            path,
            real,
            "block",
            error=DeviceFault(f"{path}: no block device {devno} in sysfs", path=path),
        )
    if os.path.exists(os.path.join(sys_path, "partition")):
        parent = os.path.basename(os.path.dirname(sys_path))
        return TargetFacts(path, real, "partition", rdev=st.st_rdev, parent_disk=parent)
    try:
        disk = disk_from_info(read_block_info(sys_path), snapshot)
    except DeviceFault as e:
        return TargetFacts(path, real, "block", error=e)
    ours = {disk.devno} | {f"{p.major}:{p.minor}" for p in disk.partitions}
    mounts = tuple(m for m in snapshot.mounts if m.devno in ours)
    ids = {m.mount_id for m in mounts}
    foreign = tuple(m for m in snapshot.mounts if m.parent_id in ids and m.devno not in ours)
    return TargetFacts(
        requested=path,
        node=real,
        kind="block",
        disk=disk,
        size=disk.size,
        rdev=st.st_rdev,
        footprint=snapshot.footprint(devno, through_files=False),
        mounts=mounts,
        foreign=foreign,
    )


def _link_target(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:  # not a link
        return None


def look_at_boot(image: ImageFacts, progress: ProgressCallback | None = None) -> BootFacts | None:
    """The boot verdict of an image that is a file or a block device, and what it is for;
    None otherwise. A compressed image's verdict is that of the image inside, read from
    its first part: PROGRESS hears how far that read is (phase "inspect")."""
    if image.error is not None or image.kind not in ("file", "block"):
        return None
    from usbwriter.boot import NotADiskImage, inspect_image
    from usbwriter.sources.streams import reading

    member = image.source.member if image.source is not None else None
    meter = None
    if progress is not None and image.source is not None and image.source.compressed:
        from usbwriter.boot.compressed import DECOMPRESS_LIMIT
        from usbwriter.progress import Meter

        part = DECOMPRESS_LIMIT if image.size is None else min(image.size, DECOMPRESS_LIMIT)
        meter = Meter("inspect", max(part, 1), progress)
    try:
        with reading(meter):
            report = inspect_image(image.path, verify_checksum=False, member=member)
        if meter is not None and meter.done:  # (an image shorter than the part ends sooner)
            meter.total = meter.done
            meter.finish()
    except NotADiskImage as e:
        return BootFacts(
            "no",
            "no",
            unreadable=e.message.removeprefix(f"{image.path}: "),
            image_kind="not-a-disk-image",
            for_hardware="nothing: not a disk or ISO image",
        )
    except BadImage as e:
        return BootFacts("no", "no", unreadable=e.message.removeprefix(f"{image.path}: "))
    v = report.boot
    return BootFacts(
        v.bios,
        v.uefi,
        tuple(v.reasons),
        image_kind=report.image_kind,
        for_hardware=report.for_hardware,
        compression=report.compression.format if report.compression is not None else None,
        not_read=report.not_read,
        windows_installer=report.windows_installer,
    )


def look(
    image: str,
    device: str,
    *,
    member: str | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[ImageFacts, TargetFacts, BootFacts | None]:
    snapshot = read_snapshot()
    image_facts = look_at_image(image, snapshot, member=member)
    return image_facts, look_at_target(device, snapshot), look_at_boot(image_facts, progress)


def check_checksum(
    request: Request,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    bmap: Bmap | None = None,
) -> ChecksumCheck | UsbWriterError:
    """The file as downloaded against the checksum given, the sums file named or the
    sums files beside it (signatures checked with the keyrings given); whether the sums
    file vouches for BMAP too. A usage error (a bad ALG:HEX, an unreadable keyring) is
    returned, for the plan to block on."""
    from usbwriter.checksums import check_image

    try:
        return check_image(
            request.image,
            expected=request.checksum,
            keyrings=request.keyrings,
            sums=request.sums,
            progress=progress,
            cancel=cancel,
            companions=(bmap,) if bmap is not None else (),
        )
    except Cancelled:
        raise
    except UsbWriterError as e:
        return e

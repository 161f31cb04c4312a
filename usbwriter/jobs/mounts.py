"""Unmount exactly the planned mounts: by mount ID, re-checked just before each one.

``umount MOUNTPOINT`` removes whatever sits on top at that path, which may be another
file system stacked there. Here each planned mount is looked up again by its mount ID
in /proc/self/mountinfo; it is unmounted only if it is still the same mount (same
source device and mountpoint) and nothing else is mounted on top of or inside it.
The unmount itself is umount2(2) with UMOUNT_NOFOLLOW.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

from usbwriter.devices import MountEntry, read_mounts
from usbwriter.errors import Changed, Refused

log = logging.getLogger(__name__)

UMOUNT_NOFOLLOW = 8


def _umount2(path: str) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if libc.umount2(os.fsencode(path), UMOUNT_NOFOLLOW) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)


def unmount_planned(
    planned: tuple[MountEntry, ...],
    *,
    notify: Callable[[str], None] | None = None,
    umount: Callable[[str], None] = _umount2,
) -> tuple[str, ...]:
    """Unmount PLANNED in order (deepest first); the mountpoints unmounted. ``Refused``
    (naming what was already unmounted) when a mount changed or something else is
    stacked on it."""
    done: list[str] = []

    def refuse(text: str, kind: type[Refused] = Refused) -> Refused:
        already = f" (already unmounted: {', '.join(done)})" if done else ""
        return kind(f"{text}{already}")

    for want in planned:
        now = {m.mount_id: m for m in read_mounts()}
        have = now.get(want.mount_id)
        if have is None:
            log.info("%s (mount %d) is already unmounted", want.mountpoint, want.mount_id)
            continue
        if have.mountpoint != want.mountpoint or have.source != want.source:
            raise refuse(
                f"{want.mountpoint}: the mount changed since it was checked "
                f"({want.source} -> {have.source} on {have.mountpoint}); not unmounted",
                Changed,
            )
        above = [m for m in now.values() if m.parent_id == want.mount_id]
        if above:
            stacked = ", ".join(f"{m.source} on {m.mountpoint}" for m in above)
            raise refuse(
                f"{want.mountpoint}: another file system is mounted on top of or inside it "
                f"({stacked}); unmount that first",
                Changed,
            )
        try:
            umount(want.mountpoint)
        except OSError as e:
            why = (
                "busy: a program has files open there"
                if e.errno == errno.EBUSY
                else e.strerror or str(e)
            )
            raise refuse(f"{want.mountpoint}: could not unmount: {why}") from None
        log.info("unmounted %s (%s, mount %d)", want.mountpoint, want.source, want.mount_id)
        done.append(want.mountpoint)
        if notify is not None:
            notify(f"unmounted {want.source} from {want.mountpoint}")
    return tuple(done)

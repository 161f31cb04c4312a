"""The core, as the app sees it: a bundle of plain callables.

The app takes a ``Services`` in its constructor (the app-factory pattern), so tests
and snapshots can pass their own drive source, watcher or recorded reports while
everything else stays real. ``Services.real()`` wires the core modules; they are
imported lazily, inside the callables, so building the bundle is cheap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from usbwriter.boot.report import Inspected
    from usbwriter.devices import Disk, DiskEvent
    from usbwriter.engine.probe import ProbeResult
    from usbwriter.iso.contents import IsoImage
    from usbwriter.iso.extract import EventCallback, Result
    from usbwriter.jobs import Plan, Request
    from usbwriter.jobs.backup import BackupPlan, BackupReceipt
    from usbwriter.jobs.restore import RestoreReceipt
    from usbwriter.jobs.several import DriveResult
    from usbwriter.progress import Progress
    from usbwriter.receipt import Receipt

ListDisks = Callable[[bool, "str | None"], "list[Disk]"]
WatchDisks = Callable[[threading.Event], "Iterator[DiskEvent]"]
InspectImage = Callable[[str], Mapping[str, Any]]
Notify = Callable[[str], object]
ProgressCallback = Callable[["Progress"], object]
DriveProgress = Callable[[str, "Progress"], object]  # a drive's path, its progress
DriveFailed = Callable[[str, str], object]  # a drive's path, what went wrong


# The core's calls as the app makes them, with their real signatures (a fake passed by a
# test must take what the app gives).


class PlanWrite(Protocol):
    def __call__(
        self,
        request: Request,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Plan: ...


class RunWrite(Protocol):
    def __call__(
        self,
        plan: Plan,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        notify: Notify | None = None,
    ) -> Receipt: ...


class OpenIso(Protocol):
    def __call__(self, path: str, *, cancel: threading.Event | None = None) -> IsoImage: ...


class Extract(Protocol):
    def __call__(
        self,
        iso: IsoImage,
        paths: list[str],
        output: str,
        *,
        overwrite: bool = False,
        on_event: EventCallback | None = None,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Result: ...


class PlanBackup(Protocol):
    def __call__(self, device: str, output: str, *, overwrite: bool = False) -> BackupPlan: ...


class RunBackup(Protocol):
    def __call__(
        self,
        plan: BackupPlan,
        *,
        verify: bool = False,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> BackupReceipt: ...


class PlanRestore(Protocol):
    def __call__(self, device: str, *, unmount: bool = False) -> Plan: ...


class RunRestore(Protocol):
    def __call__(
        self,
        plan: Plan,
        *,
        fs: str = "fat32",
        label: str = "",
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        notify: Notify | None = None,
    ) -> RestoreReceipt: ...


class PlanMany(Protocol):
    def __call__(
        self,
        request: Request,
        devices: list[str],
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> list[Plan]: ...


class RunMany(Protocol):
    def __call__(
        self,
        plans: list[Plan],
        *,
        progress: DriveProgress | None = None,
        cancel: threading.Event | None = None,
        notify: Notify | None = None,
        on_failed: DriveFailed | None = None,
    ) -> list[DriveResult]: ...


def _open_iso(path: str, **kw: Any) -> IsoImage:
    from usbwriter.iso.contents import IsoImage

    return IsoImage(path, **kw)


def _extract(iso: IsoImage, paths: list[str], output: str, **kw: Any) -> Any:
    from usbwriter.iso.extract import extract

    return extract(iso, paths, output, **kw)


def _plan_backup(device: str, output: str, **kw: Any) -> BackupPlan:
    from usbwriter.jobs.backup import plan_backup

    return plan_backup(device, output, **kw)


def _run_backup(plan: BackupPlan, **kw: Any) -> BackupReceipt:
    from usbwriter.jobs.backup import run_backup

    return run_backup(plan, **kw)


def _plan_restore(device: str, **kw: Any) -> Plan:
    from usbwriter.jobs.restore import plan_restore

    return plan_restore(device, **kw)


def _run_restore(plan: Plan, **kw: Any) -> RestoreReceipt:
    from usbwriter.jobs.restore import run_restore

    return run_restore(plan, **kw)


def _plan_probe(device: str) -> Plan:
    from usbwriter.jobs.probe import plan_probe

    return plan_probe(device)


def _run_probe(plan: Plan, **kw: Any) -> ProbeResult:
    from usbwriter.jobs.probe import run_probe

    return run_probe(plan, **kw)


def _plan_many(request: Request, devices: list[str], **kw: Any) -> list[Plan]:
    from usbwriter.boot.report import reports_known
    from usbwriter.jobs.several import plan_many

    with _inspected_lock:
        known = list(_inspected.values())
    with reports_known(known):
        return plan_many(request, devices, **kw)


def _run_many(plans: list[Plan], **kw: Any) -> list[DriveResult]:
    from usbwriter.jobs.several import run_many

    return run_many(plans, **kw)


def _with_delta(plan: Plan, delta: bool) -> Plan:
    from usbwriter.jobs import with_delta

    return with_delta(plan, delta)


def _with_bypass(plan: Plan, windows_bypass: tuple[str, ...]) -> Plan:
    from usbwriter.jobs import with_bypass

    return with_bypass(plan, windows_bypass)


@dataclass(frozen=True)
class Services:
    """What the app needs from the core; every call may block (run it in a worker)."""

    list_disks: ListDisks
    watch_disks: WatchDisks | None
    inspect_image: InspectImage
    plan: PlanWrite
    run: RunWrite
    is_root: Callable[[], bool]
    # The ISO toolkit; defaults are the real core, so existing bundles need not name them.
    open_iso: OpenIso = _open_iso
    extract: Extract = _extract
    plan_backup: PlanBackup = _plan_backup
    run_backup: RunBackup = _run_backup
    plan_restore: PlanRestore = _plan_restore
    run_restore: RunRestore = _run_restore
    # Test a drive for fake capacity ("Test this drive").
    plan_probe: Callable[[str], Plan] = _plan_probe
    run_probe: Callable[..., ProbeResult] = _run_probe  # (plan, cancel=, notify=)
    # Several drives at once.
    plan_many: PlanMany = _plan_many
    run_many: RunMany = _run_many
    # The plan with "write only what changed" chosen the other way (no I/O: a confirmation
    # shows the plan that will run).
    with_delta: Callable[[Plan, bool], Plan] = _with_delta
    # ... and with other Windows 11 bypasses ticked (a file copy of a Windows installer)
    with_bypass: Callable[[Plan, tuple[str, ...]], Plan] = _with_bypass

    @classmethod
    def real(cls) -> Services:
        """The core modules, imported when first called."""
        return cls(
            list_disks=_list_disks,
            watch_disks=_watch_disks,
            inspect_image=_inspect_image,
            plan=_plan,
            run=_run,
            is_root=lambda: os.geteuid() == 0,
        )


def _list_disks(include_all: bool, image: str | None) -> list[Disk]:
    from usbwriter.devices import list_disks

    return list_disks(include_all=include_all, image=image)


def _watch_disks(cancel: threading.Event) -> Iterator[DiskEvent]:
    from usbwriter.devices import Watcher

    # Every disk is watched; the app filters what it shows, so "show all" can
    # change without restarting the watcher.
    return Watcher(include_all=True).iter_events(cancel)


#: The boot reports of the images inspected last (by path): a plan made while the file
#: is unchanged reuses its report instead of reading (decompressing) the image again.
_inspected: dict[str, Inspected] = {}
_inspected_lock = threading.Lock()
_INSPECTED_KEPT = 4


def _inspect_image(path: str) -> Mapping[str, Any]:
    from usbwriter.boot.report import inspect_once

    found = inspect_once(path)
    with _inspected_lock:
        _inspected.pop(path, None)
        _inspected[path] = found
        while len(_inspected) > _INSPECTED_KEPT:
            del _inspected[next(iter(_inspected))]
    report: Mapping[str, Any] = found.report.to_dict()
    return report


def _plan(request: Request, **kw: Any) -> Plan:
    from usbwriter.boot.report import reports_known
    from usbwriter.jobs import plan

    with _inspected_lock:
        known = list(_inspected.values())
    with reports_known(known):
        return plan(request, **kw)


def _run(plan: Plan, **kw: Any) -> Receipt:
    from usbwriter.jobs import run

    return run(plan, **kw)

"""Command line: argparse, errors to exit codes. The only module that prints.

Heavy modules (the engine, pyudev, pycdlib, Textual) are imported inside the
commands that use them, so `usbwriter --help` and the automation path start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from usbwriter import __version__
from usbwriter.errors import (
    EXIT_MISMATCH,
    EXIT_OK,
    BadInput,
    Cancelled,
    Refused,
    UsbWriterError,
)

if TYPE_CHECKING:
    from usbwriter.progress import Progress

SUBCOMMANDS = ("list", "inspect", "verify")

EPILOG = """\
commands:
  usbwriter [IMAGE] [--all]                       open the interactive app
  usbwriter --image IMG --device DEV [--yes]      write IMG to DEV and verify it
  usbwriter list [--all] [--json]                 list drives a user would flash
  usbwriter inspect IMAGE [--json]                say how an image will boot
  usbwriter verify --image IMG --device DEV       verify without writing

exit codes:
  0 written and verified   1 error (I/O, bad image)   2 usage
  3 verification mismatch  4 refused for safety        130 interrupted
"""


class _ArgParser(argparse.ArgumentParser):
    """argparse that raises BadInput (exit 2, one line) instead of exiting."""

    def error(self, message: str) -> Any:
        raise BadInput(f"{message} (see 'usbwriter --help')")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    json_mode = "--json" in args
    logging.basicConfig(level=logging.WARNING, format="usbwriter: %(message)s")
    try:
        if args and args[0] in SUBCOMMANDS:
            return _run_subcommand(args)
        return _run_main(args)
    except UsbWriterError as e:
        return _fail(e, json_mode)
    except KeyboardInterrupt:
        return _fail(Cancelled("interrupted"), json_mode)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: one line, never a traceback (unless asked for)
        if os.environ.get("USBWRITER_DEBUG"):
            raise
        from usbwriter.errors import InternalError

        return _fail(InternalError(f"internal error: {type(e).__name__}: {e}"), json_mode)


def _fail(e: UsbWriterError, json_mode: bool) -> int:
    message = " ".join(str(e).split()) or e.code
    if json_mode:
        obj: dict[str, Any] = {
            "event": "error",
            "code": e.code,
            "message": message,
            "exit_code": e.exit_code,
        }
        if hasattr(e, "offset"):
            obj["offset"] = e.offset
        _emit(obj)
    print(f"usbwriter: {message}", file=sys.stderr)
    return e.exit_code


def _emit(obj: dict[str, Any], out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(obj, sort_keys=False) + "\n")
    stream.flush()


# --- the main command: write (or open the app) ---------------------------------------


def _main_parser() -> argparse.ArgumentParser:
    p = _ArgParser(
        prog="usbwriter",
        description="Write a bootable image to a USB stick and verify it by reading it back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"usbwriter {__version__}")
    p.add_argument("image_arg", nargs="?", metavar="IMAGE", help="image for the app to preselect")
    p.add_argument("--image", "-i", help="the image to write (.iso, .img, .raw)")
    p.add_argument("--device", "-d", help="the whole drive to write, e.g. /dev/sdb")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-verify", action="store_true", help="skip reading the drive back")
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")
    p.add_argument(
        "--force", action="store_true", help="write an image that will not boot on BIOS or UEFI"
    )
    p.add_argument(
        "--unmount",
        action="store_true",
        help="unmount the drive's mounted partitions before writing",
    )
    p.add_argument("--all", action="store_true", help="app: also list non-eligible drives")
    return p


def _run_main(args: list[str]) -> int:
    ns = _main_parser().parse_args(args)
    if ns.device is None:
        if ns.image is not None and ns.image_arg is not None:
            raise BadInput("give the image once, as IMAGE or --image")
        if ns.json or ns.yes:
            raise BadInput("--device is required to write (see 'usbwriter --help')")
        return _run_app(ns.image or ns.image_arg, show_all=ns.all)
    image = ns.image or ns.image_arg
    if image is None:
        raise BadInput("--image is required with --device")
    return _write_command(
        image,
        ns.device,
        yes=ns.yes,
        verify=not ns.no_verify,
        json_mode=ns.json,
        force=ns.force,
        unmount=ns.unmount,
    )


def _run_app(image: str | None, *, show_all: bool) -> int:
    from usbwriter.tui import run_app

    code: int = run_app(image=image, show_all=show_all)
    return code


def _device_info(device: str, identity: Any) -> dict[str, Any]:
    """What the receipt says about the device: its pinned identity plus its names."""
    info: dict[str, Any] = {"path": device}
    if identity is not None and hasattr(identity, "to_dict"):
        info.update(identity.to_dict())
    try:
        from usbwriter.devices import disk_from_path

        disk = disk_from_path(device)
    except (UsbWriterError, OSError):
        return info
    for key in ("vendor", "model", "serial", "bus", "size", "description"):
        value = getattr(disk, key, None)
        if value not in (None, ""):
            info.setdefault(key, value)
    info["path"] = device
    return info


def _mountpoints(device: str) -> tuple[str, ...]:
    """Mountpoints of DEVICE's partitions when it is otherwise fit to write, else ()."""
    from usbwriter.devices import disk_from_path

    try:
        disk = disk_from_path(device)
    except (UsbWriterError, OSError):
        return ()
    return tuple(mp for _, mp in disk.mounted) if disk.eligible else ()


def _boot_verdict(image: str, json_mode: bool) -> tuple[bool, str]:
    """(bootable on some firmware, one-paragraph summary) for IMAGE."""
    from usbwriter.boot import inspect_image
    from usbwriter.errors import BadImage

    try:
        report = inspect_image(image, verify_checksum=False)
    except BadImage as e:
        return False, f"boot records could not be read: {e}"
    verdict = report.boot
    if json_mode:
        _emit({"event": "boot", **report.to_dict()["boot"]})
    words = {"yes": "yes", "no": "no", "firmware-dependent": "depends on the firmware"}
    lines = [
        f"Boot: BIOS {words.get(verdict.bios, verdict.bios)}, "
        f"UEFI {words.get(verdict.uefi, verdict.uefi)}"
    ]
    lines += [f"  - {r}" for r in verdict.reasons]
    return verdict.bios != "no" or verdict.uefi != "no", "\n".join(lines)


def _confirm(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


def _write_command(
    image: str, device: str, *, yes: bool, verify: bool, json_mode: bool, force: bool, unmount: bool
) -> int:
    from usbwriter.image import open_image
    from usbwriter.receipt import build_receipt, describe_device, render_receipt
    from usbwriter.safety import check_target
    from usbwriter.units import human_size

    with open_image(image) as src:
        size = src.size
    # Unmounting changes the system: on a terminal it waits for the confirmation.
    mounted = _mountpoints(device) if unmount and not yes else ()
    identity = None if mounted else check_target(device, image, unmount=unmount)
    dev_info = _device_info(device, identity)

    bootable, summary = _boot_verdict(image, json_mode)
    print(summary, file=sys.stderr)
    interactive = sys.stdin.isatty() and sys.stderr.isatty()
    if not bootable and not force and (yes or not interactive):
        raise Refused(f"{image}: the image will not boot on BIOS or UEFI; use --force to write it")
    if not yes:
        if not interactive:
            raise Refused(f"{device}: not on a terminal and no --yes: refusing to erase the drive")
        warn = "" if bootable else "The image will NOT boot on BIOS or UEFI. "
        then = f" ({', '.join(mounted)} will be unmounted first)" if mounted else ""
        question = (
            f"{warn}ALL DATA on {describe_device(dev_info)}{then} will be erased "
            f"and replaced by {image} ({human_size(size)}).\nType 'yes' to continue: "
        )
        if not _confirm(question):
            raise Cancelled("not confirmed; nothing was written")
    if identity is None:
        identity = check_target(device, image, unmount=True)
        dev_info = _device_info(device, identity)
    for mp in identity.unmounted:
        print(f"usbwriter: unmounted {mp}", file=sys.stderr)

    from usbwriter.verify import verify_device
    from usbwriter.writer import wipe_device_head, write_image

    with _cancel_on_signals() as cancel, _ProgressPrinter(json_mode) as show:
        result = write_image(image, device, identity=identity, progress=show, cancel=cancel)
        checked = None
        if verify:
            checked = verify_device(
                device, result.image_size, result.blake3, image=image, progress=show, cancel=cancel
            )
    receipt = build_receipt(result, checked, dev_info)
    if checked is not None and not checked.verified:
        wiped = wipe_device_head(device)
        receipt["wiped_first_mib"] = wiped
    if json_mode:
        _emit(receipt)
    else:
        print(render_receipt(receipt))
    if checked is not None and not checked.verified:
        what = (
            "the first MiB was wiped so the stick does not look bootable"
            if receipt["wiped_first_mib"]
            else "the first MiB could not be wiped"
        )
        print(
            f"usbwriter: {device} differs from {image} at byte {checked.mismatch_offset}; {what}",
            file=sys.stderr,
        )
        return EXIT_MISMATCH
    if not json_mode:
        print("It is safe to remove the drive.", file=sys.stderr)
    return EXIT_OK


@contextmanager
def _cancel_on_signals() -> Iterator[threading.Event]:
    """First Ctrl-C (or SIGTERM) asks the engine to stop; a second one interrupts at once."""
    cancel = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()

    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return
    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


class _ProgressPrinter:
    """Progress on stderr (a bar on a terminal, plain lines otherwise); NDJSON on stdout."""

    def __init__(self, json_mode: bool, stream: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last = 0.0
        self._last_phase = ""
        self._open_line = False

    def __enter__(self) -> Callable[[Progress], None]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._open_line:
            self.stream.write("\n")
            self.stream.flush()

    def __call__(self, p: Progress) -> None:
        from usbwriter.units import human_duration, human_rate, human_size

        now = time.monotonic()
        finished = p.done >= p.total
        interval = 0.25 if (self.json_mode or self.tty) else 2.0
        if p.phase == self._last_phase and not finished and now - self._last < interval:
            return
        self._last, self._last_phase = now, p.phase
        if self.json_mode:
            _emit(
                {
                    "event": "progress",
                    "phase": p.phase,
                    "done": p.done,
                    "total": p.total,
                    "rate": round(p.rate),
                    "eta": None if p.eta is None else round(p.eta, 1),
                }
            )
            return
        if p.phase == "sync":
            if self.tty:
                self.stream.write("\r\033[KFlushing the drive's cache...")
                self._open_line = True
                self.stream.flush()
            return
        pct = 100.0 * p.fraction
        label = {"write": "Writing", "sync": "Flushing", "verify": "Verifying"}.get(
            p.phase, p.phase
        )
        eta = "done" if finished else f"ETA {human_duration(p.eta)}"
        text = (
            f"{label:9} {pct:5.1f}%  {human_size(p.done)} / {human_size(p.total)}  "
            f"{human_rate(p.rate)}  {eta}"
        )
        if self.tty:
            width = 24
            filled = int(width * p.fraction)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r\033[K[{bar}] {text}")
            self._open_line = True
            if finished:
                self.stream.write("\n")
                self._open_line = False
        else:
            self.stream.write(f"usbwriter: {text}\n")
        self.stream.flush()


# --- subcommands ----------------------------------------------------------------------


def _run_subcommand(args: list[str]) -> int:
    name, rest = args[0], args[1:]
    if name == "list":
        p = _ArgParser(prog="usbwriter list", description="List drives a user would flash.")
        p.add_argument(
            "--all",
            action="store_true",
            help="also list every other whole disk, with why it is not eligible",
        )
        p.add_argument("--json", action="store_true", help="a JSON list of drives")
        ns = p.parse_args(rest)
        return _list_command(show_all=ns.all, json_mode=ns.json)
    if name == "inspect":
        p = _ArgParser(
            prog="usbwriter inspect",
            description="Read an image's boot records and say how it will boot.",
        )
        p.add_argument("image", metavar="IMAGE")
        p.add_argument("--json", action="store_true", help="the report as a JSON object")
        ns = p.parse_args(rest)
        return _inspect_command(ns.image, json_mode=ns.json)
    p = _ArgParser(
        prog="usbwriter verify",
        description="Compare a drive with an image, reading the drive with O_DIRECT.",
    )
    p.add_argument("--image", "-i", required=True)
    p.add_argument("--device", "-d", required=True)
    p.add_argument("--json", action="store_true", help="NDJSON progress and result on stdout")
    ns = p.parse_args(rest)
    return _verify_command(ns.image, ns.device, json_mode=ns.json)


def _list_command(*, show_all: bool, json_mode: bool) -> int:
    from usbwriter.devices import format_disk_table, list_disks

    disks = list_disks(include_all=show_all)
    if json_mode:
        print(json.dumps([d.to_dict() for d in disks], indent=2))
    elif disks:
        print(format_disk_table(disks))
    else:
        hint = "" if show_all else " (use --all to see every disk)"
        print(f"No removable or USB drives found{hint}.", file=sys.stderr)
    return EXIT_OK


def _inspect_command(image: str, *, json_mode: bool) -> int:
    from usbwriter.boot import inspect_image, render_text

    report = inspect_image(image)
    if json_mode:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        print(render_text(report))
    return EXIT_OK


def _verify_command(image: str, device: str, *, json_mode: bool) -> int:
    from usbwriter.image import open_image
    from usbwriter.units import human_duration, human_rate, human_size
    from usbwriter.verify import verify_device

    with open_image(image) as src:
        size = src.size
    with _cancel_on_signals() as cancel, _ProgressPrinter(json_mode) as show:
        r = verify_device(device, size, image=image, progress=show, cancel=cancel)
    if json_mode:
        _emit(
            {
                "event": "result",
                "verified": r.verified,
                "mismatch_offset": r.mismatch_offset,
                "page_cache_bypassed": r.page_cache_bypassed,
                "image": {"path": image, "size": size, "blake3": r.expected_blake3},
                "device": _device_info(device, None),
                "device_blake3": r.device_blake3,
                "verify_seconds": round(r.seconds, 3),
                "verify_mbps": round(r.rate / 1e6, 1),
            }
        )
    elif r.verified:
        print(
            f"Verified: {device} holds {image} ({human_size(size)}, blake3 {r.expected_blake3}),"
            f" read back with {'O_DIRECT' if r.page_cache_bypassed else 'the page cache'}"
            f" in {human_duration(r.seconds)} ({human_rate(r.rate)})"
        )
    if not r.verified:
        print(
            f"usbwriter: {device} differs from {image} at byte {r.mismatch_offset}", file=sys.stderr
        )
        return EXIT_MISMATCH
    return EXIT_OK

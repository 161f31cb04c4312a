"""Command line: one module a command, errors to exit codes in one place.

Heavy modules (the engine, pyudev, pycdlib, Textual) are imported inside the
commands that use them, so `usbwriter --help` and the automation path start fast.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys
import textwrap
from typing import Any, NoReturn

from usbwriter import __version__
from usbwriter.errors import EXIT_CODES, EXIT_OK, Cancelled, InternalError, UsbWriterError

log = logging.getLogger("usbwriter")

#: name -> module (usbwriter.cli.NAME) with DESCRIPTION, add_arguments(parser) and run(ns).
SUBCOMMANDS = {
    "list": "listing",
    "inspect": "inspect",
    "verify": "verify",
    "hash": "hash",
    "ls": "ls",
    "extract": "extract",
    "mkiso": "mkiso",
    "backup": "backup",
    "format": "format",
    "restore": "restore",
    "probe": "probe",
    "completion": "completion",
}

COMMANDS = """\
commands:
  usbwriter [IMAGE] [--all]                       open the interactive app
  usbwriter --image IMG --device DEV [--yes]      write IMG to DEV and verify it
  usbwriter list [--all] [--json]                 list drives a user would flash
  usbwriter inspect IMAGE [--json]                say how an image will boot
  usbwriter verify --image IMG --device DEV       verify without writing
  usbwriter hash IMAGE [--alg sha256 ...]         checksums of the file and the image inside
  usbwriter ls IMAGE [PATH] [-R] [--json]         list the files inside an ISO
  usbwriter extract IMAGE [PATH ...] -o DIR       copy files out of an ISO
  usbwriter mkiso DIR -o OUT.iso [--label L]      build an ISO from a folder
  {backup:<46}  read a stick or disc into an image
  usbwriter format DEVICE [--fs FS] [--label L]   make a stick a normal stick again
  usbwriter restore IMAGE DEVICE [--yes]          write a backup back onto a drive
  usbwriter probe DEVICE [--json]                 test a stick for fake capacity and speed
  usbwriter completion bash|zsh                   print a shell completion script
"""


def commands() -> str:
    """COMMANDS, the backup line naming the suffixes a backup compresses by (from
    usbwriter.compression, imported only when the text is shown)."""
    from usbwriter.compression import WRITABLE

    backup = f"usbwriter backup DEVICE -o IMAGE[{'|'.join(f.suffix for f in WRITABLE)}]"
    return COMMANDS.format(backup=backup)


def epilog() -> str:
    """What --help shows after the options: the commands and the exit codes."""
    codes = "\n".join(
        textwrap.fill(text, 88, initial_indent=f"  {code:<4}", subsequent_indent=" " * 6)
        for code, text in EXIT_CODES.items()
    )
    return f"{commands()}\nexit codes:\n{codes}\n"


class ArgParser(argparse.ArgumentParser):
    """argparse that raises BadInput (exit 2, one line) instead of exiting."""

    def error(self, message: str) -> Any:
        from usbwriter.errors import BadInput

        raise BadInput(f"{message} (see 'usbwriter --help')")


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="say more on stderr (-v: steps, -vv: debug)",
    )
    p.add_argument("--log-file", metavar="FILE", help="write a debug log to FILE")


def main_parser() -> argparse.ArgumentParser:
    from usbwriter.cli import write

    p = ArgParser(
        prog="usbwriter",
        description="Write a bootable image to a USB stick and verify it by reading it back.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"usbwriter {__version__}")
    write.add_arguments(p)
    _add_common(p)
    return p


def subcommand_parser(name: str) -> argparse.ArgumentParser:
    module = importlib.import_module(f"usbwriter.cli.{SUBCOMMANDS[name]}")
    p = ArgParser(prog=f"usbwriter {name}", description=module.DESCRIPTION)
    module.add_arguments(p)
    _add_common(p)
    return p


def _setup_logging(verbose: int, log_file: str | None) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if log_file else level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("usbwriter: %(message)s"))
    root.handlers = [handler]
    if log_file:
        from usbwriter.outputs import open_log

        fd = open_log(log_file)
        file_handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8"))
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(threadName)s %(name)s %(levelname)s %(message)s")
        )
        root.addHandler(file_handler)


def run() -> NoReturn:
    """The program: `main`, then exit without the interpreter's last sweep of every
    object left (25 ms after a write here); by then every descriptor and file is closed
    and the exit functions still run."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    from usbwriter.cli import output

    with output.interrupt_on_signals():
        try:
            return _main(sys.argv[1:] if argv is None else argv)
        finally:
            output.settle()


def _main(args: list[str]) -> int:
    json_mode = "--json" in args
    logging.basicConfig(level=logging.WARNING, format="usbwriter: %(message)s")
    module: Any = None
    try:
        if args and args[0] in SUBCOMMANDS:
            ns = subcommand_parser(args[0]).parse_intermixed_args(args[1:])
            module = importlib.import_module(f"usbwriter.cli.{SUBCOMMANDS[args[0]]}")
        else:
            parser = main_parser()
            ns, extras = parser.parse_known_args(args)
            near = _near_miss(args, ns, extras)
            if near is not None:
                raise near
            if extras:
                parser.error(f"unrecognized arguments: {' '.join(extras)}")
            from usbwriter.cli import write as module

            if not ns.device:
                _check_app_wanted(ns)
        try:
            _setup_logging(ns.verbose, ns.log_file)
        except OSError as e:
            from usbwriter.errors import os_error

            raise os_error(ns.log_file, e, "open the log file") from None
        code: int = module.run(ns)
        return code
    except UsbWriterError as e:
        log.debug("%s", e, exc_info=True)
        return fail(_interrupted(e, module), json_mode)
    except KeyboardInterrupt:
        return fail(_interrupted(Cancelled("interrupted"), module), json_mode)
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: one line, never a traceback (unless asked for)
        log.debug("internal error", exc_info=True)
        if os.environ.get("USBWRITER_DEBUG"):
            raise
        return fail(InternalError(f"internal error: {type(e).__name__}: {e}"), json_mode)


def _near_miss(args: list[str], ns: argparse.Namespace, extras: list[str]) -> Any:
    """The BadInput that shows the right form of a command line that is almost the
    write: `usbwriter IMG DEV` (an existing file, then a block device), `usbwriter
    write IMG DEV` (there is no write command) and `usbwriter IMG --device DEV` (the
    image without --image); None for anything else."""
    import shlex

    from usbwriter.errors import BadInput

    words = [] if ns.image_arg is None else [ns.image_arg]
    words += [e for e in extras if not e.startswith("-")]
    if len(words) != len(extras) + (ns.image_arg is not None):
        return None  # an unknown option: argparse's own error says which
    said_write = bool(words) and words[0] == "write" and not os.path.lexists("write")
    if said_write:
        words = words[1:]
    image, devices = ns.image, list(ns.device or [])
    if image is None and devices and len(words) == 1:
        image = words.pop()
    elif image is None and not devices and len(words) == 2:
        if not (said_write or (os.path.isfile(words[0]) and _is_block(words[1]))):
            return None
        image, devices = words[0], [words[1]]
        words = []
    elif not (said_write and image is not None and devices):
        return None
    if words:
        return None
    rest = _without(args, ["write"] if said_write else [], [image, *devices])
    right = ["usbwriter", "--image", image]
    for device in devices:
        right += ["--device", device]
    return BadInput(
        f"to write {image} to {', '.join(devices)}: {shlex.join(right + rest)}", path=image
    )


def _is_block(path: str) -> bool:
    import stat

    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except OSError:
        return False


def _without(args: list[str], words: list[str], values: list[str]) -> list[str]:
    """ARGS less --image/--device and their values, the first occurrence of each of
    WORDS, and the positional VALUES: the options the user gave besides."""
    rest: list[str] = []
    drop = [*words, *values]
    it = iter(args)
    for arg in it:
        if arg in ("--image", "-i", "--device", "-d"):
            next(it, None)
        elif arg.startswith(("--image=", "--device=")):
            continue
        elif arg in drop:
            drop.remove(arg)
        else:
            rest.append(arg)
    return rest


def _check_app_wanted(ns: argparse.Namespace) -> None:
    """Without --device the main parser opens the app: refuse a word that is neither a
    command nor a file (a typo, not an image to preselect), and refuse to start a
    full-screen app with no terminal to draw on (cron, CI, `</dev/null >log`)."""
    from usbwriter.errors import BadInput

    word = ns.image_arg
    if word is not None and not os.path.lexists(word):
        import difflib

        near = difflib.get_close_matches(word, SUBCOMMANDS, n=1, cutoff=0.6)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise BadInput(
            f"{word}: not a command, and no such file; {hint}(commands: "
            f"{', '.join(SUBCOMMANDS)}; see 'usbwriter --help')",
            path=word,
        )
    if ns.json or ns.yes:
        return  # write.run says that --device is missing
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # what a script that ran usbwriter wrongly is shown: the commands
        print(f"usage: usbwriter [COMMAND] [ARGS...]\n{commands()}", end="", file=sys.stderr)
        raise BadInput(
            "no command given, and no terminal for the interactive app: give a command, "
            "or --image and --device to write (see 'usbwriter --help')"
        )
    from usbwriter.cli.output import default_signals

    default_signals()  # the app handles (or not) SIGTERM and SIGHUP itself, as before


def _interrupted(e: UsbWriterError, module: Any) -> UsbWriterError:
    """An interruption's error, saying what it left: a write stopped while reading the
    drive back left it written but not verified; and what interrupted (SIGHUP...)."""
    from usbwriter.cli import output, write

    if not isinstance(e, Cancelled):
        return e
    if module is write and output.SESSION.phase == "verify":
        e = e.with_note(
            "the drive was written but not verified (usbwriter verify --image IMG --device "
            "DEV reads it back)"
        )
    words = output.signal_words()
    if words is not None:
        e = e.with_note(words)
    return e


def fail(e: UsbWriterError, json_mode: bool) -> int:
    """Print one error: a line on stderr, and a JSON object on stdout with --json."""
    from usbwriter.cli.output import emit, say

    if json_mode:
        emit({"event": "error", **e.to_dict()})
    say(f"usbwriter: {e.message}")
    return e.exit_code

"""Command line: argparse, errors to exit codes. The only module that prints."""

from __future__ import annotations

import argparse
import sys

from usbwriter import __version__
from usbwriter.errors import EXIT_INTERRUPTED, EXIT_USAGE, UsbWriterError

SUBCOMMANDS = ("list", "inspect", "verify")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args and args[0] in SUBCOMMANDS:
            return _run_subcommand(args)
        return _run_main(args)
    except UsbWriterError as e:
        print(f"usbwriter: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("usbwriter: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run_main(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="usbwriter")
    p.add_argument("--version", action="version", version=f"usbwriter {__version__}")
    p.parse_args(args)
    return EXIT_USAGE


def _run_subcommand(args: list[str]) -> int:
    return EXIT_USAGE

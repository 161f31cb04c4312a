"""usbwriter(1): the man page, rendered from the command line's argparse parsers.

scripts/make_manpage.py writes it to docs/usbwriter.1; a unit test keeps that file
equal to `render_manpage()`. The output depends on nothing but the parsers, the exit
codes and the package version, so it is the same on every machine.
"""

from __future__ import annotations

import argparse
import re
import textwrap

from usbwriter import __version__
from usbwriter.errors import EXIT_CODES

#: Options of the main parser that only the interactive app uses (by dest).
APP_DESTS = ("image_arg", "all")
#: Options the write command needs (by dest): shown without brackets in its synopsis.
WRITE_REQUIRED = ("image", "device")

ENVIRONMENT = {
    "USBWRITER_DEBUG": "when set (to anything but the empty string), an internal error "
    "(a bug) is raised with its traceback instead of reported in one line",
}

EXAMPLES = (
    ("List the drives you could write: USB sticks, SD cards, removable disks:", "usbwriter list"),
    ("List every disk, with why it is or is not eligible:", "usbwriter list --all --json"),
    (
        "Say whether an image will boot on BIOS and on UEFI, and why:",
        "usbwriter inspect debian.iso",
    ),
    ("Open the app with an image preselected:", "sudo usbwriter debian.iso"),
    (
        "Write an image to a drive, asking first (naming the drive), then verify it:",
        "sudo usbwriter --image debian.iso --device /dev/sdb",
    ),
    (
        "Write without asking, with NDJSON progress and the receipt on stdout:",
        "sudo usbwriter --image debian.iso --device /dev/sdb --yes --json",
    ),
    (
        "Verify a drive against an image without writing:",
        "sudo usbwriter verify -i debian.iso -d /dev/sdb",
    ),
    (
        "Test a stick for fake capacity and dropped writes, putting back what is overwritten:",
        "sudo usbwriter probe /dev/sdb",
    ),
    ("Enable shell completion in the current bash:", "source <(usbwriter completion bash)"),
)

SEE_ALSO = (("lsblk", 8), ("wipefs", 8), ("dd", 1))

#: Input lines of prose are wrapped to this width.
WIDTH = 78

_OPTION = re.compile(r"(?<![\w-])--?[A-Za-z0-9][\w-]*")


def commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """(subcommand name, parser) for every command: "" is the main parser."""
    from usbwriter.cli import SUBCOMMANDS, main_parser, subcommand_parser

    return [("", main_parser())] + [(name, subcommand_parser(name)) for name in SUBCOMMANDS]


def _chars(text: str) -> str:
    """Backslashes and non-ASCII characters as roff escapes."""
    text = text.replace("\\", "\\e")
    return "".join(c if c.isascii() else f"\\[u{ord(c):04X}]" for c in text)


def _line_start(text: str) -> str:
    """A leading dot or apostrophe would make the line a request: guard it."""
    return "\\&" + text if text.startswith((".", "'")) else text


def escape(text: str) -> str:
    """Prose: roff-safe, with the hyphens of options (--image, -v) as minus signs.

    Wrapped at spaces into lines of at most WIDTH characters where it can be.
    """
    text = _OPTION.sub(lambda m: m.group().replace("-", "\\-"), _chars(text))
    lines = [
        wrapped
        for line in text.split("\n")
        for wrapped in textwrap.wrap(line, WIDTH, break_long_words=False, break_on_hyphens=False)
        or [""]
    ]
    return "\n".join(_line_start(line) for line in lines)


def literal(text: str) -> str:
    """A command or a value as typed: every hyphen a minus sign, so it can be copied."""
    text = _chars(text).replace("-", "\\-")
    return "\n".join(_line_start(line) for line in text.split("\n"))


def _quote(text: str) -> str:
    """A macro argument, in double quotes."""
    return '"' + text.replace('"', "\\(dq") + '"'


def _bold(text: str) -> str:
    return f"\\fB{literal(text)}\\fR"


def _italic(text: str) -> str:
    return f"\\fI{literal(text)}\\fR"


def _value(action: argparse.Action) -> str:
    """The value an action takes, formatted: IMAGE, bash|zsh; empty for a flag."""
    if action.choices is not None:
        return "|".join(_bold(str(c)) for c in action.choices)
    if isinstance(action.metavar, str):
        return _italic(action.metavar)
    if action.option_strings:
        return _italic(action.dest.upper())
    return _italic(action.dest)


def _arguments(action: argparse.Action) -> str:
    """The value part of an option or a positional argument, with its nargs."""
    value = _value(action)
    nargs = action.nargs
    if nargs == 0:
        return ""
    if nargs is None:
        return value
    if nargs == "?":
        return f"[{value}]"
    if nargs == "*":
        return f"[{value} ...]"
    if nargs == "+":
        return f"{value} [{value} ...]"
    if isinstance(nargs, int):
        return " ".join([value] * nargs)
    return value


def _documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.help != argparse.SUPPRESS]


def _flags(action: argparse.Action) -> list[str]:
    """Short options first, then long ones."""
    return sorted(action.option_strings, key=lambda s: (s.startswith("--"), s))


def _usage_item(action: argparse.Action, required: bool) -> str:
    """One element of a synopsis: [--json], --image IMAGE, [IMAGE]."""
    if not action.option_strings:
        return _arguments(action)
    long = [s for s in action.option_strings if s.startswith("--")]
    item = _bold((long or action.option_strings)[0])
    value = _arguments(action)
    if value:
        item += "\\~" + value  # an option and its value on the same line
    return item if required else f"[{item}]"


def _synopsis_line(prog: str, actions: list[argparse.Action], required: tuple[str, ...]) -> str:
    """.SY takes the program's name; a subcommand's name is the first item after it."""
    program, *sub = prog.split()
    items = [_bold(word) for word in sub]
    items += [_usage_item(a, a.required or a.dest in required) for a in actions]
    return f".SY {program}\n" + "\n".join(items) + "\n.YS"


def _synopsis(cmds: list[tuple[str, argparse.ArgumentParser]]) -> list[str]:
    out = [".SH SYNOPSIS"]
    for name, parser in cmds:
        actions = [
            a
            for a in _documented(parser)
            if not isinstance(a, argparse._HelpAction | argparse._VersionAction)
        ]
        if name:
            out.append(_synopsis_line(parser.prog, actions, ()))
            continue
        common = [a for a in actions if a.dest in ("verbose", "log_file")]
        app = [a for a in actions if a.dest in APP_DESTS]
        write = [a for a in actions if a.dest not in APP_DESTS and a not in common]
        out.append(_synopsis_line(parser.prog, app + common, ()))
        out.append(_synopsis_line(parser.prog, write + common, WRITE_REQUIRED))
        out.append(f".SY {parser.prog}\n{_bold('--help')} | {_bold('--version')}\n.YS")
    return out


def _description(cmds: list[tuple[str, argparse.ArgumentParser]]) -> list[str]:
    main = cmds[0][1]
    out = [
        ".SH DESCRIPTION",
        escape(main.description or ""),
        escape(
            "Without --device, on a terminal, usbwriter opens the interactive app (IMAGE, if "
            "given, is preselected); with no terminal (stdin or stdout redirected, as under "
            "cron or CI) it prints the usage and exits 2, and a word that is neither a command "
            "nor an existing file is a usage error that names the commands (and the nearest "
            "one, for a typo). With --image and --device, it checks that the drive is safe to "
            "write, says whether the image will boot on BIOS and on UEFI, asks for "
            "confirmation, writes the image, and reads the drive back, bypassing the page "
            "cache, to compare it with the image."
        ),
        ".PP",
        "The other commands:",
    ]
    for name, parser in cmds[1:]:
        out += [".TP", _bold(parser.prog), escape(parser.description or name)]
    return out


def _options(cmds: list[tuple[str, argparse.ArgumentParser]]) -> list[str]:
    out = [".SH OPTIONS"]
    for name, parser in cmds:
        title = parser.prog if name else f"{parser.prog} (the app, and writing)"
        out += [f".SS {_quote(literal(title))}"]
        if name:
            out.append(escape(parser.description or ""))
        for action in _documented(parser):
            if action.option_strings:
                value = _arguments(action)
                head = ", ".join(
                    _bold(flag) + (" " + value if value else "") for flag in _flags(action)
                )
            else:
                head = _arguments(action)
            out += [".TP", head, escape(action.help or "")]
    return out


def _exit_status() -> list[str]:
    out = [".SH EXIT STATUS"]
    for code, text in EXIT_CODES.items():
        out += [".TP", f"\\fB{code}\\fR", escape(text)]
    return out


def _environment() -> list[str]:
    out = [".SH ENVIRONMENT"]
    for name, text in ENVIRONMENT.items():
        out += [".TP", _bold(name), escape(text)]
    return out


def _examples() -> list[str]:
    out = [".SH EXAMPLES"]
    for text, command in EXAMPLES:
        out += [".PP", escape(text), ".PP", ".RS 4", ".EX", literal(command), ".EE", ".RE"]
    del out[1]  # no paragraph break right after the heading
    return out


def _see_also() -> list[str]:
    refs = [f".BR {page} ({section})" for page, section in SEE_ALSO]
    refs = [ref + "," for ref in refs[:-1]] + refs[-1:]
    return [
        ".SH SEE ALSO",
        *refs,
        ".PP",
        escape(
            "The documentation in the source's docs directory: cli.md (the commands, the "
            "receipt, the exit codes), drives.md (which drives are offered and refused), "
            "boot-report.md (how the boot verdict is reached)."
        ),
    ]


def render_manpage() -> str:
    """The whole page, roff for man(7), section 1."""
    cmds = commands()
    main = cmds[0][1]
    summary = (main.description or "").rstrip(".")
    summary = summary[:1].lower() + summary[1:]
    lines = [
        '.\\" usbwriter(1), generated from the command line parsers by scripts/make_manpage.py.',
        '.\\" Do not edit: change the parsers and run the script again.',
        f'.TH USBWRITER 1 "" {_quote("usbwriter " + __version__)} "User Commands"',
        ".SH NAME",
        f"usbwriter \\- {escape(summary)}",
        *_synopsis(cmds),
        *_description(cmds),
        *_options(cmds),
        *_exit_status(),
        *_environment(),
        *_examples(),
        *_see_also(),
    ]
    return "\n".join(lines) + "\n"

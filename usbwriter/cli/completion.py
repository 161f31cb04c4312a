"""usbwriter completion bash|zsh: a shell completion script, generated from the parsers.

The script completes the subcommands, each command's options, file names after
--image, --log-file and an IMAGE argument, whole block devices after --device, and
the choices of an argument that has them. zsh runs the same script through its
bash compatibility layer (bashcompinit).
"""

from __future__ import annotations

import argparse
import shlex
import sys

from usbwriter.errors import EXIT_OK

DESCRIPTION = "Print a shell completion script for bash or zsh."

SHELLS = ("bash", "zsh")

#: Options (by dest) whose value is a drive; every other option value is a file name.
DEVICE_DESTS = ("device",)

_HELPERS = r"""_usbwriter_files() {
    local f
    while IFS= read -r f; do
        COMPREPLY+=("$f")
    done < <(compgen -f -- "$1")
}

_usbwriter_devices() {
    # Whole block devices; anything not under /dev is completed as a file name
    # (a regular file is a target with --to-file).
    if [[ /dev/ != "$1"* && $1 != /dev/* ]]; then
        _usbwriter_files "$1"
        return
    fi
    local d
    for d in /dev/sd* /dev/mmcblk* /dev/nvme*n* /dev/loop* /dev/disk/by-id/*; do
        [[ -b $d && $d == "$1"* ]] || continue
        case $d in
            /dev/disk/by-id/*-part[0-9]*) continue ;;
            /dev/disk/*) ;;
            /dev/mmcblk*boot[0-9]*) continue ;;
            /dev/loop*) [[ -e /sys/class/block/${d##*/}/loop ]] || continue ;;
            *) [[ -e /sys/class/block/${d##*/}/partition ]] && continue ;;
        esac
        COMPREPLY+=("$d")
    done
}
"""

_MAIN = r"""_usbwriter() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev='' cmd='' opts=''
    COMPREPLY=()
    (( COMP_CWORD > 0 )) && prev=${COMP_WORDS[COMP_CWORD-1]}
    # bash splits --image=FILE into --image, = and FILE
    if [[ $cur == = ]]; then
        cur=''
    elif [[ $prev == = ]] && (( COMP_CWORD > 1 )); then
        prev=${COMP_WORDS[COMP_CWORD-2]}
    fi
    # Only the first argument names a subcommand.
    if (( COMP_CWORD > 1 )); then
        case ${COMP_WORDS[1]} in
            %(names)s) cmd=${COMP_WORDS[1]} ;;
        esac
    fi
    case $cmd in
%(commands)s    esac
    return 0
}
"""


def commands() -> list[tuple[str, argparse.ArgumentParser]]:
    """(subcommand name, parser) for every command: "" is the main parser."""
    from usbwriter.cli import SUBCOMMANDS, main_parser, subcommand_parser

    return [("", main_parser())] + [(name, subcommand_parser(name)) for name in SUBCOMMANDS]


def _words(words: list[str]) -> str:
    return shlex.quote(" ".join(words))


def _complete_value(action: argparse.Action) -> str:
    """The shell code that completes one value of this argument into COMPREPLY."""
    if action.choices is not None:
        choices = _words([str(c) for c in action.choices])
        return f'COMPREPLY+=($(compgen -W {choices} -- "$cur"))'
    if action.dest in DEVICE_DESTS:
        return '_usbwriter_devices "$cur"'
    return '_usbwriter_files "$cur"'


def _command_case(name: str, parser: argparse.ArgumentParser, subcommands: list[str]) -> str:
    """One branch of the `case $cmd`: option values, options, then positional arguments."""
    pad = " " * 12
    lines = [f"        {shlex.quote(name)})", f"{pad}case $prev in"]
    valued: dict[str, list[str]] = {}
    options: list[str] = []
    for action in parser._actions:
        options += action.option_strings
        if action.option_strings and action.nargs != 0:
            valued.setdefault(_complete_value(action), []).extend(action.option_strings)
    for code, flags in valued.items():
        lines.append(f"{pad}    {'|'.join(flags)}) {code}; return 0 ;;")
    lines += [f"{pad}esac", f"{pad}opts={_words(options)}"]
    lines += [
        f"{pad}if [[ $cur == -* ]]; then",
        f'{pad}    COMPREPLY+=($(compgen -W "$opts" -- "$cur"))',
    ]
    lines += [f"{pad}    return 0", f"{pad}fi"]
    if subcommands:
        lines.append(
            f"{pad}(( COMP_CWORD == 1 )) && "
            f'COMPREPLY+=($(compgen -W {_words(subcommands)} -- "$cur"))'
        )
    for code in dict.fromkeys(_complete_value(a) for a in parser._actions if not a.option_strings):
        lines.append(f"{pad}{code}")
    lines.append(f"{pad};;")
    return "\n".join(lines) + "\n"


def bash_script() -> str:
    from usbwriter import __version__

    cmds = commands()
    subcommands = [name for name, _ in cmds if name]
    cases = "".join(
        _command_case(name, parser, [] if name else subcommands) for name, parser in cmds
    )
    body = _MAIN % {"names": "|".join(subcommands), "commands": cases}
    return (
        f"# bash completion for usbwriter {__version__}, from 'usbwriter completion bash'.\n"
        "# Enable it with: source <(usbwriter completion bash)\n\n"
        + _HELPERS
        + "\n"
        + body
        + "\ncomplete -o filenames -F _usbwriter usbwriter\n"
    )


def zsh_script() -> str:
    """The bash script, loaded through zsh's bashcompinit (which needs compinit)."""
    return (
        "# zsh completion for usbwriter, from 'usbwriter completion zsh'.\n"
        "# Enable it with: source <(usbwriter completion zsh)\n"
        "(( ${+functions[compdef]} )) || { autoload -Uz compinit && compinit; }\n"
        "autoload -Uz bashcompinit && bashcompinit\n\n" + bash_script()
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def run(ns: argparse.Namespace) -> int:
    sys.stdout.write(bash_script() if ns.shell == "bash" else zsh_script())
    return EXIT_OK

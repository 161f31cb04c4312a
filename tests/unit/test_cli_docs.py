"""The man page and the shell completion, both generated from the argparse parsers."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from usbwriter.cli import SUBCOMMANDS, main
from usbwriter.cli.manpage import commands, escape, literal, render_manpage
from usbwriter.errors import EXIT_CODES

ROOT = Path(__file__).resolve().parents[2]
MANPAGE = ROOT / "docs" / "usbwriter.1"
REQUESTS = ('\\"', "TH", "SH", "SS", "SY", "YS", "TP", "PP", "RS", "RE", "EX", "EE", "BR")


def options(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings]


# The man page


def test_committed_manpage_is_current() -> None:
    assert MANPAGE.read_text(encoding="utf-8") == render_manpage(), (
        "docs/usbwriter.1 is stale: run scripts/make_manpage.py and commit the result"
    )


def test_every_option_and_argument_is_in_the_manpage() -> None:
    page = render_manpage()
    cmds = commands()
    assert [name for name, _ in cmds] == ["", *SUBCOMMANDS]
    for name, parser in cmds:
        section = page.split(f'.SS "{literal(parser.prog)}', 1)[1].split("\n.SS ", 1)[0]
        for action in parser._actions:
            for flag in action.option_strings:
                assert f"\\fB{literal(flag)}\\fR" in section, (name, flag)
            if not action.option_strings and action.choices is not None:
                for choice in action.choices:
                    assert f"\\fB{choice}\\fR" in section, (name, action.dest, choice)
            elif not action.option_strings:
                metavar = action.metavar if isinstance(action.metavar, str) else action.dest
                assert f"\\fI{literal(metavar)}\\fR" in section, (name, action.dest)
            help_text = escape(action.help or "")
            assert help_text.replace("\n", " ") in section.replace("\n", " "), (name, help_text)
    for code in EXIT_CODES:
        assert f".TP\n\\fB{code}\\fR\n" in page


def test_manpage_sections_and_header() -> None:
    page = render_manpage()
    assert page.startswith('.\\" ')
    assert '\n.TH USBWRITER 1 "" "usbwriter ' in page
    headings = [line for line in page.splitlines() if line.startswith(".SH ")]
    assert headings == [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH EXIT STATUS",
        ".SH ENVIRONMENT",
        ".SH EXAMPLES",
        ".SH SEE ALSO",
    ]
    for name in SUBCOMMANDS:
        assert f".SY usbwriter\n\\fB{name}\\fR\n" in page


def test_manpage_has_no_stray_requests_or_unescaped_text() -> None:
    page = render_manpage()
    for line in page.splitlines():
        assert line.isascii(), line
        if line.startswith("."):
            assert line[1:3] in REQUESTS, line
        else:
            assert not line.startswith("'"), line
        assert "--" not in line, line


def test_escape() -> None:
    assert escape(".starts with a dot") == "\\&.starts with a dot"
    assert escape("'quoted") == "\\&'quoted"
    assert escape("a\\b") == "a\\eb"
    assert escape("use --to-file, -v or -vv; read-only, Ctrl-C") == (
        "use \\-\\-to\\-file, \\-v or \\-vv; read-only, Ctrl-C"
    )
    assert escape("naïve") == "na\\[u00EF]ve"
    assert literal("usbwriter --image x-y.iso") == "usbwriter \\-\\-image x\\-y.iso"
    long = escape(" ".join(["word"] * 40))
    assert all(len(line) <= 78 for line in long.splitlines())


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_manpage_formats_without_warnings() -> None:
    p = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"],
        input=render_manpage(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr


@pytest.mark.skipif(shutil.which("mandoc") is None, reason="mandoc is not installed")
def test_manpage_passes_mandoc_lint() -> None:
    p = subprocess.run(
        ["mandoc", "-T", "lint", "-W", "warning"],
        input=render_manpage(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # The date is left out on purpose: the page depends only on the version.
    problems = [
        line for line in (p.stdout + p.stderr).splitlines() if line and "missing date" not in line
    ]
    assert problems == []


# Shell completion


def completion_script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["completion", shell]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n")
    return out


@pytest.fixture
def bash_script(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    path = tmp_path / "usbwriter.bash"
    path.write_text(completion_script("bash", capsys))
    return path


def complete(script: Path, words: list[str], cwd: Path) -> list[str]:
    """Source the script in bash, set COMP_WORDS and COMP_CWORD, run the function."""
    code = (
        f"source {shlex.quote(str(script))}\n"
        f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        '_usbwriter usbwriter "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    p = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return [line for line in p.stdout.splitlines() if line]


def test_bash_completion_is_valid_bash(bash_script: Path) -> None:
    p = subprocess.run(["bash", "-n", str(bash_script)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(
        ["bash", "--norc", "-c", f"source {shlex.quote(str(bash_script))}; complete -p usbwriter"],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert "-F _usbwriter usbwriter" in p.stdout


def test_bash_completes_subcommands_and_options(bash_script: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert complete(bash_script, ["usbwriter", "ver"], empty) == ["verify"]
    assert complete(bash_script, ["usbwriter", "--dev"], empty) == ["--device"]
    assert complete(bash_script, ["usbwriter", "comp"], empty) == ["completion"]
    assert complete(bash_script, ["usbwriter", "verify", "--im"], empty) == ["--image"]
    assert complete(bash_script, ["usbwriter", "completion", ""], empty) == ["bash", "zsh"]
    # Only the first argument names a subcommand.
    assert complete(bash_script, ["usbwriter", "--all", "ver"], empty) == []


def test_bash_completes_every_option_of_every_command(bash_script: Path, tmp_path: Path) -> None:
    for name, parser in commands():
        words = ["usbwriter", name, "-"] if name else ["usbwriter", "-"]
        assert sorted(complete(bash_script, words, tmp_path)) == sorted(options(parser)), name


def test_bash_completes_image_files(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "debian.iso").touch()
    (tmp_path / "debs").mkdir()
    (tmp_path / "other.img").touch()
    for words in (
        ["usbwriter", "--image", "deb"],
        ["usbwriter", "-i", "deb"],
        ["usbwriter", "--image", "=", "deb"],  # --image=deb, as bash splits it
        ["usbwriter", "deb"],
        ["usbwriter", "verify", "--image", "deb"],
        ["usbwriter", "inspect", "deb"],
    ):
        assert sorted(complete(bash_script, words, tmp_path)) == ["debian.iso", "debs"], words


def test_bash_completes_whole_block_devices(bash_script: Path, tmp_path: Path) -> None:
    for words in (
        ["usbwriter", "--device", ""],
        ["usbwriter", "-d", "/dev/"],
        ["usbwriter", "verify", "--device", "/d"],
    ):
        for path in complete(bash_script, words, tmp_path):
            assert path.startswith(
                ("/dev/sd", "/dev/mmcblk", "/dev/nvme", "/dev/loop", "/dev/disk/")
            ), path
            assert stat.S_ISBLK(os.stat(path).st_mode), path
            name = os.path.basename(os.path.realpath(path))
            assert not os.path.exists(f"/sys/class/block/{name}/partition"), path
    # Not under /dev: a file name (a regular file target with --to-file).
    (tmp_path / "vm.img").touch()
    assert complete(bash_script, ["usbwriter", "-d", "./v"], tmp_path) == ["./vm.img"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_through_bashcompinit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = tmp_path / "usbwriter.zsh"
    script.write_text(completion_script("zsh", capsys))
    # bashcompinit's compgen runs the function as bash would (arrays from 0) and
    # prints what it put in COMPREPLY; zsh itself filters by the typed prefix.
    code = (
        "autoload -Uz compinit && compinit -u -D\n"
        f"source {shlex.quote(str(script))}\n"
        "COMP_WORDS=(usbwriter --dev); COMP_CWORD=1\n"
        "compgen -F _usbwriter -- --dev\n"
    )
    p = subprocess.run(
        ["zsh", "-f", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
    )
    assert p.returncode == 0, p.stderr
    assert "--device" in p.stdout.split()

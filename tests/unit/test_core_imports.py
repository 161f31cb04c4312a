"""The core never imports Textual, and the command line's write path does not load it."""

from __future__ import annotations

import ast
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import usbwriter

PACKAGE = Path(usbwriter.__file__).parent
UI_PACKAGES = ("textual", "rich")


def core_modules() -> list[str]:
    """Every module of usbwriter except the TUI package."""
    names = ["usbwriter"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="usbwriter."):
        if info.name.startswith(("usbwriter.tui", "usbwriter.__main__")):
            continue
        names.append(info.name)
    return sorted(names)


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, LC_ALL="C"),
        stdin=subprocess.DEVNULL,
    )


def test_core_sources_do_not_import_the_ui() -> None:
    """No textual or rich anywhere in the core; usbwriter.tui only lazily, from the CLI."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "tui" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text(), str(path))
        top_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            lazy_app = path.parent.name == "cli" and id(node) not in top_level
            for name in names:
                top = name.split(".")[0]
                if top in UI_PACKAGES or (name.startswith("usbwriter.tui") and not lazy_app):
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {name}")
    assert not offenders, offenders


def test_importing_the_core_loads_no_textual() -> None:
    modules = core_modules()
    assert {"usbwriter.cli", "usbwriter.engine.write", "usbwriter.engine.readback"} <= set(modules)
    code = (
        "import importlib, json, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{UI_PACKAGES!r} or m.startswith('usbwriter.tui'))))\n"
    )
    p = python(code, *modules)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


#: what a plain write never needs: the app, and the file-copy mode's modules (and the
#: XML module its answer file uses, which loads urllib and http: 15 ms of start-up)
NOT_FOR_A_RAW_WRITE = ("usbwriter.tui", "usbwriter.windows", "usbwriter.jobs.files", "xml.sax")


def test_cli_write_path_loads_no_textual(tmp_path: Path) -> None:
    """Run the real write and verify (to a regular file target) and look at sys.modules:
    nothing of the app, nor of file-copy mode."""
    image = tmp_path / "image.img"
    image.write_bytes(os.urandom(1 << 20) + b"tail")
    target = tmp_path / "disk.img"
    target.write_bytes(b"")
    code = (
        "import json, sys\n"
        "from usbwriter.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{UI_PACKAGES!r} or m.startswith({NOT_FOR_A_RAW_WRITE!r}))\n"
        "print(json.dumps({'exit': code, 'loaded': loaded}))\n"
    )
    p = python(
        code,
        "--image",
        str(image),
        "--device",
        str(target),
        "--to-file",
        "--yes",
        "--force",
        "--no-verify",
    )
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert last["loaded"] == [], last
    assert last["exit"] == 0, p.stderr
    assert target.read_bytes()[: image.stat().st_size] == image.read_bytes()


def test_cli_help_and_list_load_no_textual() -> None:
    for argv in (["--version"], ["list", "--json"]):
        code = (
            "import json, sys\n"
            "from usbwriter.cli import main\n"
            "try:\n"
            "    code = main(sys.argv[1:])\n"
            "except SystemExit as e:\n"
            "    code = e.code\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{UI_PACKAGES!r})\n"
            "print(json.dumps({'exit': code, 'loaded': loaded}))\n"
        )
        p = python(code, *argv)
        last = json.loads(p.stdout.strip().splitlines()[-1])
        assert last["loaded"] == [], (argv, last)

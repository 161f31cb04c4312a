"""A file browser that lists folders and images only."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Footer, Label, Static

from usbwriter.tui.format import is_image_name


def shown(paths: Iterable[Path], keep: Callable[[Path], bool]) -> list[Path]:
    """PATHS that are not hidden and that KEEP accepts (unreadable ones left out)."""
    out = []
    for path in paths:
        if path.name.startswith("."):
            continue
        try:
            if keep(path):
                out.append(path)
        except OSError:
            continue
    return out


class ImageTree(DirectoryTree):
    """Folders (not hidden) and files whose names look like disk images."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return shown(paths, lambda p: p.is_dir() or is_image_name(p.name))


class PathBrowser(ModalScreen[str | None]):
    """A dialog around a DirectoryTree: Backspace (or Parent folder) goes up, Escape
    cancels; subclasses compose the tree and say what is chosen."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("backspace", "parent", "Parent folder"),
    ]

    def __init__(self, start: Path) -> None:
        super().__init__(classes="dialog-screen")
        self.start = start

    def action_parent(self) -> None:
        tree = self.query_one(DirectoryTree)
        current = Path(tree.path)
        if current.parent != current:
            tree.path = current.parent
            self.query_one("#browser-folder", Static).update(str(current.parent))

    def action_cancel(self) -> None:
        self.dismiss(None)


class FileBrowser(PathBrowser):
    """Pick an image; returns its path, or None."""

    AUTO_FOCUS = "#tree"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="browser"):
            yield Label("Choose an image", id="dialog-title", markup=False)
            yield Static(str(self.start), id="browser-folder", markup=False)
            yield ImageTree(self.start, id="tree")
            yield Static(
                ".iso .img .raw and compressed images; Enter opens, Backspace goes up",
                id="browser-hint",
                markup=False,
            )
            with Horizontal(id="dialog-buttons"):
                yield Button("Parent folder", id="parent")
                yield Button("Cancel", id="cancel", variant="primary")
        yield Footer()  # the dialog's own keys, not the screen's below

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "parent":
            self.action_parent()
        else:
            self.dismiss(None)

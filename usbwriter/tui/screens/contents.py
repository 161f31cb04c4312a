"""The files inside an ISO: a tree to browse and mark, and where to extract them.

The image is opened and its file list read in a thread (``IsoImage``: raw or
compressed); folders are added to the tree as they are expanded. Space marks a file
or folder (a folder with all it holds); x extracts the marked entries, a everything,
into the folder typed below the tree (or picked), on the extraction screen.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static, Tree
from textual.widgets.tree import TreeNode

from usbwriter.tui import suggest
from usbwriter.tui.format import one_line
from usbwriter.tui.messages import ContentsRead
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.iso.contents import Contents, Entry, IsoImage
    from usbwriter.tui.services import Services

MARK = "✔ "
NO_MARK = "  "
NAME_WIDTH = 40  # names are padded to their folder's longest, up to this


def entry_label(entry: Entry, width: int, marked: bool, items: int = 0) -> Text:
    """'✔ name        12.0 KiB  2024-05-01 10:00' for the tree; a folder's ITEMS in place
    of its size."""
    from usbwriter.iso.contents import printable

    name = printable(entry.name) + ("/" if entry.type == "dir" else "")
    text = Text(MARK if marked else NO_MARK, style="bold green" if marked else "")
    text.append(name.ljust(width), style="bold" if entry.type == "dir" else "")
    if entry.type == "symlink":
        text.append(f"  -> {printable(entry.target or '')}", style="dim")
        return text
    size = (
        f"{items} item{'' if items == 1 else 's'}"
        if entry.type == "dir"
        else human_size(entry.size)
    )
    when = entry.mtime.strftime("%Y-%m-%d %H:%M") if entry.mtime is not None else "-"
    text.append(f"  {size:>10}  {when}", style="dim")
    return text


class ContentsTree(Tree["Entry"]):
    """An ISO's folders and files; space marks, Enter opens a folder."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Select"),
    ]

    class MarksChanged(Message):
        """The set of marked entries changed."""

    def __init__(self) -> None:
        super().__init__(Text("Reading the image…"), id="contents-tree")
        self.contents: Contents | None = None
        self.marked: set[tuple[str, ...]] = set()
        self.widths: dict[tuple[str, ...], int] = {}  # a folder's name column
        self.loaded: set[tuple[str, ...]] = set()
        self.show_root = False
        self.guide_depth = 3

    def load(self, contents: Contents) -> None:
        self.contents = contents
        self.root.data = contents.root
        self.root.remove_children()
        self._fill(self.root)
        self.root.expand()
        self.cursor_line = 0

    def _fill(self, node: TreeNode[Entry]) -> None:
        entry = node.data
        if self.contents is None or entry is None or entry.parts in self.loaded:
            return
        self.loaded.add(entry.parts)
        kids = self.contents.children.get(entry.parts, [])
        width = min(NAME_WIDTH, max((len(k.name) + (k.type == "dir") for k in kids), default=0))
        self.widths[entry.parts] = width
        for kid in kids:
            label = self.label_of(kid, width)
            if kid.type == "dir":
                node.add(label, data=kid, allow_expand=bool(self.contents.children.get(kid.parts)))
            else:
                node.add_leaf(label, data=kid)

    def label_of(self, entry: Entry, width: int) -> Text:
        items = len(self.contents.children.get(entry.parts, ())) if self.contents else 0
        return entry_label(entry, width, self.is_marked(entry.parts), items)

    def render_label(self, node: TreeNode[Entry], base_style: Style, style: Style) -> Text:
        """Files line up with folders: a blank where a folder has its ▶."""
        text = super().render_label(node, base_style, style)
        if not node.allow_expand and node is not self.root:
            text = Text.assemble(Text(" " * len(self.ICON_NODE), style=base_style), text)
        return text

    def on_tree_node_expanded(self, event: Tree.NodeExpanded[Entry]) -> None:
        event.stop()
        self._fill(event.node)

    def is_marked(self, parts: tuple[str, ...]) -> bool:
        """Marked itself, or inside a marked folder."""
        return any(parts[:i] in self.marked for i in range(1, len(parts) + 1))

    def action_toggle_mark(self) -> None:
        node = self.cursor_node
        if node is None or node.data is None or not node.data.parts:
            return
        self.toggle(node)

    def toggle(self, node: TreeNode[Entry]) -> None:
        entry = node.data
        assert entry is not None
        parts = entry.parts
        if parts not in self.marked and self.is_marked(parts):
            self.app.bell()
            self.notify("It is inside a marked folder: unmark the folder first.", markup=False)
            return
        if parts in self.marked:
            self.marked.discard(parts)
        else:
            self.marked = {p for p in self.marked if p[: len(parts)] != parts} | {parts}
        self._relabel(node)
        self.post_message(self.MarksChanged())

    def _relabel(self, node: TreeNode[Entry]) -> None:
        entry = node.data
        if entry is not None and entry.parts:
            width = self.widths.get(entry.parts[:-1], NAME_WIDTH)
            node.set_label(self.label_of(entry, width))
        for child in node.children:
            self._relabel(child)

    def marked_paths(self) -> list[str]:
        return ["/" + "/".join(p) for p in sorted(self.marked)]

    def marked_size(self) -> tuple[int, int]:
        """(files, bytes) below the marks."""
        if self.contents is None:
            return 0, 0
        files = size = 0
        for parts in self.marked:
            top = self.contents.by_path.get(parts)
            if top is None:
                continue
            for e in [top, *self.contents.walk(top)] if top.type == "dir" else [top]:
                if e.type == "file":
                    files += 1
                    size += e.size
        return files, size


class ContentsScreen(Screen[None]):
    """Browse IMAGE's files; extract the marked ones, or all, into a folder."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("x", "extract_marked", "Extract marked"),
        Binding("a", "extract_all", "Extract all"),
        Binding("o", "pick_folder", "Pick folder", show=False),
    ]
    AUTO_FOCUS = "#contents-tree"

    def __init__(self, services: Services, image: str) -> None:
        super().__init__(id="contents-screen")
        self.services = services
        self.image = image
        self.iso: IsoImage | None = None
        self.cancel_event = threading.Event()

    def compose(self) -> ComposeResult:
        yield TitleBar()
        yield Static(f"Files in {self.image}: reading…", id="contents-title", markup=False)
        yield ContentsTree()
        with Horizontal(id="extract-to-bar"):
            yield Label("Extract to:", id="extract-to-label", markup=False)
            yield Input(self.default_folder(), id="extract-to")
            yield Button("Pick…", id="pick-folder", compact=True)
        with Horizontal(id="contents-actions"):
            yield Static("Space marks a file or folder.", id="marked-summary", markup=False)
            yield Button("Extract marked", id="extract-marked", variant="primary", disabled=True)
            yield Button("Extract all", id="extract-all", disabled=True)
        yield Footer()

    def default_folder(self) -> str:
        try:
            home = suggest.user_home()
        except Exception:
            home = Path.cwd()
        return suggest.extract_folder(
            self.image, home=home, writable=lambda d: os.access(d, os.W_OK | os.X_OK)
        )

    def on_mount(self) -> None:
        self.read_contents()

    def on_unmount(self) -> None:
        self.cancel_event.set()
        if self.iso is not None:
            self.iso.close()
            self.iso = None

    @work(thread=True, exclusive=True, exit_on_error=False, group="contents")
    def read_contents(self) -> None:
        try:
            iso = self.services.open_iso(self.image, cancel=self.cancel_event)
        except Exception as e:
            self.post_message(ContentsRead(self.image, None, one_line(e)))
            return
        if self.cancel_event.is_set():  # the screen is gone
            iso.close()
            return
        self.post_message(ContentsRead(self.image, iso, None))

    def on_contents_read(self, message: ContentsRead) -> None:
        title = self.query_one("#contents-title", Static)
        tree = self.query_one(ContentsTree)
        if message.error is not None:
            title.update(f"Cannot list the files in {self.image}: {message.error}")
            tree.root.set_label(Text("No files"))
            return
        self.iso = message.iso
        contents: Contents = message.iso.contents
        entries = list(contents.by_path.values())
        files = sum(1 for e in entries if e.type == "file")
        folders = sum(1 for e in entries if e.type == "dir") - 1
        total = sum(e.size for e in entries if e.type == "file")
        title.update(
            f"{self.image}: {files} files ({human_size(total)}) in {folders} folders, "
            f"{contents.namespace} names"
        )
        tree.load(contents)
        self.query_one("#extract-all", Button).disabled = files == 0 and len(entries) <= 1

    @on(ContentsTree.MarksChanged)
    def _marks_changed(self) -> None:
        tree = self.query_one(ContentsTree)
        files, size = tree.marked_size()
        count = len(tree.marked)
        self.query_one("#extract-marked", Button).disabled = count == 0
        self.query_one("#marked-summary", Static).update(
            f"{count} marked: {files} files, {human_size(size)}"
            if count
            else "Space marks a file or folder."
        )

    # ---- extracting

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "extract-marked":
            self.action_extract_marked()
        elif event.button.id == "extract-all":
            self.action_extract_all()
        elif event.button.id == "pick-folder":
            self.action_pick_folder()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(ContentsTree).focus()

    def action_pick_folder(self) -> None:
        from usbwriter.tui.screens.ask import FolderPicker

        typed = Path(os.path.expanduser(self.query_one("#extract-to", Input).value.strip()))
        start = next((p for p in (typed, *typed.parents) if p.is_dir()), Path.cwd())

        def picked(folder: str | None) -> None:
            if folder:
                self.query_one("#extract-to", Input).value = folder

        self.app.push_screen(FolderPicker(start), picked)

    def action_extract_marked(self) -> None:
        paths = self.query_one(ContentsTree).marked_paths()
        if not paths:
            self.app.bell()
            self.notify("Mark files or folders with Space first (or extract all).", markup=False)
            return
        self.extract(paths)

    def action_extract_all(self) -> None:
        self.extract([])

    def extract(self, paths: list[str]) -> None:
        from usbwriter.tui.screens.extract import ExtractScreen

        if self.iso is None:
            self.app.bell()
            self.notify("The image's files are not read yet.", severity="warning", markup=False)
            return
        output = os.path.expanduser(self.query_one("#extract-to", Input).value.strip())
        if not output:
            self.app.bell()
            self.notify("Type the folder to extract into.", severity="warning", markup=False)
            self.query_one("#extract-to", Input).focus()
            return
        self.app.push_screen(ExtractScreen(self.services, self.iso, paths, os.path.abspath(output)))

    def action_close(self) -> None:
        self.app.pop_screen()

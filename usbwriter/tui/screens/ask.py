"""Small questions before a job: a backup's file, a restore's file system and label, a
folder to extract into. Each is a modal that returns the answer, or None for Cancel."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Checkbox,
    DirectoryTree,
    Footer,
    Input,
    Label,
    RadioSet,
    Static,
)

from usbwriter.tui.format import drive_line
from usbwriter.tui.screens.browse import PathBrowser, shown
from usbwriter.tui.widgets.toggles import TextCheckbox, TextRadioButton

if TYPE_CHECKING:
    from usbwriter.devices import Disk

#: file system -> what the radio button says (usbwriter.jobs.restore.FILESYSTEMS keys)
FILESYSTEMS = {
    "fat32": "FAT32: every computer, camera and TV; files up to 4 GiB",
    "exfat": "exFAT: large files; Windows, macOS and recent Linux",
    "ext4": "ext4: Linux only",
}


Answer = TypeVar("Answer")


class _Ask(ModalScreen[Answer | None], Generic[Answer]):
    """Cancel (Esc) and Next; ``answer()`` returns the result or raises ValueError."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def compose_buttons(self, next_label: str) -> ComposeResult:
        yield Static("", id="ask-error", markup=False)
        with Horizontal(id="dialog-buttons"):
            yield Button("Cancel", id="cancel")
            yield Button(next_label, id="next", variant="primary")

    def answer(self) -> Answer:
        raise NotImplementedError

    def submit(self) -> None:
        try:
            result = self.answer()
        except ValueError as e:
            self.query_one("#ask-error", Static).update(str(e))
            self.app.bell()
            return
        self.dismiss(result)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "next":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class AskBackupFile(_Ask[tuple[str, bool]]):
    """Where to write the backup of DISK: (path, replace an existing file) or None."""

    AUTO_FOCUS = "#backup-path"

    def __init__(self, disk: Disk, default: str) -> None:
        super().__init__()
        self.disk = disk
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="ask"):
            yield Label("Back up a drive to an image file", id="dialog-title", markup=False)
            yield Static(drive_line(self.disk), id="ask-drive", markup=False)
            yield Label("Image file:", classes="lead", markup=False)
            yield Input(self.default, id="backup-path")
            yield Static(
                "Ending the name in .zst, .xz or .gz compresses it; .img keeps it raw.",
                classes="ask-hint",
                markup=False,
            )
            yield TextCheckbox("Replace the file if it exists", id="backup-replace")
            yield from self.compose_buttons("Next")
        yield Footer()  # the dialog's own keys, not the screen's below

    def answer(self) -> tuple[str, bool]:
        path = os.path.expanduser(self.query_one("#backup-path", Input).value.strip())
        replace = self.query_one("#backup-replace", Checkbox).value
        if not path:
            raise ValueError("Type the path of the image file to write.")
        path = os.path.abspath(path)
        if os.path.isdir(path):
            raise ValueError(f"{path} is a folder: type a file name in it.")
        if os.path.lexists(path) and not replace:
            raise ValueError(f"{path} exists: choose another name, or tick Replace.")
        return path, replace


class RestoreOptions(_Ask[tuple[str, str]]):
    """The file system and label for restoring DISK: (fs, label) or None."""

    AUTO_FOCUS = "#restore-fs"

    def __init__(self, disk: Disk, fs: str = "fat32", label: str = "USB") -> None:
        super().__init__()
        self.disk = disk
        self.fs = fs
        self.label = label

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="ask"):
            yield Label("Restore as a normal stick", id="dialog-title", markup=False)
            yield Static(drive_line(self.disk), id="ask-drive", markup=False)
            yield Label("File system:", classes="lead", markup=False)
            with RadioSet(id="restore-fs"):
                for fs, words in FILESYSTEMS.items():
                    yield TextRadioButton(words, value=fs == self.fs, id=f"fs-{fs}")
            yield Label("Label:", classes="lead", markup=False)
            yield Input(self.label, id="restore-label")
            yield from self.compose_buttons("Next")
        yield Footer()  # the dialog's own keys, not the screen's below

    def chosen_fs(self) -> str:
        pressed = self.query_one("#restore-fs", RadioSet).pressed_button
        return (pressed.id or "fs-fat32").removeprefix("fs-") if pressed else "fat32"

    def answer(self) -> tuple[str, str]:
        from usbwriter.errors import UsbWriterError
        from usbwriter.jobs.restore import check_label

        fs = self.chosen_fs()
        try:
            label = check_label(fs, self.query_one("#restore-label", Input).value.strip())
        except UsbWriterError as e:
            raise ValueError(e.message) from None
        return fs, label


class FolderTree(DirectoryTree):
    """Folders only, hidden ones left out."""

    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return shown(paths, lambda p: p.is_dir())


class FolderPicker(PathBrowser):
    """Pick a folder: the highlighted one, or the one shown when nothing is."""

    AUTO_FOCUS = "#folder-tree"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="browser"):
            yield Label("Choose a folder", id="dialog-title", markup=False)
            yield Static(str(self.start), id="browser-folder", markup=False)
            yield FolderTree(self.start, id="folder-tree")
            yield Static(
                "↑ ↓ to move, Enter opens, Backspace goes up", id="browser-hint", markup=False
            )
            with Horizontal(id="dialog-buttons"):
                yield Button("Parent folder", id="parent")
                yield Button("Cancel", id="cancel")
                yield Button("Use this folder", id="use", variant="primary")
        yield Footer()  # the dialog's own keys, not the screen's below

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "parent":
            self.action_parent()
        elif event.button.id == "use":
            tree = self.query_one(FolderTree)
            node = tree.cursor_node
            if node is not None and node.data is not None and node is not tree.root:
                self.dismiss(str(node.data.path))
            else:
                self.dismiss(str(tree.path))
        else:
            self.dismiss(None)

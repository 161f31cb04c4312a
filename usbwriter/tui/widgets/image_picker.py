"""The image path: an input with path completion, and a button for the file browser."""

from __future__ import annotations

import os

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label

from usbwriter.tui.format import is_image_name


class PathSuggester(Suggester):
    """Completes the last path component with folders and image files (→ accepts)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete_path(value)


def complete_path(value: str) -> str | None:
    """The first folder or image whose name extends VALUE's last component."""
    if not value:
        return None
    head, base = os.path.split(value)
    folder = os.path.expanduser(head) if head else "."
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return None
    for name in names:
        if not name.startswith(base) or name == base or (name.startswith(".") and not base):
            continue
        full = os.path.join(folder, name)
        if os.path.isdir(full):
            return os.path.join(head, name) + "/"
        if is_image_name(name):
            return os.path.join(head, name)
    return None


class ImagePicker(Horizontal):
    """Label, path input and Browse button in one row."""

    class Chosen(Message):
        """The user entered (or picked) an image path."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    class BrowseRequested(Message):
        """The Browse button was pressed."""

    def __init__(self, path: str | None = None, *, cursor_blink: bool = True) -> None:
        super().__init__(id="image-picker")
        self._initial = path or ""
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        yield Label("Image", id="image-label", markup=False)
        field = Input(
            self._initial,
            placeholder="path to an .iso or .img file (→ completes, Enter opens)",
            suggester=PathSuggester(),
            id="image-path",
        )
        field.cursor_blink = self._cursor_blink
        yield field
        yield Button("Browse…", id="browse", tooltip="Choose an image file (ctrl+o)")

    @property
    def value(self) -> str:
        return self.query_one("#image-path", Input).value

    def set_path(self, path: str) -> None:
        field = self.query_one("#image-path", Input)
        field.value = path
        field.cursor_position = len(path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.value.strip():
            self.post_message(self.Chosen(os.path.expanduser(event.value.strip())))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "browse":
            event.stop()
            self.post_message(self.BrowseRequested())

"""How to use the app, and every key."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Markdown

HELP = """\
**Three steps**, top to bottom:

1. **Image**: type a path (→ accepts the completion, Enter opens it) or press
   **ctrl+o** to browse. The boot report says what is in the image and whether a
   stick made from it boots on BIOS (legacy) and UEFI PCs.
2. **Drive**: move with ↑ ↓ in the drives table and press **Enter** (or click) to
   choose. Dimmed drives cannot be chosen: the status column says why (the system
   disk, read-only, too small for the image...). Drives appear and vanish as you
   plug them in. **Space** marks several drives to write at once.
3. **Write**: press **w**. A last question names the drive (or every marked one);
   *Cancel* is focused. For one drive, *Write only what changed* reads it first and
   writes only the blocks that differ. The image is written, then read back and
   compared (blake3, bypassing the page cache). When it says *verified*, the stick
   is safe to remove.

| Key | Action |
|---|---|
| ctrl+o | choose an image file |
| i / d | go to the image path / the drives |
| Enter | open the image typed / choose the highlighted drive |
| Space | mark or unmark the highlighted drive (write several at once) |
| w | write the image to the chosen drive, or to every marked drive |
| b | browse the files inside an ISO image; extract them |
| k | back up the highlighted drive to an image file |
| n | restore the highlighted drive as a normal stick (erases it) |
| a (alt+a in the image field) | show every disk (loop devices, the system disk) or only sticks |
| r | list the drives again |
| t | change the theme (saved for next time) |
| ctrl+p | command palette: every action by name |
| Esc | close a dialog; while writing: ask to stop; after a write: back to write another |
| ? or F1 | this help |
| ctrl+q | quit |

**The ISO toolkit.** In the contents of an ISO (**b**), Enter opens a folder,
**Space** marks a file or folder, **x** extracts the marked ones and **a**
everything, into the folder typed below the tree (**o** picks one); Esc stops an
extraction. **k** reads a drive into an image file (`.zst`, `.xz` or `.gz` at the
end of its name compresses it) and reads it again to verify. **n** erases a drive
and makes one FAT32, exFAT or ext4 partition, as a stick is sold.

Writing to a drive needs root: run `sudo usbwriter`. Without root the app still
lists drives and reports on images.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", show=False),
        Binding("f1", "close", "Close", show=False),
    ]
    AUTO_FOCUS = "#help-close"

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="help"):
            yield Label("usbwriter: help", id="dialog-title", markup=False)
            with VerticalScroll(id="help-body"):
                yield Markdown(HELP)
            yield Button("Close", id="help-close", variant="primary")
        yield Footer()  # the dialog's own keys, not the screen's below

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)

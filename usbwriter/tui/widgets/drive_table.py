"""The drives: a table that follows hot-plug events; unusable drives dimmed; Space marks
several drives to write at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.message import Message
from textual.widgets import DataTable

from usbwriter.tui.format import drive_mounts
from usbwriter.tui.rules import drive_choosable, drive_status, keeps_choice, visible
from usbwriter.units import human_size

if TYPE_CHECKING:
    from usbwriter.devices import Disk

COLUMNS = (
    ("  Device", "path"),
    ("Vendor", "vendor"),
    ("Model", "model"),
    ("Size", "size"),
    ("Bus", "bus"),
    ("Serial", "serial"),
    ("Mounted", "mounts"),
    ("Status", "status"),
)


#: When the table is too narrow, columns give up width in this order, down to a floor.
SHRINK = (
    ("serial", 10),
    ("status", 30),
    ("mounts", 8),
    ("model", 10),
    ("vendor", 7),
    ("serial", 7),
    ("status", 20),
    ("path", 10),
    ("bus", 4),
    ("serial", 4),
)


def fit_widths(natural: dict[str, int], available: int) -> dict[str, int]:
    """Column widths that fit AVAILABLE cells (ellipsis beyond), from the natural ones."""
    widths = dict(natural)
    over = sum(widths.values()) - available
    for key, floor in SHRINK:
        if over <= 0:
            break
        cut = min(over, max(0, widths[key] - floor))
        widths[key] -= cut
        over -= cut
    return widths


def sort_key(disk: Disk) -> tuple[bool, bool, str, int]:
    """User drives first (eligible before not), then by name."""
    name = disk.name
    digits = "".join(c for c in name if c.isdigit())
    return (not disk.user_drive, not disk.eligible, name.rstrip("0123456789"), int(digits or 0))


class DriveTable(DataTable[Text]):
    """One row per disk, keyed by device path; the chosen drive is marked ▶, the drives
    marked with Space ✔."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Choose drive", show=False),  # the status says so
        Binding("space", "toggle_mark", "Mark", show=False),  # named on the frame
    ]

    class MarksChanged(Message):
        """Drives were marked or unmarked (by Space, or because one changed or went)."""

    def __init__(self) -> None:
        super().__init__(id="drives", cursor_type="row", zebra_stripes=False)
        self.border_title = "Drives"
        self.border_subtitle = "space marks several · k back up · n restore as a normal stick"
        self.disks: dict[str, Disk] = {}
        self.show_all = False
        self.image_size: int | None = None
        self.chosen: str | None = None
        self.marked: dict[str, Disk] = {}  # path: the drive as it was when marked

    def on_click(self, event: events.Click) -> None:
        """One click chooses a drive. DataTable moves the cursor to the clicked cell
        after this handler, and selects only a click on the cell already under the
        cursor; a click that moved the cursor selects here, once the click is handled."""
        self.call_next(self._select_if_moved, self.cursor_coordinate)

    def _select_if_moved(self, before: Coordinate) -> None:
        if self.row_count and self.cursor_coordinate != before:
            self.action_select_cursor()

    def on_resize(self) -> None:
        self.rebuild()

    # ---- data

    def set_disks(self, disks: list[Disk]) -> None:
        self.disks = {d.path: d for d in disks}
        self.rebuild()

    def put(self, disk: Disk) -> None:
        self.disks[disk.path] = disk
        self.rebuild()

    def drop(self, path: str) -> None:
        if self.disks.pop(path, None) is not None:
            self.rebuild()

    def shown(self) -> list[Disk]:
        return sorted((d for d in self.disks.values() if visible(d, self.show_all)), key=sort_key)

    def choosable(self, path: str) -> bool:
        disk = self.disks.get(path)
        return disk is not None and drive_choosable(disk, self.image_size)

    def marked_disks(self) -> list[Disk]:
        return sorted(self.marked.values(), key=sort_key)

    def action_toggle_mark(self) -> None:
        """Mark or unmark the highlighted drive; one that cannot be chosen says why."""
        disk = self.highlighted()
        if disk is None:
            return
        if disk.path in self.marked:
            del self.marked[disk.path]
        elif drive_choosable(disk, self.image_size):
            self.marked[disk.path] = disk
        else:
            self.app.bell()
            why = drive_status(disk, self.image_size)
            self.notify(f"{disk.path} cannot be marked: {why}", severity="warning", markup=False)
            return
        self.rebuild()
        self.post_message(self.MarksChanged())

    def clear_marks(self) -> None:
        if self.marked:
            self.marked.clear()
            self.rebuild()
            self.post_message(self.MarksChanged())

    def _prune_marks(self) -> None:
        """A marked drive stays marked while it is shown, the same medium and usable."""
        kept = {
            path: old
            for path, old in self.marked.items()
            if (now := self.disks.get(path)) is not None
            and visible(now, self.show_all)
            and keeps_choice(old, now, self.image_size)
        }
        if len(kept) != len(self.marked):
            self.marked = kept
            self.post_message(self.MarksChanged())

    def highlighted(self) -> Disk | None:
        if self.row_count == 0:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except Exception:
            return None
        return self.disks.get(str(key.value)) if key.value is not None else None

    # ---- rendering

    def rebuild(self) -> None:
        """Redraw every row, keeping the cursor on the same drive when it is still there."""
        current = self.highlighted()
        self._prune_marks()
        rows = [(disk.path, self.cells(disk)) for disk in self.shown()]
        natural = {
            key: max([len(label), *(row[i].cell_len for _, row in rows)])
            for i, (label, key) in enumerate(COLUMNS)
        }
        # The vertical scrollbar's cells are kept free even before it shows (more drives
        # than rows): a table wider than its frame would take a row for a horizontal bar.
        room = self.scrollable_content_region.width
        if not self.show_vertical_scrollbar:
            room -= self.styles.scrollbar_size_vertical
        available = room - 2 * self.cell_padding * len(COLUMNS)
        widths = fit_widths(natural, available) if available > 0 else natural
        self.clear(columns=True)
        for label, key in COLUMNS:
            self.add_column(label, key=key, width=widths[key])
        for path, cells in rows:
            self.add_row(*cells, key=path)
        if current is not None and current.path in self.rows_by_key():
            self.move_cursor(row=self.get_row_index(current.path), animate=False)

    def rows_by_key(self) -> set[str]:
        return {str(k.value) for k in self.rows}

    def cells(self, disk: Disk) -> list[Text]:
        ok = drive_choosable(disk, self.image_size)
        style = "" if ok else "dim"
        status = drive_status(disk, self.image_size)
        values = [
            self._mark(disk.path) + disk.path,
            disk.vendor or "-",
            disk.model or (disk.description if disk.backing_file else "-"),
            human_size(disk.size),
            disk.bus or "-",
            disk.serial or "-",
            drive_mounts(disk),
            status,
        ]
        cells = [Text(v, style=style, no_wrap=True, overflow="ellipsis") for v in values]
        if not ok:
            cells[-1].stylize("italic")
        elif disk.path == self.chosen or disk.path in self.marked:
            for cell in cells:
                cell.stylize("bold")
        return cells

    def _mark(self, path: str) -> str:
        if path in self.marked:
            return "✔ "
        return "▶ " if path == self.chosen else "  "

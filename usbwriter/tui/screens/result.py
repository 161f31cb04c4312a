"""The outcome: verified (safe to remove) or where the drive differs; hashes, times, speeds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from usbwriter.receipt import coverage_words, describe_device, proof_words
from usbwriter.tui.widgets.title_bar import TitleBar
from usbwriter.units import human_duration, human_rate, human_size


def result_rows(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    img, dev = r["image"], r["device"]
    rows = [("Image", f"{img['path']}  ({human_size(img['size'])})")]
    if img.get("format"):
        rows.append(
            (
                "File",
                f"{img['format']}, {human_size(img['file_size'])}, blake3 {img['file_blake3']}",
            )
        )
    rows.append(("Image blake3", str(img["blake3"])))
    check = r.get("checksum")
    rows.append(("Checksum", str(check["message"]) if check else "not checked"))
    rows.append(("Drive", describe_device(dev)))
    if dev.get("unmounted"):
        rows.append(("Unmounted", ", ".join(str(m) for m in dev["unmounted"])))
    cov = r.get("coverage")
    rows += coverage_rows(cov)
    if r.get("bytes_written"):
        rows.append(
            (
                "Write",
                f"{human_size(r['bytes_written'])} in {human_duration(r['write_seconds'])}"
                f", {human_rate(r['write_mbps'] * 1e6)}",
            )
        )
    elif r.get("write_seconds") is not None:
        took = ""
        if cov is not None and cov.get("mode") == "delta":
            took = f"; the compare took {human_duration(r['write_seconds'])}"
        rows.append(("Write", f"nothing written{took}"))
    read = cov["written"] if cov is not None else img["size"]
    if r.get("verify_seconds") is not None and read:
        how = (
            "with O_DIRECT: page cache bypassed"
            if r.get("page_cache_bypassed")
            else "through the page cache: NOT bypassed"
        )
        what = f"the {human_size(read)} written" if cov is not None else human_size(read)
        rows.append(
            (
                "Verify",
                f"{what} read back in {human_duration(r['verify_seconds'])}"
                f", {human_rate(r['verify_mbps'] * 1e6)}, {how}",
            )
        )
    if r.get("verify_seconds") is not None and r.get("mismatch_offset") is None:
        rows.append(("Proof", proof_words(r)))
    if r.get("mismatch_offset") is not None:
        rows.append(
            ("First difference", f"byte {r['mismatch_offset']}, 0x{r['mismatch_offset']:x}")
        )
    return rows


COVERAGE_LABELS = {"bmap": "Block map", "delta": "Compared", "sparse": "Sparse"}


def coverage_rows(c: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What a delta (or bmap) write did with the image: compared, written, left alone."""
    if not c:
        return []
    label = COVERAGE_LABELS.get(str(c.get("mode")), str(c.get("mode")))
    return [(label if i == 0 else "", line) for i, line in enumerate(coverage_words(c))]


def headline_words(r: Mapping[str, Any]) -> tuple[str, str]:
    """The verified result's headline and what it means for the drive."""
    dev = r["device"].get("path", "the drive")
    cov = r.get("coverage")
    safe = "It is safe to remove the drive."
    if cov is not None and not cov["written"] and cov.get("mode") == "delta":
        return (
            "✔ Verified: nothing needed writing",
            f"{dev} already held the image: every MiB compared equal. {safe}",
        )
    if cov is not None and cov.get("mode") == "bmap":
        return (
            "✔ Written and verified",
            f"{dev} holds what the image's bmap maps, read back and checked; the rest was "
            f"left as it was. {safe}",
        )
    return "✔ Written and verified", f"{dev} holds the image, byte for byte. {safe}"


class OutcomeScreen(Screen[None]):
    """What a job ended with; two buttons: do another (back to the main screen) and
    Quit, which exits with ``exit_code`` (as the command line would)."""

    AUTO_FOCUS = "#again"

    def __init__(self, exit_code: int) -> None:
        super().__init__(id="result-screen")
        self.exit_code = exit_code

    def buttons(self, again: str) -> ComposeResult:
        with Horizontal(id="result-buttons"):
            yield Button(again, id="again", variant="primary")
            yield Button("Quit", id="quit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "quit":
            self.action_quit()
        else:
            self.action_again()

    def action_quit(self) -> None:
        self.app.exit(return_code=self.exit_code)

    def action_again(self) -> None:
        self.app.pop_screen()


class ResultScreen(OutcomeScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "again", "Write another", show=False),
        Binding("escape", "again", "Write another"),
        Binding("q", "quit", "Quit", show=False),
    ]

    def __init__(self, receipt: Mapping[str, Any]) -> None:
        # 0 when verified, 3 (as the command line) when the drive differs
        super().__init__(0 if receipt.get("verified") else 3)
        self.receipt = receipt

    @property
    def verified(self) -> bool:
        return bool(self.receipt.get("verified"))

    def compose(self) -> ComposeResult:
        r = self.receipt
        dev = r["device"].get("path", "the drive")
        yield TitleBar()
        with Vertical(id="result-body", classes="ok" if self.verified else "failed"):
            if self.verified:
                headline, meaning = headline_words(r)
                yield Static(
                    Content.assemble((headline, "bold $text-success")),
                    id="result-headline",
                    markup=False,
                )
                yield Static(meaning, id="result-next", markup=False)
            else:
                yield Static(
                    Content.assemble(("✘ Verification FAILED", "bold $text-error")),
                    id="result-headline",
                    markup=False,
                )
                wiped = r.get("wiped_first_mib")
                what = (
                    "Its first MiB was wiped so it does not look bootable."
                    if wiped
                    else "Its first MiB could not be wiped: do not boot from it."
                )
                yield Static(
                    f"{dev} does not hold the image: the first difference is at byte "
                    f"{r.get('mismatch_offset')}. {what} The drive may be failing or "
                    "fake-capacity: try another one.",
                    id="result-next",
                    markup=False,
                )
            rows = result_rows(r)
            width = max(len(label) for label, _ in rows)
            parts: list[str | Content | tuple[str, str]] = []
            for label, text in rows:
                parts += [(f"{label:<{width}}  ", "bold"), text, "\n"]
            yield Static(Content.assemble(*parts).rstrip(), id="result-table", markup=False)
            yield from self.buttons("Write another")
        yield Footer()

"""The app's result says what was proven: for a delta write what was compared and what
was written, the drive's hash next to what it equals, no rate of nothing."""

from __future__ import annotations

from tests.unit.test_words import EMPTY_B3, IMAGE_B3, MiB, receipt
from usbwriter.engine.readback import COMPARED, Span
from usbwriter.tui.screens.result import headline_words


def text_of(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"{label}  {value}" for label, value in rows)


def test_a_delta_write_that_wrote_nothing() -> None:
    made = receipt(0, (), unchanged=40 * MiB)
    r = made.to_json()
    text = text_of(made.rows())
    assert EMPTY_B3 not in text and "(matches)" not in text, text
    assert "0.0 MB/s" not in text and "span(s)" not in text, text
    assert "40.0 MiB compared with the drive MiB by MiB: all equal" in text, text
    assert "nothing written; the compare took 53 ms" in text, text
    headline, meaning = headline_words(r)
    assert headline == "✔ Verified: nothing needed writing", headline
    assert "already held the image" in meaning


def test_a_delta_write_says_what_it_wrote_and_read_back() -> None:
    text = text_of(receipt(2 * MiB, (Span(0, 2 * MiB, "a" * 64),), unchanged=38 * MiB).rows())
    assert "38.0 MiB equal" in text and "2.0 MiB differed and were written, in 1 span" in text
    assert "the 2.0 MiB written read back in 0.2 s" in text, text
    assert "Proof" in text and "equal byte for byte to the image" in text, text


def test_a_full_write_puts_the_drive_hash_next_to_what_it_equals() -> None:
    from usbwriter.engine.readback import VerifyResult
    from usbwriter.engine.target import WriteResult
    from usbwriter.receipt import Receipt

    size = 40 * MiB
    w = WriteResult("/img", size, IMAGE_B3, "/dev/loop1", size, 0.2, True, True)
    v = VerifyResult(True, None, IMAGE_B3, IMAGE_B3, size, 0.1, True, proof=COMPARED)
    text = text_of(Receipt("/img", size, {"path": "/dev/loop1"}, w, v).rows())
    assert f"drive blake3 {IMAGE_B3} = the image's: compared byte for byte" in text, text
    assert "40.0 MiB read back in 0.1 s, 419.4 MB/s" in text, text


def test_several_drives_result_gives_each_drive_its_hash_and_times() -> None:
    """Each drive's line says what its read-back found, its blake3 next to what it
    equals, and its write and verify times; the image's blake3 heads the table."""
    from usbwriter.engine.readback import VerifyResult
    from usbwriter.engine.target import WriteResult
    from usbwriter.jobs.several import DriveResult
    from usbwriter.receipt import Receipt
    from usbwriter.tui.screens.several import SeveralJob, SeveralResultScreen

    size = 40 * MiB
    results = []
    for n, (wsec, vsec) in enumerate(((0.2, 0.1), (0.8, 0.4))):
        dev = f"/dev/loop{n}"
        w = WriteResult("/img", size, IMAGE_B3, dev, size, wsec, True, True)
        v = VerifyResult(True, None, IMAGE_B3, IMAGE_B3, size, vsec, True, proof=COMPARED)
        results.append(DriveResult(dev, Receipt("/img", size, {"path": dev}, w, v), None))
    screen = SeveralResultScreen(SeveralJob("/img", size, (), ()), results)
    text = str(screen.table())
    assert f"blake3 {IMAGE_B3}" in text.splitlines()[0] or f"Image blake3 {IMAGE_B3}" in text
    assert text.count(f"drive blake3 {IMAGE_B3} = the image's") == 2, text
    assert "write 40.0 MiB in 0.2 s, 209.7 MB/s; verify in 0.1 s, 419.4 MB/s" in text, text
    assert "write 40.0 MiB in 0.8 s, 52.4 MB/s; verify in 0.4 s, 104.9 MB/s" in text, text

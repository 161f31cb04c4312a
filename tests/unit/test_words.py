"""What the receipt and the command line say: counts in the right number, one unit for
rates, a drive's hash shown next to what it equals, nothing claimed of what was not
read, and the prompt accepting what it asks for."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from usbwriter.cli import output
from usbwriter.engine.readback import COMPARED, HASHED, Span, VerifyResult
from usbwriter.engine.selectors import Coverage
from usbwriter.engine.target import WriteResult
from usbwriter.receipt import Receipt
from usbwriter.units import count, human_rate

REPO = Path(__file__).resolve().parents[2]
#: files other work is changing at present, whose words are theirs to fix: jobs/backup.py
#: ("range(s)", a rate in MiB/s), the probe's engine/probe.py, jobs/probe.py and
#: cli/probe.py ("block(s)")
OTHERS = {
    "usbwriter/jobs/backup.py",
    "usbwriter/engine/probe.py",
    "usbwriter/jobs/probe.py",
    "usbwriter/cli/probe.py",
}


def sources() -> list[Path]:
    return [p for p in (REPO / "usbwriter").rglob("*.py") if str(p.relative_to(REPO)) not in OTHERS]


MiB = 1 << 20
IMAGE_B3 = "eda6" + "0" * 60
EMPTY_B3 = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"  # blake3(b"")
SPANS_B3 = "5ea1" + "1" * 60


@pytest.mark.parametrize(
    ("n", "word", "text"),
    [(0, "file", "0 files"), (1, "file", "1 file"), (2, "file", "2 files"),
     (1, "span", "1 span"), (7, "span", "7 spans"), (1, "folder", "1 folder")],
)  # fmt: skip
def test_count_says_one_or_many(n: int, word: str, text: str) -> None:
    assert count(n, word) == text


def test_count_irregular() -> None:
    assert count(2, "entry", "entries") == "2 entries"
    assert count(1, "entry", "entries") == "1 entry"


def receipt(
    written: int, spans: tuple[Span, ...], *, unchanged: int, proof: str = COMPARED
) -> Receipt:
    size = 40 * MiB
    w = WriteResult("/img", size, IMAGE_B3, "/dev/loop1", written, 0.053, True, True)
    combined = EMPTY_B3 if not spans else SPANS_B3
    v = VerifyResult(True, None, combined, combined, written, 0.001 if not spans else 0.2,
                     True, proof=proof)  # fmt: skip
    cov = Coverage("delta", size, spans, unchanged=unchanged)
    return Receipt("/img", size, {"path": "/dev/loop1"}, w, v, coverage=cov)


def test_a_delta_write_that_wrote_nothing_says_so() -> None:
    text = receipt(0, (), unchanged=40 * MiB).to_text()
    assert "span(s)" not in text and "0 spans" not in text, text
    assert "0.0 MB/s" not in text, text  # no rate of nothing
    assert EMPTY_B3 not in text, text  # the hash of nothing read is not a drive's hash
    assert "nothing was written" in text, text
    assert "40.0 MiB compared" in text and "all equal" in text, text


def test_a_delta_write_says_what_was_compared_and_written() -> None:
    one = receipt(2 * MiB, (Span(0, 2 * MiB, "a" * 64),), unchanged=38 * MiB).to_text()
    assert "span(s)" not in one, one
    assert "40.0 MiB compared with the drive" in one, one
    assert "38.0 MiB equal" in one and "2.0 MiB differed and were written, in 1 span" in one
    assert "the 2.0 MiB written read back" in one, one
    spans = (Span(0, MiB, "a" * 64), Span(5 * MiB, MiB, "b" * 64))
    two = receipt(2 * MiB, spans, unchanged=38 * MiB, proof=HASHED).to_text()
    assert "in 2 spans" in two, two
    # the drive's hash next to what it equals: not under the image's as if equal to it
    assert f"{SPANS_B3} = the blake3 of the digests taken while writing" in two, two


def test_a_full_write_puts_the_drive_hash_next_to_the_image_hash() -> None:
    size = 40 * MiB
    w = WriteResult("/img", size, IMAGE_B3, "/dev/loop1", size, 0.2, True, True)
    v = VerifyResult(True, None, IMAGE_B3, IMAGE_B3, size, 0.1, True, proof=COMPARED)
    text = Receipt("/img", size, {"path": "/dev/loop1"}, w, v).to_text()
    assert f"drive blake3 {IMAGE_B3} = the image's" in text, text


def test_no_message_nests_parentheses() -> None:
    """A receipt line holds no parenthesis inside another."""
    texts = [
        receipt(0, (), unchanged=40 * MiB).to_text(),
        receipt(2 * MiB, (Span(0, 2 * MiB, "a" * 64),), unchanged=38 * MiB).to_text(),
    ]
    for text in texts:
        for line in text.splitlines():
            depth = 0
            for ch in line:
                depth += {"(": 1, ")": -1}.get(ch, 0)
                assert depth <= 1, line


def test_rates_are_in_one_unit() -> None:
    assert human_rate(200e6) == "200.0 MB/s"
    src = sources()
    mixed = [str(p) for p in src if re.search(r"human_size\([^)]*\)\}/s", p.read_text())]
    assert not mixed, f"a rate in MiB/s: {mixed}"


def test_no_counted_noun_with_an_s_in_parentheses() -> None:
    """'1 span(s)', '2 file(s)': the words say one or many (units.count)."""
    found = []
    for p in sources():
        for n, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"\} [a-z ]*[a-z]\(s\)", line):
                found.append(f"{p.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize(("answer", "ok"), [("yes\n", True), ("YES\n", True), ("y\n", False),
                                            ("\n", False), ("no\n", False)])  # fmt: skip
def test_the_prompt_takes_the_word_it_asks_for(
    answer: str, ok: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert output.confirm("Type 'yes' to continue: ") is ok


def test_docs_do_not_say_compressed_images_need_decompressing() -> None:
    text = " ".join((REPO / "docs" / "tui.md").read_text().split())
    assert "must be decompressed" not in text


def test_mkiso_counts_one_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "only.txt").write_text("x")
    p = subprocess.run(
        [sys.executable, "-m", "usbwriter", "mkiso", str(tmp_path / "d"), "-o",
         str(tmp_path / "o.iso")], capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "1 file, 0 folders, 0 symlinks" in p.stdout, p.stdout

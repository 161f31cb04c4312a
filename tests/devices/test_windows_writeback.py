"""A file copy keeps the drive busy while it copies: what mtools writes through the page
cache is sent to the drive as it is written, not left for the kernel's flusher (which
waits for gigabytes of dirty pages or 30 seconds) and the final sync."""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_ONLY, MiB
from tests.helpers.windows import windows_iso
from usbwriter.engine.target import Target
from usbwriter.jobs import plan, run
from usbwriter.jobs.model import Request

pytestmark = ROOT_ONLY


def written_bytes(dev: str) -> int:
    """Bytes the block layer has completed writing to DEV (its sectors-written count)."""
    fields = Path(f"/sys/block/{Path(dev).name}/stat").read_text().split()
    return int(fields[6]) * 512


def test_files_reach_the_drive_before_the_final_sync(
    loop: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    iso = windows_iso("small")
    dev = loop(300 * MiB)
    before = written_bytes(dev)
    at_first_sync: list[int] = []
    real_sync = Target.sync
    lock = threading.Lock()

    def sync(self: Any) -> None:
        with lock:
            if not at_first_sync:
                at_first_sync.append(written_bytes(dev) - before)
        real_sync(self)

    monkeypatch.setattr(Target, "sync", sync)
    p = plan(Request(image=str(iso), device=dev, force=True, probe=False, mode="files"))
    p.raise_if_blocked()
    receipt = run(p)
    assert receipt.verified
    assert receipt.files is not None
    copied = receipt.files.bytes_copied
    assert copied > 10 * MiB
    # the head's wipe (1 MiB) is the only write before the copy; most of the files' bytes
    # are on the drive when the copy's final sync begins
    assert at_first_sync[0] >= copied // 2, (at_first_sync[0], copied)


def test_wimlib_checks_the_split_set_while_the_stick_is_read_back(
    loop: Callable[..., str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """wimlib's verify of the parts (seconds of SHA-1 over 4 GiB) is not waited for
    before the partition table and the read-back: it runs beside them."""
    from usbwriter.jobs import files
    from usbwriter.windows import wim

    iso = windows_iso("big")
    dev = loop(iso.stat().st_size + 512 * MiB)
    reading_back = threading.Event()
    overlapped: list[bool] = []
    real_verify, real_readback = wim.verify, files._verify

    def verify(*args: Any, **kw: Any) -> None:
        overlapped.append(reading_back.wait(120))
        real_verify(*args, **kw)

    def staged_parts() -> list[Path]:
        return list(tmp_path.glob("usbwriter-split-*/*/parts/*.swm"))

    left: list[list[Path]] = []

    def readback(*args: Any, **kw: Any) -> Any:
        reading_back.set()
        out = real_readback(*args, **kw)
        # the staged parts (gigabytes) are removed once copied and checked, beside the
        # read-back, not after it
        deadline = time.monotonic() + 60
        while staged_parts() and time.monotonic() < deadline:
            time.sleep(0.1)
        left.append(staged_parts())
        return out

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(wim, "verify", verify)
    monkeypatch.setattr(files, "_verify", readback)
    p = plan(Request(image=str(iso), device=dev, force=True, probe=False, mode="files"))
    p.raise_if_blocked()
    receipt = run(p)
    assert overlapped == [True]
    assert left == [[]]
    assert receipt.verified and receipt.files is not None
    assert [s.verified_by_wimlib for s in receipt.files.split] == [True]


def test_a_split_set_wimlib_finds_bad_fails_the_run_and_wipes_the_head(
    loop: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from usbwriter.errors import BadImage
    from usbwriter.windows import wim

    iso = windows_iso("big")
    dev = loop(iso.stat().st_size + 512 * MiB)

    def verify(parts: tuple[str, ...], *args: Any, **kw: Any) -> None:
        raise BadImage(f"{parts[0]}: wimlib-imagex verify failed: a resource's SHA-1 differs")

    monkeypatch.setattr(wim, "verify", verify)
    p = plan(Request(image=str(iso), device=dev, force=True, probe=False, mode="files"))
    p.raise_if_blocked()
    with pytest.raises(BadImage, match="verify failed"):
        run(p)
    with open(dev, "rb") as f:
        assert f.read(MiB) == bytes(MiB)

"""Check an image against a checksum the user gives, or against the sums files beside it.

``check_image`` only reads: it reports a mismatch or a bad signature as a result and
leaves refusing to the caller. Every line found for the image (in every sums file next
to it) is checked, all algorithms in one read of the image; any mismatch makes the
result a mismatch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from usbwriter.checksums.hashing import hash_file, parse_expected, strength
from usbwriter.checksums.signature import (
    BAD,
    ERROR,
    NOT_CHECKED,
    UNKNOWN_KEY,
    UNSIGNED,
    VALID,
    Keyring,
    Signature,
    check_signature,
    load_keyrings,
)
from usbwriter.checksums.sums import (
    MAX_SUMS_SIZE,
    Entry,
    find_sums,
    matching_entries,
    parse_sums,
    read_small_file,
)
from usbwriter.errors import UsbWriterError, os_error
from usbwriter.progress import ProgressCallback
from usbwriter.sources import kind_of, not_an_image
from usbwriter.sources.streams import Expected

log = logging.getLogger(__name__)

MATCHED = "matched"
MISMATCH = "mismatch"
NONE = "none"
NO_ENTRY = "no-entry"

# Which sums file's line to report when several are checked: a bad signature first
# (never hidden behind a good one), then the best signature, then the strongest hash.
_SIGNATURE_RANK = {BAD: 0, VALID: 1, UNKNOWN_KEY: 2, ERROR: 3, NOT_CHECKED: 4, UNSIGNED: 5}


class Companion(Protocol):
    """A file used with the image (its bmap), as it was read: its path, and the digest
    of the bytes that were read for an algorithm."""

    @property
    def path(self) -> str: ...

    def digest(self, alg: str) -> str: ...


@dataclass(frozen=True)
class Covered:
    """Whether the sums file that vouches for the image vouches for a companion too:
    status "matched", "mismatch" or "no-entry" (it has no line for it)."""

    path: str
    status: str
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "why": self.why}


@dataclass(frozen=True)
class ChecksumCheck:
    """The outcome of checking an image's checksum.

    status: "matched", "mismatch", "none" (no checksum given and no sums file found)
    or "no-entry" (sums files found, none with a line for the image). alg, expected and
    actual describe the line reported (the mismatching one if any); sums_file is None
    for a checksum the user gave; signature is that sums file's signature (None when
    no sums file was used); looked_in lists every sums file read."""

    status: str
    image: str
    alg: str | None = None
    expected: str | None = None
    actual: str | None = None
    sums_file: str | None = None
    signature: Signature | None = None
    looked_in: tuple[str, ...] = ()
    #: the write hashed the bytes it read from the file and found this digest again
    confirmed: bool = False
    #: files used with the image (its bmap), as the sums file that matched lists them
    companions: tuple[Covered, ...] = ()

    def covers(self, path: str) -> Covered | None:
        return next((c for c in self.companions if c.path == path), None)

    def to_confirm(self) -> tuple[Expected, ...]:
        """What the bytes read from the file must hash to for this check to hold of
        them: the matched line's digest (nothing when no line matched)."""
        if self.status != MATCHED or self.alg is None or self.expected is None:
            return ()
        source = Path(self.sums_file).name if self.sums_file else "the given checksum"
        return (Expected(self.alg, self.expected, source),)

    def confirmed_on_write(self) -> ChecksumCheck:
        """This check, as a write that confirmed it on the bytes it read reports it."""
        return replace(self, confirmed=True) if self.to_confirm() else self

    @property
    def given(self) -> bool:
        """The expected value came from the user, not from a sums file."""
        return self.status in (MATCHED, MISMATCH) and self.sums_file is None

    @property
    def source(self) -> str | None:
        """Where the expected value came from: "given" (the user), "sums" (a sums file),
        or None (nothing to compare with)."""
        if self.status not in (MATCHED, MISMATCH):
            return None
        return "sums" if self.sums_file else "given"

    def describe(self) -> str:
        """One line for people."""
        image = Path(self.image).name
        if self.status == NONE:
            return "no checksum found (no sums file next to the image)"
        if self.status == NO_ENTRY:
            names = ", ".join(Path(p).name for p in self.looked_in)
            return f"no checksum found: no line for {image} in {names}"
        alg = self.alg or "checksum"
        confirmed = "; confirmed on the bytes written" if self.confirmed else ""
        if self.given:
            if self.status == MATCHED:
                return f"{alg} matched the given checksum{confirmed}"
            return (
                f"{alg} of {image} does not match the given checksum: "
                f"expected {self.expected}, got {self.actual}"
            )
        sums = Path(self.sums_file or "").name
        if self.status == MATCHED:
            head = f"{sums} line matched ({alg})"
        else:
            head = (
                f"{sums}: {alg} of {image} does not match: "
                f"expected {self.expected}, got {self.actual}"
            )
        return head + self._signature_words() + confirmed

    def _signature_words(self) -> str:
        sig = self.signature
        if sig is None or sig.status == UNSIGNED:
            return f"; {Path(self.sums_file or '').name} is not signed"
        if sig.status == VALID:
            expired = " (whose key has expired since)" if sig.key_expired else ""
            return f", signed by {sig.fingerprint}{expired}"
        if sig.status == NOT_CHECKED:
            return "; signature not checked (no --keyring given)"
        # bad, unknown key, error: the signature's own words, without its file name
        return "; " + sig.message.removeprefix(f"{Path(sig.signature_file or '').name}: ")

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "image": self.image,
            "alg": self.alg,
            "expected": self.expected,
            "actual": self.actual,
            "source": self.source,
            "sums_file": self.sums_file,
            "signature": None if self.signature is None else self.signature.to_dict(),
            "looked_in": list(self.looked_in),
            "confirmed_on_write": self.confirmed,
            "companions": [c.to_dict() for c in self.companions],
            "message": self.describe(),
        }


@dataclass(frozen=True)
class _Line:
    sums_file: Path
    alg: str
    hex: str
    signature: Signature


def _check_image_path(name: str) -> None:
    """BadInput for a missing image or one that is not a file or block device (stat only;
    a FIFO is never opened)."""
    try:
        st = os.stat(name)
    except OSError as e:
        raise os_error(name, e, "look at the image") from None
    kind = kind_of(st.st_mode)
    if kind not in ("file", "block"):
        raise not_an_image(name, kind)


def _read_found(path: Path) -> bytes | None:
    try:
        return read_small_file(path, MAX_SUMS_SIZE, "sums file")
    except UsbWriterError as e:
        log.warning("skipping %s", e.message)
        return None


def check_image(
    image_path: str | os.PathLike[str],
    *,
    expected: str | None = None,
    keyrings: Iterable[str | os.PathLike[str]] = (),
    sums: str | os.PathLike[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    companions: Sequence[Companion] = (),
) -> ChecksumCheck:
    """Check IMAGE_PATH against EXPECTED ('sha256:HEX'), or else against the sums file
    SUMS the user names, or else the sums files found beside the image, whose signatures
    are checked with gpgv against KEYRINGS. Reads only. COMPANIONS (a bmap used with the
    image) are looked up in the sums file whose line matched the image, and the result
    says whether it vouches for them too. Raises BadInput for a bad
    EXPECTED, a missing image, or a keyring or named sums file that cannot be read;
    BadImage for a read error of the image; Cancelled."""
    name = os.fspath(image_path)
    image = Path(name)
    if isinstance(keyrings, str | os.PathLike):  # one path, not its characters
        keyrings = [keyrings]
    rings: tuple[Keyring, ...] = load_keyrings(keyrings)
    if expected is not None:
        alg, want = parse_expected(expected)
        got = hash_file(name, [alg], progress=progress, cancel=cancel)[alg]
        return ChecksumCheck(
            MATCHED if got == want else MISMATCH, name, alg=alg, expected=want, actual=got
        )
    _check_image_path(name)
    if sums is not None:
        named = Path(sums)
        candidates = [(named, read_small_file(os.fspath(sums), MAX_SUMS_SIZE, "sums file"))]
    else:
        candidates = [(p, d) for p in find_sums(image) if (d := _read_found(p)) is not None]
    looked_in = tuple(str(p) for p, _ in candidates)
    if not candidates:
        return ChecksumCheck(NONE, name)
    lines: list[_Line] = []
    entries: dict[Path, list[Entry]] = {}
    for path, data in candidates:
        parsed = parse_sums(_text(data))
        found = matching_entries(parsed, path.name, image.name)
        if not found:
            continue
        verified = check_signature(path, data, rings)
        if verified.signed_text is not None:  # clear-signed: what gpgv found signed
            parsed = parse_sums(verified.signed_text)
            found = matching_entries(parsed, path.name, image.name)
        entries[path] = parsed
        lines += [_Line(path, alg, digest, verified.signature) for alg, digest in found]
    if not lines:
        return ChecksumCheck(NO_ENTRY, name, sums_file=looked_in[0], looked_in=looked_in)
    actual = hash_file(name, {line.alg for line in lines}, progress=progress, cancel=cancel)
    wrong = [line for line in lines if actual[line.alg] != line.hex]
    pick = min(
        wrong or lines,
        key=lambda line: (_SIGNATURE_RANK[line.signature.status], -strength(line.alg)),
    )
    covered = tuple(
        _cover(c, pick.sums_file, entries[pick.sums_file]) for c in companions if not wrong
    )
    return ChecksumCheck(
        MISMATCH if wrong else MATCHED,
        name,
        alg=pick.alg,
        expected=pick.hex,
        actual=actual[pick.alg],
        sums_file=str(pick.sums_file),
        signature=pick.signature,
        looked_in=looked_in,
        companions=covered,
    )


def _cover(companion: Companion, sums_file: Path, entries: list[Entry]) -> Covered:
    """What the sums file that vouches for the image says of a file used with it."""
    found = matching_entries(entries, sums_file.name, Path(companion.path).name)
    if not found:
        return Covered(companion.path, NO_ENTRY)
    for alg, want in found:
        got = companion.digest(alg)
        if got != want:
            return Covered(companion.path, MISMATCH, f"{alg} is {got}, the sums file says {want}")
    return Covered(companion.path, MATCHED)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")

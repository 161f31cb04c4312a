"""Sums files: finding them next to an image, parsing them, and picking the image's line.

Parsing is pure. Formats: GNU (`HEX  NAME`, `HEX *NAME`, a leading backslash for
escaped names), BSD tags (`SHA256 (NAME) = HEX`, also OpenSSL's `SHA2-256(NAME)= HEX`),
comments (`#`), a per-image file holding only `HEX`, and any of these clear-signed
with OpenPGP (Fedora's CHECKSUM), of which only the signed text counts.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from usbwriter.checksums.hashing import HEX_LENGTHS
from usbwriter.errors import BadInput, os_error

log = logging.getLogger(__name__)

MAX_SUMS_SIZE = 4 << 20  # a sums file is text of a few lines to a few thousand

BEGIN_SIGNED = "-----BEGIN PGP SIGNED MESSAGE-----"
BEGIN_SIGNATURE = "-----BEGIN PGP SIGNATURE-----"

# Files that list the checksums of every image in a folder (compared in lower case).
FOLDER_FILES = {
    f"{stem}{ext}"
    for stem in ("sha256sums", "sha512sums", "sha1sums", "md5sums", "b3sums", "checksum")
    for ext in ("", ".txt")
} | {"sha256sum.txt", "sha512sum.txt"}  # Linux Mint
# Patterns (case as published): Fedora's Fedora-Workstation-42-1.1-x86_64-CHECKSUM,
# FreeBSD's CHECKSUM.SHA256-FreeBSD-14.1-RELEASE-amd64.
FOLDER_PATTERNS = ("*-CHECKSUM", "CHECKSUM.SHA256*", "CHECKSUM.SHA512*")
# Suffixes of files for one image (IMAGE.sha256) or a set of them (release.sha256).
PER_FILE_SUFFIXES = (".sha256", ".sha256sum", ".sha512", ".sha512sum", ".sha1", ".md5")
SIGNATURE_SUFFIXES = (".gpg", ".sig", ".asc", ".sign")

# Algorithm names as tags and file names spell them.
_ALG_ALIASES = {
    "sha256": "sha256",
    "sha2256": "sha256",
    "sha512": "sha512",
    "sha2512": "sha512",
    "sha1": "sha1",
    "md5": "md5",
    "blake3": "blake3",
    "b3": "blake3",
}
_ALG_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
_KNOWN_LENGTHS = {32, 40, 56, 64, 96, 128}  # also sha224 and sha384, parsed but unused

_BSD = re.compile(r"(?P<alg>[A-Za-z][A-Za-z0-9-]*) ?\((?P<name>.*)\) ?= ?(?P<hex>[0-9A-Fa-f]+)")
_GNU = re.compile(r"(?P<esc>\\?)(?P<hex>[0-9A-Fa-f]+)(?: [ *]|[ \t]+\*?)(?P<name>.+)")
_BARE = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class Entry:
    """One line of a sums file: the algorithm it names (BSD tags; None for GNU lines),
    the lower-case hex digest, and the file name as written ("" for a bare digest)."""

    alg: str | None
    hex: str
    name: str


def normal_alg(word: str) -> str | None:
    """'SHA2-256' -> 'sha256'; None for an algorithm not supported."""
    return _ALG_ALIASES.get(word.lower().replace("-", "").replace("_", ""))


def clearsigned_body(text: str) -> str | None:
    """The signed text of an OpenPGP clear-signed message (the first, if several), its
    armor headers dropped and dash-escaping undone; None if TEXT is not clear-signed."""
    lines = text.splitlines()
    try:
        start = [line.rstrip() for line in lines].index(BEGIN_SIGNED)
    except ValueError:
        return None
    i = start + 1
    while i < len(lines) and lines[i].strip():  # armor headers ("Hash: SHA256")
        i += 1
    body: list[str] = []
    for line in lines[i + 1 :]:
        if line.rstrip() == BEGIN_SIGNATURE:
            break
        body.append(line[2:] if line.startswith("- ") else line)
    return "\n".join(body) + "\n" if body else ""


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), name)


def parse_line(line: str) -> Entry | None:
    line = line.rstrip("\r\n")
    if not line.strip() or line.lstrip().startswith("#"):
        return None
    if m := _BSD.fullmatch(line.strip()):
        digest = m["hex"].lower()
        if len(digest) not in _KNOWN_LENGTHS:
            return None
        alg = normal_alg(m["alg"]) or m["alg"].lower()
        return Entry(alg, digest, m["name"])
    if m := _GNU.fullmatch(line):
        digest = m["hex"].lower()
        if len(digest) not in _KNOWN_LENGTHS:
            return None
        return Entry(None, digest, _unescape(m["name"]) if m["esc"] else m["name"])
    if _BARE.fullmatch(bare := line.strip()) and len(bare) in _KNOWN_LENGTHS:
        return Entry(None, bare.lower(), "")
    return None


def parse_sums(text: str) -> list[Entry]:
    """Every checksum line of TEXT; of a clear-signed TEXT, of its signed text only.
    Lines that are none of the formats are skipped."""
    body = clearsigned_body(text)
    entries = []
    for line in (text if body is None else body).splitlines():
        if (entry := parse_line(line)) is not None:
            entries.append(entry)
    return entries


def alg_from_file_name(sums_name: str) -> str | None:
    """The algorithm a sums file's name promises: SHA256SUMS, x.iso.sha512, B3SUMS..."""
    low = sums_name.lower()
    for word, alg in (("sha256", "sha256"), ("sha512", "sha512"), ("sha1", "sha1")):
        if word in low:
            return alg
    if "md5" in low:
        return "md5"
    if "blake3" in low or low.startswith("b3sums") or low.endswith(".b3"):
        return "blake3"
    return None


def entry_alg(entry: Entry, sums_name: str) -> str | None:
    """The algorithm of ENTRY: its tag, else the sums file's name if the digest has that
    algorithm's length, else the length alone (64 hex digits: sha256); None when not
    one of the supported algorithms."""
    if entry.alg is not None:
        return entry.alg if entry.alg in HEX_LENGTHS else None
    named = alg_from_file_name(sums_name)
    if named is not None and HEX_LENGTHS[named] == len(entry.hex):
        return named
    return _ALG_BY_LENGTH.get(len(entry.hex))


def is_per_file(sums_name: str, image_name: str) -> bool:
    """Whether SUMS_NAME is the image's own sums file (IMAGE.sha256 and the like)."""
    return any(sums_name.lower() == f"{image_name}{s}".lower() for s in PER_FILE_SUFFIXES)


def names_match(entry_name: str, image_name: str) -> bool:
    """The line's name is the image's file name, also as ./NAME or *NAME. A compressed
    image (x.img.xz) matches only its own name, not the name of what it unpacks to."""
    name = entry_name
    if name.startswith("*"):
        name = name[1:]
    if name.startswith("./"):
        name = name[2:]
    return image_name in (name, name.rstrip())


def matching_entries(
    entries: list[Entry], sums_name: str, image_name: str
) -> list[tuple[str, str]]:
    """(algorithm, hex) of the lines of a sums file named SUMS_NAME that are for the file
    IMAGE_NAME: by name, or a bare digest in the image's own IMAGE.sha256."""
    own = is_per_file(sums_name, image_name)
    found: list[tuple[str, str]] = []
    for entry in entries:
        if not (names_match(entry.name, image_name) or (own and entry.name == "")):
            continue
        alg = entry_alg(entry, sums_name)
        if alg is None:
            log.info("%s: skipping a %s line for %s", sums_name, entry.alg, image_name)
        elif len(entry.hex) != HEX_LENGTHS[alg]:
            log.warning("%s: %s line of the wrong length for %s", sums_name, alg, image_name)
        elif (alg, entry.hex) not in found:
            found.append((alg, entry.hex))
    return found


def _is_sums_name(name: str) -> bool:
    low = name.lower()
    if low.endswith(SIGNATURE_SUFFIXES):
        return False
    return (
        low in FOLDER_FILES
        or any(fnmatch.fnmatchcase(name, p) for p in FOLDER_PATTERNS)
        or low.endswith(PER_FILE_SUFFIXES)
    )


def find_sums(image_path: str | os.PathLike[str]) -> list[Path]:
    """The sums files in the image's folder: the image's own (IMAGE.sha256...) first,
    then the folder's (SHA256SUMS, *-CHECKSUM, *.sha512...) by name. Only regular files
    (following symbolic links); nothing is opened."""
    image = Path(image_path)
    folder = image.parent
    own: list[Path] = []
    others: list[Path] = []
    try:
        with os.scandir(folder) as it:
            for d in it:
                if d.name == image.name or not _is_sums_name(d.name):
                    continue
                try:
                    if not d.is_file():
                        continue
                except OSError:
                    continue
                (own if is_per_file(d.name, image.name) else others).append(folder / d.name)
    except OSError as e:
        log.warning("%s: cannot list the folder for sums files: %s", folder, e.strerror)
        return []
    return sorted(own) + sorted(others)


def read_small_file(path: str | Path, limit: int, what: str) -> bytes:
    """All of a small regular file, opened without blocking; BadInput otherwise. A name
    given as a string is opened as it is written ('file/' is no file)."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        error = os_error(name, e, f"read the {what}")
        if not isinstance(error, BadInput):
            error = BadInput(
                f"{name}: cannot open the {what}: {e.strerror}", path=name, errno=e.errno
            )
        raise error from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(f"{name}: is not a regular file, not a {what}", path=name)
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise BadInput(
            f"{name}: cannot read the {what}: {e.strerror}", path=name, errno=e.errno
        ) from None
    finally:
        os.close(fd)
    if size > limit:
        raise BadInput(
            f"{name}: too large for a {what} (over {limit >> 20} MiB)",
            path=name,
            errno=errno.EFBIG,
        )
    return b"".join(chunks)

"""Checksums of an image in one sequential read pass, and checksums given by the user.

hashlib's sha256, sha512, sha1 and md5 (OpenSSL: SHA extensions where the CPU has them)
and blake3 (with threads of its own). Several algorithms are updated one after the
other on each 4 MiB chunk. Measured on a cached 1 GiB file with two CPUs: sha256 about
1.2 GB/s, sha512 0.5, blake3 2.1, the three together 0.3 (the sum of their times);
a thread per algorithm per chunk gained nothing for two algorithms and about a fifth
for three or more, and a check needs one or two.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

from usbwriter.errors import BadImage, BadInput, Cancelled
from usbwriter.progress import Meter, ProgressCallback
from usbwriter.sources.files import open_readable
from usbwriter.sources.streams import Hasher as _Hasher
from usbwriter.sources.streams import RawStream, Stream
from usbwriter.sources.streams import new_hasher as _new_hasher

CHUNK_SIZE = 4 << 20

# Supported algorithms, strongest first, and the length of their hex digests.
HEX_LENGTHS: dict[str, int] = {
    "sha512": 128,
    "blake3": 64,
    "sha256": 64,
    "sha1": 40,
    "md5": 32,
}
ALGORITHMS: tuple[str, ...] = tuple(HEX_LENGTHS)

_HEX = re.compile(r"[0-9a-f]+")


def strength(alg: str) -> int:
    """Higher for a stronger algorithm (sha512 > blake3 > sha256 > sha1 > md5)."""
    return len(ALGORITHMS) - ALGORITHMS.index(alg) if alg in HEX_LENGTHS else 0


def hash_file(
    path: str | os.PathLike[str],
    algs: Iterable[str],
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> dict[str, str]:
    """Lower-case hex digests of the file or block device at PATH as it is (a compressed
    file is not decompressed: a damaged download must hash, and mismatch), one per
    algorithm of ALGS, in a single sequential read. Opening never blocks (FIFOs, sockets
    and terminals are refused, BadInput); a read error is BadImage with its offset;
    CANCEL is checked before every chunk (Cancelled)."""
    name = os.fspath(path)
    hashers = new_hashers(name, algs)
    fd, _, size = open_readable(name)
    try:
        hash_stream(RawStream(fd, size), hashers, size, name, progress=progress, cancel=cancel)
    finally:
        os.close(fd)
    return {a: str(h.hexdigest()) for a, h in hashers.items()}


def new_hashers(name: str, algs: Iterable[str]) -> dict[str, _Hasher]:
    """One hasher per algorithm of ALGS; BadInput naming NAME for an unknown one."""
    wanted = list(dict.fromkeys(a.lower() for a in algs))
    unknown = [a for a in wanted if a not in HEX_LENGTHS]
    if unknown or not wanted:
        raise BadInput(
            f"{name}: unknown checksum algorithm {', '.join(unknown) or '(none given)'} "
            f"(known: {', '.join(ALGORITHMS)})",
            path=name,
        )
    return {a: _new_hasher(a) for a in wanted}


def hash_stream(
    stream: Stream,
    hashers: dict[str, _Hasher],
    total: int,
    name: str,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> int:
    """Feed STREAM to every hasher, to its end; the bytes read. Progress follows the
    stream's position in its file (``consumed``) over TOTAL."""
    meter = Meter("checksum", total, progress)
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    offset = 0
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{name}: checksum interrupted at offset {offset}", path=name)
        try:
            n = stream.readinto(view)
        except OSError as e:
            raise BadImage(
                f"error reading '{name}' at offset {offset}: {e.strerror}",
                path=name,
                offset=offset,
                errno=e.errno,
            ) from None
        if n == 0:
            break
        chunk = view[:n]
        for h in hashers.values():
            h.update(chunk)
        offset += n
        meter.advance(stream.consumed - meter.done)
    meter.finish()
    return offset


def _shown(value: str) -> str:
    return value if len(value) <= 48 else f"{value[:24]}...{value[-8:]}"


def parse_expected(value: str) -> tuple[str, str]:
    """'sha256:HEX' -> ('sha256', 'hex'): the algorithm (sha256, sha512, sha1, md5 or
    blake3, any case) and its digest in lower case; BadInput otherwise."""
    alg, sep, digest = value.strip().partition(":")
    alg, digest = alg.strip().lower().replace("-", ""), digest.strip().lower()
    if not sep or not alg:
        raise BadInput(
            f"checksum '{_shown(value)}': expected ALGORITHM:HEX, e.g. sha256:<64 hex digits> "
            f"(algorithms: {', '.join(ALGORITHMS)})"
        )
    if alg not in HEX_LENGTHS:
        raise BadInput(
            f"checksum '{_shown(value)}': unknown algorithm '{alg}' "
            f"(known: {', '.join(ALGORITHMS)})"
        )
    if digest and not _HEX.fullmatch(digest):
        raise BadInput(f"checksum '{_shown(value)}': the {alg} digest is not hexadecimal")
    if len(digest) != HEX_LENGTHS[alg]:
        raise BadInput(
            f"checksum '{_shown(value)}': a {alg} digest has {HEX_LENGTHS[alg]} hex digits, "
            f"this one has {len(digest)}"
        )
    return alg, digest

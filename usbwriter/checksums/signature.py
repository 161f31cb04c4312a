"""OpenPGP signatures of sums files, checked with gpgv against the keyrings the user names.

A sums file is signed by a detached signature beside it (SHA256SUMS.gpg, .sig, .asc or
Debian's .sign) or clear-signed inline (Fedora's CHECKSUM). gpgv runs in an empty
GNUPGHOME of its own, so no keyring but the given ones is trusted; it checks a private
copy of the bytes that are parsed, and for a clear-signed file the text gpgv prints as
signed is the text that is parsed.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from usbwriter.checksums.sums import BEGIN_SIGNED, SIGNATURE_SUFFIXES, read_small_file
from usbwriter.errors import BadInput, UsbWriterError

log = logging.getLogger(__name__)

GPGV_TIMEOUT = 60.0
MAX_KEYRING_SIZE = 64 << 20
MAX_SIGNATURE_SIZE = 1 << 20

VALID = "valid"
BAD = "bad"
UNKNOWN_KEY = "unknown-key"
NOT_CHECKED = "not-checked"
UNSIGNED = "unsigned"
ERROR = "error"
STATUSES = (VALID, BAD, UNKNOWN_KEY, NOT_CHECKED, UNSIGNED, ERROR)

_ARMORED_KEY = "-----BEGIN PGP PUBLIC KEY BLOCK-----"


@dataclass(frozen=True)
class Signature:
    """What is known of a sums file's signature.

    status: "valid" (gpgv: a good signature by a key of the given keyrings), "bad" (the
    file was changed after signing, or a revoked key or an expired signature), "unknown-key"
    (made by a key not in the keyrings: key_id names it), "not-checked" (signed, but no
    keyring was given), "unsigned", or "error" (gpgv missing, failed or timed out)."""

    status: str
    signature_file: str | None = None  # the detached signature, or the clear-signed file
    fingerprint: str | None = None  # of the signer's primary key (valid, unknown-key)
    key_id: str | None = None  # long key ID the signature names
    message: str = ""
    key_expired: bool = False  # valid, but the signing key has expired since (gpgv EXPKEYSIG)

    @property
    def valid(self) -> bool:
        return self.status == VALID

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Keyring:
    """A keyring file the user named: a keybox, binary OpenPGP keys (gpg --export), or
    ASCII-armored keys (gpg --export --armor), which are unpacked here for gpgv."""

    path: str
    kind: str  # "keybox", "openpgp" or "armored"
    unpacked: bytes | None = None  # the binary keys of an armored keyring


def _packet_tag(first: int) -> int | None:
    if not first & 0x80:
        return None
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


def _dearmor(text: str, name: str) -> bytes:
    """The binary packets of every PUBLIC KEY BLOCK in TEXT."""
    out = bytearray()
    lines = [line.strip() for line in text.splitlines()]
    i = 0
    while i < len(lines):
        if not lines[i].startswith(_ARMORED_KEY):
            i += 1
            continue
        i += 1
        while i < len(lines) and lines[i] and ":" in lines[i]:  # armor headers
            i += 1
        b64: list[str] = []
        while i < len(lines) and not lines[i].startswith("-----END PGP"):
            line = lines[i]
            if line and not (line.startswith("=") and len(line) == 5):  # checksum line
                b64.append(line)
            i += 1
        try:
            out += base64.b64decode("".join(b64), validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(
                f"{name}: the armored keyring is damaged (bad base64)", path=name
            ) from None
    return bytes(out)


def load_keyring(path: str | os.PathLike[str]) -> Keyring:
    """Check that PATH is a keyring gpgv can read; BadInput (naming the file and what is
    wrong) if it is missing, unreadable or not OpenPGP public keys."""
    name = os.fspath(path)
    data = read_small_file(Path(name), MAX_KEYRING_SIZE, "keyring")
    if not data:
        raise BadInput(f"{name}: the keyring is empty", path=name)
    if data[8:12] == b"KBXf":
        return Keyring(name, "keybox")
    kind, keys = "openpgp", data
    if data.lstrip()[:1] == b"-":
        text = data.decode("ascii", "replace")
        if _ARMORED_KEY not in text:
            raise BadInput(
                f"{name}: not an OpenPGP keyring (armored, but no PUBLIC KEY BLOCK)", path=name
            )
        kind, keys = "armored", _dearmor(text, name)
    tag = _packet_tag(keys[0]) if keys else None
    if tag == 5:
        raise BadInput(
            f"{name}: holds a secret key; give the public key (gpg --export KEY > FILE)",
            path=name,
        )
    if tag != 6:
        raise BadInput(
            f"{name}: not an OpenPGP keyring (export one with gpg --export KEY > FILE)",
            path=name,
        )
    return Keyring(name, kind, keys if kind == "armored" else None)


def load_keyrings(paths: Iterable[str | os.PathLike[str]]) -> tuple[Keyring, ...]:
    return tuple(load_keyring(p) for p in paths)


def detached_signature(sums_path: Path) -> Path | None:
    """SUMS.gpg, SUMS.sig, SUMS.asc or SUMS.sign beside the sums file, if one is there."""
    for suffix in SIGNATURE_SUFFIXES:
        candidate = sums_path.with_name(sums_path.name + suffix)
        try:
            if candidate.is_file():
                return candidate
        except OSError:
            continue
    return None


def is_clearsigned(text: str) -> bool:
    return any(line.rstrip() == BEGIN_SIGNED for line in text.splitlines())


@dataclass(frozen=True)
class Verified:
    signature: Signature
    signed_text: str | None = None  # what gpgv found signed, for a clear-signed file


def check_signature(
    sums_path: Path, data: bytes, keyrings: Sequence[Keyring], *, timeout: float = GPGV_TIMEOUT
) -> Verified:
    """The signature of the sums file SUMS_PATH whose bytes (as read once) are DATA.
    Never raises for what the signature turns out to be; gpgv problems are "error"."""
    sig_path = detached_signature(sums_path)
    clear = sig_path is None and is_clearsigned(data.decode("utf-8", "surrogateescape"))
    if sig_path is None and not clear:
        return Verified(Signature(UNSIGNED, message=f"{sums_path.name}: not signed"))
    shown = sig_path or sums_path
    if not keyrings:
        return Verified(
            Signature(
                NOT_CHECKED,
                signature_file=str(shown),
                message=f"{shown.name}: signature not checked (no --keyring given)",
            )
        )
    sig_data = None
    if sig_path is not None:
        try:
            sig_data = read_small_file(sig_path, MAX_SIGNATURE_SIZE, "signature")
        except UsbWriterError as e:
            return Verified(_error(shown, e.message))
    if shutil.which("gpgv") is None:
        return Verified(_error(shown, "gpgv is not installed (Debian package gpgv)"))
    with tempfile.TemporaryDirectory(prefix="usbwriter-gpgv-") as tmp:
        return _run_gpgv(Path(tmp), shown, data, sig_data, keyrings, timeout)


def _error(shown: Path, why: str) -> Signature:
    return Signature(
        ERROR, signature_file=str(shown), message=f"{shown.name}: signature not checked: {why}"
    )


def _run_gpgv(
    tmp: Path,
    shown: Path,
    data: bytes,
    sig_data: bytes | None,
    keyrings: Sequence[Keyring],
    timeout: float,
) -> Verified:
    home = tmp / "home"
    home.mkdir(mode=0o700)
    argv = ["gpgv", "--status-fd", "1"]
    for n, ring in enumerate(keyrings):
        if ring.unpacked is not None:
            unpacked = tmp / f"keyring{n}.gpg"
            unpacked.write_bytes(ring.unpacked)
            path = str(unpacked)
        else:
            path = os.path.abspath(ring.path)  # a bare name would be looked up in GNUPGHOME
        argv += ["--keyring", path]
    data_file = tmp / "data"
    data_file.write_bytes(data)
    output = tmp / "signed-text"
    if sig_data is not None:
        sig_file = tmp / "signature"
        sig_file.write_bytes(sig_data)
        argv += ["--", str(sig_file), str(data_file)]
    else:
        argv += ["--output", str(output), "--", str(data_file)]
    env = {"LC_ALL": "C", "GNUPGHOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    log.info("running %s", " ".join(argv))
    try:
        p = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Verified(_error(shown, f"gpgv did not finish in {timeout:.0f} s"))
    except OSError as e:
        return Verified(_error(shown, f"cannot run gpgv: {e.strerror}"))
    log.debug("gpgv exit %d, status:\n%s\nstderr:\n%s", p.returncode, p.stdout, p.stderr)
    signature = interpret_status(p.stdout, p.returncode, shown, p.stderr)
    text = None
    if signature.valid and sig_data is None:
        text = output.read_bytes().decode("utf-8", "surrogateescape")
    return Verified(signature, text)


def interpret_status(status: str, returncode: int, shown: Path, stderr: str = "") -> Signature:
    """The Signature that gpgv's --status-fd output and exit code say (pure)."""
    seen: dict[str, list[str]] = {}
    for line in status.splitlines():
        if line.startswith("[GNUPG:] "):
            words = line[len("[GNUPG:] ") :].split()
            if words:
                seen.setdefault(words[0], words[1:])
    f = str(shown)

    def arg(keyword: str, index: int) -> str | None:
        words = seen.get(keyword, [])
        return words[index] if len(words) > index else None

    for keyword, why in (
        ("BADSIG", "the signed file was changed after it was signed"),
        ("REVKEYSIG", "the signing key has been revoked"),
        ("EXPSIG", "the signature has expired"),
    ):
        if keyword in seen:
            key_id = arg(keyword, 0)
            return Signature(
                BAD,
                signature_file=f,
                fingerprint=arg("VALIDSIG", 9) or arg("VALIDSIG", 0),
                key_id=key_id,
                message=f"{shown.name}: BAD signature by key {key_id}: {why}",
            )
    if returncode == 0 and "VALIDSIG" in seen and ("GOODSIG" in seen or "EXPKEYSIG" in seen):
        fingerprint = arg("VALIDSIG", 9) or arg("VALIDSIG", 0)
        note = " (the key has expired since)" if "EXPKEYSIG" in seen else ""
        return Signature(
            VALID,
            signature_file=f,
            fingerprint=fingerprint,
            key_id=arg("GOODSIG", 0) or arg("EXPKEYSIG", 0),
            message=f"{shown.name}: good signature by {fingerprint}{note}",
            key_expired="EXPKEYSIG" in seen,
        )
    if "NO_PUBKEY" in seen or arg("ERRSIG", 5) == "9":
        key_id = arg("NO_PUBKEY", 0) or arg("ERRSIG", 0)
        return Signature(
            UNKNOWN_KEY,
            signature_file=f,
            fingerprint=arg("ERRSIG", 6),
            key_id=key_id,
            message=f"{shown.name}: made by key {key_id}, which is in none of the given keyrings",
        )
    if "NODATA" in seen:
        return _error(shown, "no OpenPGP signature found in it")
    last = next((s for s in reversed(stderr.splitlines()) if s.strip()), "no message")
    return _error(shown, f"gpgv exited with {returncode} ({last.strip().removeprefix('gpgv: ')})")

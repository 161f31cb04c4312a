"""Checksums and signatures of downloaded images (core; no UI).

- ``hash_file``: digests of an image in one read pass (sha256, sha512, sha1, md5, blake3).
- ``parse_expected``: a checksum the user gives, ``sha256:HEX``.
- ``find_sums``, ``parse_sums``: the sums files beside an image and their lines.
- ``check_signature``: a sums file's OpenPGP signature, checked with gpgv.
- ``check_image``: all of it, as a ``ChecksumCheck`` result.
"""

from usbwriter.checksums.check import ChecksumCheck, check_image
from usbwriter.checksums.hashing import ALGORITHMS, HEX_LENGTHS, hash_file, parse_expected
from usbwriter.checksums.signature import (
    Keyring,
    Signature,
    Verified,
    check_signature,
    detached_signature,
    interpret_status,
    load_keyring,
    load_keyrings,
)
from usbwriter.checksums.sums import (
    Entry,
    clearsigned_body,
    entry_alg,
    find_sums,
    matching_entries,
    parse_sums,
)

__all__ = [
    "ALGORITHMS",
    "HEX_LENGTHS",
    "ChecksumCheck",
    "Entry",
    "Keyring",
    "Signature",
    "Verified",
    "check_image",
    "check_signature",
    "clearsigned_body",
    "detached_signature",
    "entry_alg",
    "find_sums",
    "hash_file",
    "interpret_status",
    "load_keyring",
    "load_keyrings",
    "matching_entries",
    "parse_expected",
    "parse_sums",
]

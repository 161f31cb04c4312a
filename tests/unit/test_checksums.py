"""Checksums and signatures of downloaded images: no root, no devices.

Parsing is tested on text in each published layout; the rest with real tools: sums
files written by sha256sum and sha512sum here, and throwaway OpenPGP keys made with gpg
in a temporary GNUPGHOME that sign them (detached and clear-signed) for gpgv to check.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from tests.helpers.gpg import Gpg, key_pair, run
from usbwriter.checksums import (
    ChecksumCheck,
    Entry,
    check_image,
    clearsigned_body,
    entry_alg,
    find_sums,
    hash_file,
    interpret_status,
    load_keyring,
    matching_entries,
    parse_expected,
    parse_sums,
)
from usbwriter.errors import EXIT_USAGE, BadInput, Cancelled
from usbwriter.progress import Progress

H256 = "a" * 64
H512 = "b" * 128
NAME = "debian-12.5.0-amd64-netinst.iso"
HAS_GPG = shutil.which("gpg") is not None and shutil.which("gpgv") is not None
needs_gpg = pytest.mark.skipif(not HAS_GPG, reason="needs gpg and gpgv (scripts/lib/setup.sh)")


# --- parsing ---------------------------------------------------------------------------


def test_gnu_lines_text_and_binary_marker() -> None:
    text = f"{H256}  {NAME}\n{'C' * 64} *ubuntu-24.04-desktop-amd64.iso\n"
    assert parse_sums(text) == [
        Entry(None, H256, NAME),
        Entry(None, "c" * 64, "ubuntu-24.04-desktop-amd64.iso"),
    ]


def test_gnu_lines_odd_spacing_crlf_comments_and_escapes() -> None:
    text = (
        "# made by sha256sum\r\n"
        "\r\n"
        f"{H256} single-space.iso\r\n"  # BSD sha256 -r
        f"{H256}\ttab.iso\n"
        f"\\{H256}  new\\nline\\\\.iso\n"  # GNU escaping of \n and backslash
        f"{H256}   leading space.iso\n"
        "not a line at all\n"
        f"{'a' * 63}  short.iso\n"
    )
    assert [e.name for e in parse_sums(text)] == [
        "single-space.iso",
        "tab.iso",
        "new\nline\\.iso",
        " leading space.iso",
    ]


def test_bsd_tag_lines() -> None:
    text = (
        f"SHA256 ({NAME}) = {H256}\n"
        f"SHA512 (name (1).iso) = {H512.upper()}\n"
        f"SHA2-256(openssl.iso)= {H256}\n"
        f"BLAKE3 (b3.iso) = {H256}\n"
        f"SHA384 (x.iso) = {'d' * 96}\n"
    )
    assert parse_sums(text) == [
        Entry("sha256", H256, NAME),
        Entry("sha512", H512, "name (1).iso"),
        Entry("sha256", H256, "openssl.iso"),
        Entry("blake3", H256, "b3.iso"),
        Entry("sha384", "d" * 96, "x.iso"),
    ]
    # an algorithm usbwriter does not compute is skipped, not guessed
    assert entry_alg(Entry("sha384", "d" * 96, "x.iso"), "CHECKSUM") is None


def test_per_file_sums_bare_hex_or_one_line() -> None:
    assert parse_sums(f"{H256}\n") == [Entry(None, H256, "")]
    assert parse_sums(f"{H256}  {NAME}\n") == [Entry(None, H256, NAME)]
    bare = parse_sums(f"{H256.upper()}\n")
    assert matching_entries(bare, f"{NAME}.sha256", NAME) == [("sha256", H256)]
    assert matching_entries(bare, f"{NAME}.sha256sum", NAME) == [("sha256", H256)]
    # a bare digest names no file: it counts only in the image's own file
    assert matching_entries(bare, "SHA256SUMS", NAME) == []
    assert matching_entries(bare, "other.iso.sha256", NAME) == []


FEDORA_CHECKSUM = f"""\
-----BEGIN PGP SIGNED MESSAGE-----
Hash: SHA256

# Fedora-Workstation-Live-x86_64-40-1.14.iso: 2295853056 bytes
SHA256 (Fedora-Workstation-Live-x86_64-40-1.14.iso) = {H256}
-----BEGIN PGP SIGNATURE-----

iQIzBAEBCAAdFiEEEV35rO/88SJ1EVSlyZx4SJNCzL8FAmYjL6AACgkQyZx4SJNC
zL+n+Q/+ImlGKs7yY0kEsYS9kKuivpv3ebKg3Bq8b2aMLGmMjfcMSuWBmZKsTlhb
=4Ubv
-----END PGP SIGNATURE-----
"""


def test_fedora_checksum_clearsigned_bsd_with_size_comments() -> None:
    entries = parse_sums(FEDORA_CHECKSUM)
    assert entries == [Entry("sha256", H256, "Fedora-Workstation-Live-x86_64-40-1.14.iso")]
    found = matching_entries(
        entries,
        "Fedora-Workstation-40-1.14-x86_64-CHECKSUM",
        "Fedora-Workstation-Live-x86_64-40-1.14.iso",
    )
    assert found == [("sha256", H256)]


def test_clearsigned_only_the_signed_text_counts() -> None:
    text = (
        f"{'e' * 64}  {NAME}\n"  # before the signed message: ignored
        "-----BEGIN PGP SIGNED MESSAGE-----\n"
        "Hash: SHA512\n"
        "\n"
        f"{H256}  {NAME}\n"
        f"- -{H256}  dash-escaped.iso\n"
        "-----BEGIN PGP SIGNATURE-----\n"
        "\n"
        "iHUEARYIAB0WIQ\n"
        "-----END PGP SIGNATURE-----\n"
        f"{'f' * 64}  {NAME}\n"  # after it: ignored
    )
    assert clearsigned_body(text) == f"{H256}  {NAME}\n-{H256}  dash-escaped.iso\n"
    assert parse_sums(text) == [Entry(None, H256, NAME)]
    assert clearsigned_body(f"{H256}  {NAME}\n") is None


@pytest.mark.parametrize(
    ("entry", "sums_name", "alg"),
    [
        (Entry(None, H256, NAME), "SHA256SUMS", "sha256"),
        (Entry(None, H512, NAME), "SHA512SUMS", "sha512"),
        (Entry(None, "1" * 40, NAME), "SHA1SUMS", "sha1"),
        (Entry(None, "1" * 32, NAME), "MD5SUMS", "md5"),
        (Entry(None, H256, NAME), "B3SUMS", "blake3"),
        (Entry(None, H256, NAME), f"{NAME}.sha256sum", "sha256"),
        (Entry(None, H512, NAME), f"{NAME}.sha512", "sha512"),
        (Entry(None, H512, NAME), "CHECKSUM", "sha512"),  # by its length
        (Entry(None, H512, NAME), "SHA256SUMS", "sha512"),  # the length wins over the name
        (Entry(None, "1" * 56, NAME), "CHECKSUM", None),  # sha224: not computed
        (Entry("md5", "1" * 32, NAME), "SHA256SUMS", "md5"),  # a tag wins
    ],
)
def test_algorithm_from_tag_name_or_length(entry: Entry, sums_name: str, alg: str | None) -> None:
    assert entry_alg(entry, sums_name) == alg


def test_matching_names() -> None:
    entries = parse_sums(
        f"{'1' * 64}  ./{NAME}\n"
        f"{'2' * 64}  sub/{NAME}\n"
        f"{'3' * 64}  {NAME}.xz\n"
        f"{'4' * 64} *{NAME}\n"
        f"SHA256 ({NAME}) = {'5' * 64}\n"
    )
    assert matching_entries(entries, "SHA256SUMS", NAME) == [
        ("sha256", "1" * 64),
        ("sha256", "4" * 64),
        ("sha256", "5" * 64),
    ]
    # a compressed image matches its own name only, not the name it unpacks to
    assert matching_entries(entries, "SHA256SUMS", f"{NAME}.xz") == [("sha256", "3" * 64)]
    assert matching_entries(parse_sums(f"{H256}  x.img\n"), "SHA256SUMS", "x.img.xz") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"sha256:{H256}", ("sha256", H256)),
        (f"SHA512:{H512.upper()}", ("sha512", H512)),
        (f" sha1 : {'1' * 40} ", ("sha1", "1" * 40)),
        (f"md5:{'1' * 32}", ("md5", "1" * 32)),
        (f"blake3:{H256}", ("blake3", H256)),
        (f"sha-256:{H256}", ("sha256", H256)),
    ],
)
def test_parse_expected(value: str, expected: tuple[str, str]) -> None:
    assert parse_expected(value) == expected


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (f"sha384:{'1' * 96}", "unknown algorithm 'sha384'"),
        (f"crc32:{'1' * 8}", "unknown algorithm 'crc32'"),
        (f"sha256:{'1' * 63}", "a sha256 digest has 64 hex digits, this one has 63"),
        (f"sha512:{H256}", "a sha512 digest has 128 hex digits, this one has 64"),
        (f"md5:{'g' * 32}", "not hexadecimal"),
        (H256, "expected ALGORITHM:HEX"),
        ("sha256:", "has 64 hex digits, this one has 0"),
    ],
)
def test_parse_expected_refuses(value: str, words: str) -> None:
    with pytest.raises(BadInput, match=words) as info:
        parse_expected(value)
    assert info.value.exit_code == EXIT_USAGE
    assert "\n" not in str(info.value)


def test_interpret_status_recorded_lines() -> None:
    sig = Path("/d/SHA256SUMS.gpg")
    fpr = "8EE4BF81FD14790D41A533D2421D03CF2E88694E"
    good = (
        "[GNUPG:] NEWSIG\n"
        "[GNUPG:] GOODSIG 421D03CF2E88694E usbwriter test <t@example.invalid>\n"
        f"[GNUPG:] VALIDSIG {'1' * 40} 2026-11-30 1796014801 0 4 0 22 8 00 {fpr}\n"
    )
    valid = interpret_status(good, 0, sig)
    assert (valid.status, valid.fingerprint, valid.key_id) == ("valid", fpr, "421D03CF2E88694E")
    expired = interpret_status(good.replace("GOODSIG", "EXPKEYSIG"), 0, sig)
    assert expired.status == "valid" and "expired" in expired.message
    bad = interpret_status("[GNUPG:] BADSIG 421D03CF2E88694E someone\n", 1, sig)
    assert bad.status == "bad" and bad.key_id == "421D03CF2E88694E"
    revoked = interpret_status(good.replace("GOODSIG", "REVKEYSIG"), 0, sig)
    assert revoked.status == "bad" and "revoked" in revoked.message
    missing = interpret_status(
        f"[GNUPG:] ERRSIG 421D03CF2E88694E 22 8 00 1796014801 9 {fpr}\n"
        "[GNUPG:] NO_PUBKEY 421D03CF2E88694E\n",
        2,
        sig,
    )
    assert (missing.status, missing.key_id, missing.fingerprint) == (
        "unknown-key",
        "421D03CF2E88694E",
        fpr,
    )
    nodata = interpret_status("[GNUPG:] NODATA 1\n", 2, sig)
    assert nodata.status == "error" and "no OpenPGP signature" in nodata.message
    # a good signature with a failing exit (two signed messages in one file) is no pass
    assert interpret_status(good, 2, sig, "gpgv: handle plaintext failed").status == "error"


# --- finding sums files ----------------------------------------------------------------


def test_find_sums(tmp_path: Path) -> None:
    image = tmp_path / NAME
    image.write_bytes(b"x")
    names = [
        "SHA256SUMS",
        "SHA256SUMS.gpg",
        "SHA512SUMS",
        "SHA512SUMS.sign",
        "sha256sum.txt",
        "MD5SUMS",
        "SHA1SUMS",
        "CHECKSUM",
        "Fedora-Workstation-40-1.14-x86_64-CHECKSUM",
        f"{NAME}.sha256",
        f"{NAME}.sha512sum",
        "other.iso.sha256",
        "other.iso.sha256sum",
        "other.iso.sha512",
        "README.txt",
        "other.iso",
    ]
    for name in names:
        (tmp_path / name).write_text("")
    (tmp_path / "B3SUMS").mkdir()  # a directory is no sums file
    os.mkfifo(tmp_path / "SHA1SUMS.txt")  # listed only if a regular file: never opened
    found = [p.name for p in find_sums(image)]
    assert found == [
        f"{NAME}.sha256",
        f"{NAME}.sha512sum",
        "CHECKSUM",
        "Fedora-Workstation-40-1.14-x86_64-CHECKSUM",
        "MD5SUMS",
        "SHA1SUMS",
        "SHA256SUMS",
        "SHA512SUMS",
        "other.iso.sha256",
        "other.iso.sha256sum",
        "other.iso.sha512",
        "sha256sum.txt",
    ]
    assert find_sums(tmp_path / "missing-folder" / NAME) == []


# --- hashing ---------------------------------------------------------------------------


@pytest.fixture
def big_image(tmp_path: Path) -> Path:
    """Nine and a half MiB: three chunks, the last one short."""
    path = tmp_path / NAME
    path.write_bytes(os.urandom(9 * (1 << 20) + 512 * 1024))
    return path


def test_hash_file_agrees_with_coreutils_and_blake3(big_image: Path) -> None:
    progress: list[Progress] = []
    digests = hash_file(
        big_image, ["sha256", "sha512", "sha1", "md5", "blake3"], progress=progress.append
    )
    for alg in ("sha256", "sha512", "sha1", "md5"):
        assert digests[alg] == run([f"{alg}sum", str(big_image)]).split()[0], alg
    assert digests["blake3"] == blake3.blake3(big_image.read_bytes()).hexdigest()
    assert progress and {p.phase for p in progress} == {"checksum"}
    assert progress[-1].done == progress[-1].total == big_image.stat().st_size


def test_hash_file_blake3_known_value(tmp_path: Path) -> None:
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    assert hash_file(empty, ["blake3", "sha256"]) == {
        "blake3": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
        "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    }


def test_hash_file_cancel(big_image: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match=NAME):
        hash_file(big_image, ["sha256"], cancel=cancel)


def test_hash_file_unknown_algorithm(big_image: Path) -> None:
    with pytest.raises(BadInput, match="unknown checksum algorithm sha3"):
        hash_file(big_image, ["sha3"])


def test_hash_file_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "image.iso"
    os.mkfifo(fifo)
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            hash_file(fifo, ["sha256"])
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "hash_file blocked on a FIFO"
    assert len(errors) == 1 and isinstance(errors[0], BadInput)
    assert "FIFO" in str(errors[0])
    with pytest.raises(BadInput, match="FIFO"):
        check_image(fifo)


def test_hash_file_missing(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        hash_file(tmp_path / "nope.iso", ["sha256"])


# --- checking an image against sums files, with real tools ------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gpg, Gpg]]:
    yield from key_pair(tmp_path_factory)


@pytest.fixture
def download(tmp_path: Path) -> Path:
    """A folder as a browser leaves it: the image, and SHA256SUMS made by sha256sum
    with a line for another image too."""
    folder = tmp_path / "Downloads"
    folder.mkdir()
    (folder / NAME).write_bytes(os.urandom(3 << 20))
    (folder / "other.iso").write_bytes(b"other")
    sums = run(["sha256sum", NAME, "other.iso"], cwd=folder)
    (folder / "SHA256SUMS").write_text(sums)
    return folder / NAME


def test_good_line_unsigned(download: Path) -> None:
    check = check_image(download)
    digest = hashlib.sha256(download.read_bytes()).hexdigest()
    assert (check.status, check.alg, check.expected, check.actual) == (
        "matched",
        "sha256",
        digest,
        digest,
    )
    assert check.sums_file == str(download.parent / "SHA256SUMS")
    assert check.signature is not None and check.signature.status == "unsigned"
    assert check.describe() == "SHA256SUMS line matched (sha256); SHA256SUMS is not signed"
    d = check.to_dict()
    assert d["status"] == "matched" and d["source"] == "sums"
    assert d["signature"]["status"] == "unsigned"


def test_wrong_hash(download: Path) -> None:
    with open(download, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"flipped")
    check = check_image(download)
    assert check.status == "mismatch"
    assert check.expected != check.actual
    assert check.describe().startswith(f"SHA256SUMS: sha256 of {NAME} does not match: expected ")


def test_missing_line(download: Path) -> None:
    renamed = download.with_name("renamed.iso")
    download.rename(renamed)
    check = check_image(renamed)
    assert check.status == "no-entry" and check.alg is None
    assert check.describe() == "no checksum found: no line for renamed.iso in SHA256SUMS"
    assert check.to_dict()["source"] is None


def test_no_sums_file(download: Path) -> None:
    (download.parent / "SHA256SUMS").unlink()
    check = check_image(download)
    assert check == ChecksumCheck("none", str(download))
    assert check.describe() == "no checksum found (no sums file next to the image)"


def test_sha512_and_sha256_both_checked_in_one_pass(download: Path) -> None:
    folder = download.parent
    (folder / "SHA512SUMS").write_text(run(["sha512sum", NAME], cwd=folder))
    progress: list[Progress] = []
    check = check_image(download, progress=progress.append)
    assert (check.status, check.alg) == ("matched", "sha512")  # the stronger one reported
    assert progress[-1].done == download.stat().st_size  # read once, not twice
    # a stale SHA256SUMS spoils it: any line that does not match is a mismatch
    (folder / "SHA256SUMS").write_text(f"{H256}  {NAME}\n")
    check = check_image(download)
    assert (check.status, check.alg, check.expected) == ("mismatch", "sha256", H256)


def test_per_file_bare_digest_and_compressed_name(tmp_path: Path) -> None:
    image = tmp_path / "raspios.img.xz"
    image.write_bytes(os.urandom(4096))
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    (tmp_path / "raspios.img.xz.sha256").write_text(f"{digest}\n")
    (tmp_path / "SHA256SUMS").write_text(f"{H256}  raspios.img\n")  # the unpacked image's
    check = check_image(image)
    assert (check.status, check.sums_file) == ("matched", str(tmp_path / "raspios.img.xz.sha256"))


def test_given_checksum_good_and_bad(download: Path) -> None:
    digest = hashlib.sha256(download.read_bytes()).hexdigest()
    good = check_image(download, expected=f"sha256:{digest.upper()}")
    assert (good.status, good.sums_file, good.signature) == ("matched", None, None)
    assert good.describe() == "sha256 matched the given checksum"
    assert good.to_dict()["source"] == "given"
    bad = check_image(download, expected=f"sha256:{H256}")
    assert bad.status == "mismatch"
    assert bad.describe() == (
        f"sha256 of {NAME} does not match the given checksum: expected {H256}, got {digest}"
    )
    with pytest.raises(BadInput):
        check_image(download, expected="sha256:abc")


def test_given_blake3(download: Path) -> None:
    digest = blake3.blake3(download.read_bytes()).hexdigest()
    assert check_image(download, expected=f"blake3:{digest}").status == "matched"
    assert check_image(download, expected=f"blake3:{H256}").status == "mismatch"
    (download.parent / "B3SUMS").write_text(f"{digest}  {NAME}\n")
    (download.parent / "SHA256SUMS").unlink()
    check = check_image(download)
    assert (check.status, check.alg) == ("matched", "blake3")


@needs_gpg
def test_detached_signature_valid(download: Path, keys: tuple[Gpg, Gpg]) -> None:
    signer, _ = keys
    signer.sign(download.parent / "SHA256SUMS")
    check = check_image(download, keyrings=[signer.keyring])
    assert check.status == "matched"
    assert check.signature is not None
    assert (check.signature.status, check.signature.fingerprint) == ("valid", signer.fingerprint)
    assert check.signature.signature_file == str(download.parent / "SHA256SUMS.gpg")
    assert check.describe() == f"SHA256SUMS line matched (sha256), signed by {signer.fingerprint}"


@needs_gpg
@pytest.mark.parametrize("suffix", [".sig", ".asc", ".sign"])
def test_detached_signature_names_and_armored_keyring(
    download: Path, keys: tuple[Gpg, Gpg], suffix: str
) -> None:
    signer, _ = keys
    signer.sign(download.parent / "SHA256SUMS", suffix, armor=suffix == ".asc")
    check = check_image(download, keyrings=[signer.armored])
    assert check.signature is not None and check.signature.status == "valid"


@needs_gpg
def test_keyring_named_without_a_slash(
    download: Path, keys: tuple[Gpg, Gpg], monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpgv looks up a bare name in GNUPGHOME; a file in the current folder still works."""
    signer, _ = keys
    signer.sign(download.parent / "SHA256SUMS")
    monkeypatch.chdir(signer.keyring.parent)
    check = check_image(download, keyrings=[signer.keyring.name])
    assert check.signature is not None and check.signature.status == "valid"


@needs_gpg
def test_bad_signature_sums_edited_after_signing(download: Path, keys: tuple[Gpg, Gpg]) -> None:
    signer, _ = keys
    sums = download.parent / "SHA256SUMS"
    signer.sign(sums)
    with open(download, "r+b") as f:  # the image replaced, and its line edited to match
        f.write(b"evil")
    sums.write_text(run(["sha256sum", NAME, "other.iso"], cwd=download.parent))
    check = check_image(download, keyrings=[signer.keyring])
    assert check.status == "matched"
    assert check.signature is not None and check.signature.status == "bad"
    assert "BAD signature" in check.describe()


@needs_gpg
def test_unknown_key(download: Path, keys: tuple[Gpg, Gpg]) -> None:
    signer, other = keys
    signer.sign(download.parent / "SHA256SUMS")
    check = check_image(download, keyrings=[other.keyring])
    sig = check.signature
    assert sig is not None and sig.status == "unknown-key"
    assert sig.key_id == signer.fingerprint[-16:]
    assert sig.key_id in check.describe() and "none of the given keyrings" in check.describe()
    # either of two keyrings may hold the key
    both = check_image(download, keyrings=[other.keyring, signer.keyring])
    assert both.signature is not None and both.signature.status == "valid"


@needs_gpg
def test_signed_but_no_keyring(download: Path, keys: tuple[Gpg, Gpg]) -> None:
    signer, _ = keys
    signer.sign(download.parent / "SHA256SUMS")
    check = check_image(download)
    assert check.status == "matched"
    assert check.signature is not None and check.signature.status == "not-checked"
    assert check.signature.fingerprint is None
    assert check.describe() == (
        "SHA256SUMS line matched (sha256); signature not checked (no --keyring given)"
    )


@needs_gpg
def test_fedora_style_clearsigned_checksum(tmp_path: Path, keys: tuple[Gpg, Gpg]) -> None:
    signer, other = keys
    image = tmp_path / "Fedora-Workstation-Live-x86_64-40-1.14.iso"
    image.write_bytes(os.urandom(1 << 20))
    plain = tmp_path / "plain"
    size = image.stat().st_size
    plain.write_text(
        f"# {image.name}: {size} bytes\n" + run(["sha256sum", "--tag", image.name], cwd=tmp_path)
    )
    checksum = tmp_path / "Fedora-Workstation-40-1.14-x86_64-CHECKSUM"
    signer.clearsign(plain, checksum)
    plain.unlink()
    check = check_image(image, keyrings=[signer.keyring])
    assert (check.status, check.sums_file) == ("matched", str(checksum))
    assert check.signature is not None and check.signature.status == "valid"
    assert check.signature.signature_file == str(checksum)
    assert check_image(image).signature.status == "not-checked"  # type: ignore[union-attr]
    unknown = check_image(image, keyrings=[other.keyring]).signature
    assert unknown is not None and unknown.status == "unknown-key"


@needs_gpg
def test_clearsigned_lines_outside_the_signature_do_not_count(
    tmp_path: Path, keys: tuple[Gpg, Gpg]
) -> None:
    signer, _ = keys
    image = tmp_path / NAME
    image.write_bytes(b"the real image")
    plain = tmp_path / "plain"
    plain.write_text(run(["sha256sum", NAME], cwd=tmp_path))
    signed = tmp_path / "signed"
    signer.clearsign(plain, signed)
    plain.unlink()
    image.write_bytes(b"a replaced image")  # and a line for it put outside the signed text
    evil = run(["sha256sum", NAME], cwd=tmp_path)
    (tmp_path / "CHECKSUM").write_text(evil + signed.read_text() + evil)
    signed.unlink()
    check = check_image(image, keyrings=[signer.keyring])
    assert check.status == "mismatch"
    assert check.signature is not None and check.signature.status == "valid"
    # edited inside the signed text: the signature is bad
    text = (tmp_path / "CHECKSUM").read_text()
    digest = evil.split()[0]
    inner = text.split("-----BEGIN PGP SIGNED MESSAGE-----")[1]
    first = inner.split("\n\n", 1)[1].split()[0]
    (tmp_path / "CHECKSUM").write_text(text.replace(first, digest))
    check = check_image(image, keyrings=[signer.keyring])
    assert check.status == "matched"
    assert check.signature is not None and check.signature.status == "bad"


def test_keyring_and_sums_errors_name_the_file(download: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.gpg"
    with pytest.raises(BadInput, match=re.escape(f"{missing}: no such file")):
        check_image(download, keyrings=[missing])
    not_keys = tmp_path / "notes.txt"
    not_keys.write_text("hello\n")
    with pytest.raises(BadInput, match=re.escape(f"{not_keys}: not an OpenPGP keyring")):
        check_image(download, keyrings=[not_keys])
    empty = tmp_path / "empty.gpg"
    empty.write_bytes(b"")
    with pytest.raises(BadInput, match="the keyring is empty"):
        load_keyring(empty)
    folder = tmp_path / "keys.d"
    folder.mkdir()
    with pytest.raises(BadInput, match=re.escape(str(folder))):
        load_keyring(folder)
    with pytest.raises(BadInput, match="SUMS-missing: no such file"):
        check_image(download, sums=tmp_path / "SUMS-missing")
    if os.geteuid() != 0:
        locked = tmp_path / "locked.gpg"
        locked.write_bytes(b"\x99")
        locked.chmod(0)
        with pytest.raises(BadInput, match="permission denied"):
            load_keyring(locked)


def test_named_sums_file(download: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "sums-from-the-web.txt"
    elsewhere.write_text(run(["sha256sum", NAME], cwd=download.parent))
    (download.parent / "SHA256SUMS").write_text(f"{H256}  {NAME}\n")  # not looked at
    check = check_image(download, sums=elsewhere)
    assert (check.status, check.looked_in) == ("matched", (str(elsewhere),))

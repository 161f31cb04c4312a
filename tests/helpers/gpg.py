"""Throwaway OpenPGP keys made with the real gpg, for signed sums files in tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    full = dict(os.environ, LC_ALL="C", **(env or {}))
    return subprocess.run(
        argv,
        cwd=cwd,
        env=full,
        stdin=subprocess.DEVNULL,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


@dataclass
class Gpg:
    home: Path
    fingerprint: str
    keyring: Path  # binary export (gpg --export)
    armored: Path  # gpg --export --armor

    def env(self) -> dict[str, str]:
        return {"GNUPGHOME": str(self.home)}

    def sign(self, path: Path, suffix: str = ".gpg", *, armor: bool = False) -> Path:
        out = path.with_name(path.name + suffix)
        argv = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
        argv += ["--armor"] if armor else []
        run([*argv, "--detach-sign", "-o", str(out), str(path)], env=self.env())
        return out

    def clearsign(self, path: Path, out: Path) -> None:
        argv = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]
        run([*argv, "--clearsign", "-o", str(out), str(path)], env=self.env())


def make_key(where: Path, user: str, *, made: str | None = None, expire: str = "never") -> Gpg:
    """A key in a GNUPGHOME of its own; MADE (e.g. "20200101T000000") makes it, and every
    signature it makes, at that time, so that with EXPIRE ("1y") it has expired since."""
    home = where / "gnupg"
    home.mkdir(mode=0o700, parents=True)
    env = {"GNUPGHOME": str(home)}
    if made is not None:
        (home / "gpg.conf").write_text(f"faked-system-time {made}\n")
    argv = ["gpg", "--batch", "--passphrase", "", "--quick-gen-key"]
    run([*argv, f"{user} <t@example.invalid>", "ed25519", "sign", expire], env=env)
    listing = run(["gpg", "--batch", "--with-colons", "--list-keys"], env=env)
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line[:4] == "fpr:")
    keyring, armored = where / "key.gpg", where / "key.asc"
    run(["gpg", "--batch", "--export", "-o", str(keyring)], env=env)
    run(["gpg", "--batch", "--export", "--armor", "-o", str(armored)], env=env)
    return Gpg(home, fingerprint, keyring, armored)


def needs_gpg_tools() -> None:
    if shutil.which("gpg") is None or shutil.which("gpgv") is None:
        pytest.skip("needs gpg and gpgv (scripts/lib/setup.sh installs them)")


def key_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gpg, Gpg]]:
    """A signer's key and another one, for a module-scoped fixture (``yield from``);
    skips the test without gpg and gpgv; stops their gpg-agents afterwards."""
    needs_gpg_tools()
    signer = make_key(tmp_path_factory.mktemp("signer"), "usbwriter test")
    other = make_key(tmp_path_factory.mktemp("other"), "usbwriter other")
    yield signer, other
    for key in (signer, other):
        subprocess.run(
            ["gpgconf", "--kill", "gpg-agent"],
            env=dict(os.environ, **key.env()),
            capture_output=True,
            check=False,
        )

"""`usbwriter extract`: what comes out equals the tree the ISO was made of (contents,
modes, mtimes, symlink targets), raw or compressed; nothing lands outside the output
folder, whatever the image's names and symlinks say or the folder already holds."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.isotrees import compress, listing_of, tool, udf_iso, xorriso_iso
from usbwriter.errors import Cancelled
from usbwriter.iso.contents import IsoImage
from usbwriter.iso.extract import Extractor, select, unsafe_target


def usbwriter(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, LC_ALL="C.UTF-8")
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, timeout=timeout, env=env, check=False,
    )  # fmt: skip


def events(p: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in p.stdout.splitlines()]


def all_files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")}


def no_link_times(d: dict[str, Any]) -> dict[str, Any]:
    """xorriso records its own time for symlinks, not the link's."""
    return {
        p: {k: v for k, v in e.items() if not (e["type"] == "symlink" and k == "mtime")}
        for p, e in d.items()
    }


def test_extract_everything_equals_the_tree(tree: Path, rr_iso: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "new"  # made, parents too
    p = usbwriter("extract", str(rr_iso), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert "8 files (1.0 MiB), 14 folders, 3 symlinks extracted" in p.stdout
    diff = subprocess.run(
        ["diff", "-r", "--no-dereference", str(tree), str(out)], capture_output=True, text=True
    )
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert no_link_times(listing_of(out)) == no_link_times(listing_of(tree))
    assert not [p for p in out.rglob(".*usbw-*")]  # no temporary names left


def test_extract_paths_keep_their_place(rr_iso: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    p = usbwriter("extract", str(rr_iso), "/boot/grub", "docs/readme.md", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    got = sorted(str(q.relative_to(out)) for q in out.rglob("*"))
    assert got == ["boot", "boot/grub", "boot/grub/grub.cfg", "docs", "docs/readme.md"]
    evs = events(p)
    assert evs[-1]["event"] == "result" and evs[-1]["files"] == 2
    assert {"event": "file", "path": "/docs/readme.md", "size": 1000} in evs


def test_existing_files_are_kept_unless_overwrite(rr_iso: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert usbwriter("extract", str(rr_iso), "/boot", "-o", str(out)).returncode == 0
    cfg = out / "boot" / "grub" / "grub.cfg"
    cfg.write_bytes(b"mine")
    p = usbwriter("extract", str(rr_iso), "/boot", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert f"usbwriter: skipped /boot/grub/grub.cfg: {cfg} exists" in p.stderr
    assert cfg.read_bytes() == b"mine"
    p = usbwriter("extract", str(rr_iso), "/boot", "-o", str(out), "--overwrite")
    assert p.returncode == 0 and p.stderr == ""
    assert cfg.read_bytes().startswith(b"set timeout=5")


@pytest.mark.parametrize("fmt", ["xz", "zst", "gz", "zip"])
def test_compressed_images_extract_the_same(
    tree: Path, rr_iso: Path, fmt: str, tmp_path: Path
) -> None:
    copy = tmp_path / "c.iso"
    shutil.copyfile(rr_iso, copy)
    packed = compress(copy, fmt)
    out = tmp_path / "out"
    p = usbwriter("extract", str(packed), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert no_link_times(listing_of(out)) == no_link_times(listing_of(tree))


def test_joliet_and_udf_images_extract_the_contents(tree: Path, tmp_path: Path) -> None:
    for iso in (
        xorriso_iso(tree, tmp_path / "j.iso", "--norock", "-J", "-joliet-long"),
        udf_iso(tree, tmp_path / "u.iso"),
    ):
        out = tmp_path / iso.stem
        p = usbwriter("extract", str(iso), "-o", str(out))
        assert p.returncode == 0, p.stderr
        for rel, e in listing_of(tree).items():
            got = out / rel.lstrip("/")
            if e["type"] == "file":
                assert got.read_bytes() == (tree / rel.lstrip("/")).read_bytes(), rel
            elif e["type"] == "symlink" and "udf" in iso.stem:
                assert os.readlink(got) == e["target"]


# ---- crafted images ----------------------------------------------------------------------


def crafted_iso(path: Path) -> Path:
    """Rock Ridge names that would escape (patched into the bytes after pycdlib wrote
    placeholders of the same length) and symlinks pointing outside."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")

    def add(iso_path: str, rr_name: str, data: bytes) -> None:
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=rr_name)

    add("/GOOD.TXT;1", "good.txt", b"good\n")
    iso.add_directory("/SUB", rr_name="sub")
    add("/SUB/OK.TXT;1", "ok.txt", b"ok\n")
    iso.add_directory("/BOOT", rr_name="boot")
    add("/BOOT/GRUB.CFG;1", "grub.cfg", b"menu\n")
    iso.add_directory("/DOTS", rr_name="QZ")  # becomes ".."
    add("/DOTS/EVIL.TXT;1", "evil.txt", b"evil\n")
    add("/SLASH.TXT;1", "QZQZQ", b"slash\n")  # becomes "../xx"
    add("/ABS.TXT;1", "QZQZQZQZ", b"abs\n")  # becomes "/tmp/xx"
    iso.add_symlink(symlink_path="/UP.;1", rr_symlink_name="up", rr_path="../../etc/passwd")
    iso.add_symlink(symlink_path="/ABSL.;1", rr_symlink_name="absl", rr_path="/etc/passwd")
    iso.add_symlink(symlink_path="/SUB/TRICK.;1", rr_symlink_name="trick", rr_path="x/../../..")
    iso.add_symlink(symlink_path="/SUB/FINE.;1", rr_symlink_name="fine", rr_path="../good.txt")
    iso.write(str(path))
    iso.close()
    data = bytearray(path.read_bytes())
    for old, new in ((b"QZQZQZQZ", b"/tmp/xx\0"[:7] + b"x"), (b"QZQZQ", b"../xx"), (b"QZ", b"..")):
        while (at := data.find(b"NM" + bytes([5 + len(old), 1, 0]) + old)) >= 0:
            data[at + 5 : at + 5 + len(old)] = new
    path.write_bytes(bytes(data))
    return path


def test_crafted_names_and_links_stay_inside(tmp_path: Path) -> None:
    iso = crafted_iso(tmp_path / "crafted.iso")
    listed = usbwriter("ls", "-R", str(iso), "--json")
    assert listed.returncode == 0, listed.stderr
    paths = {json.loads(line)["path"] for line in listed.stdout.splitlines()}
    assert {"/..", "/../xx", "//tmp/xxx", "/up", "/absl"} <= paths
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    out = tmp_path / "work" / "out"
    out.mkdir(parents=True)
    (out / "boot").symlink_to(sentinel)  # a symlink already in DIR
    before = all_files(tmp_path) - all_files(out)
    p = usbwriter("extract", str(iso), "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert all_files(tmp_path) - all_files(out) == before
    assert list(sentinel.iterdir()) == []
    skipped = {e["path"]: e["reason"] for e in events(p) if e["event"] == "skipped"}
    assert set(skipped) == {
        "/..",
        "/../xx",
        "//tmp/xxx",
        "/up",
        "/absl",
        "/sub/trick",
        "/boot",
        "/boot/grub.cfg",
    }, skipped
    assert "is a symbolic link" in skipped["/boot/grub.cfg"]
    assert "absolute" in skipped["/absl"] and "outside" in skipped["/up"]
    assert (out / "good.txt").read_bytes() == b"good\n"
    assert (out / "sub" / "ok.txt").read_bytes() == b"ok\n"
    assert os.readlink(out / "sub" / "fine") == "../good.txt"
    text = usbwriter("extract", str(iso), "-o", str(tmp_path / "again"))
    assert text.returncode == 0
    assert "usbwriter: skipped /up: its target ../../etc/passwd points outside" in text.stderr


def test_unsafe_targets() -> None:
    assert unsafe_target(0, "a/b") is None
    assert unsafe_target(2, "../../x") is None
    assert unsafe_target(1, "../../x") is not None
    assert unsafe_target(3, "a/../b") is not None
    assert unsafe_target(3, "/etc") is not None
    assert unsafe_target(3, "") is not None


def test_cancel_leaves_no_half_file(rr_iso: Path, tmp_path: Path) -> None:
    cancel = threading.Event()
    out = tmp_path / "out"
    with IsoImage(str(rr_iso)) as iso:
        x = Extractor(iso, str(out), progress=lambda _p: cancel.set(), cancel=cancel)
        with pytest.raises(Cancelled):
            x.run(select(iso.contents, ["/big.bin"]))
    assert not (out / "big.bin").exists()
    assert [p.name for p in out.iterdir()] == []


def test_bad_inputs(rr_iso: Path, tmp_path: Path) -> None:
    def one_line(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
        assert p.returncode == code, p.stderr
        err = p.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert all(w in err for w in words), err

    out = str(tmp_path / "out")
    one_line(usbwriter("extract", str(tmp_path / "nope.iso"), "-o", out), 2, "no such file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    one_line(usbwriter("extract", str(fifo), "-o", out), 2, "FIFO")
    one_line(usbwriter("extract", str(tmp_path), "-o", out), 2, "directory")
    one_line(usbwriter("extract", str(rr_iso), "/boot", "/nope", "-o", out), 2, "/nope")
    assert not Path(out).exists()  # a PATH not inside: nothing written
    junk = tmp_path / "junk.iso"
    junk.write_bytes(os.urandom(100_000))
    one_line(usbwriter("extract", str(junk), "-o", out), 1, str(junk))
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    one_line(usbwriter("extract", str(rr_iso), "-o", str(afile)), 2, str(afile))


# ---- a file of 4 GiB or more: several extents ---------------------------------------------

BIG = (4 << 30) + (100 << 20)


@pytest.fixture(scope="module")
def big_iso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tool("xorriso")
    free = shutil.disk_usage("/tmp").free
    if free < 3 * BIG:
        pytest.skip(f"needs {3 * BIG >> 30} GiB free in /tmp for a 4.1 GiB file, has {free >> 30}")
    work = Path(tempfile_dir())
    src = work / "src"
    src.mkdir()
    with open(src / "huge.bin", "wb") as f:
        f.truncate(BIG)
        for at in (0, (4 << 30) - 3, BIG - 5):
            f.seek(at)
            f.write(b"MARK!")
    iso = xorriso_iso(src, work / "big.iso", "-R", "-iso-level", "3")
    (src / "huge.bin").unlink()
    yield iso
    shutil.rmtree(work, ignore_errors=True)


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="usbw-big-", dir="/tmp")


def blake3_of(path: Path) -> str:
    import blake3

    h = blake3.blake3()
    with open(path, "rb") as f:
        while b := f.read(8 << 20):
            h.update(b)
    return str(h.hexdigest())


def test_file_of_4gib_comes_out_whole(big_iso: Path) -> None:
    (entry,) = [
        json.loads(line) for line in usbwriter("ls", str(big_iso), "--json").stdout.splitlines()
    ]
    assert entry["size"] == BIG
    with IsoImage(str(big_iso)) as iso:
        assert len(iso.contents.lookup("/huge.bin").extents) >= 2
    out = big_iso.parent / "out"
    p = usbwriter("extract", str(big_iso), "-o", str(out))
    assert p.returncode == 0, p.stderr
    got = out / "huge.bin"
    assert got.stat().st_size == BIG
    want = big_iso.parent / "want.bin"
    with open(want, "wb") as f:
        f.truncate(BIG)
        for at in (0, (4 << 30) - 3, BIG - 5):
            f.seek(at)
            f.write(b"MARK!")
    assert blake3_of(got) == blake3_of(want)
    got.unlink()
    want.unlink()


def test_ctrl_c_stops_quickly_without_a_half_file(big_iso: Path) -> None:
    out = big_iso.parent / "cancelled"
    env = dict(os.environ, LC_ALL="C.UTF-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "usbwriter", "extract", str(big_iso), "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        temps = list(out.glob(".huge.bin.usbw-*")) if out.exists() else []
        if temps and temps[0].stat().st_size > (64 << 20):
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("extraction did not start")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert list(out.iterdir()) == []


def test_a_file_made_just_before_naming_is_kept(
    rr_iso: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race between the check for an existing file and the rename: somebody makes
    the file in between. Without --overwrite the name is given with RENAME_NOREPLACE,
    so their file stays and ours is reported as skipped."""
    import usbwriter.iso.extract as extract_module
    from usbwriter.placing import place_new as real

    def theirs_first(temp: str, name: str, *, dir_fd: int | None = None) -> None:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
        os.write(fd, b"theirs")
        os.close(fd)
        real(temp, name, dir_fd=dir_fd)

    monkeypatch.setattr(extract_module, "place_new", theirs_first)
    out = tmp_path / "out"
    with IsoImage(str(rr_iso)) as iso:
        x = Extractor(iso, str(out))
        x.run(select(iso.contents, ["/boot/grub/grub.cfg"]))
    cfg = out / "boot" / "grub" / "grub.cfg"
    assert cfg.read_bytes() == b"theirs"
    assert x.result.skipped == [("/boot/grub/grub.cfg", f"{cfg} exists; kept")]
    assert sorted(p.name for p in cfg.parent.iterdir()) == ["grub.cfg"]


def test_output_of_the_wrong_kind_is_a_usage_error(rr_iso: Path, tmp_path: Path) -> None:
    """A regular file where the folder is wanted, with or without a trailing slash, or
    a FIFO: exit 2 with one line naming it, and nothing written."""
    afile = tmp_path / "afile"
    afile.write_bytes(b"x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out in (str(afile), f"{afile}/", f"{afile}/sub", str(fifo), f"{fifo}/"):
        p = usbwriter("extract", str(rr_iso), "-o", out)
        assert p.returncode == 2, (out, p.returncode, p.stderr)
        (line,) = p.stderr.splitlines()
        assert str(afile if "afile" in out else fifo) in line and "not a folder" in line, line
    assert afile.read_bytes() == b"x"
    p = usbwriter("extract", str(rr_iso), "-o", "/dev/null")
    assert (p.returncode, p.stderr) == (
        2,
        "usbwriter: /dev/null: is a character device, not a folder\n",
    )
    for system in ("/proc/usbw-extract", "/dev/usbw-extract", "/sys"):
        p = usbwriter("extract", str(rr_iso), "-o", system)
        assert p.returncode == 4 and p.stderr.startswith(f"usbwriter: {system}: is under /"), p
        assert not os.path.lexists(system) or system == "/sys"


# ---- records sharing extents (hard links, crafted images) ---------------------------------


@pytest.fixture(scope="module")
def shared_zst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/s.bin and four more names for its 17 MiB extent (past the decoder's 16 MiB cache)
    after 36 MiB of zeros, and /part.bin overlapping it; compressed (about 75 KB)."""
    from tests.helpers.shared_extents import shared_extent_iso

    work = tmp_path_factory.mktemp("shared")
    iso = shared_extent_iso(work / "s.iso", pad=36 << 20, shared=17 << 20, links=4)
    return compress(iso, "zst")


def test_shared_extents_decode_a_compressed_image_once(shared_zst: Path, tmp_path: Path) -> None:
    from tests.helpers.shared_extents import PART_AT, PART_LEN, pattern
    from usbwriter.iso.source import DecodedBytes

    volume = shared_zst.with_suffix("").stat().st_size
    out = tmp_path / "out"
    with IsoImage(str(shared_zst)) as iso:
        assert isinstance(iso.data, DecodedBytes)
        decoded, restarts = iso.data.decoded, iso.data.restarts
        x = Extractor(iso, str(out))
        result = x.run(select(iso.contents, []))
        assert iso.data.restarts == restarts, "decoded again from the start"
        assert iso.data.decoded - decoded <= volume
    assert (result.files, result.skipped, result.failed) == (7, [], [])
    want = pattern(17 << 20)
    for name in ("s.bin", "s1.bin", "s2.bin", "s3.bin", "s4.bin"):
        assert (out / name).read_bytes() == want, name
        assert (out / name).stat().st_nlink == 1  # each its own file
    assert (out / "part.bin").read_bytes() == want[PART_AT : PART_AT + PART_LEN]
    assert (out / "a.bin").stat().st_size == 36 << 20


def test_shared_extents_ctrl_c_leaves_no_half_file(shared_zst: Path, tmp_path: Path) -> None:
    """Cancelled 2 MiB into the shared extent, while five files are being written."""
    from tests.helpers.shared_extents import PART_LEN

    cancel = threading.Event()
    out = tmp_path / "out"
    with IsoImage(str(shared_zst)) as iso:
        shared_at = iso.contents.lookup("/s.bin").extents[0][0]
        pread = iso.data.pread

        def read(offset: int, n: int) -> bytes:
            if offset >= shared_at + (2 << 20):
                cancel.set()
            return pread(offset, n)

        iso.data.pread = read  # type: ignore[method-assign]
        x = Extractor(iso, str(out), cancel=cancel)
        with pytest.raises(Cancelled):
            x.run(select(iso.contents, []))
    assert cancel.is_set()
    # whole before the cut: a.bin, and part.bin (its 1 MiB lies in the shared extent's
    # first 2 MiB); the five names of the 17 MiB extent were not finished: no trace
    assert sorted(p.name for p in out.iterdir()) == ["a.bin", "part.bin"]
    assert (out / "a.bin").stat().st_size == 36 << 20
    assert (out / "part.bin").stat().st_size == PART_LEN


# ---- names that would fool a terminal ------------------------------------------------------


def test_bidi_and_escape_names_reach_the_terminal_escaped(tmp_path: Path) -> None:
    """A right-to-left override makes 'evil\u202etxt.exe' show as 'evilexe.txt'; an
    escape sequence recolours the terminal. ls, extract's lines and its skipped lines
    show them as '?'; --json keeps the real names."""
    import pycdlib

    names = ["evil\u202etxt.exe", "red\x1b[31m.txt"]
    iso_path = tmp_path / "names.iso"
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, rock_ridge="1.09")
    for i, name in enumerate(names):
        iso.add_fp(io.BytesIO(b"x"), 1, f"/F{i}.;1", rr_name=name)
    iso.write(str(iso_path))
    iso.close()

    def shown_safely(p: subprocess.CompletedProcess[str]) -> str:
        text = p.stdout + p.stderr
        assert "\u202e" not in text and "\x1b" not in text, repr(text)
        return text

    p = usbwriter("ls", str(iso_path))
    assert p.returncode == 0, p.stderr
    assert "evil?txt.exe" in shown_safely(p) and "red?[31m.txt" in p.stdout
    listed = [
        json.loads(line)["path"]
        for line in usbwriter("ls", str(iso_path), "--json").stdout.splitlines()
    ]
    assert listed == ["/" + n for n in names]
    out = tmp_path / "out\x1b]0;title\x07\u202e"
    p = usbwriter("extract", str(iso_path), "-o", str(out))
    assert p.returncode == 0, p.stderr
    shown_safely(p)
    assert sorted(os.listdir(out)) == sorted(names)
    p = usbwriter("extract", str(iso_path), "-o", str(out))  # both kept: skipped lines
    assert p.returncode == 0, p.stderr
    assert "skipped /evil?txt.exe" in shown_safely(p)
    p = usbwriter("extract", str(iso_path), "-o", str(out), "--json")
    skipped = [e["path"] for e in events(p) if e["event"] == "skipped"]
    assert sorted(skipped) == sorted("/" + n for n in names)


def test_more_files_at_once_than_are_kept_open(tmp_path: Path) -> None:
    """Eighty names for one extent: more files being written at once than descriptors
    are kept; those closed are opened again by name (and checked) and come out whole."""
    from tests.helpers.shared_extents import pattern, shared_extent_iso
    from usbwriter.iso.extract import MAX_OPEN_FILES

    links = MAX_OPEN_FILES + 16
    iso = shared_extent_iso(tmp_path / "s.iso", pad=4096, shared=3 << 20, links=links)
    out = tmp_path / "out"
    p = usbwriter("extract", str(iso), "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert f"note: {links + 2} files share their bytes" in p.stderr
    want = pattern(3 << 20)
    for name in ["s.bin", *(f"s{i}.bin" for i in range(1, links + 1))]:
        assert (out / name).read_bytes() == want, name
    assert not list(out.glob(".*usbw-*"))

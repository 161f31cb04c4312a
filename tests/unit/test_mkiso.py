"""`usbwriter mkiso DIR -o OUT.iso` end to end, read back with other tools (xorriso,
isoinfo, pycdlib): names, modes, symlinks, mtimes, UDF, reproducibility, refusals,
Ctrl-C, and a file of more than 4 GiB."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from usbwriter.iso.hybrid import HybridLayout, hybrid_mbr
from usbwriter.iso.names import iso9660_name, joliet_name

SDE = 1_600_000_000  # SOURCE_DATE_EPOCH for the tests: before every mtime made here but one
OLD = 1_500_000_000  # an mtime before SDE: kept as is
TOOLS = ("xorriso", "isoinfo")
pytestmark = pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="needs xorriso and isoinfo (Debian packages xorriso, genisoimage)",
)


def usbwriter(*args: str, sde: int | None = SDE, **env: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, LC_ALL="C.UTF-8", **env)
    e.pop("SOURCE_DATE_EPOCH", None)
    if sde is not None:
        e["SOURCE_DATE_EPOCH"] = str(sde)
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", *args],
        capture_output=True, text=True, timeout=300, env=e, check=False,
    )  # fmt: skip


def tool(*argv: str, encoding: str = "utf-8") -> str:
    p = subprocess.run(
        argv, capture_output=True, check=False, env=dict(os.environ, LC_ALL="C.UTF-8")
    )
    assert p.returncode == 0, f"{argv}: {p.stderr.decode(errors='replace')[-2000:]}"
    return p.stdout.decode(encoding, "surrogateescape")


DEEP = [f"level{i}" for i in range(12)]
UNICODE = ["dé jà vu", "日本語のファイル.txt", "emoji 😀 name", "Ωmega"]


def make_tree(root: Path) -> dict[str, int]:
    """The test tree; returns the modes wanted for the regular files and folders."""
    root.mkdir()
    modes: dict[str, int] = {}
    (root / "docs").mkdir()
    (root / "docs" / "hello.txt").write_text("hello\n" * 100)
    deep = root.joinpath(*DEEP)
    deep.mkdir(parents=True)
    (deep / "bottom.txt").write_text("at the bottom\n")
    for name in UNICODE:
        (root / "docs" / name).write_text(f"{name}\n")
    (root / "docs" / "dé jà vu").unlink()
    (root / "docs" / "dé jà vu").mkdir()
    (root / "docs" / "dé jà vu" / "inside.bin").write_bytes(bytes(range(256)) * 40)
    (root / "empty").write_bytes(b"")
    for name, mode in (("run.sh", 0o755), ("secret", 0o600), ("readonly", 0o444)):
        (root / name).write_text(name)
        os.chmod(root / name, mode)
        modes[name] = mode
    os.chmod(root / "docs", 0o750)
    modes["docs"] = 0o750
    (root / "README").write_text("upper\n")  # README and readme: one Joliet name each
    (root / "readme").write_text("lower\n")
    long = "a-very-long-name-" * 6  # > 64 characters: Joliet truncates, uniquely
    (root / f"{long}one.txt").write_text("1")
    (root / f"{long}two.txt").write_text("2")
    os.symlink("docs/hello.txt", root / "rel-link")
    os.symlink("../README", root / "docs" / "up-link")
    os.symlink("/etc/hostname", root / "abs-link")
    os.symlink("does-not-exist", root / "dangling")
    os.mkfifo(root / "a-fifo")
    os.utime(root / "docs" / "hello.txt", (OLD, OLD))
    later = SDE + 100_000
    os.utime(root / "run.sh", (later, later))
    return modes


def tree_paths(root: Path, skip: tuple[str, ...] = ("a-fifo",)) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, n), root)
            if rel not in skip:
                out.add(rel)
    return out


def xorriso_paths(iso: Path) -> set[str]:
    out = set()
    for line in tool("xorriso", "-indev", str(iso), "-find").splitlines():
        name = line.strip().strip("'")
        if name not in (".", "") and name.startswith("./"):
            out.add(name[2:].replace("'\"'\"'", "'"))
    return out


def isoinfo_rr_paths(iso: Path) -> set[str]:
    """isoinfo -R -f, with the directories relocated under /.rr_moved put back where
    their Rock Ridge CL link is (isoinfo lists them where they are stored)."""
    listed = [p.lstrip("/") for p in tool("isoinfo", "-R", "-f", "-i", str(iso)).splitlines()]
    placeholders = {p.split("/")[-1]: p for p in listed if p.count("/") == 7}
    out = set()
    for p in listed:
        if p == ".rr_moved" or not p:
            continue
        if p.startswith(".rr_moved/"):
            rest = p.split("/")[1:]
            p = "/".join([placeholders[rest[0]], *rest[1:]])
        out.add(p)
    return out


Built = tuple[Path, Path, dict[str, int], dict[str, Any]]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    base = tmp_path_factory.mktemp("mkiso")
    tree = base / "tree"
    modes = make_tree(tree)
    out = base / "out.iso"
    p = usbwriter("mkiso", str(tree), "-o", str(out), "--label", "Test tree", "--json")
    assert p.returncode == 0, p.stderr
    return tree, out, modes, json.loads(p.stdout)


def test_result_json(built: Built) -> None:
    tree, out, _, result = built
    import blake3

    assert result["output"] == str(out)
    assert result["size"] == out.stat().st_size
    assert result["blake3"] == blake3.blake3(out.read_bytes()).hexdigest()
    assert result["label"] == "TEST_TREE"
    files = [p for p in tree_paths(tree) if (tree / p).is_file() and not (tree / p).is_symlink()]
    assert result["files"] == len(files)
    assert result["symlinks"] == 4
    assert result["skipped"] == ["a-fifo"]
    assert result["udf"] is False and result["boot"] == [] and result["hybrid"] is None


def test_fifo_is_skipped_with_a_warning(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    tree.mkdir()
    (tree / "f").write_text("x")
    os.mkfifo(tree / "pipe")
    p = usbwriter("mkiso", str(tree), "-o", str(tmp_path / "o.iso"))
    assert p.returncode == 0, p.stderr
    warnings = [ln for ln in p.stderr.splitlines() if "warning" in ln]
    assert warnings == [
        f"usbwriter: warning: {tree / 'pipe'}: skipped, a FIFO cannot be put in an ISO"
    ]


def test_rock_ridge_names_in_xorriso_and_isoinfo(
    built: Built,
) -> None:
    tree, out, _, _ = built
    want = tree_paths(tree)
    assert "/".join(DEEP) + "/bottom.txt" in want
    # .rr_moved: ECMA-119 allows eight levels; deeper folders are stored there
    assert xorriso_paths(out) == want | {".rr_moved"}
    assert isoinfo_rr_paths(out) == want


def test_joliet_names(built: Built) -> None:
    import pycdlib

    tree, out, _, _ = built
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        joliet: set[str] = set()
        for dirpath, dirs, files in iso.walk(joliet_path="/"):
            for n in dirs + files:
                joliet.add(f"{dirpath.rstrip('/')}/{n}".lstrip("/"))
    finally:
        iso.close()
    want = tree_paths(tree)
    assert len(joliet) == len(want)
    short = {p for p in want if all(len(c) <= 64 for c in p.split("/"))}
    short -= {"readme"}  # README, readme: one of them is renamed (Joliet ignores case)
    assert short <= joliet
    assert "readme~1" in joliet
    long = sorted(p for p in joliet if p.startswith("a-very-long"))
    assert len(long) == 2 and all(len(p) <= 64 and p.endswith(".txt") for p in long)
    # isoinfo reads Joliet too; it shows names in Latin-1 (others as '_')
    listed = {
        p.lstrip("/")
        for p in tool(
            "isoinfo", "-J", "-j", "iso8859-1", "-f", "-i", str(out), encoding="latin-1"
        ).splitlines()
        if p.strip()
    }
    assert len(listed) == len(joliet)
    latin1 = {p for p in joliet if all(ord(c) < 256 for c in p)}
    assert latin1 <= listed


def test_extracted_tree_equals_the_source(built: Built, tmp_path: Path) -> None:
    tree, out, modes, _ = built
    x = tmp_path / "x"
    tool("xorriso", "-osirrox", "on", "-indev", str(out), "-extract", "/", str(x))
    (x / ".rr_moved").rmdir()  # empty: its folders are shown where they belong
    p = subprocess.run(
        ["diff", "-r", "--no-dereference", str(tree), str(x)], capture_output=True, text=True
    )
    assert p.stdout.strip() == f"Only in {tree}: a-fifo", p.stdout
    for rel, mode in modes.items():
        assert stat.S_IMODE(os.lstat(x / rel).st_mode) == mode, rel
    for rel in tree_paths(tree):
        src, dst = os.lstat(tree / rel), os.lstat(x / rel)
        assert stat.S_IFMT(src.st_mode) == stat.S_IFMT(dst.st_mode), rel
        if stat.S_ISLNK(src.st_mode):
            assert os.readlink(x / rel) == os.readlink(tree / rel)
            continue
        assert stat.S_IMODE(src.st_mode) == stat.S_IMODE(dst.st_mode), rel
        if stat.S_ISREG(src.st_mode):  # xorriso sets folders' mtimes as it fills them
            assert dst.st_mtime == min(int(src.st_mtime), SDE), rel
    assert os.lstat(x / "docs" / "hello.txt").st_mtime == OLD
    assert os.lstat(x / "run.sh").st_mtime == SDE  # clamped


def test_byte_identical_with_source_date_epoch(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    make_tree(tree)
    (tree / "a-fifo").unlink()
    first, second = tmp_path / "1.iso", tmp_path / "2.iso"

    def touch_all(t: float) -> None:
        for dirpath, dirnames, filenames in os.walk(tree):
            for n in dirnames + filenames:
                os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)

    touch_all(SDE + 10)  # after SOURCE_DATE_EPOCH: every mtime is clamped to it
    p = usbwriter("mkiso", str(tree), "-o", str(first), "--udf")
    assert p.returncode == 0, p.stderr
    touch_all(time.time() + 3600)
    p = usbwriter("mkiso", str(tree), "-o", str(second), "--udf", TZ="Asia/Kolkata")
    assert p.returncode == 0, p.stderr
    assert first.read_bytes() == second.read_bytes()
    # without SOURCE_DATE_EPOCH the volume dates are the time of the build
    third = tmp_path / "3.iso"
    p = usbwriter("mkiso", str(tree), "-o", str(third), sde=None)
    assert p.returncode == 0, p.stderr

    def created(iso: Path) -> bytes:  # the PVD's volume creation date, and its zone
        with open(iso, "rb") as f:
            f.seek(16 * 2048 + 813)
            return f.read(17)

    assert created(first) == b"2020091312264000\x00"  # SOURCE_DATE_EPOCH, in UTC
    assert created(third)[:8] == time.strftime("%Y%m%d", time.gmtime()).encode()


def test_udf_on_request(tmp_path: Path) -> None:
    import pycdlib

    tree = tmp_path / "tree"
    make_tree(tree)
    out = tmp_path / "udf.iso"
    p = usbwriter("mkiso", str(tree), "-o", str(out), "--udf", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["udf"] is True
    iso = pycdlib.PyCdlib()
    iso.open(str(out))
    try:
        assert iso.has_udf()
        seen = set()
        for dirpath, dirs, files in iso.walk(udf_path="/"):
            for n in dirs + files:
                seen.add(f"{dirpath.rstrip('/')}/{n}".lstrip("/"))
        assert seen == tree_paths(tree)
        import io

        buf = io.BytesIO()
        iso.get_file_from_iso_fp(buf, udf_path="/docs/dé jà vu/inside.bin")
        assert buf.getvalue() == (tree / "docs" / "dé jà vu" / "inside.bin").read_bytes()
    finally:
        iso.close()


# ---- refusals ----------------------------------------------------------------------------


def test_refusals(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f.txt").write_text("x")
    out = tmp_path / "o.iso"
    cases = [
        (["mkiso", str(tmp_path / "nope"), "-o", str(out)], 2, "no such file"),
        (["mkiso", str(tree / "f.txt"), "-o", str(out)], 2, "not a folder"),
        (["mkiso", str(tree), "-o", str(tree / "in.iso")], 4, "inside the folder"),
        (["mkiso", str(tree), "-o", str(tree)], 4, "inside the folder"),
        (["mkiso", str(tree), "-o", str(out), "--boot-efi", "../x.img"], 2, "outside the folder"),
        (["mkiso", str(tree), "-o", str(out), "--boot-efi", "/etc/passwd"], 2, "relative"),
        (["mkiso", str(tree), "-o", str(out), "--boot-bios", "missing.bin"], 2, "no such file"),
        (["mkiso", str(tree), "-o", str(out), "--hybrid"], 2, "needs a boot image"),
    ]
    for args, code, words in cases:
        p = usbwriter(*args)
        assert p.returncode == code, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], (args, p.stderr)
        assert not out.exists()
    out.write_text("precious")
    p = usbwriter("mkiso", str(tree), "-o", str(out))
    assert p.returncode == 4 and "--overwrite" in p.stderr
    assert out.read_text() == "precious"
    p = usbwriter("mkiso", str(tree), "-o", str(out), "--overwrite")
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 32768
    assert [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []


def test_unreadable_file_is_named() -> None:
    # not in tmp_path: when run as root, the command runs as nobody, who must reach it
    base = Path(tempfile.mkdtemp(prefix="usbw-mkiso-"))
    try:
        tree = base / "tree"
        tree.mkdir()
        (tree / "ok.txt").write_text("x")
        (tree / "locked.txt").write_text("y")
        os.chmod(tree / "locked.txt", 0)
        out = base / "o.iso"
        args = [sys.executable, "-m", "usbwriter", "mkiso", str(tree), "-o", str(out)]
        if os.geteuid() == 0:  # root reads everything: run it as nobody
            os.chmod(base, 0o777)
            args = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *args]
        p = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
        assert p.returncode == 2, p.stderr
        assert p.stderr == f"usbwriter: {tree / 'locked.txt'}: permission denied, cannot read it\n"
        assert not out.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_ctrl_c_stops_quickly_and_leaves_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    with open(tree / "big.bin", "wb") as f:  # sparse: reading it is quick, writing is not
        f.truncate(3 << 30)
    out = tmp_path / "o.iso"
    env = dict(os.environ, LC_ALL="C.UTF-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "usbwriter", "mkiso", str(tree), "-o", str(out)],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not any(q.name.endswith(".part") for q in tmp_path.iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.5)  # well into the write
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert stopped < 2.0
    assert "interrupted" in err.splitlines()[-1]
    assert sorted(q.name for q in tmp_path.iterdir()) == ["tree"]


# ---- a file of more than 4 GiB -----------------------------------------------------------


def test_file_over_4_gib_comes_out_whole(tmp_path_factory: pytest.TempPathFactory) -> None:
    """4 GiB + 1 MiB + 123 bytes, sparse with data around the 4 GiB boundary: the ISO is
    4 GiB of real bytes, so it is built under /tmp (about 20 s; skipped without 9 GiB)."""
    import blake3

    size = (4 << 30) + (1 << 20) + 123
    free = shutil.disk_usage("/tmp").free
    if free < size * 2 + (1 << 30):
        pytest.skip(f"/tmp has {free >> 20} MiB free; the large-file test needs 9 GiB")
    base = Path(tempfile_dir := os.path.join("/tmp", f"usbw-mkiso-big-{os.getpid()}"))
    base.mkdir()
    try:
        tree = base / "tree"
        tree.mkdir()
        big = tree / "huge.bin"
        with open(big, "wb") as f:
            f.truncate(size)
            for off in (0, (4 << 30) - 4096, size - 1000):
                f.seek(off)
                f.write(os.urandom(8192 if off < size - 1000 else 1000))
        (tree / "small.txt").write_text("small\n")
        out = base / "big.iso"
        p = usbwriter("mkiso", str(tree), "-o", str(out), "--json")
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout)
        assert result["udf"] is True  # added by itself for a file of 4 GiB
        assert "adding UDF" in p.stderr
        x = base / "x"
        tool("xorriso", "-osirrox", "on:sparse=1m", "-indev", str(out), "-extract", "/", str(x))
        got = x / "huge.bin"
        assert got.stat().st_size == size

        def digest(path: Path) -> str:
            h = blake3.blake3(max_threads=blake3.blake3.AUTO)
            with open(path, "rb") as f:
                while chunk := f.read(16 << 20):
                    h.update(chunk)
            return str(h.hexdigest())

        assert digest(got) == digest(big)
        assert (x / "small.txt").read_text() == "small\n"
    finally:
        shutil.rmtree(tempfile_dir, ignore_errors=True)


# ---- names and the MBR, directly ---------------------------------------------------------


def test_iso9660_names_are_unique_d_characters() -> None:
    taken: set[str] = set()
    names = [iso9660_name(n, False, taken) for n in ("readme", "README", "Read me", "ré.adme")]
    assert names == ["README.;1", "README_1.;1", "READ_ME.;1", "R_.ADME;1"]
    long = [iso9660_name("x" * 40 + ".tar.gz", False, taken) for _ in range(12)]
    assert len(set(long)) == 12
    assert all(len(n.removesuffix(";1")) <= 30 for n in long)
    assert long[11] == "X" * 24 + "_11.GZ;1"
    assert iso9660_name("x" * 40, True, set()) == "X" * 31


def test_joliet_names_are_cut_uniquely() -> None:
    taken: set[str] = set()
    a = joliet_name("x" * 70 + ".iso", taken)
    b = joliet_name("x" * 71 + ".iso", taken)
    assert a == "x" * 60 + ".iso" and b == "x" * 58 + "~1.iso"
    assert joliet_name("a:b?c", set()) == "a_b_c"
    assert len(joliet_name("😀" * 40, set()).encode("utf-16-be")) == 128


def test_hybrid_mbr_layout() -> None:
    code = bytes(range(1, 256)) * 2
    mbr = hybrid_mbr(HybridLayout(10 << 20, 30, 40, 1440 * 1024, 0x12345678), code[:432])
    assert mbr[:432] == code[:432] and mbr[510:] == b"\x55\xaa"
    assert int.from_bytes(mbr[432:436], "little") == 120
    assert int.from_bytes(mbr[440:444], "little") == 0x12345678
    p1, p2 = mbr[446:462], mbr[462:478]
    assert p1[0] == 0x80 and p1[4] == 0x00 and int.from_bytes(p1[12:16], "little") == 20480
    assert p2[4] == 0xEF and int.from_bytes(p2[8:12], "little") == 160
    assert int.from_bytes(p2[12:16], "little") == 2880
    grub = hybrid_mbr(HybridLayout(10 << 20, 30, 40, 4096, 1, bios_loader="grub"), code[:432])
    assert int.from_bytes(grub[432:440], "little") == 30 * 4 + 4  # its diskboot sector
    assert grub[446] == 0x80 and grub[462 + 4] == 0xEF
    uefi_only = hybrid_mbr(HybridLayout(10 << 20, None, 40, 4096, 1), None)
    assert b"not a bootable disk on BIOS" in uefi_only[:440]
    assert uefi_only[446 + 4] == 0xEF and uefi_only[462:478] == bytes(16)


def test_an_output_made_while_building_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The output appears between the check and the naming: theirs stays, and the new
    image too, under the temporary name the message gives (exit 4)."""
    import usbwriter.placing as placing
    from usbwriter.errors import Refused
    from usbwriter.iso.build import BuildRequest, build_iso

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f.txt").write_text("x")
    out = tmp_path / "made-meanwhile.iso"
    real = placing.place_new

    def theirs_first(temp: str, name: str, *, dir_fd: int | None = None) -> None:
        out.write_text("theirs")
        real(temp, name, dir_fd=dir_fd)

    monkeypatch.setattr(placing, "place_new", theirs_first)
    with pytest.raises(Refused, match="appeared while the mkiso ran") as caught:
        build_iso(BuildRequest(str(tree), str(out)))
    assert caught.value.exit_code == 4
    assert out.read_text() == "theirs"
    kept = [q for q in tmp_path.iterdir() if q.name.endswith(".part")]
    assert len(kept) == 1 and str(kept[0]) in caught.value.message
    assert kept[0].read_bytes()[32768 + 1 : 32768 + 6] == b"CD001"


def test_place_new_never_replaces(tmp_path: Path) -> None:
    from usbwriter.placing import place_new

    (tmp_path / "t").write_text("new")
    (tmp_path / "n").write_text("old")
    with pytest.raises(FileExistsError):
        place_new(str(tmp_path / "t"), str(tmp_path / "n"))
    assert (tmp_path / "n").read_text() == "old" and (tmp_path / "t").exists()
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        place_new("t", "m", dir_fd=dfd)
    finally:
        os.close(dfd)
    assert (tmp_path / "m").read_text() == "new" and not (tmp_path / "t").exists()


def test_an_efi_image_without_a_loader_is_warned_about(tmp_path: Path) -> None:
    """mkiso's last word on booting is the boot report's: an EFI image with no
    EFI/BOOT/BOOTX64.EFI is named, and the stick verdict says UEFI no."""
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    efi = tree / "boot" / "efi.img"
    with open(efi, "wb") as f:
        f.truncate(2 << 20)
    subprocess.run(["mkfs.vfat", str(efi)], check=True, capture_output=True)
    subprocess.run(["mmd", "-i", str(efi), "::/EFI", "::/EFI/BOOT"], check=True)
    out = tmp_path / "no-loader.iso"
    p = usbwriter("mkiso", str(tree), "-o", str(out), "--boot-efi", "boot/efi.img", "--hybrid")
    assert p.returncode == 0, p.stderr
    warning = [line for line in p.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1, p.stderr
    assert "--boot-efi boot/efi.img: UEFI will not boot this image" in warning[0]
    assert "BOOTX64.EFI" in warning[0]
    assert "it boots: BIOS no, UEFI no" in p.stdout, p.stdout
    q = usbwriter("mkiso", str(tree), "-o", str(out), "--boot-efi", "boot/efi.img",
                  "--overwrite", "--json")  # fmt: skip
    stick = json.loads(q.stdout)["stick"]
    assert (stick["bios"], stick["uefi"]) == ("no", "no"), stick


def test_the_volume_ends_with_padding_as_mkisofs_does(tmp_path: Path) -> None:
    """300 KiB of zeros after the last file, counted in the primary and the Joliet
    volume descriptors (GRUB reading the last file ahead in 32 KiB blocks would run off
    the medium otherwise); not with UDF, whose last anchor ends the volume."""
    from usbwriter.iso.build import PADDING

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "last.cfg").write_text("the volume's last file\n")
    out = tmp_path / "padded.iso"
    assert usbwriter("mkiso", str(tree), "-o", str(out)).returncode == 0
    data = out.read_bytes()
    assert data[-PADDING:] == bytes(PADDING)
    sizes = {}
    for sector in range(16, 20):
        d = data[sector * 2048 : sector * 2048 + 88]
        if d[0] in (1, 2):
            sizes[d[0]] = int.from_bytes(d[80:84], "little"), int.from_bytes(d[84:88], "big")
    blocks = len(data) // 2048
    assert sizes == {1: (blocks, blocks), 2: (blocks, blocks)}, sizes
    info = subprocess.run(["isoinfo", "-d", "-i", str(out)], capture_output=True, text=True)
    assert f"Volume size is: {blocks}" in info.stdout
    listing = usbwriter("ls", str(out))
    assert listing.returncode == 0 and "last.cfg" in listing.stdout

    udf = tmp_path / "udf.iso"
    assert usbwriter("mkiso", str(tree), "-o", str(udf), "--udf").returncode == 0
    assert usbwriter("ls", str(udf)).returncode == 0
    raw = udf.read_bytes()
    assert int.from_bytes(raw[16 * 2048 + 80 : 16 * 2048 + 84], "little") == len(raw) // 2048


def test_which_bios_images_get_a_boot_info_table() -> None:
    from usbwriter.iso.hybrid import needs_boot_info_table

    isolinux = Path("/usr/lib/ISOLINUX/isolinux.bin").read_bytes()[:0x44]
    grub = bytes.fromhex("e80000eb3b") + bytes(59)
    assert needs_boot_info_table(isolinux) and needs_boot_info_table(grub)
    assert not needs_boot_info_table(b"\xeb\x3c\x90MSDOS5.0" + bytes(57))  # a floppy image
    assert not needs_boot_info_table(grub[:8] + b"\x01" + grub[9:])  # bytes 8-63 in use


# ---- the file made: its mode; the files read: descriptors --------------------------------


def mkiso_with_umask(umask: int, *args: str) -> subprocess.CompletedProcess[str]:
    e = dict(os.environ, LC_ALL="C.UTF-8", SOURCE_DATE_EPOCH=str(SDE))
    return subprocess.run(
        [sys.executable, "-m", "usbwriter", "mkiso", *args],
        capture_output=True, text=True, timeout=120, env=e, check=False,
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip


def public_tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.txt").write_text("b\n")
    for p in (root, root / "sub"):
        os.chmod(p, 0o755)
    for p in (root / "a.txt", root / "sub" / "b.txt"):
        os.chmod(p, 0o644)
    return root


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600),
                                             (0o002, 0o664)])  # fmt: skip
def test_the_image_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    tree = public_tree(tmp_path / "tree")
    out = tmp_path / "o.iso"
    p = mkiso_with_umask(umask, str(tree), "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == mode
    result = json.loads(p.stdout)
    assert result["mode"] == f"{mode:04o}" and result["private_because"] is None


@pytest.mark.parametrize(
    ("private", "chmod"), [("sub/b.txt", 0o600), ("sub/b.txt", 0o640), ("sub", 0o750),
                           ("sub", 0o711), (".", 0o700)]
)  # fmt: skip
def test_the_image_is_no_wider_than_its_most_private_source(
    tmp_path: Path, private: str, chmod: int
) -> None:
    """A file (or a folder) that not everyone may read makes the image readable by its
    owner only, whatever the umask allows; the output says so and names it."""
    tree = public_tree(tmp_path / "tree")
    os.chmod(tree / private, chmod)
    out = tmp_path / "o.iso"
    p = mkiso_with_umask(0o002, str(tree), "-o", str(out))
    os.chmod(tree / private, 0o755)  # let tmp_path be removed
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    shown = tree if private == "." else tree / private
    assert f"Mode 0600: only you can read {out}, as {shown} is not readable by everyone" in (
        p.stdout
    ), p.stdout
    q = mkiso_with_umask(0o002, str(tree), "-o", str(out), "--overwrite", "--json")
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["mode"] == "0664"


def test_many_files_with_few_descriptors(tmp_path: Path) -> None:
    """Files are opened one at a time while the image is written: 3000 files go into an
    image with a limit of 64 open descriptors."""
    import resource

    tree = tmp_path / "tree"
    for d in range(30):
        sub = tree / f"d{d:02}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f:03}.txt").write_text(f"{d} {f}\n")
    out = tmp_path / "many.iso"
    e = dict(os.environ, LC_ALL="C.UTF-8", SOURCE_DATE_EPOCH=str(SDE))
    p = subprocess.run(
        [sys.executable, "-m", "usbwriter", "mkiso", str(tree), "-o", str(out), "--json"],
        capture_output=True, text=True, timeout=300, env=e, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["files"] == 3000
    listed = tool("isoinfo", "-R", "-f", "-i", str(out)).split()
    assert "/d29/f099.txt" in listed

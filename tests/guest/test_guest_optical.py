"""usbwriter backup reads a real optical drive: the sr driver in a qemu guest.

One guest run (``optical_run``) with three USB DVD drives (``harness.Disc``: usb-bot +
scsi-cd on the guest's xHCI controller, seen as /dev/sr0 to sr2 through sr_mod):

- ``CLEAN`` holds a data ISO built in the test (pycdlib, 1783 sectors of 2048 bytes:
  a prime, so a size rounded to any larger unit shows) followed by ``JUNK_SECTORS``
  sectors of pseudo-random bytes, so the drive reports an end beyond the volume, as a
  disc written with padding does. ``usbwriter backup`` must stop where the ISO 9660
  volume says it ends (``size_from`` "iso9660") and copy it byte for byte.
- ``FAULTY`` holds the same image, but qemu's blkdebug driver fails every read that
  touches one of ``READ_ERRORS`` (512-byte sectors of the image) with EIO, which the
  guest sees as a CHECK CONDITION from the drive, however often it retries. By
  default the backup must stop (exit 1) naming the device and the byte offset of the
  first unreadable 2048-byte sector, and leave no file behind; with ``--keep-going``
  it must list exactly the drive sectors holding the injected ones and write zeros
  there, and nothing else differs from the ISO; ``--verify`` then reads the drive
  again, all but those sectors, and passes. A sector in the junk after the volume
  (``RUN_OUT_ERRORS``, a disc's unreadable run-out) is never read, by the backup or by
  its verify.
- ``SCRATCHED`` is ``FAULTY`` with ENODATA instead of EIO: the drive answers MEDIUM
  ERROR (unrecovered read error), as a scratched disc does, and the guest's reads fail
  with ENODATA, not EIO. The same is expected of the backup.

The outputs stay in the guest's /tmp; the guest hashes them (sha256sum), and the host
compares with the hashes of the expected bytes, computed from the ISO it built. Before
usbwriter runs, plain ``dd`` reads show what the drives hold: the ISO on the clean one,
EIO at the first injected sector on the faulty one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import blake3
import pytest

from tests.guest import harness
from tests.guest.harness import Disc, Guest, GuestResult
from tests.helpers.discs import (
    CD_SECTOR,
    build_data_iso,
    iso9660_size,
    pad_with_junk,
    sectors_of,
    zero_sectors,
)

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or ""),
]

#: The ISO's files (pseudo-random bytes): 1783 sectors in all with pycdlib's metadata.
ISO_FILES = (1_234_567, 2_006_145, 345_678)
ISO_SECTORS = 1783
#: Sectors of junk after the ISO volume, inside what the drive reports.
JUNK_SECTORS = 29
#: 512-byte sectors of the image that fail to read on the faulty drive: one in drive
#: sector 700, two in drive sector 1201 and one in 1202 (two neighbours, one of them
#: with two bad 512-byte sectors), all inside the files' data.
READ_ERRORS = (2802, 4804, 4805, 4811)
BAD_SECTORS = sectors_of(READ_ERRORS)  # [700, 1201, 1202]
FIRST_BAD_OFFSET = min(READ_ERRORS) * 512 // CD_SECTOR * CD_SECTOR  # 1433600

CLEAN = Disc(Path(), "USBW-CD-0001", "HL-DT-ST", "DVDRAM GP57EB40")
#: in the junk after the volume, as a disc's unreadable run-out: never read
RUN_OUT_ERRORS = (7200,)
FAULTY = Disc(
    Path(), "USBW-CD-0002", "ASUS", "SDRW-08U9M-U", read_errors=READ_ERRORS + RUN_OUT_ERRORS
)
SCRATCHED = replace(
    FAULTY, serial="USBW-CD-0003", vendor="LITE-ON", product="eBAU108", read_errno=errno.ENODATA
)
#: The drives with read errors, by the name the guest script and the tests use, and
#: what a read of a bad sector fails with in the guest.
BAD_DRIVES = {"faulty": "Input/output error", "scratched": "No data available"}

# Runs in the guest (with ``step`` from harness.py). $C is the clean drive, $F the
# faulty one (EIO), $S the scratched one (ENODATA); each backup writes into its own
# empty directory, so a leftover (the output or a temporary file) shows in its listing.
SCRIPT = r"""
by_serial() { readlink -f /dev/disk/by-id/usb-*_"$1"-0:0; }
C=$(by_serial "$CLEAN_SERIAL"); F=$(by_serial "$FAULTY_SERIAL"); S=$(by_serial "$SCRATCHED_SERIAL")
export C F S
echo "$C $F $S" >"$GUEST_SHARE/devices"
drive() {  # DEV: size in 512-byte units, logical sector size, udev properties
    cat "/sys/block/${1#/dev/}/size" "/sys/block/${1#/dev/}/queue/logical_block_size" &&
    udevadm info --query=property --name="$1"
}
facts() { stat -c %s "$1" && sha256sum "$1" | cut -d' ' -f1; }  # FILE: size, sha256
head_hash() { dd if="$1" bs=2048 count="$2" iflag=direct status=none | sha256sum; }
O=/tmp/backup
mkdir -p $O/clean $O/gz
step drive-clean drive "$C"
step dd-clean head_hash "$C" "$ISO_SECTORS"
step clean python -m usbwriter backup "$C" -o $O/clean/disc.iso --json
step clean-file facts $O/clean/disc.iso
step gz python -m usbwriter backup "$C" -o $O/gz/disc.iso.gz --verify --json
step gz-file sh -c "gzip -dc $O/gz/disc.iso.gz | sha256sum | cut -d' ' -f1"
for name in faulty scratched; do
    case $name in faulty) D=$F ;; scratched) D=$S ;; esac
    step drive-$name drive "$D"
    step dd-$name-head head_hash "$D" "$FIRST_BAD"
    step dd-$name-bad dd if="$D" of=/dev/null bs=2048 skip="$FIRST_BAD" count=1 iflag=direct
    mkdir -p $O/$name-stop $O/$name-stop-json $O/$name-keep
    if [ $name = faulty ]; then  # the message without --json, once
        step $name-stop python -m usbwriter backup "$D" -o $O/$name-stop/disc.iso
        ls -A $O/$name-stop >"$GUEST_SHARE/$name-stop.ls"
    fi
    step $name-stop-json python -m usbwriter backup "$D" -o $O/$name-stop-json/disc.iso --json
    ls -A $O/$name-stop-json >"$GUEST_SHARE/$name-stop-json.ls"
    step $name-keep python -m usbwriter backup "$D" -o $O/$name-keep/disc.iso \
        --keep-going --verify --json
    step $name-keep-file facts $O/$name-keep/disc.iso
done
# verify reads the image beside the drive: an unreadable image (the faulty drive given
# as the image) is blamed, not the drive (a file holding the clean drive's bytes)
dd if="$C" of=$O/clean-drive.img bs=2048 iflag=direct status=none
step verify-bad-image python -m usbwriter verify --image "$F" --device $O/clean-drive.img --json
# Ctrl-C while a bad sector is being retried, a million times if need be
mkdir -p $O/cancel
step faulty-cancel timeout --preserve-status -s INT 4 \
    python -m usbwriter backup "$F" -o $O/cancel/disc.iso --retries 1000000
ls -A $O/cancel >"$GUEST_SHARE/faulty-cancel.ls"
"""


@dataclass(frozen=True)
class OpticalRun:
    result: GuestResult
    devices: dict[str, str]  # "clean", "faulty", "scratched" -> /dev/srN in the guest
    iso: bytes  # the ISO volume (what a good backup holds)
    drive_size: int  # what the drives report: the ISO and the junk after it


@pytest.fixture(scope="module")
def optical_run(tmp_path_factory: pytest.TempPathFactory) -> OpticalRun:
    work = tmp_path_factory.mktemp("discs")
    iso_path = build_data_iso(work / "data.iso", seed=1783, file_sizes=ISO_FILES)
    iso = iso_path.read_bytes()
    assert len(iso) == iso9660_size(iso) == ISO_SECTORS * CD_SECTOR
    # One image file per drive: qemu locks each image it opens.
    drives = {"clean": CLEAN, "faulty": FAULTY, "scratched": SCRATCHED}
    discs = [
        replace(disc, image=pad_with_junk(iso_path, work / f"{name}.img", JUNK_SECTORS, seed=i))
        for i, (name, disc) in enumerate(drives.items())
    ]
    env = {f"{name.upper()}_SERIAL": disc.serial for name, disc in drives.items()}
    env |= {"ISO_SECTORS": str(ISO_SECTORS), "FIRST_BAD": str(BAD_SECTORS[0])}
    with Guest(SCRIPT, discs=discs, env=env, timeout=300) as g:
        result = g.wait()
    print(result.timings())
    assert result.returncode == 0, result.describe()
    devices = result.files.get("devices", "").split()
    assert len(devices) == len(drives), result.describe()
    size = discs[0].image.stat().st_size
    return OpticalRun(result, dict(zip(drives, devices, strict=True)), iso, size)


def _step(run: OpticalRun, name: str, rc: int | None = 0) -> harness.Step:
    st = run.result.step(name)
    assert st.returncode == rc, (
        f"{name}: exit {st.returncode}, expected {rc}\n--- stdout\n{st.stdout[-2000:]}"
        f"\n--- stderr\n{st.stderr[-2000:]}\n{run.result.timings()}"
    )
    return st


def _last_event(run: OpticalRun, name: str) -> dict[str, Any]:
    lines = [line for line in run.result.step(name).stdout.splitlines() if line.strip()]
    assert lines, f"{name}: no output on stdout\n{run.result.step(name).stderr[-2000:]}"
    event: dict[str, Any] = json.loads(lines[-1])
    return event


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_facts(run: OpticalRun, name: str) -> tuple[int, str]:
    size, digest = _step(run, name).stdout.split()
    return int(size), digest


# ---- the drives, as the guest kernel sees them (no usbwriter)


def test_the_guest_sees_three_usb_optical_drives(optical_run: OpticalRun) -> None:
    assert sorted(optical_run.devices.values()) == ["/dev/sr0", "/dev/sr1", "/dev/sr2"]
    for name, disc in (("clean", CLEAN), ("faulty", FAULTY), ("scratched", SCRATCHED)):
        size_512, sector_size, *props = _step(optical_run, f"drive-{name}").stdout.splitlines()
        assert int(size_512) * 512 == optical_run.drive_size
        assert int(sector_size) == CD_SECTOR
        udev = dict(p.split("=", 1) for p in props if "=" in p)
        assert udev.get("ID_CDROM") == "1", udev
        assert udev.get("ID_BUS") == "usb", udev
        assert udev.get("ID_SERIAL_SHORT") == disc.serial, udev
        assert udev.get("ID_FS_TYPE") == "iso9660", udev


def test_the_clean_drive_reads_the_iso(optical_run: OpticalRun) -> None:
    out = _step(optical_run, "dd-clean").stdout
    assert out.split()[0] == _sha256(optical_run.iso)


@pytest.mark.parametrize("drive", sorted(BAD_DRIVES))
def test_a_bad_drive_reads_up_to_the_first_injected_sector(
    optical_run: OpticalRun, drive: str
) -> None:
    head = _step(optical_run, f"dd-{drive}-head").stdout
    assert head.split()[0] == _sha256(optical_run.iso[:FIRST_BAD_OFFSET])
    bad = _step(optical_run, f"dd-{drive}-bad", rc=1)
    assert BAD_DRIVES[drive] in bad.stderr, bad.stderr


# ---- usbwriter backup


def test_backup_of_a_disc_is_the_iso_volume(optical_run: OpticalRun) -> None:
    """The drive reports the ISO and the junk after it; the backup holds the ISO only."""
    _step(optical_run, "clean")
    event = _last_event(optical_run, "clean")
    assert event["event"] == "backup", event
    assert event["device"] == optical_run.devices["clean"]
    assert event["output"] == "/tmp/backup/clean/disc.iso"
    assert (event["size"], event["size_from"]) == (len(optical_run.iso), "iso9660"), event
    assert event["blake3"] == blake3.blake3(optical_run.iso).hexdigest()
    assert event["unreadable"] == []
    size, digest = _file_facts(optical_run, "clean-file")
    assert size == len(optical_run.iso)
    assert digest == _sha256(optical_run.iso), "the backup differs from the ISO"


def test_compressed_backup_of_a_disc_verifies(optical_run: OpticalRun) -> None:
    _step(optical_run, "gz")
    event = _last_event(optical_run, "gz")
    assert event["event"] == "backup", event
    assert (event["size"], event["size_from"]) == (len(optical_run.iso), "iso9660"), event
    assert event["verified"] is True, event
    assert event["unreadable"] == []
    digest = _step(optical_run, "gz-file").stdout.strip()
    assert digest == _sha256(optical_run.iso), "the decompressed backup differs from the ISO"


def _names_first_bad_byte(run: OpticalRun, drive: str, stderr: str) -> None:
    """One stderr line names the drive and the first unreadable byte; no traceback."""
    device = run.devices[drive]
    lines = [line for line in stderr.splitlines() if line.strip()]
    naming = [x for x in lines if device in x and re.search(rf"\b{FIRST_BAD_OFFSET}\b", x)]
    assert len(naming) == 1, (
        f"no single stderr line names {device} and byte {FIRST_BAD_OFFSET}:\n{stderr[-2000:]}"
    )
    assert "Traceback" not in stderr, stderr


def test_backup_stops_at_the_first_unreadable_sector(optical_run: OpticalRun) -> None:
    st = _step(optical_run, "faulty-stop", rc=1)
    _names_first_bad_byte(optical_run, "faulty", st.stderr)
    assert optical_run.result.files["faulty-stop.ls"].split() == [], "the partial backup was left"


@pytest.mark.parametrize("drive", sorted(BAD_DRIVES))
def test_backup_json_names_the_first_unreadable_sector(optical_run: OpticalRun, drive: str) -> None:
    name = f"{drive}-stop-json"
    st = _step(optical_run, name, rc=1)
    event = _last_event(optical_run, name)
    assert event["event"] == "error", event
    assert event["offset"] == FIRST_BAD_OFFSET, event
    _names_first_bad_byte(optical_run, drive, st.stderr)
    assert optical_run.result.files[f"{name}.ls"].split() == [], "the partial backup was left"


def _listed_sectors(unreadable: list[dict[str, int]]) -> list[int]:
    """The drive sectors that the ranges of "unreadable" cover (each range whole sectors)."""
    sectors: list[int] = []
    for r in unreadable:
        assert r["offset"] % CD_SECTOR == 0 and r["length"] % CD_SECTOR == 0, r
        assert r["length"] > 0, r
        first = r["offset"] // CD_SECTOR
        sectors += range(first, first + r["length"] // CD_SECTOR)
    return sectors


@pytest.mark.parametrize("drive", sorted(BAD_DRIVES))
def test_backup_keep_going_zeroes_exactly_the_unreadable_sectors(
    optical_run: OpticalRun, drive: str
) -> None:
    _step(optical_run, f"{drive}-keep")
    event = _last_event(optical_run, f"{drive}-keep")
    assert event["event"] == "backup", event
    assert (event["size"], event["size_from"]) == (len(optical_run.iso), "iso9660"), event
    listed = _listed_sectors(event["unreadable"])
    assert sorted(listed) == BAD_SECTORS, event["unreadable"]
    assert len(set(listed)) == len(listed), f"a sector listed twice: {event['unreadable']}"
    expected = zero_sectors(optical_run.iso, BAD_SECTORS)
    assert event["blake3"] == blake3.blake3(expected).hexdigest()
    size, digest = _file_facts(optical_run, f"{drive}-keep-file")
    assert size == len(expected)
    assert digest == _sha256(expected), "the backup is not the ISO with the bad sectors zeroed"
    # --verify reads the drive again, but not the sectors already found unreadable.
    verify = event["verify"]
    assert verify["verified"] is True and verify["mismatch_offset"] is None, verify
    assert verify["file_blake3"] == event["blake3"], verify


def test_ctrl_c_stops_the_retries_of_a_bad_sector(optical_run: OpticalRun) -> None:
    """SIGINT after 4 s, while the first bad sector is being read again and again: the
    backup stops at the next retry (exit 130), well before its million retries, and
    leaves no file."""
    st = _step(optical_run, "faulty-cancel", rc=130)
    assert st.seconds < 7, f"took {st.seconds:.1f} s to stop after SIGINT at 4 s"
    assert optical_run.result.files.get("faulty-cancel.ls", "").strip() == ""


def test_verify_blames_an_unreadable_image_not_the_drive(optical_run: OpticalRun) -> None:
    faulty = optical_run.devices["faulty"]
    _step(optical_run, "verify-bad-image", rc=1)
    event = _last_event(optical_run, "verify-bad-image")
    assert event["event"] == "error" and event["fault"] == "image", event
    assert event["path"] == faulty and f"reading '{faulty}'" in event["message"]
    assert "clean-drive.img" not in event["message"]

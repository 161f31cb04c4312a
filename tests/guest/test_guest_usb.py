"""usbwriter against real USB mass-storage devices: a qemu guest with emulated sticks.

The guest runs Debian's kernel with the real xhci, usb-storage and sd drivers and
udevd (see harness.py), so what usbwriter reads there is what it reads from a stick
on a real machine. Two guest runs in all:

1. ``usb_run``: ``usbwriter list --json`` with a removable stick, a fixed USB disk and
   a read-only stick; the hot-plug watcher while a stick is plugged and unplugged over
   QMP; ``usbwriter list --json`` again with udevd stopped and its database gone.
2. ``write_run``: ``usbwriter --image ... --device /dev/sdX --yes --json`` writes and
   verifies a stick and leaves a second stick alone; the written stick's image file
   then boots under qemu with SeaBIOS and with OVMF.

(Refusing a read-only drive is tested on read-only loop devices on the host; here the
listing shows that a write-protected USB stick is read as read-only and not eligible.)
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.guest import harness
from tests.guest.harness import Guest, GuestError, GuestResult, Stick

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or ""),
]

MiB = 1 << 20
StickFile = Callable[..., Path]  # the module_stick_file fixture of conftest.py


@dataclass(frozen=True)
class Spec:
    """What a stick says about itself (SCSI vendor and product, USB serial)."""

    serial: str
    vendor: str
    product: str

    def stick(self, image: Path, *, removable: bool = True, read_only: bool = False) -> Stick:
        return Stick(image, self.serial, self.vendor, self.product, removable, read_only)


REMOVABLE = Spec("USBW-RM-0001", "SanDisk", "Cruzer Blade")
FIXED = Spec("USBW-FX-0002", "Samsung", "Portable SSD T7")
READ_ONLY = Spec("USBW-RO-0003", "Kingston", "DataTraveler 3.0")
HOT = Spec("USBW-HP-0004", "Verbatim", "Store n Go")
TARGET = Spec("USBW-WR-0005", "SanDisk", "Ultra Fit")
BYSTANDER = Spec("USBW-BY-0006", "Lexar", "JumpDrive")
RESTORED = Spec("USBW-RS-0007", "Kingston", "DataTraveler")

# Runs in the guest: watch for disks until the hot-plugged stick has come and gone
# (or 40 s), one JSON line per event; files in the share tell the host when to act.
WATCH = r"""
import json, os, threading
from pathlib import Path
from usbwriter.devices import Watcher

share = Path(os.environ["GUEST_SHARE"])
serial = os.environ["HOT_SERIAL"]
cancel = threading.Event()
timer = threading.Timer(40.0, cancel.set)
timer.daemon = True
watcher = Watcher()
watcher.start()
(share / "watch-ready").touch()
timer.start()
path = None
for ev in watcher.iter_events(cancel):
    rec = {"action": ev.action, "path": ev.path}
    d = ev.disk
    if d is not None:
        rec.update(serial=d.serial, vendor=d.vendor, model=d.model, bus=d.bus,
                   removable=d.removable, eligible=d.eligible, size=d.size)
    print(json.dumps(rec), flush=True)
    if ev.action == "add" and d is not None and d.serial == serial:
        path = ev.path
        (share / "watch-added").write_text(path)
    elif ev.action == "remove" and ev.path == path:
        break
"""


@dataclass(frozen=True)
class UsbRun:
    result: GuestResult
    hotplug_error: str | None


@pytest.fixture(scope="module")
def usb_run(module_stick_file: StickFile) -> UsbRun:
    sticks = [
        REMOVABLE.stick(module_stick_file("removable", 64 * MiB)),
        FIXED.stick(module_stick_file("fixed", 96 * MiB), removable=False),
        READ_ONLY.stick(module_stick_file("readonly", 32 * MiB), read_only=True),
    ]
    hot = HOT.stick(module_stick_file("hot", 48 * MiB))
    command = "\n".join(
        [
            "step list python -m usbwriter list --json",
            "step lsblk lsblk -J -b -o NAME,SERIAL,VENDOR,MODEL,RM,RO,TRAN,SIZE",
            'step watch python -c "$WATCH"',
            # The same machine as udevd never ran: no daemon, no database.
            "udevadm control --exit; rm -rf /run/udev",
            "step list-noudev python -m usbwriter list --json",
        ]
    )
    error = None
    env = {"WATCH": WATCH, "HOT_SERIAL": HOT.serial}
    with Guest(command, sticks=sticks, env=env, timeout=180) as g:
        try:
            g.wait_for_file("watch-ready", timeout=120)
            g.plug(hot)
            g.wait_for_file("watch-added", timeout=30)
            g.unplug(hot)
        except GuestError as e:
            error = str(e)  # reported by the hot-plug test; the listing tests go on
        result = g.wait()
    print(result.timings())
    return UsbRun(result, error)


def _disks(run: GuestResult, step: str) -> dict[str, dict[str, Any]]:
    st = run.step(step)
    assert st.returncode == 0, f"{step}: rc {st.returncode}\n{st.stderr}\n{run.describe()}"
    disks: list[dict[str, Any]] = json.loads(st.stdout)
    return {d["serial"]: d for d in disks}


def _lsblk(run: GuestResult) -> dict[str, dict[str, Any]]:
    data = json.loads(run.step("lsblk").stdout)
    return {d["serial"]: d for d in data["blockdevices"] if d.get("serial")}


def _check_listing(run: GuestResult, step: str, *, udev: bool) -> None:
    disks = _disks(run, step)
    lsblk = _lsblk(run)
    for spec, removable, size in ((REMOVABLE, True, 64 * MiB), (FIXED, False, 96 * MiB)):
        d = disks.get(spec.serial)
        assert d is not None, f"{spec.serial} not listed: {sorted(disks)}"
        assert d["path"] == "/dev/" + lsblk[spec.serial]["name"]
        assert (d["vendor"], d["model"], d["serial"]) == (
            spec.vendor,
            spec.product,
            spec.serial,
        )
        assert d["bus"] == "usb"
        assert d["removable"] is removable
        assert d["size"] == size
        assert d["eligible"] is True and d["reasons"] == [], d["reasons"]
        if udev:
            assert d["by_id"] == (
                f"/dev/disk/by-id/usb-{spec.vendor}_{spec.product.replace(' ', '_')}"
                f"_{spec.serial}-0:0"
            )
    ro = disks.get(READ_ONLY.serial)
    assert ro is not None, f"the read-only stick is not listed: {sorted(disks)}"
    assert ro["read_only"] is True and ro["eligible"] is False
    assert any("read-only" in r for r in ro["reasons"]), ro["reasons"]


def test_list_shows_usb_sticks_with_udev(usb_run: UsbRun) -> None:
    lsblk = _lsblk(usb_run.result)  # the kernel's view, as a second opinion
    assert lsblk[REMOVABLE.serial]["rm"] is True
    assert lsblk[FIXED.serial]["rm"] is False
    assert lsblk[READ_ONLY.serial]["ro"] is True
    assert {d["tran"] for d in lsblk.values()} == {"usb"}
    _check_listing(usb_run.result, "list", udev=True)


def test_list_shows_usb_sticks_without_udevd(usb_run: UsbRun) -> None:
    _check_listing(usb_run.result, "list-noudev", udev=False)


def test_watcher_sees_a_stick_plugged_and_unplugged(usb_run: UsbRun) -> None:
    run = usb_run.result
    st = run.step("watch")
    assert usb_run.hotplug_error is None, f"{usb_run.hotplug_error}\n{run.describe()}"
    assert st.returncode == 0, run.describe()
    events = [json.loads(line) for line in st.stdout.splitlines() if line.strip()]
    adds = [e for e in events if e["action"] == "add" and e.get("serial") == HOT.serial]
    assert adds, f"no add event for the plugged stick: {events}"
    add = adds[0]
    assert (add["vendor"], add["model"], add["bus"]) == (HOT.vendor, HOT.product, "usb")
    assert add["removable"] is True and add["eligible"] is True
    assert add["size"] == 48 * MiB
    later = events[events.index(add) + 1 :]
    assert {"action": "remove", "path": add["path"]} in later, events
    # Only the plugged stick came and went.
    others = {e.get("serial") for e in events if e["action"] in ("add", "remove")}
    assert others <= {HOT.serial, None}, events


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WriteRun:
    result: GuestResult
    image: Path
    target: Path
    bystander: Path
    bystander_before: bytes


def _by_serial(serial: str) -> str:
    """Shell: the /dev/sdX node of the USB disk with this serial (by-id link)."""
    return f"$(readlink -f /dev/disk/by-id/usb-*_{shlex.quote(serial)}-0:0)"


@pytest.fixture(scope="module")
def write_run(module_stick_file: StickFile) -> WriteRun:
    from tests.helpers.images import build_image

    image = Path(build_image("grub-hybrid"))
    # Sticks full of old data, so a write that did nothing cannot verify.
    target = module_stick_file("target", 64 * MiB, random_head=8 * MiB)
    bystander = module_stick_file("bystander", 32 * MiB, random_head=4 * MiB)
    restored = module_stick_file("restored", 64 * MiB, random_head=4 * MiB)
    before = bystander.read_bytes()
    sticks = [
        TARGET.stick(target),
        BYSTANDER.stick(bystander),
        RESTORED.stick(restored),
    ]
    img = shlex.quote(str(image))
    command = "\n".join(
        [
            f"dev={_by_serial(TARGET.serial)}",
            'echo "$dev" >"$GUEST_SHARE/target-device"',
            f'step write python -m usbwriter --image {img} --device "$dev" --yes --json',
            # A third stick holding the hybrid ISO is made a normal stick again.
            f"used={_by_serial(RESTORED.serial)}",
            f'step write-used python -m usbwriter --image {img} --device "$used" --yes',
            'step restore python -m usbwriter restore "$used" --yes --json --label GUEST',
            "udevadm settle",
            "step listed python -m usbwriter list --json",
        ]
    )
    with Guest(command, sticks=sticks, timeout=180) as g:
        result = g.wait()
    print(result.timings())
    return WriteRun(result, image, target, bystander, before)


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_write_and_verify_a_stick_in_the_guest(write_run: WriteRun) -> None:
    run = write_run.result
    st = run.step("write")
    assert st.returncode == 0, f"rc {st.returncode}\n{st.stdout[-2000:]}\n{run.describe()}"
    device = run.files["target-device"].strip()
    assert device.startswith("/dev/sd"), device
    events = _ndjson(st.stdout)
    result = events[-1]
    assert result["event"] == "result", events[-3:]
    assert result["verified"] is True and result["page_cache_bypassed"] is True
    assert result["device"]["path"] == device
    assert result["device"]["serial"] == TARGET.serial
    image = write_run.image.read_bytes()
    assert result["bytes_written"] == len(image)
    assert any(e["event"] == "progress" and e["phase"] == "verify" for e in events)
    # What reached the emulated stick, read from its image file on the host.
    with open(write_run.target, "rb") as f:
        assert f.read(len(image)) == image
    assert write_run.bystander.read_bytes() == write_run.bystander_before


def test_restored_stick_is_listed_as_a_normal_stick(write_run: WriteRun) -> None:
    """With udev (as on a desktop), the restored stick lists one FAT32 partition."""
    run = write_run.result
    for name in ("write-used", "restore", "listed"):
        st = run.step(name)
        assert st.returncode == 0, f"{name}: rc {st.returncode}\n{st.stderr[-2000:]}"
    receipt = _ndjson(run.step("restore").stdout)[-1]
    assert receipt["event"] == "restore" and receipt["verified"] is True
    listed = json.loads(run.step("listed").stdout)
    stick = next(d for d in listed if d["serial"] == RESTORED.serial)
    assert stick["eligible"], stick
    assert [(p["number"], p["fstype"], p["label"]) for p in stick["partitions"]] == [
        (1, "vfat", "GUEST")
    ], stick["partitions"]


@pytest.mark.boot
@pytest.mark.parametrize(("firmware", "platform"), [("bios", "pc"), ("uefi", "efi")])
def test_written_stick_boots(write_run: WriteRun, firmware: str, platform: str) -> None:
    from tests.helpers.qemuboot import boot_stick, qemu_available

    missing = qemu_available()
    if missing:
        pytest.skip(missing)
    if write_run.result.step("write").returncode != 0:
        pytest.fail("the stick was not written in the guest (see the write test)")
    outcome = boot_stick(write_run.target, firmware)  # type: ignore[arg-type]
    assert outcome.booted, f"{outcome.ended_by}\n{outcome.log[-3000:]}"
    assert outcome.marker == f"USBW-MARK grub-hybrid {platform}"

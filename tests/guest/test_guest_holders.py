"""A USB stick with something stacked on it is refused: real dm, LVM and md in the guest.

The host kernel has no device-mapper or md, but the guest boots Debian's kernel, whose
modules are on the shared root, and the host's dmsetup, lvm2 and mdadm. One guest run
(``holders_run``) with two sticks builds three stacks in turn over the target stick,
and for each one checks what usbwriter says, then tears it down:

1. ``dm``: a plain dm-linear over the whole stick (``dmsetup create``);
2. ``lvm``: a physical volume, a volume group and an active logical volume;
3. ``md``: a RAID1 of the target stick and a second stick (``mdadm --create``).

With a stack in place, ``usbwriter list --all --json`` must show the stick as not
eligible with its holder named, ``usbwriter --image ... --device /dev/sdX --yes
--json`` must be refused (exit 4) and leave the stick's first 8 MiB as they were
(hashed in the guest with O_DIRECT reads, before and after), and the stacked device
itself (the dm or md node) must not be written either; today usbwriter does write it
(see KNOWN_GAP: that test is an expected failure while the write goes through). Once
torn down, the holder must be gone from sysfs, and after the three, both sticks must
be listed as eligible again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from tests.guest import harness
from tests.guest.harness import Guest, GuestResult, Stick

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(harness.skip_reason() is not None, reason=harness.skip_reason() or ""),
]

MiB = 1 << 20
StickFile = Callable[..., Path]  # the module_stick_file fixture of conftest.py

#: The sticks (their image files are made per run).
TARGET = Stick(Path(), "USBW-HL-0007", "SanDisk", "Cruzer Glide")
MIRROR = Stick(Path(), "USBW-MR-0008", "Verbatim", "PinStripe")

#: The stacks, in the order the guest builds them.
STACKS = ("dm", "lvm", "md")
#: The stacked node tried as a target (the logical volume is a dm node too: not again).
TOP = {"dm": "/dev/mapper/usbw-linear", "md": "/dev/md0"}

# Runs in the guest (with ``step`` from harness.py). $S is the target stick, $M the
# second one. Each stack: set up, record the stick's holders, list, try to write the
# stick and the stacked device (hashing the stick's head around each attempt), tear
# down and record the holders again. Then one listing with all three gone (each
# listing costs 3 to 5 s of guest time).
SCRIPT = r"""
by_serial() { readlink -f /dev/disk/by-id/usb-*_"$1"-0:0; }
S=$(by_serial "$TARGET_SERIAL"); M=$(by_serial "$MIRROR_SERIAL")
export S M
echo "$S $M" >"$GUEST_SHARE/devices"
LVMC='devices { use_devicesfile = 0 } activation { udev_sync = 0 udev_rules = 0 }'
head_hash() { dd if="$S" bs=1M count=8 iflag=direct status=none | sha256sum | cut -d' ' -f1; }
try_write() {  # NAME DEVICE
    _before=$(head_hash)
    step "$1" python -m usbwriter --image "$IMAGE" --device "$2" --yes --json
    echo "$_before $(head_hash)" >"$GUEST_SHARE/$1.hash"
}
holders() { ls "/sys/block/${S#/dev/}/holders" >"$GUEST_SHARE/$1.holders"; }

# Each stack starts from a stick without signatures (a write that went through to the
# stick leaves a partition table that pvcreate and mdadm would stop at).
dm_up() {
    wipefs -a -q "$S" &&
    modprobe dm-mod &&
    dmsetup create usbw-linear --table "0 $(blockdev --getsz "$S") linear $S 0"
}
dm_down() { dmsetup remove usbw-linear; }
lvm_up() {
    wipefs -a -q "$S" &&
    pvcreate --config "$LVMC" "$S" &&
    vgcreate --config "$LVMC" usbwvg "$S" &&
    lvcreate --config "$LVMC" -n lv -L 16M usbwvg
}
lvm_down() {
    vgchange --config "$LVMC" -an usbwvg &&
    vgremove --config "$LVMC" -f usbwvg &&
    pvremove --config "$LVMC" "$S"
}
md_up() {
    wipefs -a -q "$S" "$M" &&
    modprobe raid1 &&
    mdadm --create /dev/md0 --level=1 --raid-devices=2 --metadata=1.2 --assume-clean \
        --run "$S" "$M"
}
md_down() { mdadm --stop /dev/md0 && mdadm --zero-superblock "$S" "$M"; }

for stack in dm lvm md; do
    step $stack-up ${stack}_up
    udevadm settle
    holders $stack
    step $stack-list python -m usbwriter list --all --json
    try_write $stack-write "$S"
    case $stack in
        dm) try_write dm-top /dev/mapper/usbw-linear ;;
        md) try_write md-top /dev/md0 ;;
    esac
    step $stack-down ${stack}_down
    udevadm settle
    holders $stack-down
done
step after python -m usbwriter list --json
"""


@dataclass(frozen=True)
class HoldersRun:
    result: GuestResult
    stick: str  # /dev/sdX of the target in the guest


@pytest.fixture(scope="module")
def holders_run(module_stick_file: StickFile) -> HoldersRun:
    from tests.helpers.images import build_image

    image = Path(build_image("grub-hybrid"))
    # Old data on the target, so a write that happened cannot hash the same.
    target = module_stick_file("holders-target", 64 * MiB, random_head=8 * MiB)
    mirror = module_stick_file("holders-mirror", 64 * MiB)
    sticks = [replace(TARGET, image=target), replace(MIRROR, image=mirror)]
    env = {
        "IMAGE": str(image),
        "TARGET_SERIAL": TARGET.serial,
        "MIRROR_SERIAL": MIRROR.serial,
    }
    with Guest(SCRIPT, sticks=sticks, env=env, timeout=240) as g:
        result = g.wait()
    print(result.timings())
    assert result.returncode == 0, result.describe()
    stick = result.files.get("devices", "").split()
    assert len(stick) == 2 and all(s.startswith("/dev/sd") for s in stick), result.describe()
    return HoldersRun(result, stick[0])


def _ok(run: GuestResult, name: str) -> str:
    st = run.step(name)
    assert st.returncode == 0, f"{name}: rc {st.returncode}\n{st.stderr}\n{run.describe()}"
    return st.stdout


def _listing(run: GuestResult, name: str) -> dict[str, dict[str, Any]]:
    disks: list[dict[str, Any]] = json.loads(_ok(run, name))
    return {d["serial"]: d for d in disks}


def _last_event(run: GuestResult, name: str) -> dict[str, Any]:
    lines = [line for line in run.step(name).stdout.splitlines() if line.strip()]
    assert lines, f"{name}: no JSON output\n{run.describe()}"
    event: dict[str, Any] = json.loads(lines[-1])
    return event


def _head_unchanged(run: GuestResult, name: str) -> None:
    before, after = run.files[f"{name}.hash"].split()
    assert before == after, f"{name}: the stick's first 8 MiB changed"


@pytest.mark.parametrize("stack", STACKS)
def test_stick_under_a_stack_is_listed_as_not_eligible(holders_run: HoldersRun, stack: str) -> None:
    run = holders_run.result
    _ok(run, f"{stack}-up")
    holders = run.files[f"{stack}.holders"].split()
    # dm-linear and LVM: a dm-N node; md: md0.
    assert len(holders) == 1 and holders[0].startswith("md" if stack == "md" else "dm-"), holders
    holder = holders[0]
    listing = _listing(run, f"{stack}-list")
    d = listing.get(TARGET.serial)
    assert d is not None, f"the stick is not listed: {sorted(listing)}"
    assert d["path"] == holders_run.stick
    assert d["holders"] == [holder]
    assert d["eligible"] is False
    assert len(d["reasons"]) == 1 and f"in use by {holder}" in d["reasons"][0], d["reasons"]
    # The stacked volume itself is not a drive to list, even with --all.
    assert all(not x["path"].endswith("/" + holder) for x in listing.values()), sorted(listing)
    mirror = listing.get(MIRROR.serial)
    assert mirror is not None
    assert mirror["eligible"] is (stack != "md"), mirror["reasons"]


@pytest.mark.parametrize("stack", STACKS)
def test_writing_a_stick_under_a_stack_is_refused(holders_run: HoldersRun, stack: str) -> None:
    run = holders_run.result
    _ok(run, f"{stack}-up")
    holder = run.files[f"{stack}.holders"].split()[0]
    name = f"{stack}-write"
    st = run.step(name)
    assert st.returncode == 4, f"rc {st.returncode}\n{st.stdout}\n{st.stderr}"
    event = _last_event(run, name)
    assert (event["event"], event["code"], event["exit_code"]) == ("error", "refused", 4)
    assert event["message"].startswith(holders_run.stick + " "), event["message"]
    assert f"in use by {holder}" in event["message"], event["message"]
    _head_unchanged(run, name)


#: What usbwriter does today with a dm or md node as the target: it writes it.
KNOWN_GAP = (
    "usbwriter writes a dm or md volume that stands on USB sticks (exit 0, verified): it "
    "refuses a disk with holders, but not a volume over other disks (its slaves)"
)


@pytest.mark.parametrize("stack", sorted(TOP))
def test_the_stacked_volume_is_not_written(holders_run: HoldersRun, stack: str) -> None:
    """The dm or md node over the stick: writing it writes the stick underneath."""
    run = holders_run.result
    _ok(run, f"{stack}-up")
    name = f"{stack}-top"
    st = run.step(name)
    event = _last_event(run, name)
    if st.returncode == 0 and event["event"] == "result":
        # The gap as observed: the write went through the volume to the stick.
        assert event["device"]["path"] == TOP[stack], event["device"]
        assert event["device"]["bus"] == stack, event["device"]
        before, after = run.files[f"{name}.hash"].split()
        assert before != after, "exit 0 but the stick's head is unchanged"
        pytest.xfail(KNOWN_GAP)
    assert st.returncode in (2, 4), (
        f"usbwriter --device {TOP[stack]} exited {st.returncode}\n"
        f"{st.stdout[-1500:]}\n{st.stderr[-1500:]}"
    )
    assert event["event"] == "error" and event["exit_code"] == st.returncode, event
    _head_unchanged(run, name)


@pytest.mark.parametrize("stack", STACKS)
def test_teardown_leaves_no_holder(holders_run: HoldersRun, stack: str) -> None:
    run = holders_run.result
    _ok(run, f"{stack}-down")
    assert run.files[f"{stack}-down.holders"].split() == []


def test_sticks_are_eligible_again_after_the_teardowns(holders_run: HoldersRun) -> None:
    listing = _listing(holders_run.result, "after")
    for stick in (TARGET, MIRROR):
        d = listing.get(stick.serial)
        assert d is not None, f"{stick.serial} not listed after the teardowns: {sorted(listing)}"
        assert d["eligible"] is True and d["reasons"] == [], d["reasons"]
        assert d["holders"] == []

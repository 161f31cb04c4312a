"""The write job's decisions, as one table: no devices, no root.

Each row is a request and the facts read about it (built by hand here, the way
job/facts.py reads them from a machine); the plan must block with the exit code and
words given, warn, and list the mounts to unmount in order. Then the two front ends
act on each plan alike: the command line's refusal and the app's are the same error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_devices import disk, usb_stick
from usbwriter.devices import BlockNode, MountEntry, Snapshot, disk_from_info
from usbwriter.errors import BadInput
from usbwriter.jobs import BootFacts, ImageFacts, Plan, Request, TargetFacts, decide

MiB = 1 << 20
BOOTS = BootFacts("yes", "yes", ("BIOS: GRUB in the MBR", "UEFI: BOOTX64.EFI on the ESP"))
DATA_ISO = BootFacts(
    "no",
    "no",
    ("no boot records",),
    image_kind="data-iso",
    for_hardware="a data disc (nothing to boot)",
)
UNREADABLE = BootFacts("no", "no", unreadable="truncated volume descriptor")
NOT_AN_IMAGE = BootFacts(
    "no",
    "no",
    unreadable="not a disk or ISO image: no partition table",
    image_kind="not-a-disk-image",
)
RASPBERRY_PI = BootFacts(
    "no",
    "no",
    ("This image is for a Raspberry Pi",),
    image_kind="board:raspberry-pi",
    for_hardware="a Raspberry Pi",
    compression="xz",
)
U_BOOT = BootFacts(
    "no",
    "no",
    image_kind="board:u-boot",
    for_hardware="a board booting with U-Boot (Allwinner SPL)",
)
DATA_DISK = BootFacts("no", "no", image_kind="data-disk", for_hardware="a data disk")
CD_ONLY = BootFacts(
    "no",
    "no",
    image_kind="iso",
    for_hardware="a CD or DVD (its boot records are for optical drives)",
)
NOT_KNOWN = BootFacts(
    "unknown",
    "no",
    image_kind="pc-disk",
    for_hardware="a PC",
    compression="xz",
    not_read=("what the MBR's boot code loads",),
)
ROOT = MountEntry("254:1", "/", "ext4", "/dev/vda1", mount_id=1, parent_id=0)
STICK_MOUNT = MountEntry("8:1", "/media/stick", "vfat", "/dev/sda1", mount_id=40, parent_id=1)
NESTED = MountEntry("8:0", "/media/stick/inner", "ext4", "/dev/sda", mount_id=41, parent_id=40)
FOREIGN = MountEntry("0:55", "/media/stick/tmp", "tmpfs", "tmpfs", mount_id=42, parent_id=40)


def image(kind: str = "file", size: int = 4 * MiB, **kw: Any) -> ImageFacts:
    footprint = frozenset({("file", "254:1", "10"), ("disk", "vda")}) if kind == "file" else None
    return ImageFacts(
        "x.iso",
        "/home/u/x.iso",
        kind,
        size=size,
        dev=1,
        ino=10,
        footprint=kw.pop("footprint", footprint or frozenset()),
        **kw,
    )


NODES = (
    BlockNode("vda", "254:0"),
    BlockNode("vda1", "254:1", parent="vda"),
    BlockNode("sda", "8:0"),
    BlockNode("sda1", "8:1", parent="sda"),
)


def stick(*mounts: MountEntry, nodes: tuple[BlockNode, ...] = NODES, **info: Any) -> TargetFacts:
    snap = Snapshot(mounts=(ROOT, *mounts), nodes=nodes)
    d = disk_from_info(usb_stick(**info), snap)
    ours = {d.devno} | {f"{p.major}:{p.minor}" for p in d.partitions}
    mine = tuple(m for m in snap.mounts if m.devno in ours)
    ids = {m.mount_id for m in mine}
    return TargetFacts(
        "/dev/sda",
        "/dev/sda",
        "block",
        disk=d,
        size=d.size,
        footprint=snap.footprint("sda", through_files=False),
        mounts=mine,
        foreign=tuple(m for m in snap.mounts if m.parent_id in ids and m.devno not in ours),
    )


def system_disk() -> TargetFacts:
    snap = Snapshot(mounts=(ROOT,), nodes=NODES)
    d = disk_from_info(disk("vda", "254:0", size=20 << 21), snap)
    return TargetFacts("/dev/vda", "/dev/vda", "block", disk=d, size=d.size)


def other(kind: str, **kw: Any) -> TargetFacts:
    return TargetFacts("/home/u/t", "/home/u/t", kind, **kw)


@dataclass(frozen=True)
class Case:
    name: str
    target: TargetFacts
    img: ImageFacts = field(default_factory=image)
    boot: BootFacts | None = BOOTS
    request: dict[str, Any] = field(default_factory=dict)
    exits: tuple[int, ...] = ()  # the blockers' exit codes, in order
    words: str = ""  # in the first blocker's message
    overridable: bool = False  # the blockers may all be confirmed past
    unmounts: tuple[str, ...] = ()
    warns: str = ""


LOOP_ON_STICK = (*NODES, BlockNode("loop7", "7:7", backing_devno="8:0"))
DM_ON_STICK = (*NODES, BlockNode("dm-0", "253:0", slaves=("sda",)))
CASES = [
    Case("usb stick, bootable image", stick()),
    Case("a data ISO (no boot records)", stick(), boot=DATA_ISO, exits=(4,),
         words="it will not boot on BIOS or UEFI; it is an ISO image with no boot records (a data "
               "disc); use --force",
         overridable=True),
    Case("--force writes it with a warning", stick(), boot=DATA_ISO, request={"force": True},
         warns="--force"),
    Case("boot records unreadable", stick(), boot=UNREADABLE, exits=(4,),
         words="could not be read", overridable=True),
    Case("mounted, no --unmount", stick(STICK_MOUNT), exits=(4,), words="pass --unmount"),
    Case("mounted, --unmount", stick(STICK_MOUNT), request={"unmount": True},
         unmounts=("/media/stick",), warns="will unmount"),
    Case("nested mounts: deepest first", stick(STICK_MOUNT, NESTED), request={"unmount": True},
         unmounts=("/media/stick/inner", "/media/stick")),
    Case("another file system stacked on its mount", stick(STICK_MOUNT, FOREIGN),
         request={"unmount": True}, exits=(4,), words="mounted on top"),
    Case("system disk", system_disk(), exits=(4,), words="system disk"),
    Case("a loop device stacked on it", stick(nodes=LOOP_ON_STICK), exits=(4,),
         words="/dev/loop7 stacked on it"),
    Case("a dm volume over the stick", TargetFacts(
         "/dev/mapper/v", "/dev/dm-0", "block", disk=disk_from_info(
             disk("dm-0", "253:0"), Snapshot(nodes=DM_ON_STICK)), size=1 << 20,
         footprint=Snapshot(nodes=DM_ON_STICK).footprint("dm-0", through_files=False)),
         exits=(4,), words="stands on /dev/sda"),
    Case("read-only", stick(attributes=usb_stick()["attributes"] | {"ro": "1"}), exits=(4,),
         words="read-only"),
    Case("partition node", other("partition", parent_disk="sda"), exits=(4,),
         words="whole disk /dev/sda"),
    Case("regular file without --to-file", other("file", size=100), exits=(4,),
         words="--to-file"),
    Case("regular file with --to-file", other("file", size=100), request={"to_file": True}),
    Case("new file without --to-file", other("missing"), exits=(2,), words="--to-file"),
    Case("new file with --to-file", other("missing"), request={"to_file": True}),
    Case("swapped: image a drive, target a file", other("file", size=100),
         img=image("block"), request={"to_file": True}, exits=(4,), words="swapped"),
    Case("target is a FIFO", other("fifo"), exits=(2,), words="FIFO"),
    Case("target is a directory", other("directory"), exits=(2,), words="directory"),
    Case("image is a FIFO", stick(), img=image("fifo"), boot=None, exits=(2,), words="FIFO"),
    Case("image missing", stick(), boot=None, exits=(2,), words="no such file",
         img=image("missing", error=BadInput("x.iso: no such file or device"))),
    Case("image too large", stick(), img=image(size=2 << 30), exits=(4,), words="does not fit"),
    Case("image lives on the target", stick(),
         img=image(footprint=frozenset({("file", "8:1", "12"), ("disk", "sda")})), exits=(4,),
         words="overlaps"),
    Case("image missing and target the system disk", system_disk(), boot=None,
         img=image("missing", error=BadInput("x.iso: no such file or device")), exits=(2, 4)),
    Case("not a disk or ISO image", stick(), boot=NOT_AN_IMAGE, exits=(4,),
         words="x.iso: its boot records could not be read (not a disk or ISO image",
         overridable=True),
    Case("a Raspberry Pi image: written, with a warning", stick(), boot=RASPBERRY_PI,
         warns="x.iso: this image is for a Raspberry Pi; it will not boot a PC"),
    Case("a U-Boot board image: written, with a warning", stick(), boot=U_BOOT,
         warns="for a board booting with U-Boot (Allwinner SPL); it will not boot a PC"),
    Case("a data disk image: written, with a warning", stick(), boot=DATA_DISK,
         warns="this image is a data disk; it will not boot a PC"),
    Case("an ISO that boots only as a CD: written, with a warning", stick(), boot=CD_ONLY,
         warns="it will not boot on BIOS or UEFI from a USB stick"),
    Case("compressed, what decides it not decompressed: written, with a warning", stick(),
         boot=NOT_KNOWN, warns="not known without decompressing the whole image"),
]  # fmt: skip


def plan_of(case: Case) -> Plan:
    return decide(Request("x.iso", case.target.requested, **case.request), case.img,
                  case.target, case.boot)  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_decides(case: Case) -> None:
    plan = plan_of(case)
    assert tuple(b.exit_code for b in plan.blockers) == case.exits, plan.blockers
    assert plan.ready == (not case.exits)
    if case.exits:
        assert case.words in plan.blockers[0].message
        assert plan.needs_confirmation_only == case.overridable
        assert plan.confirmed().ready == case.overridable
    assert plan.unmount_points == case.unmounts
    if case.warns:
        assert any(case.warns in w.message for w in plan.warnings), plan.warnings
    if plan.ready:
        assert plan.identity is not None


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_app_and_the_command_line_agree(case: Case) -> None:
    """Both refuse with the same error, or both go ahead (the app always asks first, as
    the command line does on a terminal)."""
    from usbwriter.cli.write import refusal_for
    from usbwriter.tui.rules import plan_refusal

    plan = plan_of(case)
    cli = refusal_for(plan, asking=True)
    listed = case.target.disk
    app = plan_refusal(plan, listed) if listed is not None else _first_hard(plan)
    assert (cli.message if cli else None) == app
    # Unattended (--yes or no terminal) nothing overridable passes either.
    unattended = refusal_for(plan, asking=False)
    assert (unattended is None) == plan.ready


def _first_hard(plan: Plan) -> str | None:
    hard = [b for b in plan.blockers if not b.overridable]
    return hard[0].message if hard else None


def test_a_plan_changes_nothing_and_says_so_in_json() -> None:
    plan = plan_of(CASES[5])
    d = plan.to_dict()
    assert d["ready"] and d["unmount"] == [{"device": "/dev/sda1", "mountpoint": "/media/stick"}]


def test_a_board_image_plan_says_what_it_is_for_in_json() -> None:
    plan = plan_of(next(c for c in CASES if c.boot is RASPBERRY_PI))
    d = plan.to_dict()
    assert d["ready"] and d["blockers"] == []
    assert d["boot"]["image_kind"] == "board:raspberry-pi"
    assert d["boot"]["for_hardware"] == "a Raspberry Pi"
    assert d["boot"]["compression"] == "xz" and d["boot"]["not_read"] == []


# --- restore: a write's target checks with no image ---------------------------------

RESTORE_CASES = [
    ("usb stick", stick(), (), ""),
    ("mounted, no --unmount", stick(STICK_MOUNT), (4,), "pass --unmount"),
    ("system disk", system_disk(), (4,), "system disk"),
    ("partition node", other("partition", parent_disk="sda"), (4,), "whole disk"),
    ("a loop device stacked on it", stick(nodes=LOOP_ON_STICK), (4,), "loop7 stacked on it"),
    ("regular file", other("file", size=100), (2,), "not a drive"),
    ("nothing there", other("missing"), (2,), "no such device"),
    ("a FIFO", other("fifo"), (2,), "FIFO"),
]


@pytest.mark.parametrize(
    ("target", "exits", "words"),
    [c[1:] for c in RESTORE_CASES],
    ids=[c[0] for c in RESTORE_CASES],
)
def test_restore_plan(target: TargetFacts, exits: tuple[int, ...], words: str) -> None:
    from usbwriter.jobs.decide import decide_target

    plan = decide_target(Request("", target.requested), target)
    assert tuple(b.error.exit_code for b in plan.blockers) == exits
    assert words in " ".join(b.error.message for b in plan.blockers)
    assert plan.ready == (not exits)


def test_restore_plan_unmounts_like_a_write() -> None:
    from usbwriter.jobs.decide import decide_target

    target = stick(STICK_MOUNT, NESTED)
    plan = decide_target(Request("", target.requested, unmount=True), target)
    assert plan.ready and plan.unmount_points == ("/media/stick/inner", "/media/stick")


def test_a_key_expired_since_is_said_and_refused_with_strict_keys(tmp_path: Path) -> None:
    """A good signature whose key has expired since: written with a warning that says
    so (and the receipt's words), refused with --strict-keys."""
    from tests.helpers.gpg import make_key, needs_gpg_tools, run

    needs_gpg_tools()
    from usbwriter.checksums import check_image

    folder = tmp_path / "dl"
    folder.mkdir()
    (folder / "x.iso").write_bytes(b"x" * 4096)
    (folder / "SHA256SUMS").write_text(run(["sha256sum", "x.iso"], cwd=folder))
    old = make_key(tmp_path / "old", "usbwriter old", made="20200101T000000", expire="1y")
    old.sign(folder / "SHA256SUMS")
    run(["gpgconf", "--kill", "gpg-agent"], env=old.env())
    check = check_image(folder / "x.iso", keyrings=[old.keyring])
    assert check.status == "matched" and check.signature is not None
    assert check.signature.valid and check.signature.key_expired
    assert "whose key has expired since" in check.describe()
    rings = (str(old.keyring),)
    plan = decide(Request("x.iso", "/dev/sda", keyrings=rings), image(), stick(), None, check)
    assert plan.ready and any("expired since" in w.message for w in plan.warnings)
    strict = Request("x.iso", "/dev/sda", keyrings=rings, strict_keys=True)
    plan = decide(strict, image(), stick(), None, check)
    assert not plan.ready and "--strict-keys" in plan.blockers[0].message
    assert plan.blockers[0].exit_code == 4

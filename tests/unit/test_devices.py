"""Drive predicates on recorded and hand-built property dicts: no root, no devices.

Files in tests/unit/data/udev/ were recorded with scripts/record_udev.py: host-* on the
project's machine (a virtio root disk, a loop device over a partitioned image with one
partition mounted, zram), guest-* inside the qemu guest with emulated USB sticks.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from usbwriter.devices import (
    BlockNode,
    Disk,
    DiskEvent,
    MountEntry,
    Snapshot,
    SwapEntry,
    Watcher,
    bus_of,
    clean_name,
    decode_udev,
    disk_from_info,
    format_disk_table,
    format_size,
    is_listable,
    parse_mountinfo,
    parse_swaps,
    resolve_mounts,
    sort_disks,
)
from usbwriter.identity import Identity, identity_changes

DATA = Path(__file__).parent / "data" / "udev"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def snapshot(prefix: str) -> Snapshot:
    return Snapshot.from_dict(load(f"{prefix}-system.json"))


# A USB stick as udev describes it (properties and sysfs attributes as seen in the qemu
# guest for `-device usb-bot ... scsi-hd,vendor=SanDisk,product=Cruzer,removable=on`).
USB_SYS = (
    "/sys/devices/pci0000:00/0000:00:04.0/usb2/2-1/2-1:1.0/host0/target0:0:0/0:0:0:0/block/sda"
)


def usb_stick(*, udev: bool = True, removable: bool = True, **extra: Any) -> dict[str, Any]:
    props = {
        "DEVNAME": "/dev/sda",
        "DEVTYPE": "disk",
        "MAJOR": "8",
        "MINOR": "0",
        "DISKSEQ": "12",
        "SUBSYSTEM": "block",
    }
    if udev:
        props |= {
            "ID_BUS": "usb",
            "ID_VENDOR": "SanDisk",
            "ID_VENDOR_ENC": "SanDisk\\x20",
            "ID_MODEL": "Cruzer",
            "ID_MODEL_ENC": "Cruzer\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20\\x20",
            "ID_SERIAL": "SanDisk_Cruzer_S1-0:0",
            "ID_SERIAL_SHORT": "S1",
            "ID_PART_TABLE_TYPE": "dos",
            "DEVLINKS": "/dev/disk/by-path/pci-0000:00:04.0-usb-0:1:1.0-scsi-0:0:0:0 "
            "/dev/disk/by-id/usb-SanDisk_Cruzer_S1-0:0",
        }
    info: dict[str, Any] = {
        "name": "sda",
        "sys_path": USB_SYS,
        "properties": props,
        "attributes": {
            "dev": "8:0",
            "size": str(2 * 1024 * 1024),  # 1 GiB in 512-byte sectors
            "removable": "1" if removable else "0",
            "ro": "0",
            "diskseq": "12",
            "queue/logical_block_size": "512",
            "device/vendor": "SanDisk ",
            "device/model": "Cruzer          ",
            "usb/idVendor": "46f4",
            "usb/idProduct": "0001",
            "usb/manufacturer": "QEMU",
            "usb/product": "QEMU USB MSD",
            "usb/serial": "S1",
        },
        "holders": [],
        "partitions": [
            {
                "name": "sda1",
                "properties": {"DEVNAME": "/dev/sda1", "ID_FS_TYPE": "vfat"}
                | ({"ID_FS_LABEL_ENC": "MY\\x20STICK"} if udev else {}),
                "attributes": {"dev": "8:1", "size": "2048000", "partition": "1"},
                "holders": [],
            }
        ],
    }
    info.update(extra)
    return info


ATA_HOST = "/sys/devices/pci0000:00/0000:00:1f.2/ata1/host0"


def disk(name: str, devno: str, *, size: int = 1 << 20, **kw: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "name": name,
        "sys_path": f"{ATA_HOST}/target0:0:0/0:0:0:0/block/{name}",
        "properties": {"DEVNAME": f"/dev/{name}"},
        "attributes": {"dev": devno, "size": str(size), "removable": "0", "ro": "0"},
        "holders": [],
        "partitions": [],
    }
    info.update(kw)
    return info


# --------------------------------------------------------------------------- recorded host


def test_recorded_root_disk_is_system_and_never_eligible() -> None:
    vda = disk_from_info(load("host-vda.json"), snapshot("host"))
    assert vda.path == "/dev/vda"
    assert vda.bus == "virtio"
    assert vda.is_system
    assert not vda.eligible
    assert "system disk: holds /" in vda.reasons
    assert vda.serial  # virtio exposes /sys/block/vda/serial
    assert vda.vendor == ""  # the numeric virtio vendor id is not a name
    assert not vda.user_drive


def test_recorded_root_disk_is_system_even_with_every_flag() -> None:
    # Eligibility does not depend on any option: only the facts.
    info = load("host-vda.json")
    info["attributes"]["removable"] = "1"
    vda = disk_from_info(info, snapshot("host"))
    assert vda.user_drive and not vda.eligible


def test_recorded_loop_with_partitions_and_a_mount() -> None:
    loop = disk_from_info(load("host-loop0.json"), snapshot("host"))
    assert loop.bus == "loop"
    assert loop.eligible and not loop.is_system
    assert loop.backing_file and loop.backing_file.endswith("stick.img")
    assert loop.backing_inode and loop.backing_device == "254:0"
    assert [p.path for p in loop.partitions] == ["/dev/loop0p1", "/dev/loop0p2"]
    p1 = loop.partitions[0]
    assert p1.fstype == "ext4"  # from the mount table: no udevd on the host
    assert p1.mountpoints and p1.mountpoints[0].endswith("/mnt")
    assert loop.mounted == (("/dev/loop0p1", p1.mountpoints[0]),)
    assert any("needs unmounting" in n for n in loop.notes)
    assert loop.size == 64 * 1024 * 1024
    assert not loop.user_drive


def test_recorded_zram_is_not_listed() -> None:
    assert not is_listable(load("host-zram0.json"))


def test_recorded_loop_on_root_disk_makes_root_disk_hold_image() -> None:
    snap = snapshot("host")
    assert snap.disks_under("7:0") == {"loop0", "vda"}
    assert snap.disks_under("259:0") == {"loop0", "vda"}  # a partition of loop0


GUEST_FILES = sorted(
    p.name for p in DATA.glob("guest-*.json") if not p.name.endswith("system.json")
)


def guest_snapshot(filename: str) -> Snapshot:
    prefix = filename.rsplit("-", 1)[0]
    path = DATA / f"{prefix}-system.json"
    return Snapshot.from_dict(json.loads(path.read_text())) if path.exists() else Snapshot()


@pytest.mark.skipif(not GUEST_FILES, reason="no guest recordings in tests/unit/data/udev yet")
@pytest.mark.parametrize("filename", GUEST_FILES or ["none"])
def test_recorded_guest_disks(filename: str) -> None:
    d = disk_from_info(load(filename), guest_snapshot(filename))
    json.dumps(d.to_dict())
    if d.bus == "usb":
        assert d.user_drive
        assert d.vendor and d.model and d.serial
        assert d.eligible or d.read_only or d.is_system, d.reasons


# Recorded in the qemu guest (9p root, tmpfs/overlay elsewhere) with two emulated USB
# disks: a removable SanDisk Cruzer (serial SN0001, one FAT partition labelled MYSTICK)
# and a fixed WD My Passport (WD-XYZ9); once with udevd, once without (sysfs only).
@pytest.mark.parametrize("prefix", ["guest", "guest-noudev"])
def test_recorded_usb_sticks_in_the_guest(prefix: str) -> None:
    snap = snapshot(prefix)
    assert snap.system_disks == {}  # root on 9p, the rest overlays: no disk is the system's
    stick = disk_from_info(load(f"{prefix}-sda.json"), snap)
    fixed = disk_from_info(load(f"{prefix}-sdb.json"), snap)
    assert (stick.bus, stick.vendor, stick.model, stick.serial) == (
        "usb",
        "SanDisk",
        "Cruzer",
        "SN0001",
    )
    assert stick.removable and stick.user_drive and stick.eligible
    assert stick.usb_id == "46f4:0001"
    assert (fixed.bus, fixed.vendor, fixed.model, fixed.serial) == (
        "usb",
        "WD",
        "My Passport",
        "WD-XYZ9",
    )
    assert not fixed.removable and fixed.user_drive and fixed.eligible
    assert [p.path for p in stick.partitions] == ["/dev/sda1"]
    assert stick.partitions[0].start == 2048 * 512  # sysfs counts 512-byte sectors
    if prefix == "guest":  # udev probed the file system and made the by-id links
        assert stick.by_id == "/dev/disk/by-id/usb-SanDisk_Cruzer_SN0001-0:0"
        assert (stick.partitions[0].fstype, stick.partitions[0].label) == ("vfat", "MYSTICK")
    else:
        assert stick.by_id is None and stick.partitions[0].fstype is None


# --------------------------------------------------------------------------- USB, MMC, NVMe


def test_usb_stick_with_udev() -> None:
    d = disk_from_info(usb_stick())
    assert (d.path, d.bus, d.vendor, d.model, d.serial) == (
        "/dev/sda",
        "usb",
        "SanDisk",
        "Cruzer",
        "S1",
    )
    assert d.removable and d.user_drive and d.eligible and not d.reasons
    assert d.by_id == "/dev/disk/by-id/usb-SanDisk_Cruzer_S1-0:0"
    assert d.size == 1 << 30
    assert d.diskseq == 12
    assert d.usb_id == "46f4:0001"
    assert d.partitions[0].fstype == "vfat"
    assert d.partitions[0].label == "MY STICK"
    assert d.notes[0] == "removable USB drive"


def test_usb_stick_without_udev_reads_the_same_from_sysfs() -> None:
    d = disk_from_info(usb_stick(udev=False))
    assert (d.bus, d.vendor, d.model, d.serial) == ("usb", "SanDisk", "Cruzer", "S1")
    assert d.by_id is None


def test_usb_disk_that_is_not_removable_is_still_a_user_drive() -> None:
    d = disk_from_info(usb_stick(removable=False))
    assert not d.removable and d.user_drive and d.eligible
    assert d.notes[0] == "USB drive"


def test_large_usb_drive_gets_a_note() -> None:
    info = usb_stick()
    info["attributes"]["size"] = str(2 * 10**12 // 512)
    d = disk_from_info(info)
    assert d.eligible and any("larger than 128 GB" in n for n in d.notes)


def test_mmc_card() -> None:
    info = {
        "name": "mmcblk0",
        "sys_path": "/sys/devices/platform/soc/fe340000.mmc/mmc_host/mmc0/mmc0:aaaa/block/mmcblk0",
        "properties": {"DEVNAME": "/dev/mmcblk0"},
        "attributes": {
            "dev": "179:0",
            "size": "62333952",
            "removable": "0",
            "ro": "0",
            "device/name": "SC32G",
            "device/serial": "0x1c2d3e4f",
            "device/type": "SD",
        },
        "partitions": [],
    }
    d = disk_from_info(info)
    assert (d.bus, d.model, d.serial) == ("mmc", "SC32G", "0x1c2d3e4f")
    assert d.user_drive and d.eligible


def test_bus_from_path_and_properties() -> None:
    assert (
        bus_of(
            {
                "name": "nvme0n1",
                "sys_path": "/sys/devices/pci0000:00/0000:00:1d.0/0000:3d:00.0/nvme/nvme0/nvme0n1",
            }
        )
        == "nvme"
    )
    assert bus_of(disk("sdb", "8:16")) == "ata"
    assert bus_of({"name": "sdc", "sys_path": "/x/host2/target2:0:0/2:0:0:0/block/sdc"}) == "scsi"
    assert (
        bus_of({"name": "sdc", "sys_path": "/x/block/sdc", "properties": {"ID_BUS": "ATA"}})
        == "ata"
    )
    assert bus_of({"name": "loop3", "sys_path": "/sys/devices/virtual/block/loop3"}) == "loop"
    assert bus_of({"name": "nbd0", "sys_path": "/sys/devices/virtual/block/nbd0"}) == "nbd"
    assert bus_of({"name": "sr0", "sys_path": "/sys/devices/x/block/sr0"}) == "scsi"


def test_usb_card_reader_is_usb_not_mmc() -> None:
    info = usb_stick()
    info["name"] = "sdb"
    assert bus_of(info) == "usb"


# --------------------------------------------------------------------------- eligibility


def test_read_only_holders_image_and_empty_reader_are_not_eligible() -> None:
    ro = usb_stick()
    ro["attributes"]["ro"] = "1"
    assert disk_from_info(ro).reasons == ("read-only",)

    held = usb_stick()
    held["partitions"][0]["holders"] = ["dm-3"]
    d = disk_from_info(held)
    assert d.holders == ("dm-3",) and not d.eligible
    assert "in use by dm-3" in d.reasons[0]

    d = disk_from_info(usb_stick(), image_disks={"sda"})
    assert d.reasons == ("holds the image file",)

    empty = usb_stick()
    empty["attributes"]["size"] = "0"
    d = disk_from_info(empty)
    assert d.reasons == ("no medium (size 0)",)
    assert is_listable(empty)  # a card reader without a card is still a drive


def test_optical_drive_is_listed_but_never_eligible() -> None:
    d = disk_from_info(
        disk("sr0", "11:0", attributes={"dev": "11:0", "size": "100", "removable": "1"})
    )
    assert not d.eligible and "optical drive" in d.reasons
    assert not d.user_drive


def test_unlisted_devices() -> None:
    for name in ("ram0", "zram0", "dm-0", "md127"):
        assert not is_listable({"name": name, "attributes": {"size": "2048"}})
    assert not is_listable(
        {
            "name": "loop7",
            "sys_path": "/sys/devices/virtual/block/loop7",
            "attributes": {"size": "0"},
        }
    )
    assert is_listable(
        {
            "name": "loop7",
            "sys_path": "/sys/devices/virtual/block/loop7",
            "attributes": {"size": "8"},
        }
    )
    assert not is_listable({"name": "nvme0n1", "attributes": {"size": "8", "hidden": "1"}})


# --------------------------------------------------------------------------- system disks


def nodes(*items: BlockNode) -> tuple[BlockNode, ...]:
    return items


def test_root_on_lvm_follows_dm_slaves_down_to_the_disk() -> None:
    snap = Snapshot(
        mounts=parse_mountinfo(
            "27 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/vg-root rw\n"
            "28 27 8:1 / /boot rw,relatime shared:2 - ext2 /dev/sda1 rw\n"
        ),
        nodes=nodes(
            BlockNode("sda", "8:0"),
            BlockNode("sda1", "8:1", parent="sda"),
            BlockNode("sda2", "8:2", parent="sda", holders=("dm-0",)),
            BlockNode("dm-0", "253:0", slaves=("sda2",), aliases=("mapper/vg-root",)),
            BlockNode("sdb", "8:16"),
        ),
    )
    assert snap.system_disks == {"dm-0": ("holds /",), "sda": ("holds /", "holds /boot")}
    sda = disk(
        "sda",
        "8:0",
        partitions=[
            {"name": "sda1", "attributes": {"dev": "8:1", "size": "8"}},
            {"name": "sda2", "attributes": {"dev": "8:2", "size": "8"}, "holders": ["dm-0"]},
        ],
    )
    d = disk_from_info(sda, snap)
    assert d.is_system and not d.eligible
    assert d.reasons[:2] == ("system disk: holds /", "system disk: holds /boot")
    assert d.holders == ("dm-0",)
    assert disk_from_info(disk("sdb", "8:16"), snap).eligible


def test_root_on_md_raid_marks_every_member() -> None:
    snap = Snapshot(
        mounts=parse_mountinfo("1 0 9:127 / / rw - ext4 /dev/md127 rw"),
        nodes=nodes(
            BlockNode("md127", "9:127", slaves=("sdb1", "sdc1")),
            BlockNode("sdb", "8:16"),
            BlockNode("sdb1", "8:17", parent="sdb"),
            BlockNode("sdc", "8:32"),
            BlockNode("sdc1", "8:33", parent="sdc"),
        ),
    )
    assert set(snap.system_disks) == {"md127", "sdb", "sdc"}


def test_swap_partition_and_swap_file() -> None:
    snap = Snapshot(
        swaps=(
            SwapEntry("/dev/sdd2", "partition", "8:50"),
            SwapEntry("/data/swapfile", "file", "8:65"),
        ),
        nodes=nodes(
            BlockNode("sdd", "8:48"),
            BlockNode("sdd2", "8:50", parent="sdd"),
            BlockNode("sde", "8:64"),
            BlockNode("sde1", "8:65", parent="sde"),
        ),
    )
    assert snap.system_disks == {
        "sdd": ("holds an active swap (/dev/sdd2)",),
        "sde": ("holds an active swap (/data/swapfile)",),
    }


def test_live_system_root_on_loop_over_a_file_on_the_stick() -> None:
    snap = Snapshot(
        mounts=parse_mountinfo(
            "20 1 0:30 / / rw - overlay overlay rw,lowerdir=/run/live/rootfs/filesystem.squashfs\n"
            "21 20 8:17 / /run/live/medium ro - iso9660 /dev/sdb1 ro\n"
            "22 20 7:0 / /run/live/rootfs/filesystem.squashfs ro - squashfs /dev/loop0 ro\n"
        ),
        nodes=nodes(
            BlockNode("sdb", "8:16"),
            BlockNode("sdb1", "8:17", parent="sdb"),
            BlockNode("loop0", "7:0", backing_devno="8:17"),
        ),
    )
    assert set(snap.system_disks) == {"sdb"}
    # and the loop itself stands on the stick
    assert snap.disks_under("7:0") == {"loop0", "sdb"}


def test_overlay_and_9p_roots_do_not_crash_and_mark_nothing() -> None:
    snap = Snapshot(
        mounts=parse_mountinfo(
            "1 0 0:20 / / ro - 9p hostroot ro,trans=virtio\n"
            "2 1 0:21 / /etc rw - overlay overlay rw\n"
            "3 1 0:22 / /home rw - tmpfs tmpfs rw\n"
        ),
        nodes=nodes(BlockNode("sda", "8:0")),
    )
    assert snap.system_disks == {}
    assert disk_from_info(usb_stick(), snap).eligible


def test_btrfs_anonymous_device_resolved_by_source_name() -> None:
    n = nodes(BlockNode("sdf", "8:80"), BlockNode("sdf2", "8:82", parent="sdf"))
    mounts = resolve_mounts(parse_mountinfo("1 0 0:35 /@ / rw - btrfs /dev/sdf2 rw"), n)
    assert mounts[0].devno == "8:82"
    assert Snapshot(mounts=mounts, nodes=n).system_disks == {"sdf": ("holds /",)}


def test_loop_over_a_device_node_is_stacked_on_that_disk() -> None:
    # losetup /dev/loop0 /dev/sdb: the loop's bytes are the disk's, not a file on /dev
    snap = Snapshot(
        nodes=nodes(
            BlockNode("sdb", "8:16"),
            BlockNode("sdb1", "8:17", parent="sdb"),
            BlockNode("sdc", "8:32"),
            BlockNode("loop0", "7:0", backing_devno="8:16", backing_inode=None),
            BlockNode("loop1", "7:1", backing_devno="8:17", backing_inode=None),
        )
    )
    assert snap.stacked["sdb"] == ("loop0", "loop1")
    assert "sdc" not in snap.stacked
    for through_files in (False, True):
        assert snap.footprint("7:0", through_files=through_files) == {
            ("disk", "loop0"),
            ("disk", "sdb"),
        }
    sdb = disk_from_info(
        disk("sdb", "8:16", partitions=[{"name": "sdb1", "attributes": {"dev": "8:17"}}]), snap
    )
    assert not sdb.eligible
    assert "in use: /dev/loop0, /dev/loop1 stacked on it" in sdb.reasons
    assert disk_from_info(disk("sdc", "8:32"), snap).eligible


def test_loop_over_a_file_changes_the_file_and_reads_through_its_disk() -> None:
    # losetup /dev/loop2 /data/stick.img, /data on sda1: writing the loop changes the
    # file, not the disk; reading the loop reads the disk
    snap = Snapshot(
        nodes=nodes(
            BlockNode("sda", "8:0"),
            BlockNode("sda1", "8:1", parent="sda"),
            BlockNode("loop2", "7:2", backing_devno="8:1", backing_inode=1234),
        )
    )
    write = snap.footprint("7:2", through_files=False)
    read = snap.footprint("7:2", through_files=True)
    assert write == {("disk", "loop2"), ("file", "8:1", "1234")}
    assert ("disk", "sda") not in write
    assert read == write | {("disk", "sda")}
    assert snap.footprint("sda", through_files=True) == {("disk", "sda")}


def test_cycles_in_the_tree_terminate() -> None:
    snap = Snapshot(
        nodes=nodes(
            BlockNode("loop0", "7:0", backing_devno="7:1"),
            BlockNode("loop1", "7:1", backing_devno="7:0"),
        )
    )
    assert snap.disks_under("7:0") == {"loop0", "loop1"}


def test_parse_mountinfo_escapes_and_optional_fields() -> None:
    (m,) = parse_mountinfo(
        "36 35 8:17 /mnt1 /media/my\\040stick rw,noatime master:1 shared:2 - vfat /dev/sdb1 rw\n"
        "garbage line\n"
    )
    assert m == MountEntry(
        "8:17", "/media/my stick", "vfat", "/dev/sdb1", mount_id=36, parent_id=35
    )


def test_parse_swaps() -> None:
    text = (
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/dev/dm-1                               partition\t8388604\t\t0\t\t-2\n"
        "/swap\\040file                           file\t\t1048572\t\t0\t\t-3\n"
    )
    assert parse_swaps(text) == (("/dev/dm-1", "partition"), ("/swap file", "file"))
    assert parse_swaps("Filename Type Size Used Priority\n") == ()


# --------------------------------------------------------------------------- names, output


def test_clean_name_drops_control_and_bidi_characters() -> None:
    assert clean_name("San\x1b[31mDisk\x00") == "San[31mDisk"
    assert clean_name("evil\u202egnp.exe") == "evilgnp.exe"
    assert clean_name("a\u2066b\u2069c\u200fd\u061ce") == "abcde"
    assert clean_name("  Ultra\tFit\n  ") == "Ultra Fit"
    assert clean_name("x\u200by") == "xy"  # zero-width space is a format character
    assert clean_name(None) == ""
    assert clean_name("Ünïcode ✓") == "Ünïcode ✓"
    long = clean_name("A" * 100, limit=10)
    assert long == "AAAAAAA..." and len(long) == 10


def test_names_from_devices_are_cleaned() -> None:
    info = usb_stick()
    info["properties"]["ID_VENDOR_ENC"] = "Evil\\x1b[2J\\xe2\\x80\\xae"
    info["properties"]["ID_SERIAL_SHORT"] = "S1\u202e\r"
    d = disk_from_info(info)
    assert d.vendor == "Evil[2J"
    assert d.serial == "S1"


def test_decode_udev() -> None:
    assert decode_udev("Kingston\\x20DT\\x20") == "Kingston DT "
    assert decode_udev("caf\\xc3\\xa9") == "café"
    assert decode_udev("plain") == "plain"


def test_to_dict_is_json_with_the_promised_keys() -> None:
    d = disk_from_info(
        usb_stick(), Snapshot(mounts=parse_mountinfo("1 0 8:1 / /media/s rw - vfat /dev/sda1 rw"))
    )
    data = json.loads(json.dumps(d.to_dict()))
    for key in (
        "path",
        "size",
        "vendor",
        "model",
        "serial",
        "bus",
        "removable",
        "eligible",
        "reasons",
    ):
        assert key in data
    assert data["removable"] is True and data["eligible"] is True and data["reasons"] == []
    assert data["partitions"][0]["mountpoints"] == ["/media/s"]
    assert data["mounted"] == [{"device": "/dev/sda1", "mountpoint": "/media/s"}]


def test_format_disk_table() -> None:
    vda = disk_from_info(load("host-vda.json"), snapshot("host"))
    stick = disk_from_info(usb_stick())
    table = format_disk_table(sort_disks([vda, stick]))
    lines = table.splitlines()
    assert lines[0].startswith("DEVICE")
    assert lines[1].startswith("/dev/sda ") and lines[1].endswith("ok: removable USB drive")
    assert "SanDisk Cruzer" in lines[1] and "1.0 GiB" in lines[1]
    assert lines[2].startswith("/dev/vda") and "no: system disk: holds /" in lines[2]
    assert format_disk_table([]) == "no drives found"
    assert format_size(512) == "512 B" and format_size(64 << 20) == "64.0 MiB"


def test_sort_puts_user_drives_first_in_natural_order() -> None:
    names = ["loop10", "loop2", "sdb", "vda"]
    infos = [usb_stick(name="sdb")] + [
        {"name": n, "sys_path": f"/sys/devices/virtual/block/{n}", "attributes": {"size": "8"}}
        for n in names
        if n != "sdb"
    ]
    assert [d.name for d in sort_disks(disk_from_info(i) for i in infos)] == [
        "sdb",
        "loop2",
        "loop10",
        "vda",
    ]


# --------------------------------------------------------------------------- identity


def test_identity_changes_names_each_difference() -> None:
    d = disk_from_info(usb_stick())
    ident = Identity.from_disk(d, requested="/dev/sda")
    assert identity_changes(ident, d) == []
    other = usb_stick()
    other["attributes"]["diskseq"] = "13"
    other["properties"]["ID_SERIAL_SHORT"] = "S2"
    changes = identity_changes(ident, disk_from_info(other))
    assert changes == ["disk sequence 12 -> 13", "serial S1 -> S2"]
    assert json.loads(json.dumps(ident.to_dict()))["serial"] == "S1"


# --------------------------------------------------------------------------- watcher


class FakeDevice:
    def __init__(self, action: str, sys_path: str, device_type: str = "disk") -> None:
        self.action = action
        self.sys_path = sys_path
        self.device_type = device_type
        self.device_node = "/dev/" + sys_path.rsplit("/", 1)[1]


def test_watcher_maps_events() -> None:
    w = Watcher(source="kernel")
    ev = w.event_from_device(FakeDevice("remove", USB_SYS))
    assert ev == DiskEvent("remove", None, "/dev/sda")
    assert w.event_from_device(FakeDevice("add", "/sys/devices/virtual/block/zram1")) is None
    assert w.event_from_device(FakeDevice("bind", USB_SYS)) is None
    assert w.event_from_device(FakeDevice("add", USB_SYS + "/x", "scsi_device")) is None
    # a partition added or removed is a change of its disk (gone here: disk None)
    ev = w.event_from_device(FakeDevice("remove", USB_SYS + "/sda1", "partition"))
    assert ev == DiskEvent("change", None, "/dev/sda")


def test_watcher_source_defaults_to_kernel_without_udevd(monkeypatch: pytest.MonkeyPatch) -> None:
    from usbwriter.devices import watch

    monkeypatch.setattr(watch, "UDEV_CONTROL", "/nonexistent/control")
    assert Watcher().source == "kernel"
    monkeypatch.setattr(watch, "UDEV_CONTROL", __file__)
    assert Watcher().source == "udev"


def test_watcher_honours_cancel_quickly() -> None:
    import time

    cancel = threading.Event()
    w = Watcher(source="kernel")
    out: list[DiskEvent] = []

    def run() -> None:
        out.extend(w.iter_events(cancel))

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    start = time.monotonic()
    cancel.set()
    t.join(2)
    assert not t.is_alive()
    assert time.monotonic() - start < 0.6


def test_disk_dataclass_is_frozen() -> None:
    d: Disk = disk_from_info(usb_stick())
    with pytest.raises(AttributeError):
        d.size = 1  # type: ignore[misc]

#!/usr/bin/env bash
# The main job on an embedded default, from a fresh machine: set up, build a small
# bootable sample image (GRUB, BIOS + UEFI), attach a loop device as the "stick",
# write and verify it with usbwriter, print the receipt and the boot report, detach.
# Run as root (or with sudo): scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (it attaches a loop device): sudo scripts/demo.sh, or scripts/demo.sh as root" >&2
    exit 4
fi
setup_system_packages demo
setup_venv demo

work=$(mktemp -d /tmp/usbwriter-demo.XXXXXX)
loopdev=""
cleanup() {
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building the sample image (grub-mkrescue, BIOS + UEFI hybrid)"
.venv/bin/python scripts/make_images.py "$work" grub-hybrid >/dev/null
image="$work/grub-hybrid.iso"
truncate -s 64M "$work/stick.img"
loopdev=$(losetup -f --show "$work/stick.img")
echo "== the stick: $loopdev (a loop device over a 64 MiB file)"

echo "== usbwriter inspect $image"
.venv/bin/usbwriter inspect "$image"

echo "== usbwriter --image $image --device $loopdev --yes"
.venv/bin/usbwriter --image "$image" --device "$loopdev" --yes

echo "== usbwriter verify (a second, independent read-back)"
.venv/bin/usbwriter verify --image "$image" --device "$loopdev"

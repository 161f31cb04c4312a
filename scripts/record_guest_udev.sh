#!/usr/bin/env bash
# Record the drive layer's view of real USB disks (removable, fixed, read-only) in the
# qemu guest, with and without udevd, into tests/unit/data/udev/guest-usb-*.json.
# Needs root, qemu-system-x86, linux-image-amd64, busybox-static, udev, kmod,
# fdisk (sfdisk) and dosfstools. Options go to tests/guest/record.py (--out, --prefix).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m tests.guest.record "$@"

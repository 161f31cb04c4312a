# Shared set-up for scripts/demo.sh, scripts/test.sh and scripts/bench.py's wrapper.
# Installs Debian packages (as root) and the project into .venv.

# Packages: the demo needs the image builders; the tests need qemu, firmware,
# a kernel for the guest, and the tools used as second opinions.
DEMO_PACKAGES="python3-venv xorriso grub-pc-bin grub-efi-amd64-bin grub-common mtools"
TEST_PACKAGES="$DEMO_PACKAGES qemu-system-x86 ovmf linux-image-amd64 busybox-static udev kmod \
syslinux syslinux-common syslinux-utils isolinux dosfstools fdisk gdisk tmux bmap-tools gpgv gpg gpg-agent grub-efi-ia32-bin isomd5sum \
dmsetup lvm2 mdadm groff-base mandoc zsh e2fsprogs xz-utils zstd lz4 bzip2 zip pigz \
exfatprogs genisoimage exfat-fuse fusefat nbdkit nbdkit-plugin-python f3 wimtools"

setup_system_packages() {
    local which="$1" pkgs missing=""
    if [ "$which" = test ]; then pkgs="$TEST_PACKAGES"; else pkgs="$DEMO_PACKAGES"; fi
    for p in $pkgs; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing Debian packages:$missing (run as root to install them)" >&2
        return 0
    fi
    echo "== apt-get install$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

setup_venv() {
    local which="$1"
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>/dev/null || true
    if [ "$which" = test ]; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 \
            | grep -v "^WARNING: Location" || true
    else
        .venv/bin/python -m pip install -q --disable-pip-version-check -e . 2>&1 \
            | grep -v "^WARNING: Location" || true
    fi
    .venv/bin/python -c "import usbwriter, blake3, pyudev, pycdlib" \
        || { echo "usbwriter: Python set-up failed" >&2; exit 1; }
    setup_manpage
}

# `man usbwriter`: pip puts the page into the venv's share/man/man1, where man does not
# look. As root, install it where man looks (USBWRITER_MANDIR, default
# /usr/local/share/man) and update man's index; otherwise copy it into the venv and
# say which MANPATH finds it.
setup_manpage() {
    local page=docs/usbwriter.1 mandir="${USBWRITER_MANDIR:-/usr/local/share/man}"
    [ -f "$page" ] || return 0
    if [ "$(id -u)" -eq 0 ]; then
        install -D -m 644 "$page" "$mandir/man1/usbwriter.1" || return 0
        if command -v mandb >/dev/null 2>&1; then
            mandb -q "$mandir" >/dev/null 2>&1 || true
        fi
        return 0
    fi
    install -D -m 644 "$page" .venv/share/man/man1/usbwriter.1 || return 0
    echo "usbwriter: for 'man usbwriter': export MANPATH=\"$PWD/.venv/share/man:\""
}

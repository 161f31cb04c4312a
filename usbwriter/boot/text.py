"""The boot report for people: plain text, verdict first."""

from __future__ import annotations

from usbwriter.boot.model import BootReport, ElToritoEntry

UEFI_WORDS = {
    "yes": "yes",
    "no": "no",
    "firmware-dependent": "depends on the firmware",
    "unknown": "unknown (not read without decompressing everything)",
}
NOT_READ_HEAD = "Not read without decompressing everything"


MAX_CONFIG_LINES = 20


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} bytes"


def _yn(b: bool | None) -> str:
    return "unknown" if b is None else ("yes" if b else "no")


def _entry_line(e: ElToritoEntry) -> str:
    plat = {"x86": "BIOS (x86)", "efi": "UEFI"}.get(e.platform, f"{e.platform}")
    emul = "no emulation" if e.emulation == "none" else f"{e.emulation} emulation"
    where = e.path or "(not in the file tree)"
    size = f", {_size(e.size)}" if e.size else ""
    boot = "" if e.bootable else ", not bootable"
    return (
        f"  {e.index}. {plat}, {emul}, loads {e.sector_count} sectors from block "
        f"{e.load_rba}: {where}{size}{boot}"
    )


def _found(ok: bool | None) -> str:
    return (
        "not read (past the part decompressed)" if ok is None else ("found" if ok else "NOT FOUND")
    )


def compression_words(fmt: str, file_size: int) -> str:
    """'xz-compressed (a 1.1 MiB file)'."""
    return f"{fmt}-compressed (a {_size(file_size)} file)"


def image_size_words(size: int | None, size_from: str, size_is: str = "exact") -> str:
    """'4.2 MiB (from the xz index)', 'at least 4.2 MiB (from the zstd frame header)'."""
    if size is None:
        return "size not recorded in the compressed file"
    how = "known once decompressed" if size_from == "decompressed" else f"from the {size_from}"
    qualifier = f"{size_is} " if size_is in ("at least", "about") else ""
    return f"{qualifier}{_size(size)} ({how})"


def read_words(decompressed: int, whole: bool) -> str:
    """How much of a compressed image the report read."""
    if whole:
        return f"the whole image ({_size(decompressed)}), decompressed"
    return f"the first {_size(decompressed)}, decompressed; the rest was not read"


def render_text(report: BootReport) -> str:
    out: list[str] = []
    add = out.append
    kinds = {"iso9660": "ISO 9660 image", "udf": "UDF image", "disk": "disk image"}
    what = kinds[report.kind]
    if report.image_kind.startswith("board:"):
        what += f" for {report.for_hardware}"
    elif report.image_kind in ("data-disk", "data-iso"):
        what += f" ({report.for_hardware})"
    c = report.compression
    packed = f", {compression_words(c.format, c.file_size)}" if c is not None else ""
    size = _size(report.size)
    if report.size is None and c is not None and c.image_size is not None:
        size = f"{c.size_is} {_size(c.image_size)}"  # "at least 4.2 MiB"
    add(f"{report.path}: {what}, {size}{packed}")
    add("")
    add("Written raw to a USB stick, it boots:")
    add(f"  BIOS (legacy): {UEFI_WORDS[report.boot.bios]}")
    add(f"  UEFI (x86-64): {UEFI_WORDS[report.boot.uefi]}")
    for reason in report.boot.reasons:
        add(f"  - {reason}")

    if c is not None:
        add("")
        add("Compressed file")
        member = f", member {c.member}" if c.member else ""
        add(f"  {'Format:':13} {c.format}, {_size(c.file_size)} file{member}")
        add(f"  {'Image:':13} {image_size_words(c.image_size, c.size_from, c.size_is)}")
        add(f"  {'Read:':13} {read_words(c.decompressed, c.whole)}")
    if report.not_read:
        add("")
        add(NOT_READ_HEAD)
        for item in report.not_read:
            add(f"  - {item}")

    board = report.board
    if board is not None and (board.spl_name or any(p.files for p in board.partitions)):
        add("")
        add("Board boot files")
        if board.spl_name:
            add(f"  {'U-Boot SPL:':13} {board.spl_name} at byte {board.spl_offset or 0:,}")
        for bp in board.partitions:
            if bp.files:
                add(f"  {bp.source}: {bp.fs or '?'}: {', '.join(f.lstrip('/') for f in bp.files)}")

    if report.iso is not None:
        v = report.iso
        add("")
        add("ISO 9660 volume")
        for label, value in (
            ("Volume ID", v.volume_id),
            ("System ID", v.system_id),
            ("Publisher", v.publisher_id),
            ("Preparer", v.preparer_id),
            ("Application", v.application_id),
            ("Created", v.creation_date or ""),
        ):
            if value:
                add(f"  {label + ':':13} {value}")
        add(
            f"  {'Size:':13} {v.volume_blocks:,} blocks of {v.block_size} bytes "
            f"({_size(v.volume_bytes)}){', TRUNCATED' if v.truncated else ''}"
        )
        rr = "yes" + (f" ({v.rock_ridge_version})" if v.rock_ridge_version else "")
        add(
            f"  {'Extensions:':13} Joliet {_yn(v.joliet)}, Rock Ridge "
            f"{rr if v.rock_ridge else 'no'}, UDF "
            f"{'yes (' + v.udf_revision + ')' if v.udf_revision else 'no'}"
        )
        if v.files_over_4gib:
            big = ", ".join(f"{f.path} ({_size(f.size)})" for f in v.files_over_4gib[:5])
            add(f"  {'Over 4 GiB:':13} {big} (too large for FAT32)")
        if v.isomd5 is not None:
            m = v.isomd5
            state = (
                "not checked"
                if not m.checked
                else "matches"
                if m.matches
                else f"DOES NOT MATCH{' (' + m.note + ')' if m.note else ''}"
            )
            add(f"  {'Checksum:':13} implantisomd5 MD5 {m.expected}: {state}")

    if report.eltorito is not None:
        et = report.eltorito
        add("")
        add(f"El Torito boot catalog (block {et.catalog_lba})")
        for e in et.entries:
            add(_entry_line(e))
        if not et.entries:
            add("  (no entries)")

    if report.mbr is not None:
        mb = report.mbr
        add("")
        vbr = mb.loader in ("vbr", "syslinux-vbr", "vbr-not-bootable")
        add(
            "Sector 0 (a file system's boot sector, no partition table)"
            if vbr
            else "Master boot record"
        )
        add(
            f"  Boot signature: {_yn(mb.signature)}; boot code: "
            f"{mb.loader_name if mb.loader_name else 'none'}"
        )
        if mb.loader_target is not None:
            add(f"  Boot code loads from byte {mb.loader_target:,}: {_found(mb.loader_target_ok)}")
        if mb.protective:
            add(f"  Protective MBR for a GPT{' (hybrid)' if mb.hybrid else ''}")
        for p in mb.partitions:
            active = ", active" if p.bootable else ""
            plural = "" if p.sectors == 1 else "s"
            add(
                f"  {p.index}. type 0x{p.type:02x} {p.type_name}{active}: start sector "
                f"{p.start_lba:,}, {p.sectors:,} sector{plural} ({_size(p.sectors * 512)})"
            )

    gr = report.grub
    if gr is not None:
        add("")
        add("GRUB core image")
        if gr.chains is not None:
            where = {True: f"found on {gr.found_on}", False: "not found", None: "not checked"}
            add(f"  {'Chains:':13} {gr.chains} ({gr.command}): {where[gr.found]}")
        if gr.prefix:
            add(f"  {'Prefix:':13} {gr.prefix}")
        if gr.problem:
            add(f"  {'Problem:':13} {gr.problem}")
        if gr.config is not None:
            lines = [x for x in gr.config.splitlines() if x.strip()]
            add(f"  {'Config:':13} {len(lines)} line{'' if len(lines) == 1 else 's'} built in")
            for line in lines[:MAX_CONFIG_LINES]:
                add("    " + "".join(c if c.isprintable() else "?" for c in line[:120]))
            if len(lines) > MAX_CONFIG_LINES:
                add(f"    ... {len(lines) - MAX_CONFIG_LINES} more")
        elif gr.problem is None:
            add(f"  {'Config:':13} none built in")

    if report.gpt is not None:
        g = report.gpt
        add("")
        partial = c is not None and not c.whole
        backup = {None: "not read" if partial else "beyond the image", True: "good", False: "bad"}[
            g.backup_ok
        ]
        add(
            f"GUID partition table ({g.sector_size}-byte sectors): header CRC "
            f"{'good' if g.header_crc_ok else 'BAD'}, entries CRC "
            f"{'good' if g.entries_crc_ok else 'BAD'}, backup {backup}"
        )
        for gp in g.partitions:
            name = f' "{gp.name}"' if gp.name else ""
            add(
                f"  {gp.index}.{name} {gp.type_name}{' (ESP)' if gp.esp else ''}: sectors "
                f"{gp.first_lba:,}-{gp.last_lba:,} ({_size(gp.size)})"
            )

    if report.apple_partition_map is not None:
        a = report.apple_partition_map
        add("")
        add(f"Apple partition map ({a.block_size}-byte blocks)")
        for ap in a.partitions:
            add(
                f"  {ap.index}. {ap.name or '(no name)'}: {ap.type}, {ap.blocks:,} blocks "
                f"from {ap.start_block:,}"
            )

    if report.efi:
        add("")
        add("EFI loaders")
        for vol in report.efi:
            if vol.unread:
                add(f"  {vol.source}: not read (past the part decompressed)")
            elif vol.error:
                add(f"  {vol.source}: {vol.error}")
            elif not vol.fat:
                add(f"  {vol.source}: no FAT file system")
            elif not vol.loaders:
                add(f"  {vol.source}: FAT, no loaders under \\EFI")
            else:
                add(f"  {vol.source}:")
                for ld in vol.loaders:
                    signed = ", signed" if ld.signed else ""
                    add(f"    {ld.path}: {ld.arch}{signed}, {_size(ld.size)}")

    if report.problems:
        add("")
        add("Problems found")
        for problem in report.problems:
            add(f"  - {problem}")
    return "\n".join(out) + "\n"

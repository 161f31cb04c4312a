"""The verification receipt: what was written where, and what the read-back proved.

One typed, frozen object with one JSON form (``to_json``) and one text form
(``to_text``), the same for the command line and the app.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from usbwriter.checksums import ChecksumCheck
from usbwriter.engine.readback import COMPARED, VerifyResult
from usbwriter.engine.target import WriteResult
from usbwriter.sources import SourceInfo
from usbwriter.units import count, human_duration, human_rate, human_size

if TYPE_CHECKING:
    from usbwriter.engine.probe import ProbeResult
    from usbwriter.engine.selectors import Coverage
    from usbwriter.jobs.files import FilesResult


def _mbps(n: int, s: float) -> float:
    return round(n / s / 1e6, 1) if s > 0 else 0.0


@dataclass(frozen=True)
class Receipt:
    image_path: str
    image_size: int
    device: Mapping[str, Any]  # the pinned identity and the drive's names
    write: WriteResult | None  # None for a verify-only run
    verify: VerifyResult | None  # None with --no-verify
    unmounted: tuple[str, ...] = ()
    wiped_first_mib: bool | None = None  # after a failed verify: could it be wiped?
    source: SourceInfo | None = None  # the file as downloaded (raw or compressed)
    checksum: ChecksumCheck | None = None  # the file against its sums, before writing
    coverage: Coverage | None = None  # a bmap or delta write: what was written, read back
    probe: ProbeResult | None = None  # the drive tested before the write (None: not probed)
    files: FilesResult | None = None  # a file copy (--mode files): layout, files, split

    @property
    def file_blake3(self) -> str | None:
        """blake3 of the compressed file as downloaded (None for a raw image)."""
        if self.write is not None:
            return self.write.file_blake3
        return self.verify.file_blake3 if self.verify is not None else None

    @property
    def verified(self) -> bool:
        return bool(self.verify and self.verify.verified)

    @property
    def mismatch_offset(self) -> int | None:
        return self.verify.mismatch_offset if self.verify else None

    @property
    def image_blake3(self) -> str | None:
        if self.write is not None:
            return self.write.blake3
        return self.verify.expected_blake3 if self.verify else None

    def to_json(self) -> dict[str, Any]:
        w, v = self.write, self.verify
        d: dict[str, Any] = {
            "event": "result",
            "verified": self.verified,
            "mismatch_offset": self.mismatch_offset,
            "page_cache_bypassed": bool(v and v.page_cache_bypassed),
            "image": self._image_json(),
            "device": dict(self.device),
            "device_blake3": v.device_blake3 if v else None,
            "verify_proof": v.proof if v else None,
            "bytes_written": w.bytes_written if w else None,
            "direct_io": w.direct_io if w else None,
            "write_seconds": round(w.seconds, 3) if w else None,
            "write_mbps": _mbps(w.bytes_written, w.seconds) if w else None,
            "verify_seconds": round(v.seconds, 3) if v else None,
            "verify_mbps": _mbps(v.size, v.seconds) if v else None,
            "unmounted": list(self.unmounted),
            "checksum": self.checksum.to_dict() if self.checksum is not None else None,
        }
        if self.wiped_first_mib is not None:
            d["wiped_first_mib"] = self.wiped_first_mib
        if self.coverage is not None:
            d["coverage"] = self.coverage.to_dict()
        if self.probe is not None:
            d["probe"] = self.probe.to_dict()
        if self.files is not None:
            d["mode"] = "files"
            d["files"] = self.files.to_dict()
        if v is not None and v.explanation:
            d["mismatch_explanation"] = v.explanation
        return d

    def _image_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.image_path,
            "size": self.image_size,
            "blake3": self.image_blake3,
        }
        if self.source is not None and self.source.compressed:
            d["format"] = self.source.format
            d["file_size"] = self.source.file_size
            d["file_blake3"] = self.file_blake3
            if self.source.member:
                d["member"] = self.source.member
        return d

    def headline(self) -> str:
        """The receipt's first line: what was done, and whether it was proven."""
        dev, img = self.device.get("path"), self.image_path
        holds = f"holds {img}"
        if self.coverage is not None and self.coverage.mode == "bmap":
            # A bmap write proves its mapped ranges only: the rest keeps the drive's bytes.
            holds = (
                f"holds the ranges of {img} its bmap maps ({human_size(self.coverage.written)} "
                f"of {human_size(self.image_size)}; the rest was left as it was)"
            )
        if self.files is not None:
            holds = f"holds the files of {img} on a FAT32 partition"
        nothing = self.coverage is not None and not self.coverage.spans
        if self.verified and nothing and self.write is not None:
            return f"Verified, nothing needed writing: {dev} already held {img}"
        if self.verified:
            return f"{'Written and verified' if self.write else 'Verified'}: {dev} {holds}"
        if self.verify is not None:
            return f"VERIFICATION FAILED: {dev} does not hold {img}"
        return f"Written, not verified: {dev} {holds}"

    def rows(self) -> list[tuple[str, str]]:
        """The receipt as (label, words) rows: the one row model that the command line
        (``to_text``) and the app's result screen both render."""
        w, v, d = self.write, self.verify, self.to_json()
        img = self.image_path
        rows = [("Image", f"{img}  ({human_size(self.image_size)})")]
        src = self.source
        if src is not None and src.compressed:
            member = f", {src.member}" if src.member else ""
            taken = self.file_blake3 or "not taken: the file was not read to its end"
            rows.append(
                ("File", f"{src.format}{member}, {human_size(src.file_size)}, blake3 {taken}")
            )
        if self.files is not None:
            rows.append(("Image blake3", "not taken: its files were copied"))
        else:
            digest = self.image_blake3 or "not taken: the image was read only where its bmap maps"
            rows.append(("Image blake3", digest))
        rows.append(
            ("Checksum", self.checksum.describe() if self.checksum is not None else "not checked")
        )
        rows.append(("Drive", describe_device(self.device)))
        if self.unmounted:
            rows.append(("Unmounted", ", ".join(self.unmounted)))
        if self.probe is not None:
            rows.append(("Probe", self.probe.describe()))
        if self.coverage is not None:
            label = COVERAGE_LABELS.get(self.coverage.mode, self.coverage.mode)
            for i, line in enumerate(coverage_words(self.coverage.to_dict())):
                rows.append((label if i == 0 else "", line))
        if self.files is not None:
            for line in self.files.describe():
                label, _, words = line.strip().partition(" ")
                rows.append((label.capitalize(), words.strip()))
        nothing = self.coverage is not None and not self.coverage.spans
        if w is not None:
            if w.bytes_written:
                rows.append(
                    (
                        "Write",
                        f"{human_size(w.bytes_written)} in {human_duration(w.seconds)}"
                        f", {human_rate(w.rate)}",
                    )
                )
            else:
                took = f"; the compare took {human_duration(w.seconds)}" if nothing else ""
                rows.append(("Write", f"nothing written{took}"))
        if v is not None and self.files is not None:
            how = "page cache dropped first" if v.page_cache_bypassed else "page cache NOT dropped"
            rows.append(("Verify", f"read back in {human_duration(v.seconds)}, {how}"))
        elif v is not None and v.size:
            what = f"the {human_size(v.size)} written" if self.coverage else human_size(v.size)
            how = (
                "with O_DIRECT: page cache bypassed"
                if v.page_cache_bypassed
                else "through the page cache: NOT bypassed"
            )
            rows.append(
                (
                    "Verify",
                    f"{what} read back in {human_duration(v.seconds)}, {human_rate(v.rate)}, {how}",
                )
            )
        if v is not None and v.mismatch_offset is None:
            rows.append(("Proof", proof_words(d)))
        if v is not None and v.mismatch_offset is not None:
            at = v.mismatch_offset
            rows.append(("First difference", f"at offset {at}, 0x{at:x}"))
            if v.explanation:
                rows.append(("Why", v.explanation))
        return rows

    def to_text(self) -> str:
        """The headline, then the rows, for the terminal."""
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        lines = [self.headline()]
        lines += [f"  {label:<{width}}  {words}".rstrip() for label, words in rows]
        return "\n".join(lines)


COVERAGE_LABELS = {"bmap": "Block map", "delta": "Compared", "sparse": "Sparse"}


def coverage_words(c: Mapping[str, Any]) -> list[str]:
    """What a bmap, delta or sparse write did with each part of the image, in words
    (from Coverage.to_dict(); the receipt's text and the app's result say the same)."""
    written, spans = int(c["written"]), int(c["spans"])
    in_spans = f", in {count(spans, 'span')}" if written else ""
    if c["mode"] == "bmap":
        lines = [
            f"{human_size(written)} that the bmap maps written{in_spans}; "
            f"{human_size(c['untouched'])} unmapped left as it was: not written, not read back"
        ]
        if c.get("read_only_mapped"):
            lines.append(
                "the image was read only where mapped; its bytes are those the bmap's range "
                "checksums name"
            )
        return lines
    if c["mode"] == "sparse":
        return [
            f"{human_size(written)} of data written{in_spans}; {human_size(c['untouched'])} "
            "of holes left as they were: not written, not read back"
        ]
    at = c.get("switched_to_full_at")
    same = human_size(c["unchanged"])
    if at is not None:
        return [
            f"the first {human_size(at)} compared with the drive MiB by MiB: {same} equal, "
            "not written: flash wear saved;",
            f"from byte {at} on nearly everything differed, so the rest was written without "
            f"comparing; {human_size(written)} written{in_spans}",
        ]
    compared = human_size(c["image_size"])
    if not written:
        return [
            f"{compared} compared with the drive MiB by MiB: all equal, so nothing was written: "
            "no flash wear"
        ]
    return [
        f"{compared} compared with the drive MiB by MiB: {same} equal, not written: "
        f"flash wear saved;",
        f"{human_size(written)} differed and were written{in_spans}",
    ]


def proof_words(r: Mapping[str, Any]) -> str:
    """What the read-back proved, with the drive's hash next to what it equals (from
    the receipt's JSON form)."""
    cov = r.get("coverage")
    if r.get("verify_seconds") is None:
        return "not verified"
    files = r.get("files")
    if files is not None:  # a file copy: each file read back through the file system
        if not r.get("verified"):
            return f"{files.get('mismatch') or 'the first MiB'} differs from the image's"
        return (
            f"{files['files_verified']} files ({files['bytes_verified']} bytes) read back from "
            "the FAT32 file system, equal to the image's; the partition table and boot code "
            "compared byte for byte"
        )
    if not r.get("verified"):
        return f"first differing byte at offset {r.get('mismatch_offset')}"
    compared = r.get("verify_proof") == COMPARED
    if cov is not None:
        if not cov["written"]:
            if cov["mode"] == "delta":
                return (
                    "nothing was written, so nothing was read back: the compare read found "
                    "the drive equal to the image"
                )
            return "nothing was written, so nothing was read back"
        if compared:
            return "equal byte for byte to the image"
        return (
            f"blake3 of their digests {r.get('device_blake3')} = the blake3 of the digests "
            "taken while writing"
        )
    if compared:
        return f"drive blake3 {r.get('device_blake3')} = the image's: compared byte for byte"
    return f"drive blake3 {r.get('device_blake3')} = the image's, taken while writing"


def describe_device(device: Mapping[str, Any]) -> str:
    parts = [str(device.get("path", "?"))]
    name = " ".join(str(device[k]) for k in ("vendor", "model") if device.get(k))
    name = name or str(device.get("description") or "")
    if name:
        parts.append(name)
    if device.get("size"):
        parts.append(human_size(int(device["size"])))
    if device.get("serial"):
        parts.append(f"serial {device['serial']}")
    if device.get("major") is not None and device.get("minor") is not None:
        parts.append(f"({device['major']}:{device['minor']})")
    return "  ".join(parts)

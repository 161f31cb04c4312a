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
from usbwriter.units import human_duration, human_rate, human_size

if TYPE_CHECKING:
    from usbwriter.engine.selectors import Coverage


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

    def to_text(self) -> str:
        dev, img = self.device.get("path"), self.image_path
        w, v = self.write, self.verify
        # A bmap write proves its mapped ranges only: the rest keeps the drive's old bytes.
        holds = f"holds {img}"
        if self.coverage is not None and self.coverage.mode == "bmap":
            holds = (
                f"holds the ranges of {img} its bmap maps ({human_size(self.coverage.written)} "
                f"of {human_size(self.image_size)}; the rest was left as it was)"
            )
        if self.verified:
            head = "Written and verified" if w else "Verified"
            lines = [f"{head}: {dev} {holds}"]
        elif v is not None:
            lines = [f"VERIFICATION FAILED: {dev} does not hold {img}"]
        else:
            lines = [f"Written (not verified): {dev} {holds}"]
        src = self.source
        if src is not None and src.compressed:
            member = f", {src.member}" if src.member else ""
            lines.append(
                f"  file    {img}  {src.format}{member}, {human_size(src.file_size)}"
                f"  blake3 {self.file_blake3 or '(not read to its end)'}"
            )
            lines.append(
                f"  image   {human_size(self.image_size)} decompressed  blake3 {self.image_blake3}"
            )
        else:
            digest = self.image_blake3 or "(read only where its bmap maps)"
            lines.append(f"  image   {img}  {human_size(self.image_size)}  blake3 {digest}")
        if self.checksum is not None:
            lines.append(f"  check   {self.checksum.describe()}")
        lines.append(f"  device  {describe_device(self.device)}")
        if self.unmounted:
            lines.append(f"  unmounted first: {', '.join(self.unmounted)}")
        if w is not None:
            lines.append(
                f"  write   {human_size(w.bytes_written)} in {human_duration(w.seconds)}"
                f" ({human_rate(w.rate)})"
            )
        if self.coverage is not None:
            lines += self.coverage.describe()
        if v is not None:
            how = (
                "O_DIRECT, page cache bypassed"
                if v.page_cache_bypassed
                else "page cache NOT bypassed"
            )
            lines.append(
                f"  verify  read back ({how}) in {human_duration(v.seconds)} ({human_rate(v.rate)})"
            )
            if v.verified and self.coverage is not None:
                how = (
                    "compared byte for byte with the image"
                    if v.proof == COMPARED
                    else f"blake3 of their digests {v.device_blake3}"
                )
                lines.append(
                    f"          the {len(self.coverage.spans)} span(s) written match ({how})"
                )
            elif v.verified and v.proof == COMPARED:
                lines.append(
                    f"          blake3 {v.device_blake3}: compared byte for byte with the image"
                )
            elif v.verified:
                lines.append(f"          blake3 {v.device_blake3} matches")
            else:
                lines.append(f"          first differing byte at offset {v.mismatch_offset}")
        return "\n".join(lines)


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

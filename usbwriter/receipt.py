"""The verification receipt: what was written where, and what the read-back proved."""

from __future__ import annotations

from typing import Any

from usbwriter.units import human_duration, human_rate, human_size
from usbwriter.verify import VerifyResult
from usbwriter.writer import WriteResult


def build_receipt(
    write: WriteResult,
    verify: VerifyResult | None,
    device: dict[str, Any],
) -> dict[str, Any]:
    """A JSON-able record of one write (and its verification)."""

    def mbps(n: int, s: float) -> float:
        return round(n / s / 1e6, 1) if s > 0 else 0.0

    return {
        "event": "result",
        "verified": bool(verify and verify.verified),
        "mismatch_offset": verify.mismatch_offset if verify else None,
        "page_cache_bypassed": bool(verify and verify.page_cache_bypassed),
        "image": {"path": write.image_path, "size": write.image_size, "blake3": write.blake3},
        "device": device,
        "device_blake3": verify.device_blake3 if verify else None,
        "bytes_written": write.bytes_written,
        "direct_io": write.direct_io,
        "write_seconds": round(write.seconds, 3),
        "write_mbps": mbps(write.bytes_written, write.seconds),
        "verify_seconds": round(verify.seconds, 3) if verify else None,
        "verify_mbps": mbps(verify.size, verify.seconds) if verify else None,
    }


def describe_device(device: dict[str, Any]) -> str:
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


def render_receipt(r: dict[str, Any]) -> str:
    img, dev = r["image"], r["device"]
    lines = []
    if r["verified"]:
        lines.append(f"Written and verified: {dev.get('path')} holds {img['path']}")
    elif r["mismatch_offset"] is not None or r["verify_seconds"] is not None:
        lines.append(f"VERIFICATION FAILED: {dev.get('path')} does not hold {img['path']}")
    else:
        lines.append(f"Written (not verified): {dev.get('path')} holds {img['path']}")
    lines.append(f"  image   {img['path']}  {human_size(img['size'])}  blake3 {img['blake3']}")
    lines.append(f"  device  {describe_device(dev)}")
    lines.append(
        f"  write   {human_size(r['bytes_written'])} in {human_duration(r['write_seconds'])}"
        f" ({human_rate(r['write_mbps'] * 1e6)})"
    )
    if r["verify_seconds"] is not None:
        how = (
            "O_DIRECT, page cache bypassed"
            if r["page_cache_bypassed"]
            else "page cache NOT bypassed"
        )
        lines.append(
            f"  verify  read back ({how}) in {human_duration(r['verify_seconds'])}"
            f" ({human_rate(r['verify_mbps'] * 1e6)})"
        )
        if r["verified"]:
            lines.append(f"          blake3 {r['device_blake3']} matches")
        else:
            lines.append(f"          first differing byte at offset {r['mismatch_offset']}")
    return "\n".join(lines)

"""Record the boot reports the snapshot tests show (run again when the report changes).

    python -m tests.tui.record_reports

Builds the images with scripts/make_images.py, runs ``usbwriter inspect --json`` on
each and stores the result under tests/tui/data/, with the image path replaced by
the fixed path the snapshots use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IMAGES = ("grub-hybrid", "eltorito-bios-only")
SNAPSHOT_IMAGE_DIR = "/tmp/usbwriter-snapshots/Downloads"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_images.py"), tmp, *IMAGES], check=True
        )
        for name in IMAGES:
            out = subprocess.run(
                [sys.executable, "-m", "usbwriter", "inspect", "--json", f"{tmp}/{name}.iso"],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout
            report = json.loads(out)
            report["path"] = f"{SNAPSHOT_IMAGE_DIR}/{name}.iso"
            dest = HERE / "data" / f"boot-{name}.json"
            dest.write_text(json.dumps(report, indent=1) + "\n")
            print(f"{dest}: bios {report['boot']['bios']}, uefi {report['boot']['uefi']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

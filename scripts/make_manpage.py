#!/usr/bin/env python3
"""Write docs/usbwriter.1, the man page, from the command line's parsers.

    python scripts/make_manpage.py [--check]

With --check, write nothing: exit 1 if docs/usbwriter.1 is not what the parsers
give now. The unit tests make the same check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from usbwriter.cli.manpage import render_manpage  # noqa: E402

MANPAGE = ROOT / "docs" / "usbwriter.1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that it is current")
    args = parser.parse_args()
    text = render_manpage()
    current = MANPAGE.read_text(encoding="utf-8") if MANPAGE.exists() else None
    if args.check:
        if current != text:
            print(f"{MANPAGE.relative_to(ROOT)} is stale: run scripts/make_manpage.py")
            return 1
        return 0
    if current != text:
        MANPAGE.write_text(text, encoding="utf-8")
        print(f"wrote {MANPAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

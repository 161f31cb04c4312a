#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian/Ubuntu machine, then run
# ruff, mypy and the whole pytest suite. Run as root so device and boot tests run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/setup.sh

setup_system_packages test
setup_venv test

echo "== ruff"
.venv/bin/ruff check usbwriter tests scripts
.venv/bin/ruff format --check usbwriter tests scripts
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
if [ "$(id -u)" -ne 0 ]; then
    echo "NOTE: not root: device, boot and guest tests will be skipped (see the summary)." >&2
fi
exec .venv/bin/pytest -rs "$@"

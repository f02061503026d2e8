#!/usr/bin/env bash
# Installs everything (with Debian's Chromium for the browser test), then runs the whole test suite;
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_browser.sh  # runs scripts/bootstrap.sh too
exec .venv/bin/python -m pytest "$@"

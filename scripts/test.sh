#!/usr/bin/env bash
# Installs everything (with Debian's Chromium for the browser test), then runs the whole test suite;
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_browser.sh  # runs scripts/bootstrap.sh too
# Two workers (pytest-xdist), each test file kept on one worker so that its module fixtures run once;
# MOVIELENS_TEST_WORKERS=0 runs everything in this process.
exec .venv/bin/python -m pytest -n "${MOVIELENS_TEST_WORKERS:-2}" --dist loadfile "$@"

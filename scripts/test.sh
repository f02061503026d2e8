#!/usr/bin/env bash
# Installs everything, then runs the whole test suite; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"

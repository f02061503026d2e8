#!/usr/bin/env bash
# Creates .venv with Python 3.11 and installs the pinned requirements; reinstalls only when they change.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
if ! command -v "$python" >/dev/null; then
    echo "bootstrap: $python not found; install Python 3.11 (mrjob 0.7.4 needs <= 3.11) or set PYTHON" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $("$python" --version)" >&2
    "$python" -m venv .venv
fi

wanted=$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$wanted" ]; then
    echo "bootstrap: installing pinned requirements into .venv (a few minutes the first time)" >&2
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
    echo "$wanted" > .venv/.installed
fi

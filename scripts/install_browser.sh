#!/usr/bin/env bash
# Installs what the browser test needs, each only if missing: Debian's Chromium and the pinned playwright package.
# Playwright drives the system browser (/usr/bin/chromium): `playwright install` cannot download one here.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    echo "install_browser: installing Debian's chromium (about a minute)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log=$(mktemp)
    if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium; } \
            >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    rm -f "$log"
fi

scripts/bootstrap.sh  # requirements-dev.txt pins playwright
if ! .venv/bin/python -c "import playwright.sync_api" 2>/dev/null; then
    echo "install_browser: installing $(grep -m 1 '^playwright==' requirements-dev.txt)" >&2
    .venv/bin/python -m pip install --quiet "$(grep -m 1 '^playwright==' requirements-dev.txt)" -c constraints.txt
fi

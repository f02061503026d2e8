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

# Spark (the als engine's local mode, and the EMR double's Spark steps in the tests) runs on a Java runtime:
# Java 17, as on EMR 7. Debian's headless one is installed where none is and this is a root shell with apt.
java_bin=${JAVA_HOME:+$JAVA_HOME/bin/}java
if ! command -v "$java_bin" >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bootstrap: no Java runtime for Spark; installing Debian's openjdk-17-jre-headless" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    else
        echo "bootstrap: warning: no Java runtime, so the als engine (Spark) cannot run here: install Java 17" \
             "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME" >&2
    fi
elif ! "$java_bin" -version 2>&1 | grep -Eq 'version "(1\.8|11|17)[."]'; then
    echo "bootstrap: warning: $("$java_bin" -version 2>&1 | head -n 1) is not a Java Spark 3.5 runs on" \
         "(8, 11 or 17): set JAVA_HOME to a Java 17 for the als engine" >&2
fi

#!/bin/bash
# EMR bootstrap action: the similarity job's Python packages on this node, from the wheels staged on S3 with
# the job. Nothing is fetched from PyPI, so it works in a private subnet with no route to the internet (an
# S3 gateway endpoint suffices). Every wheel is checked against the sha256 pinned in the requirements file.
# Usage: install_job_requirements.sh WHEELHOUSE_S3_FOLDER REQUIREMENTS_S3_URI PYTHON PACKAGES_DIR
#   PYTHON, e.g. python3.9 or python3.11: the interpreter the steps run the job with.
#   PACKAGES_DIR: where the packages go (pip --target); the steps put it on PYTHONPATH, so the packages
#   of the node's own Python (cloud-init's PyYAML, say) are left as they are.
set -euo pipefail
if [ "$#" -ne 4 ]; then
    echo "usage: $0 WHEELHOUSE_S3_FOLDER REQUIREMENTS_S3_URI PYTHON PACKAGES_DIR" >&2
    exit 2
fi
wheelhouse_uri=$1 requirements_uri=$2 python=$3 packages_dir=$4
if ! command -v "$python" >/dev/null; then
    echo "$python is not on this node: choose a Python its EMR release has (MOVIELENS_EMR_PYTHON)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
aws s3 cp --recursive --only-show-errors "${wheelhouse_uri%/}/" "$work/wheels"
aws s3 cp --only-show-errors "$requirements_uri" "$work/requirements.txt"

# Every wheel is checked before anything runs: pip runs from its own wheel (the node's Python may have no
# pip), and pip checks the others again as it installs them (--require-hashes).
shopt -s nullglob
for wheel in "$work"/wheels/*.whl; do
    sha256=$(sha256sum "$wheel" | cut -d ' ' -f 1)
    if ! grep -q "sha256:$sha256" "$work/requirements.txt"; then
        echo "${wheel##*/}: sha256 $sha256 is not one pinned in $requirements_uri" >&2
        exit 1
    fi
done
pip_wheels=("$work"/wheels/pip-*.whl)
if [ "${#pip_wheels[@]}" -ne 1 ]; then
    echo "expected one pip wheel in $wheelhouse_uri, found ${#pip_wheels[@]}" >&2
    exit 1
fi
grep -vE '^pip==' "$work/requirements.txt" > "$work/job-requirements.txt"

mkdir -p "$packages_dir" 2>/dev/null || { sudo mkdir -p "$packages_dir" && sudo chown "$(id -u):$(id -g)" "$packages_dir"; }
"$python" "${pip_wheels[0]}/pip" install --quiet --disable-pip-version-check --root-user-action=ignore --no-cache-dir \
    --no-index --find-links "$work/wheels" --only-binary=:all: --require-hashes --target "$packages_dir" \
    -r "$work/job-requirements.txt"

# Each pinned project is installed at its version in PACKAGES_DIR, and every package it holds imports from
# there under the job's Python (a wheel for another Python or architecture fails here, not in a step).
"$python" - "$packages_dir" "$work/job-requirements.txt" <<'CHECK'
import importlib
import importlib.metadata
import os
import re
import sys

packages_dir, requirements = sys.argv[1], sys.argv[2]
sys.path.insert(0, packages_dir)
installed = {re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower(): dist
             for dist in importlib.metadata.distributions(path=[packages_dir])}
for line in open(requirements):
    match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
    if not match:
        continue
    name, version = re.sub(r"[-_.]+", "-", match.group(1)).lower(), match.group(2)
    dist = installed.get(name)
    if dist is None or dist.version != version:
        sys.exit(f"{name}=={version} is not what was installed in {packages_dir}: {dist and dist.version}")
    tops = {str(path).split("/")[0] for path in dist.files or ()}
    modules = [top[:-3] if top.endswith(".py") else top for top in sorted(tops)
               if top.endswith(".py") or os.path.isfile(os.path.join(packages_dir, top, "__init__.py"))]
    for module in modules:
        if not module.startswith("_"):
            loaded = importlib.import_module(module)
            if not str(getattr(loaded, "__file__", "") or "").startswith(packages_dir):
                sys.exit(f"{module} imports from {loaded.__file__}, not from {packages_dir}")
            print(f"{name} {version}: {module} from {packages_dir}")
CHECK

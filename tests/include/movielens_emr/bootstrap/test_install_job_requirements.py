"""The EMR bootstrap script, run here as a node would run it: wheels from "S3", pip from its wheel, no index.

`aws` is a stand-in on PATH that serves s3://<bucket>/<key> from a local folder, which the real
stage_job_files filled; the Python is this one, and the wheelhouse is made here (tests/support/wheels.py),
so nothing is downloaded.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from movielens_emr.staging import BOOTSTRAP_FILE, stage_job_files
from movielens_emr.storage import LocalStorage
from movielens_emr.wheelhouse import NodePython, locked_requirements, select_wheels

from tests.support.wheels import tiny_wheelhouse

BUCKET = "bucket"
FAKE_AWS = textwrap.dedent("""\
    #!/bin/bash
    # aws s3 cp [--recursive] [--only-show-errors] s3://BUCKET/KEY DEST, served from $FAKE_S3/BUCKET/KEY
    set -eu
    [ "$1 $2" = "s3 cp" ] || { echo "fake aws: only s3 cp" >&2; exit 2; }
    shift 2; recursive=0; args=()
    for arg in "$@"; do
        case $arg in --recursive) recursive=1 ;; --only-show-errors) ;; *) args+=("$arg") ;; esac
    done
    source="$FAKE_S3/${args[0]#s3://}"
    if [ "$recursive" = 1 ]; then mkdir -p "${args[1]}"; cp -R "${source%/}/." "${args[1]}/"
    else cp "$source" "${args[1]}"; fi
    """)


@pytest.fixture
def node(tmp_path):
    """The run's job files staged into a fake S3 bucket; what the bootstrap action is given, as s3:// URIs."""
    s3_root = tmp_path / "s3"
    folder, requirements = tiny_wheelhouse(tmp_path / "wheels")
    wheels = select_wheels(folder, NodePython(), locked_requirements(requirements))
    staged = stage_job_files(LocalStorage(s3_root / BUCKET), "runs/r1", NodePython(), wheels, requirements)
    uris = {role: "s3://" + str(Path(path).relative_to(s3_root)) for role, path in staged.items()}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS)
    (bin_dir / "aws").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_S3": str(s3_root)}
    env.pop("PYTHONPATH", None)
    return {"uris": uris, "s3": s3_root, "env": env, "packages": tmp_path / "packages"}


def bootstrap(node, python=sys.executable):
    args = [node["uris"]["wheelhouse"], node["uris"]["requirements"], python, str(node["packages"])]
    return subprocess.run(["bash", str(BOOTSTRAP_FILE), *args], env=node["env"], capture_output=True,
                          text=True, timeout=120, check=False)


def staged_file(node, role, name=""):
    return node["s3"] / node["uris"][role].removeprefix("s3://") / name


def test_the_packages_are_installed_from_the_staged_wheels_into_their_own_folder(node):
    done = bootstrap(node)
    assert done.returncode == 0, done.stderr
    assert f"movielens-probe 1.0: movielens_probe from {node['packages']}" in done.stdout
    where = "import movielens_probe; print(movielens_probe.__file__)"
    env = {**node["env"], "PYTHONPATH": str(node["packages"])}
    imported = subprocess.run([sys.executable, "-c", where], env=env, capture_output=True, text=True,
                              check=True)
    assert imported.stdout.startswith(str(node["packages"] / "movielens_probe"))
    # pip ran from its wheel and was not installed
    assert not (node["packages"] / "pip").exists()


@pytest.mark.parametrize("pattern", ["movielens_probe-*.whl", "pip-*.whl"])
def test_a_wheel_changed_after_staging_is_refused_before_anything_runs(node, pattern):
    (wheel,) = staged_file(node, "wheelhouse").glob(pattern)
    wheel.write_bytes(wheel.read_bytes() + b"changed")
    done = bootstrap(node)
    assert done.returncode == 1
    assert f"{wheel.name}: sha256 " in done.stderr and "is not one pinned" in done.stderr
    assert not node["packages"].exists()


def test_a_python_the_node_does_not_have_fails_the_bootstrap_saying_so(node):
    done = bootstrap(node, python="python3.99-not-here")
    assert done.returncode == 1
    assert "python3.99-not-here is not on this node" in done.stderr


def test_the_bootstrap_wants_its_four_arguments():
    done = subprocess.run(["bash", str(BOOTSTRAP_FILE), "s3://b/wheels"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "usage:" in done.stderr

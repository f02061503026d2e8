"""The EMR nodes' Pythons, as the EMR double runs them: this machine's CPython of the same version, bare.

An EMR 7 node has python3.9 (its `python3`, Amazon Linux 2023's) and, from emr-7.1.0, python3.11.
Each is found under pyenv (`$(pyenv root)/versions/<version>.*/bin/python<version>`, or the path in
MOVIELENS_TEST_PYTHON<version without the dot>, e.g. MOVIELENS_TEST_PYTHON39) and given a virtual
environment of its own with no packages and no pip, so that a step finds only what the cluster's
bootstrap action installed, as on a node. An interpreter that is not there is an error that says how to
get it: the double never runs a step with another Python than the one it names.
"""
import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

# The command names a step or a bootstrap action may use, and the version each is on an EMR 7 node.
NODE_PYTHONS = {"python3": "3.9", "python3.9": "3.9", "python3.11": "3.11"}
VENV_TIMEOUT_SECONDS = 120

_bare = {}
_lock = threading.Lock()


class NodePythonMissing(RuntimeError):
    """A Python that EMR's nodes have and this machine has not."""


def pyenv_root():
    """pyenv's root folder: PYENV_ROOT, else what `pyenv root` says, else ~/.pyenv."""
    if os.environ.get("PYENV_ROOT"):
        return Path(os.environ["PYENV_ROOT"])
    pyenv = shutil.which("pyenv")
    if pyenv:
        done = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    return Path.home() / ".pyenv"


def version_key(path):
    """Sort key of a pyenv version folder's interpreter: its version numbers (3.9.18 after 3.9.2)."""
    return [int(part) for part in re.findall(r"\d+", path.parent.parent.name)]


def find_interpreter(version):
    """This machine's CPython `version` (e.g. "3.9"), or NodePythonMissing saying how to get it."""
    variable = "MOVIELENS_TEST_PYTHON" + version.replace(".", "")
    if os.environ.get(variable):
        path = Path(os.environ[variable])
        if not os.access(path, os.X_OK):
            raise NodePythonMissing(f"{variable} is {path}, which is not an executable Python")
        return path
    root = pyenv_root()
    found = sorted(root.glob(f"versions/{version}.*/bin/python{version}"), key=version_key)
    if not found:
        raise NodePythonMissing(
            f"python{version}, the Python of the EMR nodes that the tests emulate, is not on this machine "
            f"(looked for {root}/versions/{version}.*/bin/python{version}): install it with "
            f"`pyenv install {version}`, or set {variable} to a CPython {version} interpreter")
    return found[-1]


def bare_python(version):
    """A CPython `version` with no packages: a virtual environment of it, made once per process."""
    with _lock:
        if version not in _bare:
            folder = Path(tempfile.mkdtemp(prefix=f"emr-node-python{version}-"))
            atexit.register(shutil.rmtree, folder, True)
            command = [str(find_interpreter(version)), "-m", "venv", "--without-pip", str(folder)]
            done = subprocess.run(command, capture_output=True, text=True, timeout=VENV_TIMEOUT_SECONDS,
                                  check=False)
            if done.returncode:
                raise NodePythonMissing(f"python{version} cannot make a virtual environment: {done.stderr}")
            _bare[version] = folder / "bin" / f"python{version}"
        return _bare[version]


def node_python_commands():
    """{command name: interpreter} of every Python an EMR 7 node has; NodePythonMissing if one is missing."""
    return {name: bare_python(version) for name, version in NODE_PYTHONS.items()}

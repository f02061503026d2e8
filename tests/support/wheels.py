"""Wheels and hash-pinned requirements for the tests of the EMR nodes' wheelhouse and bootstrap.

`tiny_wheelhouse` downloads nothing: `build_wheel` writes a small pure-Python wheel, and pip's own wheel
is the one bundled with this Python's ensurepip. The bytes are reproducible (fixed zip timestamps), so
the same wheelhouse has the same checksum every time it is built. `pinned_node_wheelhouse` is the real
one, the wheels emr_requirements.txt pins for every node Python, which the job needs on a node: downloaded
from PyPI once per machine (pip checks every hash), then reused.
"""
import base64
import ensurepip
import fcntl
import hashlib
import os
import shutil
import zipfile
from pathlib import Path

ZIP_DATE = (2020, 1, 1, 0, 0, 0)
PROBE = ("movielens-probe", "1.0", "movielens_probe")


def _record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder, project, version, modules, tag="py3-none-any"):
    """A wheel of `project` holding one package per name in modules (each with __version__); its path."""
    stem = f"{project.replace('-', '_')}-{version}"
    files = {f"{module}/__init__.py": f'__version__ = "{version}"\n'.encode() for module in modules}
    files[f"{stem}.dist-info/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n").encode()
    files[f"{stem}.dist-info/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: movielens-tests\nRoot-Is-Purelib: true\nTag: {tag}\n").encode()
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    files[f"{stem}.dist-info/RECORD"] = (record + f"{stem}.dist-info/RECORD,,\n").encode()
    path = Path(folder) / f"{stem}-{tag}.whl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in files.items():
            wheel.writestr(zipfile.ZipInfo(name, ZIP_DATE), data)
    return path


def bundled_pip_wheel():
    """The pip wheel bundled with this Python's ensurepip."""
    (wheel,) = (Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl")
    return wheel


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_requirements(path, pins):
    """A requirements file of `name==version --hash=sha256:...` lines; pins: {name: (version, [wheels])}."""
    lines = [f"{project}=={version} " + " ".join(f"--hash=sha256:{sha256(wheel)}" for wheel in wheels)
             for project, (version, wheels) in pins.items()]
    Path(path).write_text("# pinned for the tests\n" + "\n".join(lines) + "\n")
    return Path(path)


def tiny_wheelhouse(folder):
    """A wheelhouse of the probe package and pip, and requirements pinning both: (folder, requirements)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    project, version, module = PROBE
    probe = build_wheel(folder, project, version, [module])
    pip = Path(shutil.copy2(bundled_pip_wheel(), folder))
    pip_version = pip.name.split("-")[1]
    requirements = write_requirements(folder.parent / f"{folder.name}-requirements.txt",
                                      {project: (version, [probe]), "pip": (pip_version, [pip])})
    return folder, requirements


def wheel_cache_folder():
    """Where the pinned node wheels are kept between test runs: MOVIELENS_TEST_WHEEL_CACHE, else the user's
    cache folder."""
    if os.environ.get("MOVIELENS_TEST_WHEEL_CACHE"):
        return Path(os.environ["MOVIELENS_TEST_WHEEL_CACHE"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "movielens-emr-tests" / "emr-wheels"


def pinned_node_wheelhouse(folder=None):
    """A folder with the wheels of emr_requirements.txt for every node Python the pipeline supports (x86_64):
    checked against their pinned hashes, downloaded only when missing. One process at a time fills it."""
    from movielens_emr.emr.wheelhouse import (
        FIRST_RELEASE_WITH_PYTHON,
        REQUIREMENTS_FILE,
        NodePython,
        WheelhouseError,
        download_wheels,
        locked_requirements,
        select_wheels,
    )

    folder = Path(folder or wheel_cache_folder())
    folder.mkdir(parents=True, exist_ok=True)
    pins = locked_requirements(REQUIREMENTS_FILE)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for version in FIRST_RELEASE_WITH_PYTHON:
            node = NodePython(version)
            try:
                select_wheels(folder, node, pins)
            except WheelhouseError:
                download_wheels(node, REQUIREMENTS_FILE, folder)
                select_wheels(folder, node, pins)
    return folder

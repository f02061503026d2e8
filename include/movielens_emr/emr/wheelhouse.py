"""The EMR nodes' Python and the job's packages for it: pinned wheels, checked by sha256, got once."""
import hashlib
import logging
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from movielens_emr.config.settings import DEFAULT_NODE_PYTHON

log = logging.getLogger(__name__)
REQUIREMENTS_FILE = Path(__file__).resolve().parent / "bootstrap" / "emr_requirements.txt"
# The first EMR release whose nodes have each Python: 3.9 on all of EMR 7, 3.11 from 7.1.0 (the Release
# Guide's "Application versions in Amazon EMR 7.x releases": Python "3.9" for 7.0.0, "3.9, 3.11" after).
FIRST_RELEASE_WITH_PYTHON = {"3.9": (7, 0, 0), "3.11": (7, 1, 0)}
# EMR 7 runs Amazon Linux 2023, whose glibc is 2.34: manylinux wheels up to manylinux_2_34 run there.
NODE_GLIBC_MINOR = 34
# Where the bootstrap installs the job's packages on every node, per Python; the steps put it on PYTHONPATH.
PACKAGES_ROOT = "/usr/local/lib/movielens-job"
INSTALLER = "pip"
# Graviton (arm64) families: a generation digit followed by "g" (m6g, m7gd, c6gn, x2gd, im4gn), and a1.
GRAVITON_FAMILY = re.compile(r"a1$|[a-z]+[0-9]+g")
REQUIREMENT_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)\s*")
DOWNLOAD_TIMEOUT_SECONDS = 900


class WheelhouseError(RuntimeError):
    """No wheels for the nodes: a bad requirements file, a missing or unpinned wheel, a failed download."""


@dataclass(frozen=True)
class NodePython:
    """The Python the job runs under on the EMR nodes, and their architecture."""

    version: str = DEFAULT_NODE_PYTHON
    arch: str = "x86_64"

    @property
    def binary(self):
        return f"python{self.version}"

    @property
    def abi(self):
        return "cp" + self.version.replace(".", "")

    @property
    def name(self):
        """The wheelhouse's name, e.g. cp39-x86_64."""
        return f"{self.abi}-{self.arch}"

    @property
    def packages_dir(self):
        return f"{PACKAGES_ROOT}/{self.binary}"

    def platforms(self):
        """The platform tags of wheels that run on the nodes, newest first."""
        legacy = [f"manylinux{name}_{self.arch}" for name in ("2014", "2010", "1")]
        return [f"manylinux_2_{minor}_{self.arch}" for minor in range(NODE_GLIBC_MINOR, 4, -1)] + legacy

    def tags(self):
        """Every wheel tag this Python on these nodes accepts."""
        version = tuple(int(part) for part in self.version.split("."))
        return {*cpython_tags(version, [self.abi], self.platforms()),
                *compatible_tags(version, self.abi, self.platforms())}


def node_python(version, release_label, instance_type):
    """The NodePython of a cluster; ValueError when its release has no such Python (the message names why)."""
    if version not in FIRST_RELEASE_WITH_PYTHON:
        raise ValueError(f"MOVIELENS_EMR_PYTHON is {version!r}: the nodes' Python is one of "
                         f"{', '.join(FIRST_RELEASE_WITH_PYTHON)}")
    first = FIRST_RELEASE_WITH_PYTHON[version]
    if release_number(release_label) < first:
        raise ValueError(f"release_label: {release_label} has no Python {version} on its nodes "
                         f"(MOVIELENS_EMR_PYTHON); it needs emr-{'.'.join(map(str, first))} or later")
    family = instance_type.split(".", 1)[0]
    return NodePython(version, "aarch64" if GRAVITON_FAMILY.match(family) else "x86_64")


def release_number(release_label):
    """(major, minor, patch) of a label like emr-7.9.0."""
    match = re.fullmatch(r"emr-(\d+)\.(\d+)\.(\d+)", release_label)
    if not match:
        raise ValueError(f"release_label: {release_label!r} is not of the form emr-X.Y.Z")
    return tuple(int(part) for part in match.groups())


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: frozenset


def locked_requirements(path=REQUIREMENTS_FILE):
    """{canonical project name: Pin} of a requirements file of `name==version --hash=sha256:...` lines."""
    pins = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = REQUIREMENT_LINE.fullmatch(line)
        if not match:
            raise WheelhouseError(f"{path}:{number}: not a `name==version --hash=sha256:...` line: {line!r}")
        name, version, hashes = match.groups()
        pins[canonicalize_name(name)] = Pin(version, frozenset(re.findall(r"sha256:([0-9a-f]{64})", hashes)))
    if INSTALLER not in pins:
        raise WheelhouseError(f"{path} pins no {INSTALLER}: the bootstrap runs {INSTALLER} from its wheel")
    return pins


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for block in iter(lambda: source.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def select_wheels(folder, node, pins):
    """{file name: path} of the wheels in folder that node installs: for every pin, its version for node's
    tags, with a pinned sha256. WheelhouseError names a missing wheel or one whose sha256 is not pinned."""
    found = {name: [] for name in pins}
    for path in sorted(Path(folder).glob("*.whl")):
        try:
            name, version, _, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as error:
            raise WheelhouseError(f"{path}: {error}") from None
        pin = pins.get(name)
        if pin and version == Version(pin.version) and tags & node.tags():
            found[name].append(path)
    missing = [f"{name}=={pins[name].version}" for name, paths in found.items() if not paths]
    if missing:
        raise WheelhouseError(f"{folder} has no wheel of {', '.join(missing)} for {node.name}")
    chosen = {}
    for name, paths in found.items():
        for path in paths:
            digest = file_sha256(path)
            if digest not in pins[name].hashes:
                raise WheelhouseError(f"{path}: sha256 {digest} is not the one pinned for "
                                      f"{name}=={pins[name].version}")
            chosen[path.name] = path
    return chosen


def download_command(node, requirements_file, folder):
    """pip download of the pinned wheels for node's Python and platforms, each checked against its hash."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "--implementation", "cp", "--python-version", node.version,
               "--abi", node.abi, "--require-hashes", "-r", str(requirements_file), "-d", str(folder)]
    for platform in node.platforms():
        command += ["--platform", platform]
    return command


def download_wheels(node, requirements_file, folder):
    folder.mkdir(parents=True, exist_ok=True)
    log.info("downloading the %s wheels pinned in %s into %s", node.name, requirements_file, folder)
    try:
        done = subprocess.run(download_command(node, requirements_file, folder), capture_output=True,
                              text=True, timeout=DOWNLOAD_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WheelhouseError(f"pip download of the {node.name} wheels failed: {error}") from error
    if done.returncode:
        raise WheelhouseError(
            f"pip download of the {node.name} wheels failed (exit {done.returncode}); if this machine cannot "
            f"reach PyPI, set MOVIELENS_EMR_WHEELHOUSE to a folder of them: {done.stderr.strip()[-2000:]}")


def node_wheels(node, cache_dir, wheelhouse_dir="", requirements_file=REQUIREMENTS_FILE):
    """{file name: path} of node's pinned wheels: from wheelhouse_dir when set, else from the cache, where
    they are downloaded (hash-checked) the first time."""
    pins = locked_requirements(requirements_file)
    if wheelhouse_dir:
        return select_wheels(Path(wheelhouse_dir).expanduser(), node, pins)
    folder = Path(cache_dir).expanduser() / "emr-wheels" / node.name
    try:
        return select_wheels(folder, node, pins)
    except WheelhouseError as reason:
        log.info("cached wheels not usable (%s): downloading", reason)
    download_wheels(node, requirements_file, folder)
    return select_wheels(folder, node, pins)


def requirements_file(cluster_settings):
    """The hash-pinned requirements file of the nodes' packages: the deployment's, else the bundled one."""
    chosen = cluster_settings.requirements_file
    return Path(chosen).expanduser() if chosen else REQUIREMENTS_FILE

"""The EMR nodes' Python and its pinned wheels: which Python and architecture, which wheels, checked how."""
import shutil
import subprocess

import pytest

from movielens_emr.emr import wheelhouse
from movielens_emr.emr.wheelhouse import (
    REQUIREMENTS_FILE,
    NodePython,
    WheelhouseError,
    download_command,
    locked_requirements,
    node_python,
    node_wheels,
    select_wheels,
)

from tests.support.wheels import PROBE, build_wheel, tiny_wheelhouse, write_requirements


@pytest.fixture
def tiny(tmp_path):
    """(folder, requirements) of a wheelhouse of the probe package and pip, made here."""
    return tiny_wheelhouse(tmp_path / "wheels")


@pytest.mark.parametrize("instance_type, arch", [
    ("m5.xlarge", "x86_64"), ("m6i.2xlarge", "x86_64"), ("c5.xlarge", "x86_64"), ("g4dn.xlarge", "x86_64"),
    ("m7i-flex.large", "x86_64"), ("m6g.xlarge", "aarch64"), ("m7g.xlarge", "aarch64"),
    ("r6gd.2xlarge", "aarch64"), ("c6gn.xlarge", "aarch64"), ("x2gd.xlarge", "aarch64"),
    ("im4gn.large", "aarch64"), ("a1.xlarge", "aarch64")])
def test_graviton_instance_types_run_aarch64_wheels(instance_type, arch):
    assert node_python("3.9", "emr-7.9.0", instance_type).arch == arch


def test_the_default_node_python_is_3_9_under_its_own_name_and_packages_folder():
    node = node_python("3.9", "emr-7.0.0", "m5.xlarge")
    assert (node.binary, node.abi, node.name) == ("python3.9", "cp39", "cp39-x86_64")
    assert node.packages_dir == "/usr/local/lib/movielens-job/python3.9"
    assert node == NodePython()


@pytest.mark.parametrize("release", ["emr-7.1.0", "emr-7.9.0", "emr-7.13.0"])
def test_python_3_11_is_allowed_from_emr_7_1(release):
    assert node_python("3.11", release, "m7g.xlarge") == NodePython("3.11", "aarch64")


def test_python_3_11_is_refused_on_emr_7_0_which_has_only_3_9():
    with pytest.raises(ValueError, match=r"^release_label: emr-7.0.0 has no Python 3.11 .* emr-7.1.0 or "):
        node_python("3.11", "emr-7.0.0", "m5.xlarge")


@pytest.mark.parametrize("version", ["3.10", "3", "python3.9", ""])
def test_an_unknown_node_python_is_refused_naming_the_setting(version):
    with pytest.raises(ValueError, match=r"^MOVIELENS_EMR_PYTHON is .*: the nodes' Python is one of 3.9, "):
        node_python(version, "emr-7.9.0", "m5.xlarge")


def test_node_tags_accept_its_own_wheels_and_pure_ones_only():
    tags = {str(tag) for tag in NodePython("3.9", "x86_64").tags()}
    assert {"cp39-cp39-manylinux2014_x86_64", "cp39-cp39-manylinux_2_34_x86_64", "py3-none-any",
            "py39-none-any"} <= tags
    assert not {"cp311-cp311-manylinux2014_x86_64", "cp39-cp39-manylinux2014_aarch64",
                "cp39-cp39-manylinux_2_35_x86_64", "cp39-cp39-macosx_11_0_arm64"} & tags


def test_the_bundled_requirements_pin_the_jobs_packages_and_pip_with_a_hash_per_node_kind():
    pins = locked_requirements(REQUIREMENTS_FILE)
    assert {name: pin.version for name, pin in pins.items()} == {
        "mrjob": "0.7.4", "numpy": "2.0.2", "pyyaml": "6.0.2", "pip": "25.2"}
    # one wheel of each binary package per Python (3.9, 3.11) and architecture (x86_64, aarch64)
    assert len(pins["numpy"].hashes) == len(pins["pyyaml"].hashes) == 4
    assert len(pins["mrjob"].hashes) == len(pins["pip"].hashes) == 1
    # the bootstrap finds pip's pin with grep: each project is on one line of its own
    lines = [line for line in REQUIREMENTS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 4 and sum(line.startswith("pip==") for line in lines) == 1


def test_a_requirement_without_a_hash_is_refused_with_its_line(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("pip==25.2 --hash=sha256:" + "a" * 64 + "\nnumpy==2.0.2\n")
    with pytest.raises(WheelhouseError, match=r"requirements.txt:2: not a `name==version --hash=sha256:"):
        locked_requirements(requirements)


def test_requirements_without_pip_are_refused_since_the_bootstrap_runs_it(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy==2.0.2 --hash=sha256:" + "a" * 64 + "\n")
    with pytest.raises(WheelhouseError, match="pins no pip"):
        locked_requirements(requirements)


def test_select_wheels_takes_each_pinned_wheel_for_the_node(tiny):
    folder, requirements = tiny
    build_wheel(folder, PROBE[0], "2.0", [PROBE[2]])  # another version: not pinned, not taken
    (folder / "notes.txt").write_text("not a wheel")
    chosen = select_wheels(folder, NodePython(), locked_requirements(requirements))
    assert sorted(chosen) == ["movielens_probe-1.0-py3-none-any.whl", next(folder.glob("pip-*.whl")).name]
    assert all(path.parent == folder for path in chosen.values())


def test_a_wheel_whose_sha256_is_not_pinned_is_refused(tiny):
    folder, requirements = tiny
    probe = folder / "movielens_probe-1.0-py3-none-any.whl"
    probe.write_bytes(probe.read_bytes() + b"tampered")
    with pytest.raises(WheelhouseError, match=r"movielens_probe-1.0-py3-none-any.whl: sha256 \w+ is not "
                                              r"the one pinned for movielens-probe==1.0"):
        select_wheels(folder, NodePython(), locked_requirements(requirements))


def test_a_missing_wheel_is_named_with_the_node_kind(tiny):
    folder, requirements = tiny
    (folder / "movielens_probe-1.0-py3-none-any.whl").unlink()
    with pytest.raises(WheelhouseError, match=r"has no wheel of movielens-probe==1.0 for cp39-x86_64"):
        select_wheels(folder, NodePython(), locked_requirements(requirements))


def test_a_binary_wheel_serves_only_its_own_python_and_architecture(tmp_path):
    folder = tmp_path / "wheels"
    binary = build_wheel(folder, "fastmath", "1.0", ["fastmath"], tag="cp39-cp39-manylinux_2_17_x86_64")
    pip = build_wheel(folder, "pip", "25.2", ["pip"])
    pins = locked_requirements(write_requirements(tmp_path / "req.txt", {
        "fastmath": ("1.0", [binary]), "pip": ("25.2", [pip])}))
    assert binary.name in select_wheels(folder, NodePython("3.9", "x86_64"), pins)
    for other in (NodePython("3.11", "x86_64"), NodePython("3.9", "aarch64")):
        with pytest.raises(WheelhouseError, match=f"no wheel of fastmath==1.0 for {other.name}"):
            select_wheels(folder, other, pins)


def test_a_prebuilt_wheelhouse_is_used_as_it_is_without_any_download(tiny, tmp_path, monkeypatch):
    folder, requirements = tiny
    monkeypatch.setattr(wheelhouse, "download_wheels", pytest.fail)
    chosen = node_wheels(NodePython(), tmp_path / "cache", str(folder), requirements)
    assert len(chosen) == 2 and all(path.parent == folder for path in chosen.values())


def test_without_a_prebuilt_wheelhouse_the_wheels_are_downloaded_once_to_the_cache(tiny, tmp_path,
                                                                                 monkeypatch):
    folder, requirements = tiny
    downloads = []

    def download(node, requirements_file, target):
        downloads.append((node, requirements_file, target))
        shutil.copytree(folder, target, dirs_exist_ok=True)

    monkeypatch.setattr(wheelhouse, "download_wheels", download)
    first = node_wheels(NodePython(), tmp_path / "cache", "", requirements)
    again = node_wheels(NodePython(), tmp_path / "cache", "", requirements)
    assert downloads == [(NodePython(), requirements, tmp_path / "cache" / "emr-wheels" / "cp39-x86_64")]
    assert first == again and all(path.parent == downloads[0][2] for path in first.values())


def test_the_download_is_pips_for_the_nodes_python_and_platform_checking_every_hash(tmp_path):
    command = download_command(NodePython("3.11", "aarch64"), REQUIREMENTS_FILE, tmp_path)
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--require-hashes" in command and "--only-binary=:all:" in command
    options = dict(zip(command[4:-1], command[5:], strict=False))
    assert options["--python-version"] == "3.11" and options["--abi"] == "cp311"
    assert options["-r"] == str(REQUIREMENTS_FILE) and options["-d"] == str(tmp_path)
    platforms = [command[i + 1] for i, word in enumerate(command) if word == "--platform"]
    assert "manylinux2014_aarch64" in platforms and all(p.endswith("_aarch64") for p in platforms)


def test_a_failed_download_says_how_to_do_without_pypi(tiny, tmp_path, monkeypatch):
    _, requirements = tiny
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version that satisfies numpy")
    monkeypatch.setattr(wheelhouse.subprocess, "run", lambda *args, **kwargs: failed)
    with pytest.raises(WheelhouseError, match=r"(?s)exit 1.*set MOVIELENS_EMR_WHEELHOUSE.*Could not find"):
        node_wheels(NodePython(), tmp_path / "cache", "", requirements)

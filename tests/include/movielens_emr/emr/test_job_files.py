"""emr/job_files.py: what an EMR run ships, staged into the run folder; the nodes' wheels once per content."""
from pathlib import Path

import pytest

from movielens_emr.data.staging import STAGED_MARKER
from movielens_emr.data.storage import LocalStorage
from movielens_emr.emr.job_files import stage_job_files
from movielens_emr.emr.wheelhouse import NodePython, locked_requirements, select_wheels
from movielens_emr.engine.similarity.job import JOB_FILE

from tests.support.wheels import tiny_wheelhouse


def staged_job_files(storage, run_prefix, wheelhouse):
    folder, requirements = wheelhouse
    wheels = select_wheels(folder, NodePython(), locked_requirements(requirements))
    return stage_job_files(storage, run_prefix, [JOB_FILE], NodePython(), wheels, requirements)


@pytest.fixture
def wheelhouse(tmp_path):
    return tiny_wheelhouse(tmp_path / "wheels")


def test_job_files_are_staged_into_the_run_folder(tmp_path, wheelhouse):
    storage = LocalStorage(tmp_path / "root")
    uris = staged_job_files(storage, "runs/r1", wheelhouse)
    assert {role: uri for role, uri in uris.items() if role != "wheelhouse"} == {
        "shipped": [str(tmp_path / "root/runs/r1/job/movie_similarities.py")],
        "bootstrap": str(tmp_path / "root/runs/r1/job/install_job_requirements.sh"),
        "requirements": str(tmp_path / "root/runs/r1/job/emr_requirements.txt")}
    assert storage.get_bytes("runs/r1/job/emr_requirements.txt") == wheelhouse[1].read_bytes()
    assert b"--require-hashes" in storage.get_bytes("runs/r1/job/install_job_requirements.sh")


def test_the_bundled_requirements_are_staged_by_default(tmp_path, wheelhouse):
    storage = LocalStorage(tmp_path / "root")
    stage_job_files(storage, "runs/r1", [JOB_FILE], NodePython(), {})
    assert b"mrjob==0.7.4 --hash=sha256:" in storage.get_bytes("runs/r1/job/emr_requirements.txt")


def test_the_nodes_wheels_are_staged_once_by_content_for_every_run(tmp_path, wheelhouse, monkeypatch):
    storage = LocalStorage(tmp_path / "root")
    first = staged_job_files(storage, "runs/r1", wheelhouse)["wheelhouse"]
    folder = Path(first).relative_to(tmp_path / "root")
    assert folder.parent == Path("wheelhouses/cp39-x86_64")
    names = sorted(path.name for path in wheelhouse[0].glob("*.whl"))
    assert sorted(path.name for path in Path(first).iterdir()) == sorted([*names, STAGED_MARKER])
    assert all(storage.get_bytes(f"{folder}/{name}") == (wheelhouse[0] / name).read_bytes() for name in names)
    uploads = []
    monkeypatch.setattr(storage, "put_file", lambda path, key: uploads.append(key))
    assert staged_job_files(storage, "runs/r2", wheelhouse)["wheelhouse"] == first
    assert not [key for key in uploads if key.startswith("wheelhouses/")]


def test_an_interrupted_wheelhouse_upload_is_redone(tmp_path, wheelhouse):
    storage = LocalStorage(tmp_path / "root")
    folder = Path(staged_job_files(storage, "runs/r1", wheelhouse)["wheelhouse"])
    (folder / STAGED_MARKER).unlink()
    (folder / "movielens_probe-1.0-py3-none-any.whl").unlink()
    assert Path(staged_job_files(storage, "runs/r2", wheelhouse)["wheelhouse"]) == folder
    assert (folder / "movielens_probe-1.0-py3-none-any.whl").is_file() and (folder / STAGED_MARKER).is_file()

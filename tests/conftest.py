"""Test-wide settings: an isolated Airflow home and storage root; the real MovieLens files from ../shared."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.wheels import pinned_node_wheelhouse

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MOVIELENS = SHARED / "data" / "movielens"

# Airflow reads its settings when first imported, so they are set before any test module imports it.
# Kept in the environment so that a second import of this module (or a subprocess) shares the home.
# Each pytest-xdist worker gets a home (and so a metadata database) of its own.
_HOME_VARIABLE = "MOVIELENS_TEST_AIRFLOW_HOME_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
_AIRFLOW_HOME = Path(os.environ.get(_HOME_VARIABLE) or tempfile.mkdtemp(prefix="movielens-airflow-home-"))
TEST_ENV = {
    _HOME_VARIABLE: str(_AIRFLOW_HOME),
    "AIRFLOW_HOME": str(_AIRFLOW_HOME),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_AIRFLOW_HOME}/airflow.db",
    "MOVIELENS_SOURCE_DIR": str(MOVIELENS),
    "MOVIELENS_STORAGE_ROOT": str(_AIRFLOW_HOME / "storage"),
    "MOVIELENS_CACHE_DIR": str(_AIRFLOW_HOME / "cache"),
    "MOVIELENS_TASK_RETRIES": "0",
    "MOVIELENS_POLL_SECONDS": "1",
    # moto's stand-in credentials: never real ones.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "PYTHONPATH": os.pathsep.join(
        [str(REPO / "include"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
}
# The EMR nodes' wheels, as a deployment would set them (MOVIELENS_EMR_WHEELHOUSE): the pinned ones of the
# bundled requirements, which the emulated nodes' bootstrap really installs. Downloaded once per machine.
TEST_ENV["MOVIELENS_EMR_WHEELHOUSE"] = str(pinned_node_wheelhouse())
os.environ.pop("MOVIELENS_EMR_REQUIREMENTS", None)
os.environ.update(TEST_ENV)


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated metadata database (SQLite) in the test Airflow home."""
    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                   check=True, capture_output=True, env=os.environ.copy())
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture
def storage_root(tmp_path, monkeypatch):
    """A fresh local storage root for one test."""
    root = tmp_path / "storage"
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", str(root))
    return root


@pytest.fixture
def moto_server():
    """A moto server in this process (the EMR double runs its steps there too), reset after the test.

    The fixture's value is the server's URL.
    """
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10)
    try:
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()

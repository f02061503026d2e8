"""The AirflowPlugin: Airflow finds it in the plugins folder and serves the page through a real API server."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from movielens_emr.airflow.links import run_page_path

from tests.conftest import REPO
from tests.plugins.movielens_benchmarks.stored import add_local_run, add_runs, add_sized_runs, history_run_ids

ADMIN_PASSWORD = "test-only-password"
PACKAGE = REPO / "plugins" / "movielens_benchmarks"
LINKED_RUN = "manual__2026-03-01T12:00:00+00:00"


def test_the_plugin_is_discovered_with_its_app_and_navigation_entry():
    from airflow import plugins_manager

    [info] = [info for info in plugins_manager.get_plugin_info() if info["name"] == "movielens_benchmarks"]
    apps = [(app["url_prefix"], app["name"]) for app in info["fastapi_apps"]]
    assert apps == [("/movielens", "MovieLens benchmarks")]
    assert info["external_views"] == [{"name": "MovieLens benchmarks", "href": "movielens/",
                                       "url_route": "movielens-benchmarks", "destination": "nav",
                                       "category": "browse"}]
    assert info["operator_extra_links"] == ["<movielens_emr.airflow.links.RunPageLink object>"]


def test_the_plugins_folder_loads_without_errors_and_leaves_the_package_whole():
    from airflow import plugins_manager

    assert plugins_manager.get_import_errors() == {}
    # The package's modules are imported as movielens_benchmarks.*, never run as plugin modules of their own.
    top_level = {name for name, module in list(sys.modules.items())
                 if "." not in name and Path(getattr(module, "__file__", None) or "/").parent == PACKAGE}
    assert top_level == {"movielens_benchmarks"}


# --- through a real API server -----------------------------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def api_server(airflow_db, storage_root, tmp_path):
    """`airflow api-server` on a free loopback port, with one admin user of the simple auth manager; three
    runs in the history."""
    add_runs(storage_root)
    port, log_path = free_port(), tmp_path / "api-server.log"
    (tmp_path / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    env = {**os.environ, "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "passwords.json"),
           "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}/"}
    env.pop("AIRFLOW_CONN_MOVIELENS_HISTORY", None)
    with log_path.open("w") as log:
        server = subprocess.Popen([str(Path(sys.executable).parent / "airflow"), "api-server", "--host",
                                   "127.0.0.1", "--port", str(port), "--workers", "1"],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, log_path)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_healthy(base, server, log_path, seconds=90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"airflow api-server exited: {log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"airflow api-server not healthy after {seconds} s: {log_path.read_text()[-3000:]}")


@pytest.fixture
def price_variable(airflow_db):
    """The Variable movielens_hourly_prices in the metadata database, as an admin sets it in the UI."""
    from airflow.models import Variable

    from movielens_emr.sizing.prices import PRICES_VARIABLE

    Variable.set(PRICES_VARIABLE, json.dumps({"m5.xlarge": 0.5}))
    yield 0.5
    Variable.delete(PRICES_VARIABLE)


def test_the_page_through_a_real_api_server(api_server, storage_root, price_variable):
    add_local_run(storage_root, LINKED_RUN)
    run_paths = [f"/movielens/runs/{LINKED_RUN}{file}" for file in ("", "/metrics.json", "/stages.png")]
    for path in ("/movielens/", "/movielens/docs", "/movielens/redoc", "/movielens/openapi.json", *run_paths):
        assert httpx.get(f"{api_server}{path}").status_code == 401, path
    login = {"username": "admin", "password": ADMIN_PASSWORD}
    token = httpx.post(f"{api_server}/auth/token", json=login).json()["access_token"]
    with httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {token}"}) as client:
        page = client.get("/movielens/")
        assert page.status_code == 200
        assert history_run_ids(page.text) == ["manual__new_failed", "manual__local", "manual__old_emr"]
        assert client.get("/movielens/api/similar", params={"title": "toy"}).json()["total"] == 3
        assert "/api/history" in client.get("/movielens/openapi.json").json()["paths"]
        # the server reads the price Variable from the metadata database, as the pipeline's tasks do
        add_sized_runs(storage_root)
        plan = client.get("/movielens/api/plan", params={"dataset": "ml-1m", "target": "emr",
                                                          "budget_usd": 1}).json()
        assert (plan["price"]["usd_per_node_hour"], plan["price"]["source"]) == (price_variable, "variable")
        # the plan form as a browser sends it, deadline and budget left empty
        form = client.get("/movielens/", params={"plan_dataset": "ml-1m", "plan_target": "emr",
                                                 "plan_instance_type": "m5.xlarge", "deadline_minutes": "",
                                                 "budget_usd": ""})
        assert form.status_code == 200 and "Fitted on 6 runs" in form.text
        # the run page, as the result tasks' extra link opens it: the real access checks and metadata database
        run_page = client.get(f"/{run_page_path(LINKED_RUN)}")
        assert run_page.status_code == 200 and f"<h1>Run {LINKED_RUN}</h1>" in run_page.text
        assert client.get(f"/movielens/runs/{LINKED_RUN}/stages.png").headers["content-type"] == "image/png"
        assert client.get("/movielens/runs/manual__unknown").status_code == 404
        plugins = client.get("/api/v2/plugins").json()["plugins"]
        assert client.get("/api/v2/plugins/importErrors").json()["import_errors"] == []
    with httpx.Client(base_url=api_server, cookies={"_token": token}) as browser:
        assert browser.get("/movielens/").status_code == 200  # with the session cookie, as in the UI
    [view] = [view for entry in plugins for view in entry["external_views"]
              if view["url_route"] == "movielens-benchmarks"]
    assert (view["name"], view["href"]) == ("MovieLens benchmarks", "movielens/")

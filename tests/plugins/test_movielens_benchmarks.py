"""The benchmarks UI plugin: its page and JSON endpoints on a temporary storage root; its discovery."""
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from movielens_emr.history import engine_for_url, ensure_schema, run_record, upsert_run
from movielens_emr.storage import run_folder

from plugins import movielens_benchmarks as plugin
from plugins.movielens_benchmarks import find_similar, report_html, summary_blocks

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
PARAMS = {"node_count": 4, "target": "emr", "dataset": "ml-1m", "metric": "cosine", "min_score": 0.95,
          "min_co_ratings": 10, "instance_type": "m5.xlarge", "release_label": "emr-7.9.0",
          "sample_fraction": 1.0}
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c63f8cfc0f01f0005000201e221bc330000000049454e44ae426082")
ADMIN_PASSWORD = "test-only-password"
WEIRD = 'Tom & Jerry: "The <Movie>" (1992)'


def neighbours_json(*titles):
    """top_neighbours.json of movies 1.. with the given titles, each the others' neighbour."""
    movies = {str(number): {"title": title, "neighbours": []} for number, title in enumerate(titles, start=1)}
    for movie_id, movie in movies.items():
        movie["neighbours"] = [{"movie_id": other_id, "title": other["title"], "score": 0.97, "co_raters": 12}
                               for other_id, other in movies.items() if other_id != movie_id]
    return json.dumps(movies)


def add_run(root, run_id, minutes, states=None, results=None, **params):
    """A history row (and results, if given) of one run."""
    metrics = None if states else {"wall_seconds": 1868.0 + minutes, "stage_seconds": [120.0, 930.0, 600.0],
                                   "estimated_cost_usd": 0.4728, "output_pairs": 52}
    engine = engine_for_url(f"sqlite:///{root / 'history.sqlite'}")
    ensure_schema(engine)
    started = T0 + datetime.timedelta(minutes=minutes)
    upsert_run(engine, run_record("movielens_similarity", run_id, {**PARAMS, **params}, metrics,
                                  states or {"record_metrics": "success"}, started,
                                  started + datetime.timedelta(minutes=31)))
    if results:
        write(root / run_folder(run_id) / "results" / "top_neighbours.json", results)


def write(path, data, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    if mtime:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def client(storage_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    plugin.app.dependency_overrides[plugin.require_run_access] = lambda: None
    yield TestClient(plugin.app)
    plugin.app.dependency_overrides.clear()


@pytest.fixture
def runs(storage_root):
    add_run(storage_root, "manual__old_emr", 0, results=neighbours_json("Toy Story (1995)", "Heat (1995)"))
    add_run(storage_root, "manual__local", 30, target="local", dataset="ml-100k", node_count=2,
            results=neighbours_json("Toy Story (1995)", "Toy Story 2 (1999)", "Babe (1995)", "Toys (1992)",
                                    WEIRD))
    add_run(storage_root, "manual__new_failed", 60, states={"run_local_job": "failed"}, target="local",
            results=neighbours_json("Stale (2000)"))


@pytest.fixture
def reports(storage_root):
    write(storage_root / "benchmarks/old/summary.json", json.dumps({"note": "old"}), mtime=1_000_000)
    folder = storage_root / "benchmarks/manual__bench"
    write(folder / "summary.json", json.dumps({
        "dataset": "ml-1m", "speedup": 3.25,
        "runs": [{"node_count": 2, "wall_seconds": 900.5}, {"node_count": 4, "wall_seconds": 610.0}]}))
    write(folder / "report.md", "# Scaling\n\n| nodes | s |\n|---|---|\n| 2 | 900 |\n\n"
                                "![wall](wall_seconds.png)\n<script>alert(1)</script>\n")
    write(folder / "wall_seconds.png", PNG)
    write(folder / "cost.png", PNG)


def history_run_ids(html):
    return re.findall(r'<tr data-run-id="([^"]+)">', html)


def test_page_lists_the_history_newest_first(client, runs):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert history_run_ids(response.text) == ["manual__new_failed", "manual__local", "manual__old_emr"]
    assert "run_local_job" in response.text and "1,898.0" in response.text and "0.4728" in response.text
    assert "2026-03-01 12:30 UTC" in response.text and '<div class="run-id"' in response.text


@pytest.mark.parametrize("query, expected", [
    ("dataset=ml-1m", ["manual__new_failed", "manual__old_emr"]),
    ("target=local", ["manual__new_failed", "manual__local"]),
    ("dataset=ml-100k&target=local", ["manual__local"]),
    ("dataset=ml-25m", []),
])
def test_page_filters_by_dataset_and_target(client, runs, query, expected):
    html = client.get(f"/?{query}").text
    assert history_run_ids(html) == expected
    if not expected:
        assert "No runs recorded for ml-25m on any target" in html


def test_history_json_filters(client, runs):
    rows = client.get("/api/history", params={"target": "local"}).json()["runs"]
    assert [row["run_id"] for row in rows] == ["manual__new_failed", "manual__local"]
    assert rows[0]["outcome"] == "failed" and rows[0]["failed_tasks"] == "run_local_job"
    assert rows[1]["stage_2_seconds"] == 930.0 and rows[1]["started_at"] == "2026-03-01T12:30:00+00:00"


def test_similar_json_several_matches_closest_title_first(client, runs):
    body = client.get("/api/similar", params={"title": "TOY"}).json()
    assert body["run_folder"] == "runs/manual__local"  # the newest successful run, not the newer failed one
    assert body["total"] == 3
    assert [match["title"] for match in body["matches"]] == [
        "Toy Story (1995)", "Toy Story 2 (1999)", "Toys (1992)"]
    neighbours = {neighbour["title"] for neighbour in body["matches"][0]["neighbours"]}
    assert neighbours >= {"Toy Story 2 (1999)", WEIRD}


def test_similar_json_without_a_match(client, runs):
    assert client.get("/api/similar", params={"title": "zzz"}).json() == {
        "run_folder": "runs/manual__local", "query": "zzz", "total": 0, "matches": []}


def test_similar_json_without_results_is_404(client):
    response = client.get("/api/similar", params={"title": "toy"})
    assert response.status_code == 404 and "no results yet" in response.json()["detail"]


def test_similar_json_needs_a_title(client, runs):
    assert client.get("/api/similar", params={"title": ""}).status_code == 422


def test_similar_reads_the_newest_results_folder_when_no_run_is_recorded(client, storage_root):
    for folder, other, mtime in (("a", "Up (2009)", 1_000), ("b", "Ran (1985)", 2_000)):
        path = storage_root / f"runs/{folder}/results/top_neighbours.json"
        write(path, neighbours_json("Heat (1995)", other), mtime)
    body = client.get("/api/similar", params={"title": "heat"}).json()
    assert body["run_folder"] == "runs/b" and body["matches"][0]["neighbours"][0]["title"] == "Ran (1985)"


def test_page_lookup_escapes_titles(client, runs):
    html = client.get("/", params={"title": 'jerry: "the <movie>'}).text
    assert "Tom &amp; Jerry: &#34;The &lt;Movie&gt;&#34; (1992)" in html
    assert "<Movie>" not in html
    assert 'value="jerry: &#34;the &lt;movie&gt;"' in html


def test_page_lookup_with_no_match_and_with_several(client, runs):
    assert "No movie whose title contains “zzz”" in client.get("/", params={"title": "zzz"}).text
    html = client.get("/", params={"title": "toy"}).text
    assert "3 titles contain “toy”" in html
    assert re.findall(r"<h3>([^<]+) <span", html) == ["Toy Story (1995)", "Toy Story 2 (1999)", "Toys (1992)"]


def test_page_empty_states(client):
    html = client.get("/").text
    assert "No runs recorded yet" in html
    assert "No benchmark report yet" in html
    assert "No results yet" in html


def test_page_reports_an_unreachable_history_database(client, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY", "postgresql://nobody@127.0.0.1:1/none")
    response = client.get("/")
    assert response.status_code == 200
    assert "The run history database could not be read" in response.text


def test_latest_report_json(client, reports):
    body = client.get("/api/report/latest").json()
    assert body["folder"] == "manual__bench"
    assert body["summary"]["speedup"] == 3.25 and body["report_markdown"].startswith("# Scaling")
    assert body["plots"] == [
        {"name": "cost.png", "url": "reports/manual__bench/plots/cost.png"},
        {"name": "wall_seconds.png", "url": "reports/manual__bench/plots/wall_seconds.png"}]


def test_latest_report_json_without_a_report_is_404(client):
    response = client.get("/api/report/latest")
    assert response.status_code == 404 and "no benchmark report yet" in response.json()["detail"]


def test_page_shows_the_report_figures_plots_and_text(client, reports):
    html = client.get("/").text
    assert "benchmarks/manual__bench" in html
    assert '<td class="num">3.25</td>' in html and '<td class="num">900.5</td>' in html
    assert '<img src="reports/manual__bench/plots/cost.png"' in html
    assert '<img src="reports/manual__bench/plots/wall_seconds.png" alt="wall"' in html  # report.md's image
    assert "<h1>Scaling</h1>" in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html


def test_plot_png(client, reports):
    response = client.get("/reports/manual__bench/plots/cost.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == PNG


@pytest.mark.parametrize("path, status", [
    ("/reports/manual__bench/plots/missing.png", 404),
    ("/reports/manual__bench/plots/summary.json", 422),
    ("/reports/.hidden/plots/cost.png", 422),
    ("/reports/manual__bench/plots/..png", 422),
    ("/reports/manual__bench/plots/..%2F..%2Fhistory.sqlite", 404),
])
def test_plot_png_refuses_other_files(client, reports, path, status):
    assert client.get(path).status_code == status


def test_requests_without_credentials_are_refused(storage_root):
    for path in ("/", "/api/history", "/api/report/latest"):
        assert TestClient(plugin.app).get(path).status_code == 401


def test_find_similar_ranks_whole_titles_then_prefixes():
    movies = json.loads(neighbours_json("Heat (1995)", "Heatwave (2010)", "The Heat (2013)", "Cheats (2002)"))
    assert [match["title"] for match in find_similar(movies, " heat ")[1]] == [
        "Heat (1995)", "Heatwave (2010)", "Cheats (2002)", "The Heat (2013)"]
    assert find_similar(movies, "heat", limit=1)[0] == 4


def test_summary_blocks():
    blocks = summary_blocks({"dataset": "ml-1m", "per_node": {"2": 900.0}, "runs": [{"a": 1}, {"b": 2}],
                             "seconds": [1, 2]})
    assert blocks == [
        {"title": "Figures", "columns": ["figure", "value"], "rows": [("dataset", "ml-1m")]},
        {"title": "per_node", "columns": ["figure", "value"], "rows": [("2", 900.0)]},
        {"title": "runs", "columns": ["a", "b"], "rows": [[1, None], [None, 2]]},
        {"title": "seconds", "columns": ["value"], "rows": [[[1, 2]]]},
    ]


def test_report_html_refuses_raw_html_and_points_plot_images_at_the_plot_route():
    html = report_html('<img src=x onerror=alert(1)>\n\n![a](./a.png) ![b](https://example.com/b.png)',
                       lambda name: f"plots/{name}")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<img src="plots/a.png" alt="a"' in html and '<img src="https://example.com/b.png"' in html


def test_the_plugin_is_discovered_with_its_app_and_navigation_entry():
    from airflow import plugins_manager

    [info] = [info for info in plugins_manager.get_plugin_info() if info["name"] == "movielens_benchmarks"]
    apps = [(app["url_prefix"], app["name"]) for app in info["fastapi_apps"]]
    assert apps == [("/movielens", "MovieLens benchmarks")]
    assert info["external_views"] == [{"name": "MovieLens benchmarks", "href": "movielens/",
                                       "url_route": "movielens-benchmarks", "destination": "nav",
                                       "category": "browse"}]


# --- through a real API server -----------------------------------------------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def api_server(airflow_db, storage_root, runs, tmp_path):
    """`airflow api-server` on a free loopback port, with one admin user of the simple auth manager."""
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


def test_the_page_through_a_real_api_server(api_server):
    assert httpx.get(f"{api_server}/movielens/").status_code == 401
    login = {"username": "admin", "password": ADMIN_PASSWORD}
    token = httpx.post(f"{api_server}/auth/token", json=login).json()["access_token"]
    with httpx.Client(base_url=api_server, headers={"Authorization": f"Bearer {token}"}) as client:
        page = client.get("/movielens/")
        assert page.status_code == 200
        assert history_run_ids(page.text) == ["manual__new_failed", "manual__local", "manual__old_emr"]
        assert client.get("/movielens/api/similar", params={"title": "toy"}).json()["total"] == 3
        plugins = client.get("/api/v2/plugins").json()["plugins"]
    with httpx.Client(base_url=api_server, cookies={"_token": token}) as browser:
        assert browser.get("/movielens/").status_code == 200  # with the session cookie, as in the UI
    [view] = [view for entry in plugins for view in entry["external_views"]
              if view["url_route"] == "movielens-benchmarks"]
    assert (view["name"], view["href"]) == ("MovieLens benchmarks", "movielens/")

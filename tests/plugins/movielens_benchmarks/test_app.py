"""The benchmarks UI plugin: its page and JSON endpoints on a temporary storage root; its discovery."""
import datetime
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from movielens_emr.data.storage import run_folder
from movielens_emr.reporting import benchmark_report
from movielens_emr.reporting.benchmark import summarize
from movielens_emr.reporting.history import TABLE_NAME, engine_for_url, ensure_schema, run_record, upsert_run
from movielens_emr.sizing.prices import HOURLY_PRICES_USD, PRICES_VARIABLE
from plugins import movielens_benchmarks as plugin
from plugins.movielens_benchmarks import find_similar, report_html, summary_blocks

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
PARAMS = {"node_count": 4, "target": "emr", "dataset": "ml-1m", "metric": "cosine", "min_score": 0.95,
          "min_co_ratings": 10, "instance_type": "m5.xlarge", "release_label": "emr-7.9.0",
          "sample_fraction": 1.0}
ADMIN_PASSWORD = "test-only-password"
WEIRD = 'Tom & Jerry: "The <Movie>" (1992)'


def neighbours_json(*titles):
    """top_neighbours.json of movies 1.. with the given titles, each the others' neighbour."""
    movies = {str(number): {"title": title, "neighbours": []} for number, title in enumerate(titles, start=1)}
    for movie_id, movie in movies.items():
        movie["neighbours"] = [{"movie_id": other_id, "title": other["title"], "score": 0.97, "co_raters": 12}
                               for other_id, other in movies.items() if other_id != movie_id]
    return json.dumps(movies)


def add_run(root, run_id, minutes, states=None, results=None, extra_metrics=None, **params):
    """A history row (and results, if given) of one run."""
    metrics = None if states else {"wall_seconds": 1868.0 + minutes, "stage_seconds": [120.0, 930.0, 600.0],
                                   "estimated_cost_usd": 0.4728, "output_pairs": 52, **(extra_metrics or {})}
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


def member(index, node_count, wall, stages, state="success", error=None):
    """A member run record of the benchmark DAG, as benchmark_tasks.report_benchmark receives it."""
    cluster = wall - 90
    metrics = {"wall_seconds": wall, "cluster_seconds": cluster, "provisioning_seconds": 430.0,
               "stage_seconds": stages, "overhead_seconds": 90.0, "node_minutes": node_count * cluster / 60,
               "estimated_cost_usd": round(node_count * cluster / 3600 * 0.24, 4)}
    return {"index": index, "run_id": f"benchmark__n{node_count}", "state": state,
            "conf": {"node_count": node_count, "sample_fraction": 1.0},
            "metrics": metrics if state == "success" else None, "error": error}


@pytest.fixture
def reports(storage_root):
    """An older report, and the newest written by the benchmark DAG's own report code."""
    write(storage_root / "benchmarks/old/summary.json", json.dumps({"note": "old"}), mtime=1_000_000)
    members = [member(0, 4, 1868.0, [120.0, 930.0, 240.0]), member(1, 8, 1082.0, [90.0, 480.0, 140.0]),
               member(2, 16, 0, [], state="failed", error="ValueError: <script>alert(1)</script> & more")]
    document = {"benchmark_run_id": "manual__bench", "host_cpus": 2, **summarize(members),
                "params": {"node_counts": [4, 8, 16], "dataset": "ml-1m", "target": "emr", "repetitions": 1,
                           "sample_fractions": [1.0], "parallel": False, "member_runs": "trigger"},
                "member_runs": members}
    for name, data in benchmark_report.report_files(document).items():
        write(storage_root / "benchmarks/manual__bench" / name, data)


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
    assert (body["summary"]["measured_members"], body["summary"]["failed_members"]) == (2, 1)
    assert body["report_markdown"].startswith("# movielens_similarity benchmark `manual__bench`")
    names = ["cost_vs_time.png", "time_breakdown.png", "time_vs_nodes.png"]
    assert body["plots"] == [{"name": name, "url": f"reports/manual__bench/plots/{name}"} for name in names]


def test_latest_report_json_without_a_report_is_404(client):
    response = client.get("/api/report/latest")
    assert response.status_code == 404 and "no benchmark report yet" in response.json()["detail"]


def test_page_shows_the_report_figures_plots_and_text(client, reports):
    html = client.get("/").text
    assert "benchmarks/manual__bench" in html
    assert "<td>params.node_counts</td><td>[4, 8, 16]</td>" in html.replace("\n", "")
    assert "<td>measured_members</td><td>2</td>" in html
    assert "Configurations (medians)" in html and "<td>success</td>" in html
    assert '<td class="num">1,868.0</td>' in html and '<td class="num">1.73</td>' in html
    assert '<figure><img src="reports/manual__bench/plots/time_vs_nodes.png"' in html
    # report.md's own image of the plot, and its member table with the failed run's error, escaped
    assert '<img src="reports/manual__bench/plots/cost_vs_time.png" alt="cost_vs_time.png"' in html
    assert "<h2>Member runs</h2>" in html
    assert "ValueError: &lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "<script>" not in html


def test_plot_png(client, reports, storage_root):
    response = client.get("/reports/manual__bench/plots/cost_vs_time.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content == (storage_root / "benchmarks/manual__bench/cost_vs_time.png").read_bytes()


@pytest.mark.parametrize("path, status", [
    ("/reports/manual__bench/plots/missing.png", 404),
    ("/reports/manual__bench/plots/summary.json", 422),
    ("/reports/.hidden/plots/cost_vs_time.png", 422),
    ("/reports/manual__bench/plots/..png", 422),
    ("/reports/manual__bench/plots/..%2F..%2Fhistory.sqlite", 404),
])
def test_plot_png_refuses_other_files(client, reports, path, status):
    assert client.get(path).status_code == status


@pytest.mark.parametrize("path", ["/", "/api/history", "/api/report/latest", "/api/similar?title=toy",
                                  "/reports/manual__bench/plots/cost_vs_time.png",
                                  "/docs", "/redoc", "/openapi.json"])
def test_requests_without_credentials_are_refused(storage_root, path):
    assert TestClient(plugin.app).get(path).status_code == 401


def test_the_api_docs_and_schema_answer_with_access(client):
    schema = client.get("/openapi.json").json()
    assert {"/api/history", "/api/report/latest", "/api/similar", "/"} <= set(schema["paths"])
    assert not {"/docs", "/redoc", "/openapi.json"} & set(schema["paths"])
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        assert response.status_code == 200 and "openapi.json" in response.text


# --- one bad file or database breaks only its own section --------------------------------------------------

def truncate(path, keep=40):
    path.write_bytes(path.read_bytes()[:keep])


def test_a_truncated_summary_json_breaks_only_the_report_figures(client, runs, reports, storage_root):
    truncate(storage_root / "benchmarks/manual__bench/summary.json")
    response = client.get("/", params={"title": "toy"})
    assert response.status_code == 200
    assert history_run_ids(response.text) == ["manual__new_failed", "manual__local", "manual__old_emr"]
    assert "3 titles contain “toy”" in response.text
    assert re.search(r'class="error">benchmarks/manual__bench/summary.json is not valid JSON \(40 bytes\)',
                     response.text)
    assert "<h2>Member runs</h2>" in response.text  # report.md and the plots are still shown
    assert '<figure><img src="reports/manual__bench/plots/time_vs_nodes.png"' in response.text
    report = client.get("/api/report/latest")
    assert report.status_code == 502
    assert report.json()["detail"].startswith("benchmarks/manual__bench/summary.json is not valid JSON")
    assert client.get("/api/history").status_code == 200
    assert client.get("/api/similar", params={"title": "toy"}).json()["total"] == 3


def test_a_report_md_that_is_not_utf8_breaks_only_the_report_text(client, runs, reports, storage_root):
    (storage_root / "benchmarks/manual__bench/report.md").write_bytes("# Durée\n".encode("latin-1"))
    response = client.get("/", params={"title": "toy"})
    assert response.status_code == 200
    assert "benchmarks/manual__bench/report.md is not UTF-8 text" in response.text
    assert "<td>measured_members</td><td>2</td>" in response.text  # summary.json is still shown
    assert "Full report (report.md)" not in response.text
    assert len(history_run_ids(response.text)) == 3 and "3 titles contain “toy”" in response.text
    report = client.get("/api/report/latest")
    assert report.status_code == 502 and "report.md is not UTF-8 text" in report.json()["detail"]


def test_a_summary_missing_fields_breaks_only_the_configurations_table(client, runs, reports, storage_root):
    path = storage_root / "benchmarks/manual__bench/summary.json"
    summary = json.loads(path.read_text())
    for configuration in summary["configurations"]:
        del configuration["measured"]
    path.write_text(json.dumps(summary))
    response = client.get("/", params={"title": "toy"})
    assert response.status_code == 200
    assert ("summary.json: configurations not as movielens_benchmark writes them "
            "(a configuration has no field &#39;measured&#39;)") in response.text
    assert "<td>measured_members</td><td>2</td>" in response.text and "<h2>Member runs</h2>" in response.text
    assert len(history_run_ids(response.text)) == 3 and "3 titles contain “toy”" in response.text
    assert client.get("/api/report/latest").json()["summary"]["configurations"] == summary["configurations"]


@pytest.mark.parametrize("damage, reason", [
    (lambda path: truncate(path), "is not valid JSON"),
    (lambda path: path.write_bytes(b'{"1": {"title": "Toy Story (1995)", "neighbours": [\xff]}}'),
     "is not valid JSON"),
    (lambda path: path.write_text('["Toy Story (1995)"]'), "not a mapping of movie ids to movies but a list"),
    (lambda path: path.write_text('{"1": {"title": "Toy Story (1995)"}}'),
     "movie 1 is not a title with a list of neighbours"),
], ids=["truncated", "not UTF-8", "a list", "without neighbours"])
def test_a_bad_top_neighbours_json_breaks_only_the_lookup(client, runs, reports, storage_root, damage,
                                                          reason):
    damage(storage_root / "runs/manual__local/results/top_neighbours.json")
    response = client.get("/", params={"title": "toy"})
    assert response.status_code == 200
    assert ('<p class="error">The lookup could not read the latest results: '
            "runs/manual__local/results/top_neighbours.json") in response.text and reason in response.text
    assert len(history_run_ids(response.text)) == 3 and "<h2>Member runs</h2>" in response.text
    similar = client.get("/api/similar", params={"title": "toy"})
    assert similar.status_code == 502 and reason in similar.json()["detail"]
    assert client.get("/api/report/latest").status_code == 200


def test_an_unreadable_history_database_breaks_only_the_history(client, runs, reports, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY", "postgresql://nobody@127.0.0.1:1/none")
    response = client.get("/", params={"title": "toy"})
    assert response.status_code == 200 and history_run_ids(response.text) == []
    assert "The run history database could not be read: " in response.text
    assert "<h2>Member runs</h2>" in response.text
    history = client.get("/api/history")
    assert history.status_code == 503
    assert history.json()["detail"].startswith("the run history database could not be read: ")


def test_a_section_that_fails_to_render_is_replaced_by_its_note(client, runs, reports, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no plots today")

    monkeypatch.setattr(plugin, "report_html", broken)
    response = client.get("/", params={"title": "toy"})
    assert response.status_code == 200
    assert "The latest benchmark report could not be read: RuntimeError: no plots today" in response.text
    assert len(history_run_ids(response.text)) == 3 and "3 titles contain “toy”" in response.text


def test_page_views_never_create_or_migrate_the_history(client, storage_root):
    assert "No runs recorded yet" in client.get("/").text
    assert client.get("/api/history").json() == {"runs": []}
    with engine_for_url(f"sqlite:///{storage_root / 'history.sqlite'}").connect() as connection:
        assert connection.exec_driver_sql("SELECT name FROM sqlite_master").all() == []


def test_the_page_reads_the_history_while_a_run_is_writing_it(client, runs, storage_root):
    writer = sqlite3.connect(storage_root / "history.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(f"DELETE FROM {TABLE_NAME}")  # not committed: readers still see every run
    try:
        assert len(history_run_ids(client.get("/").text)) == 3
        assert len(client.get("/api/history").json()["runs"]) == 3
    finally:
        writer.rollback()
        writer.close()


def test_find_similar_ranks_whole_titles_then_prefixes():
    movies = json.loads(neighbours_json("Heat (1995)", "Heatwave (2010)", "The Heat (2013)", "Cheats (2002)"))
    assert [match["title"] for match in find_similar(movies, " heat ")[1]] == [
        "Heat (1995)", "Heatwave (2010)", "Cheats (2002)", "The Heat (2013)"]
    assert find_similar(movies, "heat", limit=1)[0] == 4


def test_summary_blocks_of_any_document():
    blocks = summary_blocks({"dataset": "ml-1m", "params": {"nodes": [2, 4], "deep": {"x": 1}},
                             "plots": ["a.png"], "runs": [{"a": 1}, {"b": 2}], "nested": [{"a": {"b": 1}}],
                             "none_yet": []})
    assert blocks == [
        {"title": "Figures", "columns": ["figure", "value"],
         "rows": [("dataset", "ml-1m"), ("params.nodes", [2, 4])]},
        {"title": "runs", "columns": ["a", "b"], "rows": [[1, None], [None, 2]]},
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


def test_the_page_through_a_real_api_server(api_server, storage_root, price_variable):
    for path in ("/movielens/", "/movielens/docs", "/movielens/redoc", "/movielens/openapi.json"):
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
        plan = client.get("/movielens/api/plan", params={"dataset": "ml-1m", "budget_usd": 1}).json()
        assert (plan["price"]["usd_per_node_hour"], plan["price"]["source"]) == (price_variable, "variable")
        plugins = client.get("/api/v2/plugins").json()["plugins"]
    with httpx.Client(base_url=api_server, cookies={"_token": token}) as browser:
        assert browser.get("/movielens/").status_code == 200  # with the session cookie, as in the UI
    [view] = [view for entry in plugins for view in entry["external_views"]
              if view["url_route"] == "movielens-benchmarks"]
    assert (view["name"], view["href"]) == ("MovieLens benchmarks", "movielens/")


def add_sized_runs(root):
    """Six successful EMR runs of ml-1m with their pair work: enough for the sizing advisor."""
    for nodes in (2, 4, 8):
        for fraction in (0.5, 1.0):
            work = 4e9 * fraction
            add_run(root, f"sized-{nodes}-{fraction}", nodes, node_count=nodes, sample_fraction=fraction,
                    extra_metrics={"pair_work": work, "provisioning_seconds": 400.0,
                                   "cluster_seconds": 400.0 + 120 + 2e-7 * work / nodes + 4 * nodes})


def test_plan_json_recommends_a_node_count_for_a_deadline(client, storage_root):
    add_sized_runs(storage_root)
    plan = client.get("/api/plan", params={"dataset": "ml-1m", "deadline_minutes": 20}).json()
    assert plan["model"]["runs"] == 6
    assert plan["recommendation"]["cluster_seconds"] <= 1200
    assert len(plan["predictions"]) == plugin.PLAN_MAX_NODES


def test_plan_json_says_why_it_has_no_answer(client, storage_root):
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "deadline_minutes": 20})
    assert answer.status_code == 422
    assert "the model needs at least 4 successful runs" in answer.json()["detail"]


def test_page_plans_a_run_from_its_form(client, storage_root):
    add_sized_runs(storage_root)
    html = client.get("/", params={"plan_dataset": "ml-1m", "budget_usd": 1}).text
    assert "Recommended:" in html and 'class="chosen"' in html
    assert ("Prices: $0.24 per node-hour of m5.xlarge, from the built-in us-east-1 on-demand table "
            "(EC2 + EMR).") in html
    assert "No plan:" in client.get("/", params={"plan_dataset": "ml-25m", "budget_usd": 1}).text


def plan_costs_at(plan, usd_per_node_hour):
    return all(option["cost_usd"] == pytest.approx(
        option["node_count"] * option["cluster_seconds"] / 3600 * usd_per_node_hour, abs=1e-3)
        for option in plan["predictions"])


def test_plan_json_prices_as_the_pipeline_does(client, storage_root, monkeypatch):
    add_sized_runs(storage_root)
    built_in = client.get("/api/plan", params={"dataset": "ml-1m", "budget_usd": 1}).json()
    assert built_in["price"] == {
        "instance_type": "m5.xlarge", "usd_per_node_hour": HOURLY_PRICES_USD["m5.xlarge"],
        "source": "built-in", "description": "from the built-in us-east-1 on-demand table (EC2 + EMR)"}
    assert plan_costs_at(built_in, HOURLY_PRICES_USD["m5.xlarge"])
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": 0.5}')
    plan = client.get("/api/plan", params={"dataset": "ml-1m", "budget_usd": 1}).json()
    assert (plan["price"]["usd_per_node_hour"], plan["price"]["source"]) == (0.5, "variable")
    assert plan_costs_at(plan, 0.5) and plan["model"] == built_in["model"]


@pytest.fixture
def price_variable(airflow_db):
    """The Variable movielens_hourly_prices in the metadata database, as an admin sets it in the UI."""
    from airflow.models import Variable

    Variable.set(PRICES_VARIABLE, json.dumps({"m5.xlarge": 0.5}))
    yield 0.5
    Variable.delete(PRICES_VARIABLE)


def test_page_says_which_prices_its_plan_used(client, storage_root, price_variable):
    add_sized_runs(storage_root)
    html = client.get("/", params={"plan_dataset": "ml-1m", "budget_usd": 1}).text
    assert ("Prices: $0.5 per node-hour of m5.xlarge, from the Airflow Variable "
            "movielens_hourly_prices.") in html


def test_a_malformed_price_variable_is_said_not_guessed(client, storage_root, monkeypatch):
    add_sized_runs(storage_root)
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": "cheap"}')
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "budget_usd": 1})
    reason = "the Variable movielens_hourly_prices: m5.xlarge&#39;s price &#39;cheap&#39; is not a number"
    assert answer.status_code == 503 and answer.json()["detail"].startswith(reason.replace("&#39;", "'"))
    html = client.get("/", params={"plan_dataset": "ml-1m", "budget_usd": 1}).text
    assert f"No plan: {reason}" in html


def test_plan_json_refuses_a_bad_instance_type(client, storage_root):
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "instance_type": "huge\n", "budget_usd": 1})
    assert answer.status_code == 422 and "instance_type" in answer.json()["detail"]

"""The benchmarks page's web app: its page and JSON endpoints on a temporary storage root."""
import json
import re
import sqlite3

import pytest
from fastapi.testclient import TestClient

from movielens_emr.reporting.history import TABLE_NAME, engine_for_url
from movielens_emr.sizing.prices import HOURLY_PRICES_USD, PRICES_VARIABLE
from plugins.movielens_benchmarks import app as web
from plugins.movielens_benchmarks import planning, views

from tests.plugins.movielens_benchmarks.stored import (
    WEIRD,
    add_reports,
    add_run,
    add_runs,
    add_sized_runs,
    add_typed_runs,
    history_run_ids,
    neighbours_json,
    write,
)


@pytest.fixture
def client(storage_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    web.app.dependency_overrides[web.require_run_access] = lambda: None
    # Task logs are Airflow's: the tests of a failed run's reason (test_run_page.py) give their own.
    web.app.dependency_overrides[web.may_read_task_logs] = lambda: False
    yield TestClient(web.app)
    web.app.dependency_overrides.clear()


@pytest.fixture
def runs(storage_root):
    add_runs(storage_root)


@pytest.fixture
def reports(storage_root):
    add_reports(storage_root)


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
                                  "/api/plan?dataset=ml-1m", "/reports/manual__bench/plots/cost_vs_time.png",
                                  "/docs", "/redoc", "/openapi.json"])
def test_requests_without_credentials_are_refused(storage_root, path):
    assert TestClient(web.app).get(path).status_code == 401


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

    monkeypatch.setattr(views, "report_html", broken)
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


# --- the plan ------------------------------------------------------------------------------------------

def test_plan_json_recommends_a_node_count_for_a_deadline(client, storage_root):
    add_sized_runs(storage_root)
    query = {"dataset": "ml-1m", "target": "emr", "deadline_minutes": 20}
    plan = client.get("/api/plan", params=query).json()
    assert plan["model"]["runs"] == 6
    assert plan["recommendation"]["cluster_seconds"] <= 1200
    assert len(plan["predictions"]) == planning.PLAN_MAX_NODES


def test_plan_json_plans_across_types_with_spot_and_this_machine(client, storage_root):
    add_sized_runs(storage_root, "emr")
    add_sized_runs(storage_root, "local")
    add_typed_runs(storage_root)
    query = {"dataset": "ml-1m", "target": "emr", "deadline_minutes": 20}
    plan = client.get("/api/plan", params=query).json()
    across = plan["across_types"]
    assert set(across["types"]) == {"m5.xlarge", "c5.2xlarge", "r5.xlarge"}
    assert "spot" in {option["market"] for option in across["pareto"]}
    assert {option["spot_task_nodes"] for option in across["options"] if option["market"] == "spot"} == set(
        range(1, planning.PLAN_MAX_NODES - 1))
    assert across["recommendation"]["reason"].startswith(f"{across['recommendation']['node_count']} x ")
    assert plan["single_machine"]["run_id"] == "sized-local-8-1.0"
    page_query = {"plan_dataset": "ml-1m", "plan_target": "emr", "deadline_minutes": 20}
    html = client.get("/", params=page_query).text
    assert "Recommended across types: " in html and '<table class="plan pareto">' in html


def test_plan_json_says_why_it_has_no_answer_and_which_runs_would_let_it(client, storage_root):
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "target": "emr", "deadline_minutes": 20})
    assert answer.status_code == 422
    assert "the model needs at least 4 successful runs" in answer.json()["detail"]
    assert "Runs that would let it answer: 4 or more successful runs of movielens_similarity on emr of " \
           "m5.xlarge" in answer.json()["detail"]


@pytest.mark.parametrize("target", ["emr", "local"])
def test_plan_json_takes_empty_fields_as_absent(client, storage_root, target):
    add_sized_runs(storage_root, target)
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "target": target, "instance_type": "",
                                             "deadline_minutes": "", "budget_usd": ""})
    assert answer.status_code == 200
    plan = answer.json()
    assert (plan["target"], plan["instance_type"], plan["deadline_minutes"], plan["budget_usd"]) == (
        target, "m5.xlarge", None, None)
    assert plan["recommendation"] is None and len(plan["predictions"]) == planning.PLAN_MAX_NODES


def test_page_takes_empty_plan_fields_as_absent(client, storage_root):
    add_sized_runs(storage_root)
    response = client.get("/", params={"plan_dataset": "ml-1m", "plan_target": "emr",
                                       "plan_instance_type": "", "deadline_minutes": "", "budget_usd": ""})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "Fitted on 6 runs" in response.text and '<table class="plan">' in response.text
    assert "Recommended:" not in response.text
    assert 'name="plan_instance_type" value="m5.xlarge"' in response.text


def test_plan_json_plans_for_the_deployments_local_target_by_default(client, storage_root):
    add_sized_runs(storage_root, "emr")
    add_sized_runs(storage_root, "local")
    plan = client.get("/api/plan", params={"dataset": "ml-1m", "deadline_minutes": 20}).json()
    assert plan["target"] == "local" and plan["price"]["source"] == "local"


def test_plan_json_plans_for_emr_by_default_when_the_storage_root_is_on_s3(client, storage_root, monkeypatch):
    add_sized_runs(storage_root, "emr")
    add_sized_runs(storage_root, "local")
    # The history stays where the runs above wrote it; nothing of the storage root is read for a plan.
    monkeypatch.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY", f"sqlite:///{storage_root / 'history.sqlite'}")
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", "s3://movielens-test-bucket/movielens")
    plan = client.get("/api/plan", params={"dataset": "ml-1m", "deadline_minutes": 20}).json()
    assert plan["target"] == "emr" and plan["price"]["source"] == "built-in"


def test_page_plan_form_shows_the_deployments_target(client, storage_root):
    html = client.get("/").text
    assert '<option value="local" selected>local</option>' in html
    assert '<option value="emr" >emr</option>' in html


def test_page_says_in_the_page_which_runs_would_let_the_history_answer(client, storage_root):
    response = client.get("/", params={"plan_dataset": "ml-1m", "deadline_minutes": "", "budget_usd": ""})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert '<p class="empty needs-history">No plan yet: the run history cannot answer (0 usable runs' in \
           response.text
    assert ("Runs that would let it answer: 4 or more successful runs of movielens_similarity on local, "
            "at two or more node counts, one of them at least of ml-1m") in response.text


def test_page_names_the_dataset_the_history_lacks(client, storage_root):
    add_sized_runs(storage_root)
    html = client.get("/", params={"plan_dataset": "ml-25m", "plan_target": "emr", "budget_usd": 1}).text
    assert "the run history cannot answer (no successful run of ml-25m with a pair work count" in html
    assert "one of them at least of ml-25m" in html


@pytest.mark.parametrize("field, value, message", [
    ("deadline_minutes", "soon",
     "deadline_minutes must be a number of minutes, more than 0 and at most 10,080; got &#39;soon&#39;"),
    ("deadline_minutes", "0", "deadline_minutes must be a number of minutes"),
    ("deadline_minutes", "nan", "deadline_minutes must be a number of minutes"),
    ("budget_usd", "-1", "budget_usd must be a number of US dollars, more than 0 and at most 100,000; "
                         "got &#39;-1&#39;"),
    ("budget_usd", "1e9", "budget_usd must be a number of US dollars"),
])
def test_page_says_in_the_page_what_is_wrong_with_a_number(client, storage_root, field, value, message):
    add_sized_runs(storage_root)
    response = client.get("/", params={"plan_dataset": "ml-1m", "plan_target": "emr", field: value})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert f'<p class="error invalid">Not planned, a field to correct: {message}' in response.text
    assert f'name="{field}" value="{value}"' in response.text  # kept, to be corrected


@pytest.mark.parametrize("field, value", [("deadline_minutes", "soon"), ("budget_usd", "0")])
def test_plan_json_refuses_a_number_naming_it(client, storage_root, field, value):
    answer = client.get("/api/plan", params={"dataset": "ml-1m", field: value})
    assert answer.status_code == 422 and answer.json()["detail"].startswith(f"{field} must be a number")


def test_plan_json_refuses_an_unknown_target_or_dataset(client, storage_root):
    assert client.get("/api/plan", params={"dataset": "ml-1m", "target": "emr2"}).status_code == 422
    assert client.get("/api/plan", params={"dataset": "xml-1mx", "target": "emr"}).status_code == 422


def test_page_plans_a_run_from_its_form(client, storage_root):
    add_sized_runs(storage_root)
    html = client.get("/", params={"plan_dataset": "ml-1m", "plan_target": "emr", "budget_usd": 1}).text
    assert "Recommended:" in html and 'class="chosen"' in html
    assert ("Prices: $0.24 per node-hour of m5.xlarge, from the built-in us-east-1 on-demand table "
            "(EC2 + EMR).") in html


def test_page_says_when_no_node_count_meets_the_goal(client, storage_root):
    add_sized_runs(storage_root)
    html = client.get("/", params={"plan_dataset": "ml-1m", "plan_target": "emr", "deadline_minutes": 1}).text
    assert "No plan: no node count fits: the fastest" in html


def plan_costs_at(plan, usd_per_node_hour):
    return all(option["cost_usd"] == pytest.approx(
        option["node_count"] * option["cluster_seconds"] / 3600 * usd_per_node_hour, abs=1e-3)
        for option in plan["predictions"])


def test_plan_json_prices_as_the_pipeline_does(client, storage_root, monkeypatch):
    add_sized_runs(storage_root)
    query = {"dataset": "ml-1m", "target": "emr", "budget_usd": 1}
    built_in = client.get("/api/plan", params=query).json()
    assert built_in["price"] == {
        "instance_type": "m5.xlarge", "usd_per_node_hour": HOURLY_PRICES_USD["m5.xlarge"],
        "source": "built-in", "description": "from the built-in us-east-1 on-demand table (EC2 + EMR)"}
    assert plan_costs_at(built_in, HOURLY_PRICES_USD["m5.xlarge"])
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": 0.5}')
    plan = client.get("/api/plan", params=query).json()
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
    html = client.get("/", params={"plan_dataset": "ml-1m", "plan_target": "emr", "budget_usd": 1}).text
    assert ("Prices: $0.5 per node-hour of m5.xlarge, from the Airflow Variable "
            "movielens_hourly_prices.") in html


def test_a_malformed_price_variable_is_said_not_guessed(client, storage_root, monkeypatch):
    add_sized_runs(storage_root)
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": "cheap"}')
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "target": "emr", "budget_usd": 1})
    reason = "the Variable movielens_hourly_prices: m5.xlarge&#39;s price &#39;cheap&#39; is not a number"
    assert answer.status_code == 503 and answer.json()["detail"].startswith(reason.replace("&#39;", "'"))
    html = client.get("/", params={"plan_dataset": "ml-1m", "plan_target": "emr", "budget_usd": 1}).text
    assert f"No plan: {reason}" in html


def test_a_malformed_price_variable_does_not_matter_to_a_local_plan(client, storage_root, monkeypatch):
    add_sized_runs(storage_root, "local")
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": "cheap"}')
    assert client.get("/api/plan", params={"dataset": "ml-1m", "target": "local"}).status_code == 200


def test_plan_json_refuses_a_bad_instance_type(client, storage_root):
    answer = client.get("/api/plan", params={"dataset": "ml-1m", "instance_type": "huge\n", "budget_usd": 1})
    assert answer.status_code == 422 and "instance_type" in answer.json()["detail"]


def history_cells(html, run_id):
    """The text of each cell of the history row of run_id."""
    row = re.search(rf'<tr data-run-id="{re.escape(run_id)}">(.*?)</tr>', html, flags=re.S).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in cells]


def test_the_history_shows_each_runs_engine_and_its_recommendations_quality(client, storage_root):
    evaluation = {"recommenders": {
        "als": {"k": 10, "precision_at_k": 0.1134, "ndcg_at_k": 0.1509},
        "popularity": {"k": 10, "precision_at_k": 0.0715, "ndcg_at_k": 0.0905}}}
    add_run(storage_root, "manual__als", 5, target="local", engine="als",
            extra_metrics={"evaluation": evaluation})
    add_run(storage_root, "manual__similarity", 1, target="local")
    html = client.get("/").text
    assert history_cells(html, "manual__als")[-2:] == ["als", "0.1134 / 0.1509"]
    assert 'title="popularity: 0.0715 / 0.0905"' in html
    assert history_cells(html, "manual__similarity")[-2:] == ["similarity", "–"]

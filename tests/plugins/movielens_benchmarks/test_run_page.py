"""The run page and its files through the web app: what a run's extra link opens, and the history's links."""
import re
from html import unescape
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from movielens_emr.airflow.links import run_page_path
from plugins.movielens_benchmarks import app as web
from plugins.movielens_benchmarks import failures

from tests.plugins.movielens_benchmarks.stored import (
    BAD_LINES,
    FAILED,
    JOB_OUTPUT,
    LOCAL_METRICS,
    SIMILARITIES_CSV,
    WEIRD,
    add_local_run,
    add_run,
    add_run_folder,
    emr_failure_metrics,
    neighbours_json,
    task_log,
    write,
)

RUN_ID = "manual__2026-03-01T12:00:00.123456+00:00"
PAGE = f"/runs/{quote(RUN_ID, safe='')}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Airflow:
    """What Airflow's metadata database and task logs hold, as failures.py reads them."""

    def __init__(self):
        self.runs, self.logs = {}, {}

    def add(self, run_id, state="success", failed=(), conf=None):
        self.runs[run_id] = {"run_id": run_id, "state": state, "conf": conf or {}, "start_date": None,
                             "end_date": None, "failed_tasks": [(task_id, -1, 1) for task_id in failed]}


@pytest.fixture
def airflow(monkeypatch):
    known = Airflow()
    monkeypatch.setattr(failures, "airflow_run", known.runs.get)
    monkeypatch.setattr(failures, "read_task_log", lambda run_id, task_id, *_: known.logs[run_id, task_id])
    failures.task_log_account.cache_clear()
    yield known
    failures.task_log_account.cache_clear()


@pytest.fixture
def read_logs():
    """Whether the caller may read task logs: True unless a test says otherwise."""
    return {"allowed": True}


@pytest.fixture
def client(storage_root, airflow, read_logs, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    web.app.dependency_overrides[web.require_run_access] = lambda: None
    web.app.dependency_overrides[web.may_read_task_logs] = lambda: read_logs["allowed"]
    yield TestClient(web.app)
    web.app.dependency_overrides.clear()


def failed_local_run(root, airflow, run_id=RUN_ID):
    """A local run that failed on bad ratings: its folder claimed, no metrics, the job's traceback logged."""
    add_run_folder(root, run_id)
    airflow.add(run_id, "failed", failed=["run_local_job"],
                conf={"dataset": "ml-latest-small", "target": "local", "node_count": 1})
    airflow.logs[run_id, "run_local_job"] = task_log(*JOB_OUTPUT, error=FAILED)


def test_a_successful_runs_page(client, storage_root, airflow):
    add_local_run(storage_root, RUN_ID)
    airflow.add(RUN_ID)
    response = client.get(PAGE)
    html = response.text
    assert response.status_code == 200 and f"<h1>Run {RUN_ID}</h1>" in html
    assert 'class="badge success">success</span>' in html and "ml-100k on local, 2 nodes" in html
    assert f'<img src="{PAGE[6:]}/stages.png" alt="Stage times: 1. group ratings by user 1.7 s;' in html
    assert "3. both directions, titles and ranking: 1.8 s" in html
    assert f'<a href="{PAGE[6:]}/metrics.json" download>' in html
    assert f'<a href="{PAGE[6:]}/results/similarities.csv" download>similarities.csv</a>' in html
    assert re.findall(r"<h3>([^<]+) <span", html) == ["Toy Story (1995)", "Toy Story 2 (1999)", "Heat (1995)"]
    assert "Why it failed" not in html


def test_the_metrics_of_a_local_run_leave_out_what_only_a_cluster_has(client, storage_root, airflow):
    add_local_run(storage_root, RUN_ID)
    rows = dict(re.findall(r"<tr><td>([^<]+)</td><td>([^<]*)</td></tr>", client.get(PAGE).text))
    assert rows["stage_seconds[2]"] == "4.065" and rows["input_ratings"] == "100,000"
    assert rows["task_times[1]"].startswith("4 mapper tasks")
    assert not {"instance_type", "estimated_cost_usd", "provisioning_seconds", "cluster_id"} & set(rows)


def test_the_runs_title_lookup(client, storage_root, airflow):
    add_local_run(storage_root, RUN_ID, titles=("Toy Story (1995)", "Heat (1995)", WEIRD))
    html = client.get(PAGE, params={"title": "jerry"}).text
    assert re.findall(r"<h3>([^<]+) <span", html) == ["Tom &amp; Jerry: &#34;The &lt;Movie&gt;&#34; (1992)"]
    assert "1 title contains “jerry”" in html
    assert "No movie whose title contains “zzz”" in client.get(PAGE, params={"title": "zzz"}).text


def test_the_stage_chart(client, storage_root, airflow):
    add_local_run(storage_root, RUN_ID)
    response = client.get(f"{PAGE}/stages.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(PNG_SIGNATURE)


def test_no_stage_chart_without_stage_times(client, storage_root, airflow):
    add_run_folder(storage_root, RUN_ID, emr_failure_metrics(RUN_ID))
    assert client.get(f"{PAGE}/stages.png").status_code == 404


def test_downloads_are_the_stored_files(client, storage_root, airflow):
    folder = add_local_run(storage_root, RUN_ID)
    response = client.get(f"{PAGE}/results/similarities.csv")
    assert (response.status_code, response.text) == (200, SIMILARITIES_CSV)
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == 'attachment; filename="similarities.csv"'
    metrics = client.get(f"{PAGE}/metrics.json")
    assert metrics.content == (folder / "metrics.json").read_bytes()
    assert metrics.headers["content-type"] == "application/json"


def test_a_compressed_result_is_downloaded_as_gzip(client, storage_root, airflow):
    add_run_folder(storage_root, RUN_ID, LOCAL_METRICS, {"similarities.csv.gz": "\x1f\x8b..."})
    response = client.get(f"{PAGE}/results/similarities.csv.gz")
    assert response.status_code == 200 and response.headers["content-type"] == "application/gzip"


def test_a_local_run_failed_on_bad_data_says_the_jobs_reason(client, storage_root, airflow):
    failed_local_run(storage_root, airflow)
    html = client.get(PAGE).text
    assert f'<p class="headline">{BAD_LINES.replace(chr(39), "&#39;")}</p>' in html
    assert "Task <code>run_local_job</code> failed" in html and "raise TooManyBadLines(too_many)" in html
    assert "ml-latest-small on local, 1 node," in html
    assert "No neighbours: the run failed before its results were collected." in html


def test_a_failed_runs_logs_are_withheld_from_who_may_not_read_them(client, storage_root, airflow, read_logs):
    failed_local_run(storage_root, airflow)
    read_logs["allowed"] = False
    html = client.get(PAGE).text
    assert '<p class="headline">failed: run_local_job</p>' in html and "TooManyBadLines" not in html
    assert "you may not read this DAG's task logs" in html


def test_an_emr_run_failed_shows_its_diagnosis(client, storage_root, airflow):
    traceback = f'Traceback (most recent call last):\n  File "job.py", line 9, in r\n{BAD_LINES}'
    add_run_folder(storage_root, RUN_ID, emr_failure_metrics(RUN_ID, traceback))
    airflow.add(RUN_ID, "failed", failed=["wait_for_stages"])
    airflow.logs[RUN_ID, "wait_for_stages"] = task_log(error={"exc_type": "StagesFailedError",
                                                              "exc_value": "stage 2 of 3 ended FAILED"})
    html = client.get(PAGE).text
    assert f'<p class="headline">{BAD_LINES.replace(chr(39), "&#39;")}</p>' in html
    assert '<p class="stage">Stage 2: NonZeroExitCode; Step failed with exit code 1</p>' in html
    assert "The failed task's own error" in html and "StagesFailedError: stage 2 of 3 ended FAILED" in html
    assert 'The full diagnosis (metrics.json, "failure")' in html
    assert "ml-100k on emr, 2 nodes" in html


def test_a_run_of_another_engine_shows_its_metrics_and_files_but_no_neighbours(client, storage_root,
                                                                                airflow):
    metrics = {**LOCAL_METRICS, "engine": "rating_counts", "stage_seconds": [2.5]}
    add_run_folder(storage_root, RUN_ID, metrics, {"rating_counts.csv": "movie_id,ratings\n1,5\n"})
    response = client.get(PAGE)
    assert response.status_code == 200
    assert "stage 1: 2.5 s" in response.text and "rating_counts.csv" in response.text
    assert "No neighbours: the engine rating_counts computed this run" in response.text
    assert client.get(f"{PAGE}/stages.png").content.startswith(PNG_SIGNATURE)


def test_a_run_in_progress(client, airflow):
    airflow.add(RUN_ID, "running")
    html = client.get(PAGE).text
    assert "Nothing of this run is stored yet" in html
    assert "No stage times: <code>record_metrics</code> writes them" in html


def test_an_unknown_run_is_404(client):
    response = client.get(PAGE)
    assert response.status_code == 404 and "Airflow has none, and nothing of it is stored" in response.text
    assert client.get(f"/api{PAGE}").status_code == 404
    assert client.get(f"{PAGE}/metrics.json").status_code == 404


def test_the_run_json(client, storage_root, airflow):
    failed_local_run(storage_root, airflow)
    body = client.get(f"/api{PAGE}").json()
    assert (body["run_id"], body["airflow"]["state"], body["metrics"]) == (RUN_ID, "failed", None)
    assert body["failure"]["headline"] == BAD_LINES


@pytest.mark.parametrize("path, status", [
    ("/runs/%2E%2E", 422), ("/runs/.hidden", 422), ("/runs/a%20b", 422), (f"/runs/{'x' * 251}", 422),
    ("/runs/..%2Fhistory.sqlite", 404), (f"{PAGE}/results/..%2Fmetrics.json", 404),
    (f"{PAGE}/results/.similarities.csv", 422), (f"{PAGE}/results/missing.csv", 404),
])
def test_names_that_are_not_a_runs_files_are_refused(client, storage_root, airflow, path, status):
    add_local_run(storage_root, RUN_ID)
    assert client.get(path).status_code == status


def test_a_link_out_of_the_storage_root_is_not_served(client, storage_root, airflow, tmp_path):
    folder = add_local_run(storage_root, RUN_ID)
    (tmp_path / "secret.txt").write_text("secret")
    (folder / "results" / "leak.csv").symlink_to(tmp_path / "secret.txt")
    response = client.get(f"{PAGE}/results/leak.csv")
    assert response.status_code == 422 and "secret" not in response.text.replace("secret.txt", "")


def test_a_folder_of_another_run_is_not_shown_as_this_ones(client, storage_root, airflow):
    add_run_folder(storage_root, RUN_ID, LOCAL_METRICS, {"similarities.csv": "theirs"}, owner="manual__other")
    assert "belongs to run &#39;manual__other&#39;" in client.get(PAGE).text
    assert client.get(f"{PAGE}/results/similarities.csv").status_code == 404


def test_the_extra_links_path_opens_this_page_under_the_ui(client, storage_root, airflow):
    """The link is relative to the UI's base URL, where the plugin mounts the app."""
    add_local_run(storage_root, RUN_ID)
    ui = FastAPI()
    ui.mount(web.URL_PREFIX, web.app)
    response = TestClient(ui).get("/" + run_page_path(RUN_ID))
    assert response.status_code == 200 and f"<h1>Run {RUN_ID}</h1>" in response.text


# --- the history table -------------------------------------------------------------------------------------

def history_cells(html):
    """{run id: (its page link, the reason shown)} of the history table."""
    rows = re.findall(r'<tr data-run-id="([^"]+)">(.*?)</tr>', html, re.S)
    return {run_id: (re.search(r'<a href="([^"]+)">', row)[1],
                     (re.search(r'<div class="reason" title="[^"]*">([^<]*)</div>', row) or [None, None])[1])
            for run_id, row in rows}


def test_the_history_links_each_run_to_its_page_and_says_why_one_failed(client, storage_root, airflow):
    add_run(storage_root, "manual__ok", 0, target="local")
    add_run(storage_root, "manual__emr_failed", 10, states={"wait_for_stages": "failed"})
    add_run_folder(storage_root, "manual__emr_failed", emr_failure_metrics("manual__emr_failed"))
    add_run(storage_root, RUN_ID, 20, states={"run_local_job": "failed"}, target="local")
    failed_local_run(storage_root, airflow)
    cells = history_cells(client.get("/").text)
    assert cells == {
        RUN_ID: (PAGE[1:], BAD_LINES.replace("'", "&#39;")),
        "manual__emr_failed": ("runs/manual__emr_failed",
                               "stage 2: NonZeroExitCode; Step failed with exit code 1"),
        "manual__ok": ("runs/manual__ok", None)}


def test_the_history_says_no_log_reason_to_who_may_not_read_logs(client, storage_root, airflow, read_logs):
    add_run(storage_root, RUN_ID, 20, states={"run_local_job": "failed"}, target="local")
    failed_local_run(storage_root, airflow)
    read_logs["allowed"] = False
    html = client.get("/").text
    assert history_cells(html)[RUN_ID] == (PAGE[1:], None) and "TooManyBadLines" not in html
    assert '<div class="failed-tasks">run_local_job</div>' in html


def test_a_long_reason_is_cut_in_the_table_and_whole_in_its_tooltip(client, storage_root, airflow):
    add_run(storage_root, RUN_ID, 20, states={"run_local_job": "failed"}, target="local")
    failed_local_run(storage_root, airflow)
    airflow.logs[RUN_ID, "run_local_job"] = task_log(error={"exc_type": "ValueError", "exc_value": "x" * 400})
    html = client.get("/").text
    [(title, shown)] = re.findall(r'<div class="reason" title="([^"]*)">([^<]*)</div>', html)
    assert title == "ValueError: " + "x" * 400 and len(shown) == 160 and shown.endswith("...")


def test_a_history_row_whose_reason_cannot_be_read_keeps_its_failed_tasks(client, storage_root, airflow):
    add_run(storage_root, RUN_ID, 20, states={"run_local_job": "failed"}, target="local")
    folder = add_run_folder(storage_root, RUN_ID)
    write(folder / "metrics.json", '{"run_id": "cut sh')
    html = client.get("/").text
    assert history_cells(html)[RUN_ID] == (PAGE[1:], None)
    assert '<div class="failed-tasks">run_local_job</div>' in html


# --- an EMR deployment: the storage root on S3 -------------------------------------------------------------

def test_an_emr_runs_page_and_downloads_from_s3(client, airflow, monkeypatch, tmp_path):
    """The same page, chart and files, read from S3 (moto) as on a deployment whose runs go to EMR."""
    import boto3
    from moto import mock_aws

    bucket, prefix = "movielens-run-page", "movielens"
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", f"s3://{bucket}/{prefix}")
    metrics = {**LOCAL_METRICS, "target": "emr", "cluster_id": "j-1", "estimated_cost_usd": 0.0123}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=bucket)
        folder = add_run_folder(tmp_path, RUN_ID, metrics, {
            "similarities.csv": SIMILARITIES_CSV, "top_neighbours.json": neighbours_json("Heat (1995)")})
        for path in filter(Path.is_file, folder.rglob("*")):
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(tmp_path)}", Body=path.read_bytes())
        html = client.get(PAGE).text
        assert f"s3://{bucket}/{prefix}/{folder.relative_to(tmp_path)}" in html and "ml-100k on emr" in html
        assert "<tr><td>estimated_cost_usd</td><td>0.0123</td></tr>" in html  # a cluster's figures are kept
        assert re.findall(r"<h3>([^<]+) <span", html) == ["Heat (1995)"]
        assert client.get(f"{PAGE}/stages.png").content.startswith(PNG_SIGNATURE)
        download = client.get(f"{PAGE}/results/similarities.csv")
        assert download.text == SIMILARITIES_CSV
        assert download.headers["content-disposition"] == 'attachment; filename="similarities.csv"'
        assert client.get(f"{PAGE}/results/..%2Fmetrics.json").status_code == 404


def emr_run_metrics(cluster_seconds):
    """metrics.json of a successful EMR run of ml-1m on 4 nodes."""
    return {**LOCAL_METRICS, "target": "emr", "dataset": "ml-1m", "node_count": 4, "cluster_id": "j-1",
            "cluster_seconds": cluster_seconds, "provisioning_seconds": 400.0}


def single_machine_line(html):
    found = re.search(r'<p class="single-machine">([^<]*)</p>', html)
    return found and unescape(found.group(1))


def test_a_cluster_runs_page_sets_a_single_machines_measured_time_beside_its_own(client, storage_root,
                                                                                 airflow):
    add_run_folder(storage_root, RUN_ID, emr_run_metrics(1800.0))
    airflow.add(RUN_ID)
    for run_id, seconds in (("local-slow", 95.0), ("local-fast", 60.0)):
        add_run(storage_root, run_id, 5, target="local", dataset="ml-1m", node_count=2,
                extra_metrics={"cluster_seconds": seconds})
    add_run(storage_root, "local-other-dataset", 5, target="local", dataset="ml-100k", node_count=2,
            extra_metrics={"cluster_seconds": 5.0})
    line = single_machine_line(client.get(PAGE).text)
    assert line == ("Against a single machine: a single machine (this one, 2 parallel tasks) takes 60 s, "
                    "measured by run local-fast; this cluster took 30.0 min from its creation to its end: "
                    "the single machine is 30.0x faster than this cluster.")


def test_a_cluster_faster_than_the_single_machine_says_so(client, storage_root, airflow):
    add_run_folder(storage_root, RUN_ID, emr_run_metrics(600.0))
    airflow.add(RUN_ID)
    add_run(storage_root, "local-ml-1m", 5, target="local", dataset="ml-1m", node_count=2,
            extra_metrics={"cluster_seconds": 1500.0})
    assert single_machine_line(client.get(PAGE).text).endswith(
        "this cluster took 10.0 min from its creation to its end: this cluster is 2.5x faster than the "
        "single machine.")


def test_a_cluster_runs_page_without_a_single_machines_time_says_what_would_give_one(client, storage_root,
                                                                                     airflow):
    add_run_folder(storage_root, RUN_ID, emr_run_metrics(1800.0))
    airflow.add(RUN_ID)
    add_run(storage_root, "local-other-sample", 5, target="local", dataset="ml-1m", node_count=2,
            sample_fraction=0.5, extra_metrics={"cluster_seconds": 40.0})
    assert single_machine_line(client.get(PAGE).text).startswith(
        "No single machine's time for ml-1m at sample fraction 1 to compare with")


def test_a_local_runs_page_has_no_single_machine_line(client, storage_root, airflow):
    add_local_run(storage_root, RUN_ID)
    airflow.add(RUN_ID)
    add_run(storage_root, "local-ml-100k", 5, target="local", dataset="ml-100k", node_count=2,
            extra_metrics={"cluster_seconds": 5.0})
    assert single_machine_line(client.get(PAGE).text) is None

"""What the page reads, written as the pipeline writes it: history rows, results and benchmark reports."""
import datetime
import json
import os
import re

from airflow.utils.log.file_task_handler import StructuredLogMessage

from movielens_emr.data.storage import run_folder
from movielens_emr.reporting import benchmark_report
from movielens_emr.reporting.benchmark import summarize
from movielens_emr.reporting.history import engine_for_url, ensure_schema, run_record, upsert_run

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
PARAMS = {"node_count": 4, "target": "emr", "dataset": "ml-1m", "metric": "cosine", "min_score": 0.95,
          "min_co_ratings": 10, "instance_type": "m5.xlarge", "release_label": "emr-7.9.0",
          "sample_fraction": 1.0}
WEIRD = 'Tom & Jerry: "The <Movie>" (1992)'


def neighbours_json(*titles):
    """top_neighbours.json of movies 1.. with the given titles, each the others' neighbour."""
    movies = {str(number): {"title": title, "neighbours": []} for number, title in enumerate(titles, start=1)}
    for movie_id, movie in movies.items():
        movie["neighbours"] = [{"movie_id": other_id, "title": other["title"], "score": 0.97, "co_raters": 12}
                               for other_id, other in movies.items() if other_id != movie_id]
    return json.dumps(movies)


def write(path, data, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    if mtime:
        os.utime(path, (mtime, mtime))


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


def add_runs(root):
    """Three runs, newest first: a failed local one, a successful local one, a successful EMR one."""
    add_run(root, "manual__old_emr", 0, results=neighbours_json("Toy Story (1995)", "Heat (1995)"))
    add_run(root, "manual__local", 30, target="local", dataset="ml-100k", node_count=2,
            results=neighbours_json("Toy Story (1995)", "Toy Story 2 (1999)", "Babe (1995)", "Toys (1992)",
                                    WEIRD))
    add_run(root, "manual__new_failed", 60, states={"run_local_job": "failed"}, target="local",
            results=neighbours_json("Stale (2000)"))


def add_sized_runs(root, target="emr"):
    """Six successful runs of ml-1m on `target` with their pair work: enough for the sizing advisor."""
    for nodes in (2, 4, 8):
        for fraction in (0.5, 1.0):
            work = 4e9 * fraction
            add_run(root, f"sized-{target}-{nodes}-{fraction}", nodes, target=target, node_count=nodes,
                    sample_fraction=fraction,
                    extra_metrics={"pair_work": work, "provisioning_seconds": 400.0,
                                   "cluster_seconds": 400.0 + 120 + 2e-7 * work / nodes + 4 * nodes})


def add_typed_runs(root):
    """One sample run on 4 nodes each of c5.2xlarge and r5.xlarge on EMR, 0.6 and 0.9 times add_sized_runs'
    time for the same work: enough to plan them against m5.xlarge by a speed factor."""
    for instance_type, speed in (("c5.2xlarge", 0.6), ("r5.xlarge", 0.9)):
        work = 4e9 * 0.5
        add_run(root, f"typed-{instance_type}", 10, target="emr", node_count=4, sample_fraction=0.5,
                instance_type=instance_type,
                extra_metrics={"pair_work": work, "provisioning_seconds": 400.0,
                               "cluster_seconds": 400.0 + speed * (120 + 2e-7 * work / 4 + 4 * 4)})


def member(index, node_count, wall, stages, state="success", error=None):
    """A member run record of the benchmark DAG, as benchmark_tasks.report_benchmark receives it."""
    cluster = wall - 90
    metrics = {"wall_seconds": wall, "cluster_seconds": cluster, "provisioning_seconds": 430.0,
               "stage_seconds": stages, "overhead_seconds": 90.0, "node_minutes": node_count * cluster / 60,
               "estimated_cost_usd": round(node_count * cluster / 3600 * 0.24, 4)}
    return {"index": index, "run_id": f"benchmark__n{node_count}", "state": state,
            "conf": {"node_count": node_count, "sample_fraction": 1.0},
            "metrics": metrics if state == "success" else None, "error": error}


def add_reports(root):
    """An older report, and the newest (benchmarks/manual__bench) written by the benchmark DAG's own code."""
    write(root / "benchmarks/old/summary.json", json.dumps({"note": "old"}), mtime=1_000_000)
    members = [member(0, 4, 1868.0, [120.0, 930.0, 240.0]), member(1, 8, 1082.0, [90.0, 480.0, 140.0]),
               member(2, 16, 0, [], state="failed", error="ValueError: <script>alert(1)</script> & more")]
    document = {"benchmark_run_id": "manual__bench", "host_cpus": 2, **summarize(members),
                "params": {"node_counts": [4, 8, 16], "dataset": "ml-1m", "target": "emr", "repetitions": 1,
                           "sample_fractions": [1.0], "parallel": False, "member_runs": "trigger"},
                "member_runs": members}
    for name, data in benchmark_report.report_files(document).items():
        write(root / "benchmarks/manual__bench" / name, data)


def history_run_ids(html):
    return re.findall(r'<tr data-run-id="([^"]+)">', html)


# --- one run's folder, as the pipeline's tasks write it ----------------------------------------------------

LOCAL_METRICS = {
    "node_count": 2, "target": "local", "dataset": "ml-100k", "metric": "cosine", "min_score": 0.95,
    "min_co_ratings": 10, "instance_type": "m5.xlarge", "release_label": "emr-7.9.0", "sample_fraction": 1.0,
    "security_configuration": "", "deadline_minutes": None, "budget_usd": None, "advice": None,
    "engine": "similarity", "cluster_id": None, "cluster_security_configuration": None,
    "wall_seconds": 19.386, "cluster_seconds": 7.604, "provisioning_seconds": 0.0,
    "stage_seconds": [1.734, 4.065, 1.805], "overhead_seconds": 11.782, "node_minutes": 0.253,
    "price_per_node_hour_usd": 0.0, "estimated_cost_usd": 0.0, "input_ratings": 100000, "bad_lines": 0,
    "counters_read_from": None, "counters_missing_stages": [], "output_pairs": 154800, "pair_work": 20200812,
    "task_times": {"source": "local task times", "missing": None, "read_from": None, "stages": [
        {"mapper": {"tasks": 4, "total_seconds": 1.656, "max_seconds": 0.455},
         "reducer": {"tasks": 4, "total_seconds": 1.639, "max_seconds": 0.5}}] * 3}}
SIMILARITIES_CSV = ("movie_id,movie_title,similar_movie_id,similar_movie_title,score,co_raters\n"
                    "1,Toy Story (1995),2,Toy Story 2 (1999),0.97,12\n")


def add_run_folder(root, run_id, metrics=None, results=None, owner=None):
    """runs/<folder> of a run: its owner marker (`owner`, the run id itself unless given), metrics.json
    ({"run_id", **metrics}) and results/ ({name: text}), each only if given."""
    folder = root / run_folder(run_id)
    write(folder / "_RUN_ID", owner or run_id)
    if metrics is not None:
        write(folder / "metrics.json", json.dumps({"run_id": run_id, **metrics}, indent=1))
    for name, data in (results or {}).items():
        write(folder / "results" / name, data)
    return folder


def add_local_run(root, run_id, titles=("Toy Story (1995)", "Toy Story 2 (1999)", "Heat (1995)")):
    """A successful local ml-100k run: metrics.json, similarities.csv and top_neighbours.json."""
    return add_run_folder(root, run_id, LOCAL_METRICS, {"similarities.csv": SIMILARITIES_CSV,
                                                        "top_neighbours.json": neighbours_json(*titles)})


def emr_failure_metrics(run_id, task_traceback=None):
    """metrics.json of an EMR run whose stage 2 failed, as diagnose_failure writes it."""
    from movielens_emr.emr.diagnosis import failure_record, stage_failure_report
    from movielens_emr.reporting.metrics import failed_run_metrics

    def step(number, state, **status):
        return {"Name": f"stage {number} of 3: {run_id}", "Status": {"State": state, **status}}

    steps = [step(1, "COMPLETED"), step(2, "FAILED", FailureDetails={
        "Reason": "NonZeroExitCode", "Message": "Step failed with exit code 1"}), step(3, "CANCELLED")]
    logs = "s3://bucket/runs/x/logs/j-1/steps/s-2/"
    report = stage_failure_report(steps, "Streaming Command Failed!", logs, task_traceback=task_traceback,
                                  container_log_location="s3://bucket/runs/x/logs/j-1/containers/")
    config = {name: value for name, value in LOCAL_METRICS.items() if name in PARAMS} | {"target": "emr"}
    return failed_run_metrics(run_id, config, "j-1", failure_record(steps, ["s-1", "s-2", "s-3"], None,
                                                                    report))


# --- a failed task's log, as Airflow's log reader returns it ---------------------------------------------

BAD_LINES = "TooManyBadLines: 30 of 50 ratings lines in file:///x/ratings.csv are bad; e.g. '0;1;4.0'"
# What the local runner logs of a job that refused its input: each line of the job's output behind "job: ".
JOB_OUTPUT = ["job: Traceback (most recent call last):",
              'job:   File "movie_similarities.py", line 277, in reducer_group_by_user',
              "job:     raise TooManyBadLines(too_many)",
              f"job: {BAD_LINES}",
              "job: multiprocessing.pool.RemoteTraceback: ",
              'job: """']
FAILED = {"exc_type": "LocalJobFailed", "is_cause": False, "frames": [
    {"filename": "/repo/include/movielens_emr/local/runner.py", "lineno": 72, "name": "run_local_job"}],
    "exc_value": "the job's process exited with code 1; its last lines:\n" + "\n".join(
        line.removeprefix("job: ") for line in JOB_OUTPUT)}


def task_log(*events, error=None):
    """A failed task's log as TaskLogReader.read_log_chunks returns it."""
    messages = [StructuredLogMessage(event="::group::Log message source details"),
                StructuredLogMessage(event="::endgroup::")]
    messages += [StructuredLogMessage(event=event, level="info") for event in events]
    if error:
        messages.append(StructuredLogMessage(event="Task failed with exception", level="error",
                                             error_detail=[error]))
    return messages

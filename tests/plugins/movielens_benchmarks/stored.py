"""What the page reads, written as the pipeline writes it: history rows, results and benchmark reports."""
import datetime
import json
import os
import re

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

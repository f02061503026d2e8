"""The run page: one run's metrics, stage times, first neighbours and result files, or why it failed; each
part that cannot be read says why in its place, the others still shown."""
import logging
from urllib.parse import quote

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.targets import LOCAL, target_named
from movielens_emr.engine.registry import UnknownEngine, engine_named
from movielens_emr.engine.similarity.results import id_order
from movielens_emr.reporting.metrics import CLUSTER_FIELDS, FAILURE_KEY, SUMMARISED, is_summarised
from movielens_emr.reporting.plots import new_figure, png_bytes
from movielens_emr.sizing.durations import duration
from movielens_emr.sizing.single_machine import baseline_phrase, single_machine

from . import failures, runs, sources, views
from .sources import is_scalar

log = logging.getLogger(__name__)
FIRST_MOVIES = 10
SETTINGS = ("dataset", "target", "node_count", "engine", "metric", "sample_fraction")
BAR_COLOUR = "#017cee"
# This machine's runs read for the single-machine line: far more than one deployment's history holds.
LOCAL_HISTORY_ROWS = 10_000


# --- what the page shows -----------------------------------------------------------------------------------

def run_record(storage, run_id, read_logs):
    """The run as plain data: `airflow` (its state and failed tasks, None when Airflow has no such run),
    `folder` (None while nothing of it is stored), `metrics`, `files` (results/), `failure` (failures.account)
    and `problems`, what could not be read and why. UnsafeName for a run id that names no folder."""
    runs.folder_of(run_id)
    record = {"run_id": run_id, "airflow": None, "folder": None, "metrics": None, "files": [],
              "failure": None, "problems": []}
    record["airflow"] = attempt(record, "Airflow's record of the run", lambda: failures.airflow_run(run_id))
    folder = record["folder"] = attempt(record, "its folder", lambda: runs.owned_folder(storage, run_id))
    if folder:
        record["metrics"] = attempt(record, "metrics.json", lambda: runs.read_metrics(storage, folder))
        record["files"] = attempt(record, "results/", lambda: runs.result_files(storage, folder)) or []
    record["failure"] = attempt(record, "why the run failed",
                                lambda: failures.account(record["metrics"], record["airflow"], read_logs))
    return record


def is_known(record):
    """Whether the run exists: Airflow has it, or its folder holds something."""
    return record["airflow"] is not None or record["folder"] is not None


def attempt(record, what, read):
    """read()'s value, or None with the reason added to record["problems"]."""
    try:
        return read()
    except Exception as error:  # whatever broke, the rest of the page is still shown
        log.warning("MovieLens run page: %s could not be read", what, exc_info=True)
        record["problems"].append(f"{what} could not be read: {views.describe(error)}")
        return None


def page(storage, run_id, title, read_logs):
    """(the page's HTML, its HTTP status: 404 when neither Airflow nor the storage root knows the run)."""
    record = run_record(storage, run_id, read_logs)
    metrics = record["metrics"] or {}
    neighbours = attempt(record, "top_neighbours.json", lambda: neighbours_view(storage, record, title))
    baseline = attempt(record, "this machine's time for the same input",
                       lambda: against_this_machine(metrics, sources.history))
    html = views.templates.get_template("run.html").render(
        run=record, dag_id=views.sources.DAG_ID, settings=run_settings(record), rows=metric_rows(metrics),
        stages=stage_times(metrics), neighbours=neighbours, single_machine=baseline, title=title,
        quoted=quote(run_id, safe=""),
        default_engine=DEFAULT_ENGINE, storage_root=storage.uri(""), runs_uri=storage.uri("runs"),
        folder_uri=storage.uri(record["folder"]) if record["folder"] else None)
    return html, 200 if is_known(record) else 404


def run_settings(record):
    """What the run was asked to do (dataset, target, nodes, engine): its metrics.json's, else its conf's."""
    given = {**((record["airflow"] or {}).get("conf") or {}), **(record["metrics"] or {})}
    return {"engine": DEFAULT_ENGINE,
            **{name: given[name] for name in SETTINGS if given.get(name) is not None}}


def neighbours_view(storage, record, title):
    """The movies to show: those whose title holds `title`, or the first FIRST_MOVIES by id; None when the
    run has no neighbours (not written yet, or another engine's run)."""
    if not record["folder"] or runs.records_failure(record["metrics"]):
        return None
    movies = runs.neighbours(storage, record["folder"], record["metrics"])
    if movies is None:
        return None
    if title:
        total, shown = views.find_similar(movies, title, limit=FIRST_MOVIES)
    else:
        first = sorted(movies, key=id_order)[:FIRST_MOVIES]
        total, shown = len(movies), [{"movie_id": movie_id, **movies[movie_id]} for movie_id in first]
    return {"movies": shown, "total": total, "count": len(movies)}


def metric_rows(metrics):
    """(name, value) rows of metrics.json as the task log's table has them (reporting.metrics.metrics_table):
    a run on this machine's without a cluster's figures, task times and the one-run prediction summarised,
    a list a row per item; the failure is shown on its own."""
    rows = []
    for name, value in metrics.items():
        if name == FAILURE_KEY or (name in CLUSTER_FIELDS and not _on_a_cluster(metrics)):
            continue
        if is_summarised(name, value):
            rows += SUMMARISED[name](value)
        elif isinstance(value, list) and value and all(map(is_scalar, value)):
            rows += [(f"{name}[{number}]", item) for number, item in enumerate(value, start=1)]
        else:
            rows.append((name, value))
    return rows


def against_this_machine(metrics, history):
    """For a successful cluster run, this machine's time for the same dataset, sample fraction and engine (the
    COST baseline: sizing.single_machine, measured by a local run or predicted by the local model) beside the
    run's cluster time: {"baseline", "text"}, a sentence saying which is faster and by how much, or why
    there is no baseline; None for a run on this machine, a failed run, or one without its cluster time."""
    cluster_seconds = metrics.get("cluster_seconds")
    if (not metrics or runs.records_failure(metrics) or not _on_a_cluster(metrics)
            or not _is_seconds(cluster_seconds) or not cluster_seconds):
        return None
    dataset, fraction = metrics.get("dataset"), metrics.get("sample_fraction") or 1.0
    rows = history(target=LOCAL.name, outcome="success", limit=LOCAL_HISTORY_ROWS)
    baseline = single_machine(rows, dataset, fraction, metrics.get("engine") or DEFAULT_ENGINE)
    if baseline is None:
        return {"baseline": None,
                "text": f"No single machine's time for {dataset} at sample fraction {fraction:g} to compare "
                        "with: the history has no successful local run of it, nor enough local runs for the "
                        "local time model. A local run of the same input gives one."}
    ratio = cluster_seconds / baseline["seconds"]
    verdict = (f"the single machine is {ratio:.1f}x faster than this cluster" if ratio > 1
               else f"this cluster is {1 / ratio:.1f}x faster than the single machine")
    return {"baseline": baseline,
            "text": f"Against a single machine: {baseline_phrase(baseline)}; this cluster took "
                    f"{duration(cluster_seconds)} from its creation to its end: {verdict}."}


def _on_a_cluster(metrics):
    try:
        return target_named(metrics.get("target")).cluster
    except ValueError:  # no target, or one this deployment does not know: show everything
        return True


# --- the stage chart ---------------------------------------------------------------------------------------

def stage_times(metrics):
    """[(stage's label, seconds)] of metrics.json's stage_seconds, named by the run's engine; [] without
    them."""
    seconds = metrics.get("stage_seconds")
    if not isinstance(seconds, list) or not seconds or not all(_is_seconds(value) for value in seconds):
        return []
    names = stage_names(metrics.get("engine", DEFAULT_ENGINE), len(seconds))
    return [(f"{number}. {name}" if name else f"stage {number}", float(value))
            for number, (name, value) in enumerate(zip(names, seconds, strict=True), start=1)]


def _is_seconds(value):
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def stage_names(engine, count):
    """The engine's stage names, or blanks when this deployment does not have the engine registered or its
    stages differ in number from the run's."""
    try:
        names = tuple(engine_named(engine).stage_names)
    except UnknownEngine:
        names = ()
    return names if len(names) == count else ("",) * count


def stage_chart_png(run_id, metrics):
    """A horizontal bar a stage, its seconds beside it; None without stage times."""
    times = stage_times(metrics)
    if not times:
        return None
    figure, axes = new_figure(8, 1.2 + 0.55 * len(times))
    bars = axes.barh(range(len(times)), [seconds for _, seconds in times], color=BAR_COLOUR)
    axes.set_yticks(range(len(times)), [label for label, _ in times])
    axes.invert_yaxis()  # stage 1 on top
    axes.bar_label(bars, labels=[f"{seconds:,.1f} s" for _, seconds in times], padding=4)
    axes.set_xlabel("seconds")
    axes.margins(x=0.18)
    total = sum(seconds for _, seconds in times)
    axes.set_title(f"Stage times of {run_id}: {total:,.1f} s in all", fontsize=10)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    return png_bytes(figure)

"""The callables behind movielens_similarity's tasks.

Each reads its inputs, calls the package and returns plain data.
"""
import dataclasses
import datetime
import json
import logging
import time
from pathlib import Path

from airflow.sdk import Asset, Variable, get_current_context
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from movielens_emr.config.capacity import task_slots
from movielens_emr.config.instances import UnknownInstanceType, instance_type, memory_fit_error
from movielens_emr.config.params import (
    DEFAULT_MAX_NODE_COUNT,
    InvalidParam,
    RunConfig,
    check_spot_task_nodes,
    validate_run_config,
)
from movielens_emr.config.settings import settings_from_env
from movielens_emr.config.targets import EMR, LOCAL, target_named
from movielens_emr.data.datasets import get_dataset
from movielens_emr.data.staging import dataset_source_files
from movielens_emr.data.staging import stage_dataset as stage_dataset_files
from movielens_emr.data.storage import claim_run_folder, open_storage
from movielens_emr.emr.client import EmrClient
from movielens_emr.emr.cluster import build_job_flow, chosen_security_configuration
from movielens_emr.emr.diagnosis import stages_completed
from movielens_emr.emr.target import EmrTarget
from movielens_emr.engine.protocol import final_output_folder
from movielens_emr.engine.registry import UnknownEngine, engine_named, engine_names
from movielens_emr.local.runner import LocalJobFailed
from movielens_emr.local.target import LocalTarget
from movielens_emr.reporting.metrics import (
    failed_run_metrics,
    metrics_table,
    run_metrics,
    run_started_at,
    seconds_between,
)
from movielens_emr.sizing.prices import PRICES_VARIABLE, overrides_from_variable, price_in_force
from movielens_emr.sizing.task_times import one_run_prediction

log = logging.getLogger(__name__)
RESULTS_ASSET = Asset("movielens_similarities")
MAX_NODE_COUNT_VARIABLE = "movielens_max_node_count"
SIMILARITY_DAG_ID = "movielens_similarity"
# Each target's share of the tasks (its checks, the files it ships, where its figures come from).
RUN_TARGETS = {EMR.name: EmrTarget(), LOCAL.name: LocalTarget()}


def run_target(config):
    return RUN_TARGETS[target_named(config.target).name]


def run_engine(config):
    return engine_named(config.engine)


def _storage(settings):
    return open_storage(settings.storage_root, settings.aws_conn_id)


def max_node_count():
    """The node limit of the trigger form: the Variable movielens_max_node_count, else 20."""
    return int(Variable.get(MAX_NODE_COUNT_VARIABLE, default=DEFAULT_MAX_NODE_COUNT))


def validate_config(params):
    """The run's parameters checked against the form's schema and the node limit in force now."""
    settings = settings_from_env()
    config = validate_run_config(dict(params), max_node_count(), settings.default_target, engine_names())
    get_dataset(config.dataset)
    try:
        run_engine(config)
    except UnknownEngine as error:
        raise InvalidParam(str(error)) from None
    config = with_sizing_advice(config, settings)
    check_spot_task_nodes(config)  # again: the advisor may have chosen the node count
    target = target_named(config.target)
    if target.needs_s3_storage and not settings.storage_root.startswith("s3://"):
        raise InvalidParam(f"target: {target.name} needs an s3:// storage root (MOVIELENS_STORAGE_ROOT is "
                           f"{settings.storage_root!r})")
    run_target(config).check_config(config, settings)
    if target.cluster:
        check_memory_fit(config)
    run_price(config)  # a malformed price Variable fails here, not in record_metrics once the cluster ran
    if not settings.storage_root.startswith("s3://"):  # an S3 bucket may be created by stage_dataset
        check_writable(_storage(settings))
    log.info("run configuration: %s", config)
    return dataclasses.asdict(config)


def with_sizing_advice(config, settings):
    """The config with the sizing advisor's node count and prediction, when the run asks for them.

    The advisor's model is fitted to the run history; when it cannot answer, a run that left the
    node count to it fails here, before anything is staged, and a run with its own count goes on.
    """
    from movielens_emr.reporting.history import fetch_runs, history_engine
    from movielens_emr.sizing.advise import run_advice

    if config.deadline_minutes is None and config.budget_usd is None:
        return config
    rows = fetch_runs(history_engine(settings), outcome="success", limit=10_000, run_engine=config.engine)
    price = run_price(config)
    try:
        advice = run_advice(rows, config.dataset, config.target, config.instance_type, price,
                            config.sample_fraction, config.node_count, max_node_count(),
                            config.deadline_minutes, config.budget_usd, engine=config.engine,
                            pair_work=planned_work(config, settings))
    except ValueError as error:  # too little history, or no count meets the goal
        if config.node_count is None:
            raise InvalidParam(f"node_count: the sizing advisor cannot choose it: {error}") from error
        log.warning("no sizing prediction for this run: %s", error)
        return config
    log.info("sizing advisor (%s): %d nodes, predicted %.1f min of cluster time, cost %s, %s confidence",
             advice["chosen_by"], advice["node_count"], advice["predicted_cluster_seconds"] / 60,
             advice["predicted_cost_usd"], advice["confidence"])
    return dataclasses.replace(config, node_count=advice["node_count"], advice=advice)


def planned_work(config, settings):
    """The run's work as its engine counts it on the run's own ratings files (planned_work), or None when the
    engine does not say, or the files cannot be read here: the advisor then scales the work it measured."""
    engine = run_engine(config)
    if not hasattr(engine, "planned_work"):
        return None
    started = time.monotonic()
    try:
        dataset = get_dataset(config.dataset)
        files = dataset_source_files(dataset, settings.source_dir, settings.cache_dir)
        work = engine.planned_work(config, [files[name] for name in dataset.ratings_files])
    except (OSError, ValueError, MemoryError) as error:
        log.warning("the run's work could not be counted on its ratings (%s: %s): the advisor scales it from "
                    "the measured runs", type(error).__name__, error)
        return None
    log.info("the run's pair work, counted on its ratings in %.1f s: %.4g", time.monotonic() - started, work)
    return work


def check_memory_fit(config):
    """Refuse, before anything is staged, an instance type whose containers cannot hold the engine's largest
    task (the engine's own task_memory_mb, when it states one) for the run's dataset and options."""
    engine = run_engine(config)
    need = getattr(engine, "task_memory_mb", None)
    try:
        instance = instance_type(config.instance_type)
    except UnknownInstanceType as error:
        raise InvalidParam(str(error)) from None
    error = need and memory_fit_error(need(config), instance,
                                      f"the {engine.name} engine's largest task on {config.dataset}")
    if error:
        raise InvalidParam(error)


def run_price(config):
    """USD per node-hour of the run's instance type, the Variable's overrides first (prices.price_in_force:
    the benchmarks page and the advisor's command line price with the same rule); None when unknown; 0
    where nothing is priced."""
    if not target_named(config.target).priced:
        return price_in_force(config.instance_type, {}, config.target).usd_per_node_hour
    overrides = overrides_from_variable(Variable.get(PRICES_VARIABLE, default=None))
    return price_in_force(config.instance_type, overrides, config.target).usd_per_node_hour


class StorageRootUnusable(RuntimeError):
    """The storage root cannot be written: found before any data is staged or any cluster started."""


def check_writable(storage):
    """Write and remove a probe object under the storage root, or raise StorageRootUnusable saying why."""
    probe = "runs/.write-probe"
    try:
        storage.put_bytes(b"", probe)
        storage.delete_key(probe)
    except Exception as error:  # any failure to write means no run can succeed; say which and why
        raise StorageRootUnusable(f"storage root {storage.uri('')} is not writable: {error}") from error


def stage_dataset(config, run_id):
    """The dataset's files staged once under datasets/<name>/<checksum>/; under the run, what its target
    ships (on EMR the job files and the nodes' wheels) and what its engine measures on the input first
    (the similarity engine's stage 2 block plan).

    The engine prepares here, for both targets, because here the ratings are on this machine (the source
    files the staged copy was checked against: no download of them back from S3) and the run's job/
    folder is filled: the steps ship what it wrote beside the job file.
    """
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    if storage.ensure_bucket():
        log.info("created bucket %s with public access blocked", storage.bucket)
    dataset, engine = get_dataset(config.dataset), run_engine(config)
    files = dataset_source_files(dataset, settings.source_dir, settings.cache_dir)
    staged = stage_dataset_files(storage, dataset, files)
    run_prefix = claim_run_folder(storage, run_id)
    staged.update(run_target(config).stage_run_files(storage, run_prefix, config, settings, engine))
    ratings_paths = [files[name] for name in dataset.ratings_files]
    staged.update(engine.prepare(storage, run_prefix, config, ratings_paths))
    return staged


def choose_target(config):
    """The first task of the run's target's branch."""
    return run_target(RunConfig(**config)).first_task


def wait_timeout_seconds(config, dataset):
    """A generous ceiling on the stages' time: 30 minutes + an hour per million ratings per 4 task slots."""
    work_hours = dataset.ratings * config.sample_fraction / 1e6 * 4 / task_slots(config)
    return int(1800 + 3600 * work_hours)


def plan_emr_run(config, staged, dag_id, run_id):
    """The job flow request, one step per stage of the engine's job and the wait for them, as plain data."""
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    storage.delete_prefix(f"{run_prefix}/output")  # Hadoop refuses to write into an existing output folder
    slots = task_slots(config)
    job = run_engine(config).job(config, staged)
    output_uri = storage.uri(f"{run_prefix}/output")
    steps = run_target(config).steps(job, staged, output_uri, run_id, config, settings)
    job_flow = build_job_flow(config, dag_id, run_id, storage.uri(f"{run_prefix}/logs/"),
                              staged["job_files"], settings.cluster)
    timeout = settings.stage_timeout_seconds or wait_timeout_seconds(config, get_dataset(config.dataset))
    log.info("cluster: %s nodes of %s (%d task nodes on Spot); %d task slots; stage wait up to %d s",
             config.node_count, config.instance_type, config.spot_task_nodes, slots, timeout)
    return {"job_flow": job_flow, "steps": steps, "wait_timeout": timeout}


def prepare_stage_wait(step_ids, wait_timeout):
    """EmrStagesSensor's arguments: every stage's step id (it waits for the last), the timeout, the poll."""
    poll = settings_from_env().poll_seconds
    return [{"stage_step_ids": step_ids, "timeout": wait_timeout, "poke_interval": poll}]


def run_local_job(config, staged, run_id):
    """The engine's job run here by its kind's runner (mrjob's local runner, node_count tasks at a time, or
    Spark's local mode with node_count cores), output in the run folder.

    Its process records and scratch go to local-job/ in the run folder (under the cache folder when
    the storage root is on S3); a job left running by an earlier try is stopped first.
    """
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    storage.delete_prefix(f"{run_prefix}/output")
    engine = run_engine(config)
    output_dir = storage.uri(final_output_folder(run_prefix, engine))
    work_dir = (storage.local_path(f"{run_prefix}/local-job")
                or Path(settings.cache_dir).expanduser() / run_prefix / "local-job")
    # The job's kind decides its runner: mrjob's local runner, or Spark's local mode (local.target).
    try:
        run = run_target(config).run_job(engine.job(config, staged), staged["ratings_uris"], output_dir,
                                         config.node_count, work_dir)
    except LocalJobFailed as error:
        cause = input_error(str(error), getattr(engine, "input_errors", ()))
        if cause:  # the same input fails the same way: a retry would only delay the answer
            raise AirflowFailException(f"{error}\nThe input is at fault ({cause}): not retried.") from error
        raise
    log.info("local run finished in %.1f s; stages %s", run["seconds"], run["stage_seconds"])
    return run


def input_error(message, names):
    """The first of the engine's input errors (exception class names) that a failed job's message ends a line
    with, as `Name: ...` or `module.Name: ...`; None when none does."""
    for line in message.splitlines():
        name = line.split(": ", 1)[0].rpartition(".")[2] if ": " in line else ""
        if name in names:
            return name
    return None


def collect_results(config, run_id):
    """The run's results under results/, written by its engine from the final stage's part files (the
    similarity engine: results/similarities.csv, .csv.gz when large, and results/top_neighbours.json).

    The part files are only read: if collecting fails, the computed output stays where it is and
    clearing this task collects it again, without recomputing anything.
    """
    engine = run_engine(RunConfig(**config))
    storage = _storage(settings_from_env())
    run_prefix = claim_run_folder(storage, run_id)
    output_folder = final_output_folder(run_prefix, engine)
    try:
        summary = engine.collect(storage, output_folder, f"{run_prefix}/results")
    except Exception as error:
        log.error("collecting the results failed (%s: %s). The computed output is kept at %s: clear "
                  "collect_results to collect it again once the cause is fixed", type(error).__name__, error,
                  storage.uri(output_folder))
        raise
    get_current_context()["outlet_events"][RESULTS_ASSET].extra = {"run_id": run_id, **summary}
    return summary


def record_metrics(config, collected, staged, run_id, dag_run, ti):
    """metrics.json in the run folder, from its target's figures (EMR's timestamps, or the local run's clock)
    and its engine's (the similarity engine's: output pairs, work, the stage 2 block plan it used); logged
    as a table."""
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    now = datetime.datetime.now(datetime.timezone.utc)
    started = run_started_at(dag_run.start_date, dag_run.run_after)
    target, engine = run_target(config), run_engine(config)
    # Pulled from the target's tasks rather than passed in: only one branch ran, and a task fed by the
    # setup create_cluster would have to share its all-success trigger rule.
    results = {task_id: ti.xcom_pull(task_ids=task_id) for task_id in target.result_tasks}
    figures = target.run_figures(results, settings, storage, run_prefix, len(engine.stage_names))
    cluster_id, timings, task_times = figures["cluster_id"], figures["timings"], figures["task_times"]
    price = run_price(config)
    largest = max(max_node_count(), config.node_count)
    slots = target.target.task_slots_by_node_count(config.instance_type, largest)
    metrics = {"run_id": run_id, **dataclasses.asdict(config), "cluster_id": cluster_id,
               # the form's field may be empty while the deployment's setting applied
               "cluster_security_configuration": (
                   chosen_security_configuration(config, settings.cluster) if cluster_id else None),
               **run_metrics(config, timings, seconds_between(started, now), figures["counters"], price,
                             figures["counter_sources"],
                             engine.figures(figures["counters"], collected, staged),
                             spot_market=figures.get("spot_market"), task_times=task_times),
               # what the target measured of the job's kind (a Spark application's task times)
               **figures.get("target_figures", {}),
               "task_times": task_times,
               "one_run_prediction": one_run_prediction(task_times, timings, config.node_count, slots, price)}
    storage.put_bytes(json.dumps(metrics, indent=1).encode(), f"{run_prefix}/metrics.json")
    log.info("metrics of %s (%s):\n%s", run_id, storage.uri(f"{run_prefix}/metrics.json"),
             metrics_table(metrics))
    return metrics


def diagnose_failure(config, run_id, ti):
    """The full diagnosis of stages that did not all complete (emr.EmrClient.diagnose_stage_failure), once
    the cluster has ended: in the task log, and under "failure" in the run's metrics.json beside the run
    id, its config and its cluster. Skipped when there is nothing to diagnose: no stages were submitted
    to a cluster (the local target, or create_cluster or submit_stages failed), or every stage completed.
    """
    cluster_id, step_ids = ti.xcom_pull(task_ids="create_cluster"), ti.xcom_pull(task_ids="submit_stages")
    if not (cluster_id and step_ids):
        raise AirflowSkipException("no stages were submitted to an EMR cluster: nothing to diagnose")
    settings = settings_from_env()
    client = _emr_client(settings)
    if stages_completed(client.describe_steps(cluster_id, step_ids)):
        raise AirflowSkipException("every stage completed: nothing to diagnose")
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    failure = client.diagnose_stage_failure(
        storage, run_prefix, cluster_id, step_ids, settings.log_wait_seconds, settings.poll_seconds)
    # This try's stages failed: a metrics.json an earlier try left is replaced whole, never merged into.
    key, metrics = f"{run_prefix}/metrics.json", failed_run_metrics(run_id, config, cluster_id, failure)
    storage.put_bytes(json.dumps(metrics, indent=1).encode(), key)
    log.error("%s\n(the same report is under \"failure\" in %s)", failure["report"], storage.uri(key))


def _emr_client(settings):
    return EmrClient(settings.aws_conn_id)


def reap_clusters():
    """Terminate this pipeline's live clusters whose run has ended or that are older than the maximum age."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    from movielens_emr.emr.reaper import ACTIVE_CLUSTER_STATES, clusters_to_reap, pipeline_clusters

    settings = settings_from_env()
    client = _emr_client(settings)
    described = client.describe_clusters_in(ACTIVE_CLUSTER_STATES)

    def run_is_active(dag_id, run_id):
        return RuntimeTaskInstance.get_dr_count(
            dag_id=dag_id, run_ids=[run_id], states=["queued", "running"]) > 0

    now = datetime.datetime.now(datetime.timezone.utc)
    max_age = datetime.timedelta(hours=settings.cluster_max_age_hours)
    doomed = clusters_to_reap(pipeline_clusters(described), run_is_active, now, max_age)
    for cluster, reason in doomed:
        log.warning("terminating %s: %s", cluster.cluster_id, reason)
        client.terminate(cluster.cluster_id)
    log.info("%d live clusters, %d of this pipeline's terminated", len(described), len(doomed))
    return [cluster.cluster_id for cluster, _ in doomed]


def reap_local_jobs():
    """Stop the local jobs left running on this machine by movielens_similarity runs that have ended."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    from movielens_emr.local.runner import reap_local_jobs as stop_jobs_of_ended_runs

    settings = settings_from_env()
    if settings.storage_root.startswith("s3://"):
        log.info("storage root on S3: local jobs keep their records under the cache folder, not reaped here")
        return []

    def run_is_active(run_id):
        return RuntimeTaskInstance.get_dr_count(
            dag_id=SIMILARITY_DAG_ID, run_ids=[run_id], states=["queued", "running"]) > 0

    stopped = stop_jobs_of_ended_runs(settings.storage_root, run_is_active)
    log.info("%d local jobs of ended runs stopped: %s", len(stopped), ", ".join(stopped) or "none")
    return stopped

"""The callables behind movielens_similarity's tasks.

Each reads its inputs, calls the package and returns plain data.
"""
import dataclasses
import datetime
import json
import logging
from pathlib import Path

from airflow.sdk import Asset, Variable, get_current_context
from airflow.sdk.exceptions import AirflowSkipException

from movielens_emr.config.capacity import task_slots, task_slots_by_node_count
from movielens_emr.config.params import DEFAULT_MAX_NODE_COUNT, InvalidParam, RunConfig, validate_run_config
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.datasets import get_dataset
from movielens_emr.data.staging import dataset_source_files
from movielens_emr.data.staging import stage_dataset as stage_dataset_files
from movielens_emr.data.storage import claim_run_folder, open_storage
from movielens_emr.emr.client import EmrClient
from movielens_emr.emr.cluster import build_job_flow, chosen_security_configuration, node_python_for
from movielens_emr.emr.diagnosis import stages_completed
from movielens_emr.emr.job_files import stage_job_files
from movielens_emr.emr.steps import build_stage_steps
from movielens_emr.emr.wheelhouse import node_wheels, requirements_file
from movielens_emr.engine.block_plan import stage2_layout, stage_block_plan
from movielens_emr.engine.mrjob_similarity import job_args, job_class
from movielens_emr.local.runner import run_local_job as run_job_locally
from movielens_emr.reporting.collect import collect_output
from movielens_emr.reporting.metrics import (
    failed_run_metrics,
    metrics_table,
    run_metrics,
    run_started_at,
    seconds_between,
)
from movielens_emr.sizing.prices import PRICES_VARIABLE, overrides_from_variable, price_in_force
from movielens_emr.sizing.task_times import one_run_prediction, unknown_task_times

log = logging.getLogger(__name__)
RESULTS_ASSET = Asset("movielens_similarities")
MAX_NODE_COUNT_VARIABLE = "movielens_max_node_count"
FINAL_STAGE = 3
SIMILARITY_DAG_ID = "movielens_similarity"


def _storage(settings):
    return open_storage(settings.storage_root, settings.aws_conn_id)


def max_node_count():
    """The node limit of the trigger form: the Variable movielens_max_node_count, else 20."""
    return int(Variable.get(MAX_NODE_COUNT_VARIABLE, default=DEFAULT_MAX_NODE_COUNT))


def validate_config(params):
    """The run's parameters checked against the form's schema and the node limit in force now."""
    settings = settings_from_env()
    config = validate_run_config(dict(params), max_node_count(), settings.default_target)
    get_dataset(config.dataset)
    config = with_sizing_advice(config, settings)
    if config.target == "emr" and not settings.storage_root.startswith("s3://"):
        raise InvalidParam(f"target: emr needs an s3:// storage root (MOVIELENS_STORAGE_ROOT is "
                           f"{settings.storage_root!r})")
    if config.target == "emr":
        try:
            node_python_for(config, settings.cluster)
        except ValueError as error:
            raise InvalidParam(str(error)) from None
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
    rows = fetch_runs(history_engine(settings), target=config.target, outcome="success", limit=10_000)
    price = run_price(config) if config.target == "emr" else 0.0
    try:
        advice = run_advice(rows, config.dataset, config.target, config.instance_type, price,
                            config.sample_fraction, config.node_count, max_node_count(),
                            config.deadline_minutes, config.budget_usd)
    except ValueError as error:  # too little history, or no count meets the goal
        if config.node_count is None:
            raise InvalidParam(f"node_count: the sizing advisor cannot choose it: {error}") from error
        log.warning("no sizing prediction for this run: %s", error)
        return config
    log.info("sizing advisor (%s): %d nodes, predicted %.1f min of cluster time, cost %s, %s confidence",
             advice["chosen_by"], advice["node_count"], advice["predicted_cluster_seconds"] / 60,
             advice["predicted_cost_usd"], advice["confidence"])
    return dataclasses.replace(config, node_count=advice["node_count"], advice=advice)


def run_price(config):
    """USD per node-hour of the run's instance type, the Variable's overrides first (prices.price_in_force:
    the benchmarks page and the advisor's command line price with the same rule); None when unknown."""
    overrides = overrides_from_variable(Variable.get(PRICES_VARIABLE, default=None))
    return price_in_force(config.instance_type, overrides).usd_per_node_hour


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
    """The dataset's files staged once under datasets/<name>/<checksum>/; the job files and the run's
    stage 2 block plan under the run.

    The plan is measured here, for both targets, because here the ratings are on this machine (the
    source files the staged copy was checked against: no download of them back from S3) and the run's
    job/ folder is filled: the steps ship the plan beside the job file.
    """
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    if config.target == "emr" and storage.ensure_bucket():
        log.info("created bucket %s with public access blocked", storage.bucket)
    dataset = get_dataset(config.dataset)
    files = dataset_source_files(dataset, settings.source_dir, settings.cache_dir)
    staged = stage_dataset_files(storage, dataset, files)
    run_prefix = claim_run_folder(storage, run_id)
    if config.target == "emr":
        node, cluster = node_python_for(config, settings.cluster), settings.cluster
        wheels = node_wheels(node, settings.cache_dir, cluster.wheelhouse_dir, requirements_file(cluster))
        staged["job_files"] = stage_job_files(storage, run_prefix, node, wheels, requirements_file(cluster))
    staged["block_plan"] = stage_block_plan(
        storage, run_prefix, config, [files[name] for name in dataset.ratings_files])
    return staged


def choose_target(config):
    return "plan_emr_run" if config["target"] == "emr" else "run_local_job"


def wait_timeout_seconds(config, dataset):
    """A generous ceiling on the stages' time: 30 minutes + an hour per million ratings per 4 task slots."""
    work_hours = dataset.ratings * config.sample_fraction / 1e6 * 4 / task_slots(config)
    return int(1800 + 3600 * work_hours)


def plan_emr_run(config, staged, dag_id, run_id):
    """The job flow request, the three stage steps and the wait for them, as plain data."""
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    storage.delete_prefix(f"{run_prefix}/output")  # Hadoop refuses to write into an existing output folder
    slots = task_slots(config)
    movie_blocks, reduce_tasks = stage2_layout(config)  # as the block plan was made for
    items_name = staged["movies_uri"].rsplit("/", 1)[-1]
    task_args = job_args(config, movie_blocks, items_name)
    steps = build_stage_steps(
        job_class()(task_args), task_args, staged["job_files"]["job"], staged["movies_uri"],
        staged["ratings_uris"], storage.uri(f"{run_prefix}/output"), reduce_tasks, run_id,
        node_python_for(config, settings.cluster), staged["block_plan"]["uri"])
    job_flow = build_job_flow(config, dag_id, run_id, storage.uri(f"{run_prefix}/logs/"),
                              staged["job_files"], settings.cluster)
    timeout = settings.stage_timeout_seconds or wait_timeout_seconds(config, get_dataset(config.dataset))
    log.info("cluster: %s nodes of %s; %d task slots; stage wait up to %d s",
             config.node_count, config.instance_type, slots, timeout)
    return {"job_flow": job_flow, "steps": steps, "wait_timeout": timeout}


def prepare_stage_wait(step_ids, wait_timeout):
    """EmrStagesSensor's arguments: every stage's step id (it waits for the last), the timeout, the poll."""
    poll = settings_from_env().poll_seconds
    return [{"stage_step_ids": step_ids, "timeout": wait_timeout, "poke_interval": poll}]


def run_local_job(config, staged, run_id):
    """The job run here by mrjob's local runner, node_count tasks at a time, output in the run folder.

    Its process records and scratch go to local-job/ in the run folder (under the cache folder when
    the storage root is on S3); a job left running by an earlier try is stopped first.
    """
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    storage.delete_prefix(f"{run_prefix}/output")
    output_dir = storage.uri(final_output_folder(run_prefix))
    work_dir = (storage.local_path(f"{run_prefix}/local-job")
                or Path(settings.cache_dir).expanduser() / run_prefix / "local-job")
    run = run_job_locally(local_job_args(config, staged), staged["ratings_uris"], output_dir,
                          config.node_count, work_dir)
    log.info("local run finished in %.1f s; stages %s", run["seconds"], run["stage_seconds"])
    return run


def local_job_args(config, staged):
    """The local job's options: the run's blocks (stage2_layout) and its block plan, if it has one."""
    movie_blocks, _ = stage2_layout(config)
    plan_uri = staged["block_plan"]["uri"]
    plan_args = ["--block-plan", plan_uri] if plan_uri else []
    return [*job_args(config, movie_blocks, staged["movies_uri"]), *plan_args]


def final_output_folder(run_prefix):
    """Where the job's last stage writes its part files, on EMR and on the local target alike."""
    return f"{run_prefix}/output/stage-{FINAL_STAGE}"


def collect_results(run_id):
    """results/similarities.csv (.csv.gz when large) and results/top_neighbours.json from the part files.

    The part files are only read: if collecting fails, the computed output stays where it is and
    clearing this task collects it again, without recomputing anything.
    """
    storage = _storage(settings_from_env())
    run_prefix = claim_run_folder(storage, run_id)
    try:
        summary = collect_final_output(storage, run_prefix)
    except Exception as error:
        log.error("collecting the results failed (%s: %s). The computed output is kept at %s: clear "
                  "collect_results to collect it again once the cause is fixed", type(error).__name__, error,
                  storage.uri(final_output_folder(run_prefix)))
        raise
    get_current_context()["outlet_events"][RESULTS_ASSET].extra = {"run_id": run_id, **summary}
    return summary


def collect_final_output(storage, run_prefix):
    """Write the run's results from the final stage's part files (collect.py); their summary."""
    summary = collect_output(storage, final_output_folder(run_prefix), f"{run_prefix}/results")
    log.info("collected %d ordered pairs of %d movies into %s", summary["output_pairs"], summary["movies"],
             summary["similarities_csv"])
    return summary


def record_metrics(config, collected, staged, run_id, dag_run, ti):
    """metrics.json in the run folder, from EMR's timestamps or the local run's clock, with the stage 2
    block plan the run used (staged's); logged as a table."""
    config, settings = RunConfig(**config), settings_from_env()
    storage = _storage(settings)
    run_prefix = claim_run_folder(storage, run_id)
    now = datetime.datetime.now(datetime.timezone.utc)
    started = run_started_at(dag_run.start_date, dag_run.run_after)
    # Pulled by target rather than passed in: only one branch ran, and a task fed by the setup
    # create_cluster would have to share its all-success trigger rule.
    cluster_id = None
    if config.target == "emr":
        cluster_id, step_ids = ti.xcom_pull(task_ids="create_cluster"), ti.xcom_pull(task_ids="submit_stages")
        figures = _emr_client(settings).run_figures(
            storage, run_prefix, cluster_id, step_ids, settings.log_wait_seconds, settings.poll_seconds)
        timings, counters, task_times = figures.timings, figures.counters, figures.task_times
        counter_sources, price = figures.counter_sources, run_price(config)
    else:
        local_run = ti.xcom_pull(task_ids="run_local_job")
        timings = {"cluster_seconds": local_run["seconds"], "provisioning_seconds": 0.0,
                   "stage_seconds": local_run["stage_seconds"]}
        counters, counter_sources, price = local_run["counters"], None, 0.0
        task_times = local_run.get("task_times") or unknown_task_times(
            FINAL_STAGE, "the local run did not time its tasks")
    slots = task_slots_by_node_count(config.target, config.instance_type,
                                     max(max_node_count(), config.node_count))
    metrics = {"run_id": run_id, **dataclasses.asdict(config), "cluster_id": cluster_id,
               # the form's field may be empty while the deployment's setting applied
               "cluster_security_configuration": (
                   chosen_security_configuration(config, settings.cluster) if cluster_id else None),
               **run_metrics(config, timings, seconds_between(started, now), counters,
                             collected["output_pairs"], price, counter_sources, staged.get("block_plan")),
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

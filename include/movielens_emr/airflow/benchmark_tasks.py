"""The callables behind movielens_benchmark's tasks: plan the member runs, run or find them, report."""
import dataclasses
import datetime
import json
import logging
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from movielens_emr.airflow.similarity_tasks import max_node_count
from movielens_emr.config.params import InvalidParam
from movielens_emr.config.settings import settings_from_env
from movielens_emr.config.targets import target_named
from movielens_emr.data.storage import open_storage, run_folder
from movielens_emr.engine.registry import engine_names
from movielens_emr.reporting import benchmark
from movielens_emr.reporting import benchmark_report as report
from movielens_emr.reporting.metrics import records_failure
from movielens_emr.reporting.run_report import failure_lines
from movielens_emr.reporting.sizing_section import member_price, sizing_section

log = logging.getLogger(__name__)
INCLUDE_DIR = Path(__file__).resolve().parents[2]
# dag.test, and so `airflow dags test`, names this user as its runs' trigger.
DAG_TEST_USER = "dag_test"
# Airflow 3 workers point the metadata database at this fake URL, so tasks cannot reach it.
BLOCKED_DATABASE = "airflow-db-not-allowed"
CLI_PARALLEL_MEMBERS = 2
ERROR_LINES = 3


def _storage():
    settings = settings_from_env()
    return open_storage(settings.storage_root, settings.aws_conn_id)


def validate_benchmark(params, dag_run):
    """The benchmark's parameters checked, including that its way of running members can work here."""
    settings = settings_from_env()
    config = benchmark.validate_benchmark_config(dict(params), max_node_count(), settings.default_target,
                                                 engine_names())
    if config.member_runs == "trigger" and dag_run.triggering_user_name == DAG_TEST_USER:
        raise InvalidParam("member_runs: 'trigger' needs a scheduler to run the triggered runs and "
                           "`airflow dags test` runs none, so it would wait forever: "
                           "pass \"member_runs\": \"cli\"")
    database = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "")
    if config.member_runs == "cli" and database.startswith(BLOCKED_DATABASE):
        raise InvalidParam("member_runs: 'cli' runs `airflow dags test`, which needs the metadata database "
                           "that this worker may not reach: use 'trigger' under a scheduler")
    if target_named(config.target).needs_s3_storage and not settings.storage_root.startswith("s3://"):
        raise InvalidParam(f"target: {config.target} needs an s3:// storage root (MOVIELENS_STORAGE_ROOT is "
                           f"{settings.storage_root!r})")
    log.info("benchmark configuration: %s", config)
    return dataclasses.asdict(config)


def plan_member_runs(config, run_id):
    """The member runs: index, run id and movielens_similarity conf of each."""
    members = benchmark.plan_members(benchmark.BenchmarkConfig(**config), run_id)
    log.info("%d member runs of %s:\n%s", len(members), benchmark.SIMILARITY_DAG_ID,
             "\n".join(f"{member['run_id']}: {json.dumps(member['conf'])}" for member in members))
    return members


def choose_member_runs(config):
    if config["member_runs"] == "cli":
        return "run_members_by_cli"
    return "trigger_members_in_parallel" if config["parallel"] else "trigger_members_one_at_a_time"


def cli_environment(environ=None):
    """The environment of a member's `airflow dags test`: this one, with the package importable."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = os.pathsep.join(part for part in (str(INCLUDE_DIR), env.get("PYTHONPATH")) if part)
    return env


def airflow_command(*args):
    """The airflow CLI of this interpreter's environment, with arguments."""
    return [str(Path(sys.executable).parent / "airflow"), *args]


def launch_clock():
    """A function of strictly increasing UTC times: members' logical dates, unique to find their runs by."""
    lock, last = threading.Lock(), [datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)]

    def now():
        with lock:
            now_utc = datetime.datetime.now(datetime.timezone.utc)
            last[0] = max(now_utc, last[0] + datetime.timedelta(microseconds=1))
            return last[0]
    return now


def run_member_cli(member, clock, storage, log_prefix):
    """One member run by `airflow dags test`; its output is kept as <log_prefix>/member-<index>.log."""
    # dag.test starts the run at its logical date, so one taken at launch makes the member's wall time
    # count from its launch, as `airflow dags test` does on its own; and as that command takes no run
    # id, the logical date is how the run is found afterwards.
    logical_date = clock().isoformat()
    command = airflow_command("dags", "test", benchmark.SIMILARITY_DAG_ID, logical_date,
                              "-c", json.dumps(member["conf"]))
    log.info("member %d: %s", member["index"], " ".join(command))
    done = subprocess.run(command, env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", check=False)
    storage.put_bytes(done.stdout.encode(), f"{log_prefix}/member-{member['index']}.log")
    error = None
    if done.returncode != 0:
        error = "; ".join(failure_lines(done.stdout)[-ERROR_LINES:]) or f"exit status {done.returncode}"
    log.info("member %d: exit status %d%s", member["index"], done.returncode, f" ({error})" if error else "")
    return {"logical_date": logical_date, "exit_status": done.returncode, "error": error}


def list_similarity_runs(first_logical_date, last_logical_date):
    """movielens_similarity's runs with logical dates in a range, from `airflow dags list-runs`."""
    done = subprocess.run(
        airflow_command("dags", "list-runs", benchmark.SIMILARITY_DAG_ID, "-s", first_logical_date,
                        "-e", last_logical_date, "-o", "json"),
        env=cli_environment(), capture_output=True, text=True, check=True)
    return benchmark.parse_listed_runs(done.stdout)


def run_members_by_cli(config, members, run_id):
    """Every member by `airflow dags test`, one at a time (two if parallel); a record each, failures too."""
    storage, clock = _storage(), launch_clock()
    log_prefix = f"{report.report_folder(run_id)}/members"
    workers = CLI_PARALLEL_MEMBERS if config["parallel"] else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        launched = list(pool.map(lambda member: run_member_cli(member, clock, storage, log_prefix), members))
    dates = sorted(launch["logical_date"] for launch in launched)
    listed = list_similarity_runs(dates[0], dates[-1])
    return [benchmark.cli_member_record(member, launch, listed)
            for member, launch in zip(members, launched, strict=True)]


def triggered_member_records(members, ti):
    """The members started by TriggerDagRunOperator, each with its run's state (or 'not triggered')."""
    records = []
    for member in members:
        exists = ti.get_dr_count(dag_id=benchmark.SIMILARITY_DAG_ID, run_ids=[member["run_id"]])
        state = (ti.get_dagrun_state(benchmark.SIMILARITY_DAG_ID, member["run_id"]) if exists
                 else "not triggered")
        state = getattr(state, "value", state)  # DagRunState is a str enum whose str() is its name
        error = None if state == "success" else f"{benchmark.SIMILARITY_DAG_ID} run {state}"
        records.append({**member, "state": state, "error": error})
    return records


def with_metrics(storage, record):
    """A member record with its run's metrics.json; a successful run without one counts as failed."""
    if record["state"] != "success":
        return {**record, "metrics": None}
    key = f"{run_folder(record['run_id'])}/metrics.json"
    if not storage.exists(key):
        return {**record, "state": "failed", "metrics": None, "error": f"no metrics at {storage.uri(key)}"}
    metrics = json.loads(storage.get_bytes(key))
    if records_failure(metrics):  # an earlier try's diagnosis: no figures of a success
        return {**record, "state": "failed", "metrics": None, "error": f"{storage.uri(key)} holds a failure"}
    return {**record, "metrics": metrics}


def member_records(config, members, ti):
    """Each member's conf, run id, state and error, from whichever way the members ran."""
    if config["member_runs"] != "cli":
        return triggered_member_records(members, ti)
    records = ti.xcom_pull(task_ids="run_members_by_cli")
    if records is None:
        raise RuntimeError("run_members_by_cli left no member records: see its log")
    return records


def report_benchmark(config, members, run_id, ti):
    """report.md, summary.json and the plots under benchmarks/<run id>/; the summary table (and the
    recommendation quality, when the member runs scored it) in the log."""
    if config is None or members is None:  # ALL_DONE runs this after a failed validation or plan too
        raise RuntimeError("nothing to report: validate_benchmark or plan_member_runs failed")
    storage = _storage()
    records = [with_metrics(storage, record) for record in member_records(config, members, ti)]
    document = {"benchmark_run_id": run_id, "params": config, "host_cpus": os.cpu_count(),
                **benchmark.summarize(records), "member_runs": records,
                "sizing": sizing_section(records, member_price(records), single_machine_baseline(config))}
    folder = report.report_folder(run_id)
    for name, data in report.report_files(document).items():
        storage.put_bytes(data, f"{folder}/{name}")
    log.info("benchmark report: %s\n%s", storage.uri(f"{folder}/report.md"),
             report.summary_table(document["configurations"]))
    if quality := document["recommendation_quality"]:
        log.info("recommendation quality (medians):\n%s", report.quality_table(quality))
    return {"report": storage.uri(f"{folder}/report.md"), "members": document["members"],
            "failed_members": document["failed_members"],
            "failed_run_ids": [record["run_id"] for record in records if not benchmark.is_measured(record)]}


def single_machine_baseline(config):
    """This machine's time for the benchmark's whole input with its engine, from the run history
    (sizing.advise.single_machine); None when the history has none or cannot be read (the report says so)."""
    from movielens_emr.reporting.history import fetch_runs, history_engine
    from movielens_emr.sizing.advise import single_machine

    benchmark_config = benchmark.BenchmarkConfig(**config)
    try:
        rows = fetch_runs(history_engine(settings_from_env()), outcome="success", limit=10_000,
                          run_engine=benchmark_config.engine)
    except Exception as error:  # the report goes on without the line
        log.warning("no single-machine line: the run history cannot be read (%s)", error)
        return None
    return single_machine(rows, benchmark_config.dataset, 1.0, benchmark_config.engine)


def check_member_runs(outcome):
    """Fail the benchmark run when a member failed, after its report was written."""
    if outcome["failed_members"]:
        raise RuntimeError(f"{outcome['failed_members']} of {outcome['members']} member runs failed "
                           f"({', '.join(map(str, outcome['failed_run_ids']))}); see {outcome['report']}")
    log.info("all %d member runs measured; report: %s", outcome["members"], outcome["report"])

"""Why a run failed: the diagnosis in its metrics.json (diagnose_failure's "failure", on EMR), and what
Airflow holds of it, the run's state and its failed tasks with the exceptions ending their logs. Read in the
API server, which serves the plugin; a failed try's log no longer changes, so each is read once."""
import functools
import logging

from movielens_emr.reporting.metrics import FAILURE_KEY

from . import runs, tracebacks
from .sources import DAG_ID

log = logging.getLogger(__name__)
LAST_LINES = 5


def account(metrics, airflow_run, read_logs):
    """The run page's account of a failure: `headline` (the job's own exception, or EMR's reason), the
    diagnosis of metrics.json if it holds one (`stage`, `reason`, `cluster_fault`, `exceptions`, `traceback`,
    `report`), and `tasks`, the failed tasks with what their logs end with (only when `read_logs`: the caller
    may read task logs). None when nothing failed."""
    diagnosis = from_diagnosis(metrics[FAILURE_KEY]) if runs.records_failure(metrics) else None
    failed = (airflow_run or {}).get("failed_tasks", [])
    if diagnosis is None and not failed:
        return None
    run_id = (airflow_run or {}).get("run_id")
    tasks = [task_account(run_id, *task) if read_logs else failed_task(*task) for task in failed]
    return {**(diagnosis or {}), "headline": headline(diagnosis, tasks), "tasks": tasks,
            "logs_withheld": bool(failed) and not read_logs}


def from_diagnosis(failure):
    """metrics.json's "failure" (movielens_emr.emr.diagnosis.failure_record) as the page shows it; its report
    holds the failed task's own traceback when EMR delivered its log."""
    report = str(failure.get("report") or "")
    return {"stage": failure.get("stage"), "reason": failure.get("reason"),
            "cluster_fault": failure.get("cluster_fault"), "exceptions": tracebacks.exceptions(report),
            "traceback": tracebacks.first_traceback_tail(report), "report": report}


def headline(diagnosis, tasks):
    """The failure in a line: the first exception its evidence names (the innermost: the job's own),
    else EMR's reason for the failed stage, else the failed tasks."""
    for found in [diagnosis or {}, *tasks]:
        if found.get("exceptions"):
            return found["exceptions"][0]
    if diagnosis and (diagnosis["reason"] or diagnosis["cluster_fault"]):
        stage = f"stage {diagnosis['stage']}: " if diagnosis["stage"] else ""
        return stage + (diagnosis["reason"] or diagnosis["cluster_fault"])
    return "failed: " + ", ".join(task["task_id"] for task in tasks) if tasks else None


def short_reason(metrics, airflow_run, read_logs):
    """The history table's reason for a failed run: the account's headline, or None without one."""
    return (account(metrics, airflow_run, read_logs) or {}).get("headline")


def reason_of(storage, run_id, read_logs):
    """short_reason of a failed run, from its metrics.json and, when the caller may read task logs, its
    failed tasks' logs; None when neither says."""
    folder = runs.owned_folder(storage, run_id)
    metrics = runs.read_metrics(storage, folder) if folder else None
    return short_reason(metrics, airflow_run(run_id) if read_logs else None, read_logs)


def failed_task(task_id, map_index, try_number):
    return {"task_id": task_id, "map_index": map_index, "try_number": try_number}


def task_account(run_id, task_id, map_index, try_number):
    """A failed task with the exceptions ending its log and its first traceback's tail; `problem` when the
    log cannot be read."""
    try:
        return {**failed_task(task_id, map_index, try_number),
                **task_log_account(run_id, task_id, map_index, try_number)}
    except Exception as error:  # a log store that does not answer: the task is still named
        log.warning("MovieLens run page: the log of %s/%s could not be read", run_id, task_id, exc_info=True)
        return {**failed_task(task_id, map_index, try_number),
                "problem": f"its log could not be read: {type(error).__name__}: {error}"}


@functools.lru_cache(maxsize=256)
def task_log_account(run_id, task_id, map_index, try_number):
    """{"exceptions", "traceback", "last_lines"} of a failed try's log (last_lines only when it holds no
    exception)."""
    text = tracebacks.log_text(read_task_log(run_id, task_id, map_index, try_number))
    found = tracebacks.exceptions(text)
    last = [line for line in text.splitlines() if line.strip() and not line.startswith("::")][-LAST_LINES:]
    return {"exceptions": found, "traceback": tracebacks.first_traceback_tail(text),
            "last_lines": [] if found else last}


# --- Airflow's metadata database and task logs -------------------------------------------------------------
# Imported where used: every task process loads the plugins, and these belong to the API server.

def airflow_run(run_id):
    """{"run_id", "state", "conf", "start_date", "end_date", "failed_tasks": [(task id, map index, try
    number)]} of the run of movielens_similarity, failed tasks in the order they ended; None when Airflow
    has no such run."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == DAG_ID, DagRun.run_id == run_id))
        if run is None:
            return None
        instance = TaskInstance
        failed = session.execute(
            select(instance.task_id, instance.map_index, instance.try_number)
            .where(instance.dag_id == DAG_ID, instance.run_id == run_id, instance.state == "failed")
            .order_by(instance.end_date, instance.task_id)).all()
        return {"run_id": run_id, "state": str(run.state) if run.state else None,
                "conf": dict(run.conf or {}), "start_date": run.start_date, "end_date": run.end_date,
                "failed_tasks": [tuple(task) for task in failed]}


def read_task_log(run_id, task_id, map_index, try_number):
    """That try's log messages, as the UI's log view reads them (TaskLogReader)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.log.log_reader import TaskLogReader
    from airflow.utils.session import create_session
    from sqlalchemy import select
    from sqlalchemy.orm import joinedload

    with create_session() as session:
        instance = None
        for model in (TaskInstance, TaskInstanceHistory):  # a later try moves this one to the history
            instance = instance or session.scalar(
                select(model).where(model.dag_id == DAG_ID, model.run_id == run_id, model.task_id == task_id,
                                    model.map_index == map_index, model.try_number == try_number)
                .options(joinedload(model.dag_run)))
        if instance is None:
            return []
        messages, _ = TaskLogReader().read_log_chunks(instance, try_number, {"download_logs": True})
        return list(messages)

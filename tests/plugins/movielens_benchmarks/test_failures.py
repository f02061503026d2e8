"""failures.py: why a run failed, from its metrics.json's diagnosis and from its failed tasks' logs."""
import pytest

from plugins.movielens_benchmarks import failures

from tests.plugins.movielens_benchmarks.stored import (
    BAD_LINES,
    FAILED,
    JOB_OUTPUT,
    LOCAL_METRICS,
    emr_failure_metrics,
    task_log,
)

RUN_ID = "manual__failed"
TASK_TRACEBACK = "\n".join(["Traceback (most recent call last):",
                            '  File "movie_similarities.py", line 277, in reducer_group_by_user',
                            "    raise TooManyBadLines(too_many)", BAD_LINES])


def airflow_run(*failed):
    return {"run_id": RUN_ID, "state": "failed", "conf": {}, "failed_tasks": list(failed)}


@pytest.fixture
def task_logs(monkeypatch):
    """Each failed try's log, as Airflow's reader returns it; the calls made, to count the reads."""
    logs, calls = {}, []
    failures.task_log_account.cache_clear()

    def read(run_id, task_id, map_index, try_number):
        calls.append((run_id, task_id, map_index, try_number))
        if isinstance(logs[task_id], Exception):
            raise logs[task_id]
        return logs[task_id]

    monkeypatch.setattr(failures, "read_task_log", read)
    yield logs, calls
    failures.task_log_account.cache_clear()


def test_nothing_to_tell_of_a_run_that_did_not_fail():
    assert failures.account({"run_id": RUN_ID, **LOCAL_METRICS}, airflow_run(), read_logs=True) is None
    assert failures.account(None, None, read_logs=True) is None


def test_the_diagnosis_names_the_tasks_own_exception_first():
    found = failures.account(emr_failure_metrics(RUN_ID, TASK_TRACEBACK), None, read_logs=True)
    assert found["headline"] == BAD_LINES
    assert (found["stage"], found["reason"]) == (2, "NonZeroExitCode; Step failed with exit code 1")
    assert found["traceback"] == TASK_TRACEBACK
    assert found["report"].startswith("stage 2 of 3 (stage 2 of 3: manual__failed) ended FAILED")


def test_a_diagnosis_without_the_tasks_log_names_the_stage_and_emrs_reason():
    found = failures.account(emr_failure_metrics(RUN_ID), None, read_logs=True)
    assert found["headline"] == "stage 2: NonZeroExitCode; Step failed with exit code 1"
    assert found["traceback"] is None and found["exceptions"] == []


def test_a_failed_tasks_log_gives_the_jobs_own_exception(task_logs):
    logs, _ = task_logs
    logs["run_local_job"] = task_log(*JOB_OUTPUT, error=FAILED)
    found = failures.account(None, airflow_run(("run_local_job", -1, 1)), read_logs=True)
    assert found["headline"] == BAD_LINES
    [task] = found["tasks"]
    assert (task["task_id"], task["try_number"], task["exceptions"][0]) == ("run_local_job", 1, BAD_LINES)
    assert task["traceback"].endswith(f"raise TooManyBadLines(too_many)\n{BAD_LINES}")
    assert not found["logs_withheld"]


def test_a_failed_tries_log_is_read_once(task_logs):
    logs, calls = task_logs
    logs["run_local_job"] = task_log(*JOB_OUTPUT, error=FAILED)
    for _ in range(3):
        failures.account(None, airflow_run(("run_local_job", -1, 1)), read_logs=True)
    assert calls == [(RUN_ID, "run_local_job", -1, 1)]


def test_a_log_without_an_exception_shows_its_last_lines(task_logs):
    logs, _ = task_logs
    logs["stage_dataset"] = task_log(*[f"line {number}" for number in range(1, 9)])
    [task] = failures.account(None, airflow_run(("stage_dataset", -1, 2)), read_logs=True)["tasks"]
    assert task["exceptions"] == [] and task["last_lines"] == [f"line {number}" for number in range(4, 9)]


def test_a_log_that_cannot_be_read_still_names_the_task(task_logs):
    logs, _ = task_logs
    logs["run_local_job"] = OSError("log server unreachable")
    found = failures.account(None, airflow_run(("run_local_job", -1, 1)), read_logs=True)
    assert found["headline"] == "failed: run_local_job"
    assert found["tasks"][0]["problem"] == "its log could not be read: OSError: log server unreachable"


def test_logs_are_withheld_from_a_caller_who_may_not_read_them(task_logs):
    logs, calls = task_logs
    logs["run_local_job"] = task_log(*JOB_OUTPUT, error=FAILED)
    found = failures.account(None, airflow_run(("run_local_job", -1, 1)), read_logs=False)
    assert (found["headline"], found["logs_withheld"], calls) == ("failed: run_local_job", True, [])
    assert found["tasks"] == [{"task_id": "run_local_job", "map_index": -1, "try_number": 1}]


def test_the_history_reason_prefers_the_diagnosis_to_the_tasks(task_logs):
    logs, _ = task_logs
    logs["wait_for_stages"] = task_log(error={"exc_type": "StagesFailedError", "exc_value": "stage 2 failed"})
    metrics = emr_failure_metrics(RUN_ID, TASK_TRACEBACK)
    assert failures.short_reason(metrics, airflow_run(("wait_for_stages", 0, 1)), read_logs=True) == BAD_LINES
    assert failures.short_reason(None, airflow_run(("wait_for_stages", 0, 1)), read_logs=True) == (
        "StagesFailedError: stage 2 failed")


def test_airflow_knows_no_run_of_an_unknown_id(airflow_db):
    assert failures.airflow_run("manual__never_triggered") is None
    assert failures.read_task_log("manual__never_triggered", "run_local_job", -1, 1) == []

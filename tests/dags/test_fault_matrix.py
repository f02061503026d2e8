"""What movielens_similarity does when things fail on EMR: the fault matrix of docs/failures.md.

Each scenario runs the DAG's EMR target on moto with the EMR double (tests/support/emr_double.py),
which really runs the steps, and injects one fault: a broken stage, a stuck stage, a failed
bootstrap, an AWS error or throttling burst (tests/support/aws_faults.py), a worker that dies. Each
checks the promise: no cluster left alive, the run failed (or succeeded where retries recover), the
reason in the task log, and nothing already computed lost.
"""
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from movielens_emr.airflow.operators import DuplicateStepsError, EmrAddStepsOnceOperator
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import open_storage, run_folder
from movielens_emr.emr import target as emr_target
from movielens_emr.emr.steps import step_name
from movielens_emr.engine.protocol import final_output_folder
from movielens_emr.engine.similarity.engine import ENGINE
from movielens_emr.engine.similarity.job import STAGE_NAMES
from movielens_emr.reporting.history import fetch_runs, history_engine

from tests.support.aws_faults import S3_SLOW_DOWN, THROTTLING, Fault, aws_faults
from tests.support.dag_runs import (
    DAG_ID,
    EMR_TASK_STATES,
    REGION,
    S3_ROOT,
    cluster_states,
    live_clusters,
    run_dag,
    run_state,
    s3_bytes,
    s3_key,
    s3_keys,
    step_log,
    task_states,
    xcom,
)
from tests.support.emr_double import emr_streaming_double
from tests.support.logs_at_termination import LogsAtTermination

# A fifth of ml-latest-small's users on 1 master + 1 core node: a full run in well under a minute.
CONF = {"target": "emr", "dataset": "ml-latest-small", "node_count": 2, "sample_fraction": 0.2}
STAGES_FAILED = {**EMR_TASK_STATES, "wait_for_stages[0]": "failed", "collect_results": "upstream_failed",
                 "record_metrics": "upstream_failed", "diagnose_failure": "success"}


@pytest.fixture
def emr_env(monkeypatch):
    """The EMR target's settings, with a short wait for step logs; yields (emr, s3) clients inside moto."""
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
    monkeypatch.setenv("MOVIELENS_LOG_WAIT_SECONDS", "5")
    with mock_aws():
        yield boto3.client("emr", region_name=REGION), boto3.client("s3", region_name=REGION)


@pytest.fixture
def task_log(caplog, capfd):
    """The run's task log so far: the package's log records and the operators' (written to the output).

    task_log.of(task_id): one task's own log, what was logged between dag.test's start and end of it.
    """
    def read():
        captured = capfd.readouterr()
        read.text += captured.out + captured.err
        read.entries += output_entries(captured.out) + output_entries(captured.err)
        return caplog.text + read.text

    def of(task_id):
        read()
        records = [(utc_stamp(record.created), caplog.handler.format(record)) for record in caplog.records]
        return one_tasks_log(sorted(read.entries + records), task_id)

    read.text, read.entries, read.of = "", [], of
    return read


STAMPED_LINE = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) ")


def utc_stamp(seconds):
    """A time as structlog stamps the output's lines (ISO 8601 in UTC, microseconds), which sort by time."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def output_entries(output):
    """[(time stamp, entry)] of structlog's output: each stamped line with the unstamped lines after it."""
    entries = []
    for line in output.splitlines():
        stamp = STAMPED_LINE.match(line)
        if stamp:
            entries.append((stamp.group(1), line))
        elif entries:
            entries[-1] = (entries[-1][0], f"{entries[-1][1]}\n{line}")
    return entries


def one_tasks_log(entries, task_id):
    """The entries from dag.test's "starting task_id=<task_id> " to its "end task task_id=<task_id> "."""
    start = next(stamp for stamp, entry in entries if f"[DAG TEST] starting task_id={task_id} " in entry)
    end = next(stamp for stamp, entry in entries if f"[DAG TEST] end task task_id={task_id} " in entry)
    return "\n".join(entry for stamp, entry in entries if start <= stamp <= end)


def break_stage(monkeypatch, number, option):
    """Give one stage's reducer a bad option: its tasks exit non-zero, as a broken stage's would."""
    build_stage_steps = emr_target.build_stage_steps

    def steps_with_a_broken_stage(*args, **kwargs):
        steps = build_stage_steps(*args, **kwargs)
        step_args = steps[number - 1]["HadoopJarStep"]["Args"]
        step_args[step_args.index("-reducer") + 1] += f" {option}"
        return steps

    monkeypatch.setattr(emr_target, "build_stage_steps", steps_with_a_broken_stage)


def step_states(emr, dag_run):
    cluster_id = xcom(dag_run, "create_cluster")
    return [emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]["State"]
            for step_id in xcom(dag_run, "submit_stages")]


def stage_output_keys(s3, dag_run, stage):
    return [key for key in s3_keys(s3, s3_key(dag_run, f"output/stage-{stage}/"))]


def results_keys(s3, dag_run):
    """The run's results and a success's metrics.json (a failure's, diagnose_failure's, is no result)."""
    folder = s3_key(dag_run, "")
    return [key for key in s3_keys(s3, folder) if "/results/" in key
            or (key.endswith("metrics.json") and "failure" not in json.loads(s3_bytes(s3, key)))]


def run_failure(s3, dag_run):
    """diagnose_failure's record in the run's metrics.json."""
    return json.loads(s3_bytes(s3, s3_key(dag_run, "metrics.json")))["failure"]


# 1. and 2. a stage fails on EMR ---------------------------------------------------------------------

@pytest.mark.parametrize("stage, option, message", [
    (2, "--movie-blocks 0", "--movie-blocks must be at least 1"),
    (3, "--metric nonsense", "invalid choice: 'nonsense'"),
])
def test_a_failing_stage_fails_the_run_at_once_and_is_diagnosed_once_the_cluster_has_ended(
        dagbag, emr_env, monkeypatch, task_log, stage, option, message):
    emr, s3 = emr_env
    break_stage(monkeypatch, stage, option)
    with emr_streaming_double() as double:
        dag_run = run_dag(dagbag, CONF)
        states = step_states(emr, dag_run)
    cluster_id, step_ids = xcom(dag_run, "create_cluster"), xcom(dag_run, "submit_stages")

    assert run_state(dag_run) == "failed"
    assert task_states(dag_run) == STAGES_FAILED
    assert live_clusters(emr) == {} and cluster_states(emr) == {cluster_id: "TERMINATED"}
    assert states == ["COMPLETED"] * (stage - 1) + ["FAILED"] + ["CANCELLED"] * (3 - stage)
    assert [execution.state for execution in double.executions] == ["COMPLETED"] * (stage - 1) + ["FAILED"]
    # as on EMR, the task's own error is in its container's log, not in the step's stderr
    assert message not in step_log(s3, dag_run, cluster_id, step_ids[stage - 1], "stderr.gz")
    # what the stages before it computed is kept; nothing looks like a result
    assert all(stage_output_keys(s3, dag_run, earlier) for earlier in range(1, stage))
    assert not stage_output_keys(s3, dag_run, stage)
    assert not results_keys(s3, dag_run)
    # wait_for_stages fails at once: the stage, EMR's reason, where the diagnosis follows; no log read
    folder = f"{S3_ROOT}/{run_folder(dag_run.run_id)}"
    wait_log = task_log.of("wait_for_stages")
    assert f"StagesFailedError: stage {stage} of 3 (stage {stage} of 3: " in wait_log
    assert "subprocess failed with code" in wait_log
    assert f'in the log of diagnose_failure and under "failure" in {folder}/metrics.json' in wait_log
    assert message not in wait_log and "last lines of its stderr" not in wait_log
    # diagnose_failure, once the cluster has ended: the failed task's own error found in its container's
    # log, and the tail of the step's stderr; the same report in metrics.json
    diagnosis = task_log.of("diagnose_failure")
    assert f"stage {stage} of 3 (stage {stage} of 3: " in diagnosis
    task_line = diagnosis.split("the failed task's own error, from its container's log:\n")[1].split("\n")[0]
    assert task_line.startswith("task attempt_") and f"_{stage:04d}_r_" in task_line  # the stage's job
    assert f"{folder}/logs/{cluster_id}/containers/application_" in diagnosis and message in diagnosis
    assert f"last lines of its stderr ({folder}/logs/{cluster_id}/steps/" in diagnosis
    failure = run_failure(s3, dag_run)
    assert (failure["stage"], failure["step_id"], failure["state"]) == (stage, step_ids[stage - 1], "FAILED")
    assert failure["report"] in diagnosis and message in failure["report"]
    # the history has the run failed by its stage, not by its diagnosis, and none of a success's figures
    rows = fetch_runs(history_engine(settings_from_env()), limit=10_000)
    [row] = [row for row in rows if row["run_id"] == dag_run.run_id]
    assert (row["outcome"], row["failed_tasks"]) == ("failed", "wait_for_stages_0")
    assert row["cluster_id"] == cluster_id
    assert row["wall_seconds"] is None and row["output_pairs"] is None


# 1b. a failed stage ends its cluster at once, whatever the log wait ---------------------------------
# The old way, the stage wait read the failed step's logs before failing, waiting up to the log wait
# for each: with the logs delivered only at termination, the cluster stayed up for all of it.
LONG_LOG_WAIT_SECONDS = 600
FAILED_TO_TERMINATE_BOUND_SECONDS = 60


def test_a_failed_stage_has_its_cluster_terminated_at_once_and_diagnosed_after(
        dagbag, emr_env, monkeypatch, task_log, capfd):
    emr, s3 = emr_env
    monkeypatch.setenv("MOVIELENS_LOG_WAIT_SECONDS", str(LONG_LOG_WAIT_SECONDS))
    break_stage(monkeypatch, 2, "--movie-blocks 0")
    with LogsAtTermination().installed() as double:
        dag_run = run_dag(dagbag, CONF)
        cluster_id, step_ids = xcom(dag_run, "create_cluster"), xcom(dag_run, "submit_stages")
        failed = emr.describe_step(ClusterId=cluster_id, StepId=step_ids[1])["Step"]["Status"]
    seconds = double.terminate_calls[cluster_id] - failed["Timeline"]["EndDateTime"].timestamp()
    with capfd.disabled():  # the measurement, shown with the test's result
        print(f"\npoll mode: TerminateJobFlows came {seconds:.1f} s after stage 2 FAILED "
              f"(MOVIELENS_LOG_WAIT_SECONDS={LONG_LOG_WAIT_SECONDS})")

    assert failed["State"] == "FAILED"
    assert 0 <= seconds < FAILED_TO_TERMINATE_BOUND_SECONDS
    assert run_state(dag_run) == "failed"
    assert task_states(dag_run) == STAGES_FAILED
    assert cluster_states(emr) == {cluster_id: "TERMINATED"}
    # the diagnosis, after the termination, read the logs EMR delivered with it
    assert "--movie-blocks must be at least 1" not in task_log.of("wait_for_stages")
    assert "--movie-blocks must be at least 1" in task_log.of("diagnose_failure")
    failure = run_failure(s3, dag_run)
    assert (failure["stage"], failure["step_id"], failure["state"]) == (2, step_ids[1], "FAILED")
    assert "--movie-blocks must be at least 1" in failure["report"]


# 3. the stages' wait times out ----------------------------------------------------------------------

def test_a_stage_that_never_ends_times_the_wait_out_and_the_cluster_is_terminated(
        dagbag, emr_env, monkeypatch, task_log):
    emr, s3 = emr_env
    monkeypatch.setenv("MOVIELENS_STAGE_TIMEOUT_SECONDS", "4")
    with emr_streaming_double() as double:
        double.hold_steps(lambda name: name.startswith("stage 1 of 3"))
        dag_run = run_dag(dagbag, CONF)
        states = step_states(emr, dag_run)
    cluster_id = xcom(dag_run, "create_cluster")

    assert run_state(dag_run) == "failed"
    assert task_states(dag_run) == STAGES_FAILED
    assert cluster_states(emr) == {cluster_id: "TERMINATED"}
    assert states == ["INTERRUPTED", "CANCELLED", "CANCELLED"]  # when the teardown ended the cluster
    assert double.executions == []
    wait_log = task_log.of("wait_for_stages")
    assert "the wait for the stages failed (AirflowSensorTimeout: Sensor has timed out" in wait_log
    assert "with no stage failed on EMR: stage 1: RUNNING, stage 2: PENDING, stage 3: PENDING" in wait_log
    assert "stage 1 of 3 (stage 1 of 3: " in task_log.of("diagnose_failure")
    failure = run_failure(s3, dag_run)
    assert (failure["stage"], failure["state"]) == (1, "INTERRUPTED")
    assert failure["stage_states"] == ["INTERRUPTED", "CANCELLED", "CANCELLED"]


# 4. create_cluster fails after EMR created the cluster --------------------------------------------

def test_create_cluster_failing_after_the_cluster_exists_terminates_it(dagbag, emr_env, task_log):
    """Describing the new cluster (for its log link) is denied: the task fails, and ends its cluster."""
    emr, _ = emr_env
    denied = ("AccessDeniedException", "not authorized to perform: elasticmapreduce:DescribeCluster", 400)
    with emr_streaming_double(), aws_faults([Fault("emr", "DescribeCluster", denied)]) as faults:
        dag_run = run_dag(dagbag, CONF)

    assert run_state(dag_run) == "failed"
    states = task_states(dag_run)
    assert states["create_cluster"] == "failed"
    assert {states[task] for task in ("submit_stages", "prepare_stage_wait", "wait_for_stages",
                                      "collect_results", "record_metrics")} == {"upstream_failed"}
    assert states["record_run_history"] == "success"
    assert (faults.count("emr", "DescribeCluster") == 1
            and faults.count("emr", "RunJobFlow", injected=False) == 1)
    (cluster_id,) = cluster_states(emr)
    assert cluster_states(emr) == {cluster_id: "TERMINATED"}
    log = task_log()
    assert f"Creating the cluster failed after EMR created {cluster_id} (ClientError: " in log
    assert "not authorized to perform: elasticmapreduce:DescribeCluster" in log
    assert f"Terminated {cluster_id}, created by this failed try" in log


# 5. collect_results fails ---------------------------------------------------------------------------

def test_collect_results_failing_keeps_the_computed_output_for_a_second_try(dagbag, emr_env, task_log):
    """Writing the results is denied: the run fails, the cluster ends, the stages' output stays to collect."""
    emr, s3 = emr_env
    denied = ("AccessDenied", "Access Denied", 403)
    with emr_streaming_double(), aws_faults([Fault("s3", "PutObject", denied, url_contains="/results/")]):
        dag_run = run_dag(dagbag, CONF)

    assert run_state(dag_run) == "failed"
    assert task_states(dag_run) == {**EMR_TASK_STATES, "collect_results": "failed",
                                    "record_metrics": "upstream_failed"}
    assert live_clusters(emr) == {} and set(cluster_states(emr).values()) == {"TERMINATED"}
    final_output = f"{S3_ROOT}/{run_folder(dag_run.run_id)}/output/stage-3"
    log = task_log()
    assert "collecting the results failed (S3UploadFailedError: Failed to upload" in log  # boto3 upload_file
    assert "An error occurred (AccessDenied) when calling the PutObject operation" in log
    assert f"The computed output is kept at {final_output}: clear collect_results" in log
    assert not results_keys(s3, dag_run)
    # a second try, with the cause gone, collects the same output without recomputing it
    collected = ENGINE.collect(open_storage(S3_ROOT, "aws_default"), final_output_folder(
        run_folder(dag_run.run_id), ENGINE), f"{run_folder(dag_run.run_id)}/results")
    assert collected["output_pairs"] > 0
    csv_lines = s3_bytes(s3, s3_key(dag_run, "results/similarities.csv")).decode().splitlines()
    assert len(csv_lines) == collected["output_pairs"] + 1


# 5b. the teardown itself fails ---------------------------------------------------------------------

def test_a_failed_teardown_fails_the_run_and_the_reaper_ends_the_cluster(dagbag, emr_env, task_log):
    """TerminateJobFlows is denied.

    The results are kept, the run fails, and the hourly reaper ends the cluster.
    """
    emr, s3 = emr_env
    denied = ("AccessDeniedException", "not authorized to perform: elasticmapreduce:TerminateJobFlows", 400)
    with emr_streaming_double(), aws_faults([Fault("emr", "TerminateJobFlows", denied)]) as faults:
        dag_run = run_dag(dagbag, CONF)
    cluster_id = xcom(dag_run, "create_cluster")

    assert run_state(dag_run) == "failed"
    assert task_states(dag_run) == {**EMR_TASK_STATES, "terminate_cluster": "failed",
                                    "wait_for_termination": "upstream_failed",
                                    "record_metrics": "upstream_failed"}
    assert faults.count("emr", "TerminateJobFlows") == 1
    assert live_clusters(emr) == {cluster_id: "WAITING"}
    assert "not authorized to perform: elasticmapreduce:TerminateJobFlows" in task_log()
    assert len(results_keys(s3, dag_run)) == 2  # similarities.csv and top_neighbours.json: collected before

    assert run_state(dagbag.get_dag("movielens_cluster_reaper").test()) == "success"
    assert cluster_states(emr) == {cluster_id: "TERMINATED"}
    assert f"terminating {cluster_id}: its run {DAG_ID}/{dag_run.run_id} is no longer running" in task_log()


# 6. the cluster's bootstrap fails -------------------------------------------------------------------

def test_a_failed_bootstrap_fails_the_run_with_emrs_reason(dagbag, emr_env, task_log):
    """The usual order: the stages are queued while the cluster provisions, then its bootstrap fails."""
    emr, s3 = emr_env
    with emr_streaming_double() as double:
        double.fail_bootstrap()
        dag_run = run_dag(dagbag, CONF)
        states = step_states(emr, dag_run)
    cluster_id = xcom(dag_run, "create_cluster")

    assert run_state(dag_run) == "failed"
    assert task_states(dag_run) == STAGES_FAILED
    assert cluster_states(emr) == {cluster_id: "TERMINATED_WITH_ERRORS"}
    assert states == ["CANCELLED"] * 3 and double.executions == []
    assert not results_keys(s3, dag_run)
    node_logs = f"{S3_ROOT}/{run_folder(dag_run.run_id)}/logs/{cluster_id}/node/"
    for log in (task_log.of("wait_for_stages"), task_log.of("diagnose_failure")):
        assert (f"cluster {cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: "
                "On the master instance (i-") in log
        assert "bootstrap action 1 returned a non-zero return code" in log
        assert f"its bootstrap and node logs are under {node_logs}" in log
    assert run_failure(s3, dag_run)["cluster_fault"].startswith(
        f"cluster {cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: ")


def test_a_bootstrap_failing_before_the_stages_are_submitted_fails_submit_stages_with_emrs_reason(
        dagbag, emr_env, task_log):
    emr, _ = emr_env
    with emr_streaming_double() as double:
        double.fail_bootstrap(before_steps=True)
        dag_run = run_dag(dagbag, CONF)
    cluster_id = xcom(dag_run, "create_cluster")

    assert run_state(dag_run) == "failed"
    not_submitted = {task: state for task, state in STAGES_FAILED.items() if task != "wait_for_stages[0]"}
    assert task_states(dag_run) == {**not_submitted, "submit_stages": "failed",
                                    "prepare_stage_wait": "upstream_failed",
                                    "wait_for_stages": "upstream_failed",
                                    "diagnose_failure": "skipped"}  # no stages: submit_stages' log says why
    assert cluster_states(emr) == {cluster_id: "TERMINATED_WITH_ERRORS"}
    assert emr.list_steps(ClusterId=cluster_id)["Steps"] == [] and double.executions == []
    assert (f"ClusterEndedError: the stages cannot be submitted: cluster {cluster_id} ended "
            "TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: On the master instance (i-") in task_log()


# 7. AWS throttles -----------------------------------------------------------------------------------

def test_throttling_bursts_are_retried_with_backoff_and_the_run_succeeds(dagbag, emr_env):
    emr, s3 = emr_env
    bursts = [Fault("emr", "RunJobFlow", THROTTLING, times=2),
              Fault("emr", "AddJobFlowSteps", THROTTLING, times=2),
              Fault("emr", "DescribeStep", THROTTLING, times=2, after=3),
              Fault("emr", "TerminateJobFlows", THROTTLING, times=2),
              Fault("emr", "DescribeCluster", THROTTLING, times=2, after=1),
              Fault("s3", "PutObject", S3_SLOW_DOWN, times=2)]
    with emr_streaming_double() as double, aws_faults(bursts) as faults:
        dag_run = run_dag(dagbag, CONF)

    assert run_state(dag_run) == "success", task_states(dag_run)
    assert task_states(dag_run) == EMR_TASK_STATES
    assert [(fault.operation, faults.count(fault.service, fault.operation)) for fault in bursts] == [
        (fault.operation, 2) for fault in bursts]
    assert all(faults.count(fault.service, fault.operation, injected=False) for fault in bursts)
    assert [execution.state for execution in double.executions] == ["COMPLETED"] * 3
    assert cluster_states(emr) == {xcom(dag_run, "create_cluster"): "TERMINATED"}
    metrics = json.loads(s3_bytes(s3, s3_key(dag_run, "metrics.json")))
    assert metrics["output_pairs"] > 0


# 8. the Airflow worker dies mid-run -------------------------------------------------------------------

def set_run_state(dag_id, run_id, state):
    """What the scheduler does to a run whose worker stopped heartbeating and whose tasks then failed."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).update(
            {"state": state})


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"gave up waiting for {what} after {timeout} s")


def test_a_cluster_left_by_a_dead_worker_is_terminated_by_the_reaper(
        dagbag, moto_server, monkeypatch, tmp_path, task_log):
    from conftest import TEST_ENV

    connection = json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": moto_server, "region_name": REGION}})
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", connection)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
    env = {**TEST_ENV, **os.environ}
    env.pop("AWS_ENDPOINT_URL", None)
    emr = boto3.client("emr", region_name=REGION, endpoint_url=moto_server)
    airflow = Path(sys.executable).parent / "airflow"
    with emr_streaming_double() as double, open(tmp_path / "worker.log", "wb") as log:
        # The run is mid-stage when its worker dies.
        double.hold_steps(lambda name: name.startswith("stage 1 of 3"))
        worker = subprocess.Popen([str(airflow), "dags", "test", DAG_ID, "-c", json.dumps(CONF)], env=env,
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            cluster_id = wait_for(lambda: next(iter(live_clusters(emr)), None), 240, "the run's cluster")
            wait_for(lambda: emr.list_steps(ClusterId=cluster_id)["Steps"], 120, "the run's steps")
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        cluster_tags = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Tags"]
        tags = {tag["Key"]: tag["Value"] for tag in cluster_tags}
        run_id = tags["movielens:run_id"]

        # The run still counts as running: the reaper leaves its cluster alone.
        assert run_state(dagbag.get_dag("movielens_cluster_reaper").test()) == "success"
        assert live_clusters(emr) == {cluster_id: "RUNNING"}
        # Once the run has failed, its cluster goes.
        set_run_state(DAG_ID, run_id, "failed")
        assert run_state(dagbag.get_dag("movielens_cluster_reaper").test()) == "success"
    assert cluster_states(emr) == {cluster_id: "TERMINATED"}
    log = task_log()
    assert f"terminating {cluster_id}: its run {DAG_ID}/{run_id} is no longer running" in log


# the local target: the job fails ---------------------------------------------------------------------

def test_a_failing_local_job_fails_the_run_with_the_jobs_own_traceback(
        dagbag, tmp_path, monkeypatch, task_log):
    """Most lines of the ratings file are not ratings: the job refuses the file, and the log shows why."""
    source = tmp_path / "source" / "ml-latest-small"
    source.mkdir(parents=True)
    movies = Path(os.environ["MOVIELENS_SOURCE_DIR"]) / "ml-latest-small" / "movies.csv"
    (source / "movies.csv").write_bytes(movies.read_bytes())
    good = [f"{user},1,4.0,964982703" for user in range(1, 21)]
    (source / "ratings.csv").write_text("userId,movieId,rating,timestamp\n" + "\n".join(
        good + [f"{user};1;4.0" for user in range(30)]) + "\n")
    root = tmp_path / "storage"
    monkeypatch.setenv("MOVIELENS_SOURCE_DIR", str(source.parent))
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", str(root))
    dag_run = run_dag(dagbag, {"target": "local", "dataset": "ml-latest-small", "node_count": 1})

    assert run_state(dag_run) == "failed"
    states = task_states(dag_run)
    assert states["run_local_job"] == "failed" and states["collect_results"] == "upstream_failed"
    assert states["record_run_history"] == "success"
    log = task_log()
    assert "Traceback (most recent call last)" in log
    assert "TooManyBadLines" in log and "30 of 50" in log
    # raised as AirflowFailException, which Airflow never retries, whatever MOVIELENS_TASK_RETRIES says
    assert "AirflowFailException" in log and "The input is at fault (TooManyBadLines): not retried." in log
    assert not (root / run_folder(dag_run.run_id) / "results").exists()


# 9. a retried task repeats no work ------------------------------------------------------------------
# A rerun of stage_dataset uploads nothing:
# test_movielens_similarity_emr.py::test_emr_dataset_is_uploaded_once.

SINGLE_NODE = {"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True}


def test_submit_stages_retried_returns_the_steps_of_the_first_try(dagbag):
    assert isinstance(dagbag.get_dag(DAG_ID).get_task("submit_stages"), EmrAddStepsOnceOperator)
    steps = [{"Name": step_name(number, STAGE_NAMES, "manual__retry"), "ActionOnFailure": "CANCEL_AND_WAIT",
              "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["hadoop-streaming"]}}
             for number in (1, 2, 3)]
    with mock_aws():
        emr = boto3.client("emr", region_name=REGION)
        cluster_id = emr.run_job_flow(
            Name="retry", ReleaseLabel="emr-7.9.0",
            Instances=SINGLE_NODE,
            JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]

        def try_once():
            operator = EmrAddStepsOnceOperator(task_id="submit_stages", job_flow_id=cluster_id, steps=steps)
            ti = mock.MagicMock()
            return operator.execute({"ti": ti}), ti

        first_ids, _ = try_once()
        retried_ids, retry_ti = try_once()
        assert retried_ids == first_ids and len(first_ids) == 3
        listed = emr.list_steps(ClusterId=cluster_id)["Steps"]
        assert sorted(step["Id"] for step in listed) == sorted(first_ids)
        retry_ti.xcom_push.assert_any_call(key="job_flow_id", value=cluster_id)

        # Only part of a submission on the cluster: refuse to guess rather than add duplicates.
        other_id = emr.run_job_flow(
            Name="partial", ReleaseLabel="emr-7.9.0",
            Instances=SINGLE_NODE,
            JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]
        emr.add_job_flow_steps(JobFlowId=other_id, Steps=steps[:1])
        operator = EmrAddStepsOnceOperator(task_id="submit_stages", job_flow_id=other_id, steps=steps)
        with pytest.raises(DuplicateStepsError):
            operator.execute({"ti": mock.MagicMock()})
        assert len(emr.list_steps(ClusterId=other_id)["Steps"]) == 1

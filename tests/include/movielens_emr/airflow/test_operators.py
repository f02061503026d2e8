"""operators.py: submitting never waits; the stage and cluster-ended sensors, polled and deferred."""
import time
from unittest import mock

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.emr import EmrStepSensorTrigger
from airflow.sdk.exceptions import AirflowSensorTimeout, TaskDeferred
from moto import mock_aws

from movielens_emr.airflow.operators import (
    EmrAddStepsOnceOperator,
    EmrClusterEndedSensor,
    EmrStagesSensor,
    StagesFailedError,
)
from movielens_emr.airflow.triggers import EmrClusterEndedTrigger

from tests.support.emr_double import emr_streaming_double, single_node_cluster
from tests.support.logs_at_termination import LogsAtTermination

REGION = "us-east-1"
BUCKET = "operators-test"
RUN_ID = "manual__sensor"
DIAGNOSIS_FOLLOWS = ("the full diagnosis follows once the cluster has ended: in the log of diagnose_failure "
                     f'and under "failure" in s3://{BUCKET}/runs/{RUN_ID}/metrics.json')


@pytest.fixture
def emr(monkeypatch):
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", f"s3://{BUCKET}")
    monkeypatch.setenv("MOVIELENS_LOG_WAIT_SECONDS", "5")
    monkeypatch.setenv("MOVIELENS_POLL_SECONDS", "1")
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield boto3.client("emr", region_name=REGION)


def new_cluster(emr):
    return single_node_cluster(emr, "sensor", log_uri=f"s3://{BUCKET}/runs/{RUN_ID}/logs/")


def stage_steps(emr, cluster_id, broken=()):
    """Two streaming steps; those numbered in `broken` have arguments hadoop-streaming refuses."""
    args = {True: ["hadoop-streaming", "-no-such-option"], False: ["hadoop-streaming"]}
    steps = [{"Name": f"stage {number} of 2", "ActionOnFailure": "CANCEL_AND_WAIT",
              "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args[number in broken]}}
             for number in (1, 2)]
    return emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]


def context():
    return {"ti": mock.MagicMock(), "run_id": RUN_ID}


def stages_sensor(cluster_id, step_ids, deferrable, timeout=30):
    return EmrStagesSensor(task_id="wait_for_stages", job_flow_id=cluster_id, stage_step_ids=step_ids,
                           timeout=timeout, poke_interval=1, deferrable=deferrable)


def test_submitting_never_waits_whatever_it_is_asked():
    operator = EmrAddStepsOnceOperator(task_id="submit_stages", job_flow_id="j-1", steps=[],
                                       wait_for_completion=True, deferrable=True)
    assert (operator.wait_for_completion, operator.deferrable) == (False, False)


def test_the_stage_sensor_waits_for_the_last_stage_with_attempts_for_its_whole_timeout():
    sensor = stages_sensor("j-1", ["s-1", "s-2", "s-3"], deferrable=False, timeout=7200)
    assert (sensor.step_id, sensor.timeout, sensor.max_attempts) == ("s-3", 7200, 7200)


def test_poking_a_failed_stage_logs_emrs_reason_and_fails_with_it(emr, capfd):
    cluster_id = new_cluster(emr)
    step_ids = stage_steps(emr, cluster_id, broken=(1,))
    sensor = stages_sensor(cluster_id, step_ids, deferrable=False)
    failed = r"^stage 1 of 2 \(stage 1 of 2\) ended FAILED: .*-no-such-option"
    with emr_streaming_double(), pytest.raises(StagesFailedError, match=failed) as raised:
        sensor.execute(context())
    assert str(raised.value).splitlines()[-1] == DIAGNOSIS_FOLLOWS
    logged = capfd.readouterr().out  # the sensor's own log
    assert "[error    ] stage 1 of 2 (stage 1 of 2) ended FAILED: " in logged
    assert DIAGNOSIS_FOLLOWS in logged
    assert "last lines of its stderr" not in logged  # the logs are the diagnosis' to read


def test_a_polled_wait_logs_each_stage_as_it_starts_and_ends(emr, capfd):
    cluster_id = new_cluster(emr)
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="in/one.txt", Body=b"a line\n")
    steps = [{"Name": f"stage {number} of 2", "ActionOnFailure": "CANCEL_AND_WAIT",
              "HadoopJarStep": {"Jar": "command-runner.jar", "Args": [
                  "hadoop-streaming", "-input", f"s3://{BUCKET}/in/one.txt", "-output",
                  f"s3://{BUCKET}/out/{number}", "-mapper", "cat", "-reducer", "cat"]}}
             for number in (1, 2)]
    step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
    sensor = stages_sensor(cluster_id, step_ids, deferrable=False)
    with emr_streaming_double():
        sensor.execute(context())
    logged = capfd.readouterr().out
    for number in (1, 2):
        assert f"stage {number} of 2: COMPLETED in " in logged
        assert logged.count(f"stage {number} of 2: COMPLETED") == 1  # once, not at every poke
    assert logged.index("stage 1 of 2: COMPLETED") < logged.index("stage 2 of 2: COMPLETED")


def test_a_failed_stage_fails_the_wait_at_once_whatever_the_log_wait(emr, monkeypatch):
    """Its logs never arrive while the cluster is up (EMR pushes them as it terminates it)."""
    monkeypatch.setenv("MOVIELENS_LOG_WAIT_SECONDS", "600")
    cluster_id = new_cluster(emr)
    step_ids = stage_steps(emr, cluster_id, broken=(1,))
    sensor = stages_sensor(cluster_id, step_ids, deferrable=False)
    started = time.monotonic()
    with LogsAtTermination().installed(), pytest.raises(StagesFailedError, match="ended FAILED"):
        sensor.execute(context())
    assert time.monotonic() - started < 30


def test_a_timed_out_poke_wait_stays_a_timeout_and_says_no_stage_failed(emr, capfd):
    cluster_id = new_cluster(emr)
    step_ids = stage_steps(emr, cluster_id)
    sensor = stages_sensor(cluster_id, step_ids, deferrable=False, timeout=1)
    with emr_streaming_double() as double, pytest.raises(AirflowSensorTimeout):
        double.hold_steps(lambda name: True)
        sensor.execute(context())
    logged = capfd.readouterr().out
    assert "the wait for the stages failed (AirflowSensorTimeout: Sensor has timed out" in logged
    assert "with no stage failed on EMR: stage 1: RUNNING, stage 2: PENDING" in logged


def test_the_deferred_stage_wait_uses_the_computed_timeout(emr):
    cluster_id = new_cluster(emr)
    step_ids = stage_steps(emr, cluster_id)
    sensor = stages_sensor(cluster_id, step_ids, deferrable=True, timeout=3600)
    with emr_streaming_double() as double, pytest.raises(TaskDeferred) as deferred:
        double.hold_steps(lambda name: True)  # the stages still running when the wait defers
        sensor.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrStepSensorTrigger)
    assert trigger.waiter_args == {"ClusterId": cluster_id, "StepId": step_ids[-1]}
    assert (trigger.waiter_delay, trigger.attempts) == (1, 3600)
    assert deferred.value.timeout.total_seconds() == 3600


@pytest.mark.parametrize("next_method, next_kwargs, raised", [
    ("execute_complete", {"event": {"status": "error", "message": "Waiter encountered a terminal failure"}},
     StagesFailedError),
    ("__fail__", {"error": "Trigger failure"}, StagesFailedError),
    ("__fail__", {"error": "Trigger timeout"}, AirflowSensorTimeout),  # the deferral's own timeout
])
def test_a_deferred_wait_that_fails_logs_emrs_reason_before_failing(emr, capfd, next_method, next_kwargs,
                                                                    raised):
    cluster_id = new_cluster(emr)
    step_ids = stage_steps(emr, cluster_id, broken=(1,))
    sensor = stages_sensor(cluster_id, step_ids, deferrable=True)
    with emr_streaming_double():
        for _ in range(3):  # what the trigger's polls did: stage 1 runs, fails, and stage 2 is cancelled
            emr.describe_step(ClusterId=cluster_id, StepId=step_ids[-1])
        with pytest.raises(raised):
            sensor.resume_execution(next_method, next_kwargs, context())
    logged = capfd.readouterr().out
    assert "[error    ] stage 1 of 2 (stage 1 of 2) ended FAILED: " in logged
    assert DIAGNOSIS_FOLLOWS in logged and "last lines of its stderr" not in logged


def test_a_deferred_wait_that_succeeds_explains_nothing(emr, capfd):
    sensor = stages_sensor("j-1", ["s-1"], deferrable=True)
    sensor.resume_execution("execute_complete", {"event": {"status": "success"}}, context())
    assert "[error" not in capfd.readouterr().out


@pytest.mark.parametrize("fault", [False, True])
def test_the_cluster_ended_sensor_takes_either_end_state_when_polling(emr, fault):
    cluster_id = new_cluster(emr)
    sensor = EmrClusterEndedSensor(task_id="wait_for_termination", job_flow_id=cluster_id, timeout=10,
                                   poke_interval=1, deferrable=False)
    with emr_streaming_double() as double:
        if fault:
            double.fail_bootstrap(before_steps=True)  # at this first describe_cluster
            emr.describe_cluster(ClusterId=cluster_id)
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        sensor.execute(context())  # raises if the end state counts as a failure
        state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
    assert state == ("TERMINATED_WITH_ERRORS" if fault else "TERMINATED")


def test_the_cluster_ended_sensor_defers_with_a_trigger_that_takes_either_end_state(emr):
    cluster_id = new_cluster(emr)
    sensor = EmrClusterEndedSensor(task_id="wait_for_termination", job_flow_id=cluster_id, timeout=600,
                                   poke_interval=2, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, EmrClusterEndedTrigger)
    assert trigger.waiter_args == {"ClusterId": cluster_id}
    assert (trigger.waiter_delay, trigger.attempts) == (2, 300)
    sensor.execute_complete(context(), {"status": "success"})

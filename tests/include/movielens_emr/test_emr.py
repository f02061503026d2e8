"""emr.py: the EMR client on moto with the EMR double, and the cluster-ended wait's waiter and trigger."""
import asyncio
import json

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.emr import EmrTerminateJobFlowTrigger
from moto import mock_aws

from movielens_emr.emr import (
    CLUSTER_ENDED_WAITER_OVERRIDES,
    EmrClient,
    EmrClusterEndedTrigger,
    attempts_within,
)
from movielens_emr.storage import open_storage

from tests.support.emr_double import emr_streaming_double

REGION = "us-east-1"
BUCKET = "emr-client-test"
RUN_PREFIX = "runs/manual__one"
SINGLE_NODE = {"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True}


def new_cluster(emr, name="emr-client"):
    return emr.run_job_flow(
        Name=name, ReleaseLabel="emr-7.9.0", Instances=SINGLE_NODE, LogUri=f"s3://{BUCKET}/{RUN_PREFIX}/logs/",
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]


def broken_step(number):
    """A streaming step whose arguments hadoop-streaming refuses: the double fails it, as EMR would."""
    return {"Name": f"stage {number} of 2", "ActionOnFailure": "CANCEL_AND_WAIT",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["hadoop-streaming", "-no-such-option"]}}


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield boto3.client("emr", region_name=REGION)


def poll_until_ended(client, cluster_id, step_id):
    for _ in range(10):
        (step,) = client.describe_steps(cluster_id, [step_id])
        if step["Status"]["State"] not in ("PENDING", "RUNNING"):
            return step
    raise AssertionError("the step never ended")


@pytest.mark.parametrize("timeout, poll, attempts", [(3600, 30, 120), (10, 30, 1), (95, 10, 9), (0, 5, 1)])
def test_attempts_within_counts_the_polls_that_fit_in_the_timeout(timeout, poll, attempts):
    assert attempts_within(timeout, poll) == attempts


def test_the_client_describes_lists_and_terminates_clusters(aws):
    client = EmrClient("aws_default")
    cluster_id, other_id = new_cluster(aws), new_cluster(aws, "other")
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]

    assert client.describe_cluster(cluster_id)["Id"] == cluster_id
    assert [step["Id"] for step in client.describe_steps(cluster_id, step_ids)] == step_ids
    assert sorted(step["Id"] for step in client.list_steps(cluster_id)) == sorted(step_ids)
    assert {cluster["Id"] for cluster in client.describe_clusters_in(["WAITING", "RUNNING"])} == {
        cluster_id, other_id}
    client.terminate(other_id)
    assert client.describe_cluster(other_id)["Status"]["State"] == "TERMINATED"
    assert client.cluster_fault(other_id) is None  # ended as asked: no fault
    assert [cluster["Id"] for cluster in client.describe_clusters_in(["WAITING", "RUNNING"])] == [cluster_id]


def test_the_client_explains_a_failed_stage_with_emrs_reason_and_its_stderr(aws):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]
    with emr_streaming_double():
        failed = poll_until_ended(client, cluster_id, step_ids[0])
        report = client.explain_stage_failure(storage, RUN_PREFIX, cluster_id, step_ids, log_wait_seconds=5,
                                              poll_seconds=1)

    assert failed["Status"]["State"] == "FAILED"
    assert report.startswith("stage 1 of 2 (stage 1 of 2) ended FAILED: ")
    assert "-no-such-option" in report.splitlines()[0]
    log_folder = f"s3://{BUCKET}/{RUN_PREFIX}/logs/{cluster_id}"
    assert f"last lines of its stderr ({log_folder}/steps/{step_ids[0]})" in report


def test_the_client_reports_a_cluster_ended_by_a_failed_bootstrap(aws):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]
    with emr_streaming_double() as double:
        double.fail_bootstrap()
        poll_until_ended(client, cluster_id, step_ids[-1])
        report = client.explain_stage_failure(storage, RUN_PREFIX, cluster_id, step_ids, log_wait_seconds=1,
                                              poll_seconds=1)
        fault = client.cluster_fault(cluster_id)

    assert fault.startswith(f"cluster {cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: ")
    assert f"cluster {cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE" in report
    node_logs = f"s3://{BUCKET}/{RUN_PREFIX}/logs/{cluster_id}/node/"
    assert f"its bootstrap and node logs are under {node_logs}" in report


@pytest.mark.parametrize("end_state", ["TERMINATED", "TERMINATED_WITH_ERRORS"])
def test_the_cluster_ended_waiter_succeeds_on_either_end_state(aws, end_state):
    client = EmrClient("aws_default")
    cluster_id = new_cluster(aws)
    with emr_streaming_double() as double:
        if end_state == "TERMINATED_WITH_ERRORS":
            double.fail_bootstrap(before_steps=True)  # at this first describe_cluster
            client.describe_cluster(cluster_id)
        client.terminate(cluster_id)  # a cluster already ended stays as it is
        assert client.describe_cluster(cluster_id)["Status"]["State"] == end_state
        waiter = client.hook.get_waiter("job_flow_terminated",
                                        config_overrides=CLUSTER_ENDED_WAITER_OVERRIDES)
        waiter.wait(ClusterId=cluster_id, WaiterConfig={"Delay": 1, "MaxAttempts": 2})  # raises if it fails


def test_the_providers_waiter_fails_on_a_cluster_that_ended_by_a_fault(aws):
    """Why the override: job_flow_terminated as shipped takes TERMINATED_WITH_ERRORS for a failure."""
    from botocore.exceptions import WaiterError

    client = EmrClient("aws_default")
    cluster_id = new_cluster(aws)
    with emr_streaming_double() as double:
        double.fail_bootstrap(before_steps=True)
        client.describe_cluster(cluster_id)
        with pytest.raises(WaiterError, match="terminal failure"):
            client.hook.get_waiter("job_flow_terminated").wait(
                ClusterId=cluster_id, WaiterConfig={"Delay": 1, "MaxAttempts": 2})


def test_the_cluster_ended_trigger_serializes_to_itself_with_the_overrides():
    trigger = EmrClusterEndedTrigger(job_flow_id="j-1", waiter_delay=2, waiter_max_attempts=7,
                                     aws_conn_id="aws_movielens",
                                     botocore_config={"retries": {"mode": "adaptive"}})
    classpath, kwargs = trigger.serialize()
    assert classpath == "movielens_emr.emr.EmrClusterEndedTrigger"
    rebuilt = EmrClusterEndedTrigger(**kwargs)
    assert (rebuilt.waiter_name, rebuilt.waiter_args) == ("job_flow_terminated", {"ClusterId": "j-1"})
    assert (rebuilt.waiter_delay, rebuilt.attempts, rebuilt.aws_conn_id) == (2, 7, "aws_movielens")
    assert rebuilt.waiter_config_overrides == CLUSTER_ENDED_WAITER_OVERRIDES
    acceptors = CLUSTER_ENDED_WAITER_OVERRIDES["acceptors"]
    assert {acceptor["expected"]: acceptor["state"] for acceptor in acceptors} == {
        "TERMINATED": "success", "TERMINATED_WITH_ERRORS": "success"}


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload


@pytest.mark.parametrize("trigger_class, fault, status", [
    (EmrClusterEndedTrigger, False, "success"),
    (EmrClusterEndedTrigger, True, "success"),
    (EmrTerminateJobFlowTrigger, True, "error"),  # the provider's: why the pipeline has its own
])
def test_the_cluster_ended_trigger_fires_success_on_either_end_state(moto_server, monkeypatch, trigger_class,
                                                                   fault, status):
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": moto_server, "region_name": REGION}}))
    emr = boto3.client("emr", region_name=REGION, endpoint_url=moto_server)
    cluster_id = new_cluster(emr)
    with emr_streaming_double() as double:
        if fault:
            double.fail_bootstrap(before_steps=True)  # at this first describe_cluster
            emr.describe_cluster(ClusterId=cluster_id)
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        trigger = trigger_class(job_flow_id=cluster_id, waiter_delay=1, waiter_max_attempts=3,
                                aws_conn_id="aws_default")
        event = asyncio.run(first_event(trigger))
    assert event["status"] == status, event

"""emr/client.py: the EMR client on moto with the EMR double, and the cluster-ended wait's waiter."""
import time

import boto3
import pytest
from moto import mock_aws

from movielens_emr.data.storage import open_storage
from movielens_emr.emr.client import (
    CLUSTER_ENDED_WAITER_OVERRIDES,
    ENDED_CLUSTER_LOG_GRACE_SECONDS,
    EmrClient,
    attempts_within,
    log_wait_for,
)
from movielens_emr.sizing.task_times import one_run_prediction

from tests.support.emr_double import emr_streaming_double, single_node_cluster, spot_task_cluster

REGION = "us-east-1"
BUCKET = "emr-client-test"
RUN_PREFIX = "runs/manual__one"


def new_cluster(emr, name="emr-client"):
    return single_node_cluster(emr, name, log_uri=f"s3://{BUCKET}/{RUN_PREFIX}/logs/")


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


def test_the_client_diagnoses_a_failed_stage_with_emrs_reason_its_tasks_error_and_its_stderr(aws):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]
    with emr_streaming_double():
        failed = poll_until_ended(client, cluster_id, step_ids[0])
        failure = client.diagnose_stage_failure(storage, RUN_PREFIX, cluster_id, step_ids, log_wait_seconds=5,
                                                poll_seconds=1)

    assert failed["Status"]["State"] == "FAILED"
    assert (failure["stage"], failure["step_id"], failure["state"]) == (1, step_ids[0], "FAILED")
    assert failure["stage_states"] == ["FAILED", "CANCELLED"] and "-no-such-option" in failure["reason"]
    report = failure["report"]
    assert report.startswith("stage 1 of 2 (stage 1 of 2) ended FAILED: ")
    assert "-no-such-option" in report.splitlines()[0]
    log_folder = f"s3://{BUCKET}/{RUN_PREFIX}/logs/{cluster_id}"
    assert f"last lines of its stderr ({log_folder}/steps/{step_ids[0]})" in report


def test_the_clients_summary_of_a_failed_stage_is_emrs_reason_and_where_the_diagnosis_follows(aws):
    client = EmrClient("aws_default")
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]
    with emr_streaming_double():
        poll_until_ended(client, cluster_id, step_ids[0])
        summary = client.summarize_stage_failure(cluster_id, step_ids,
                                                 metrics_location="s3://b/runs/r/metrics.json")

    first, pointer = summary.splitlines()
    assert first.startswith("stage 1 of 2 (stage 1 of 2) ended FAILED: ") and "-no-such-option" in first
    assert pointer == ("the full diagnosis follows once the cluster has ended: in the log of "
                       'diagnose_failure and under "failure" in s3://b/runs/r/metrics.json')


def test_the_client_reports_a_cluster_ended_by_a_failed_bootstrap(aws):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]
    node_logs = f"s3://{BUCKET}/{RUN_PREFIX}/logs/{cluster_id}/node/"
    with emr_streaming_double() as double:
        double.fail_bootstrap()
        poll_until_ended(client, cluster_id, step_ids[-1])
        failure = client.diagnose_stage_failure(storage, RUN_PREFIX, cluster_id, step_ids, log_wait_seconds=1,
                                                poll_seconds=1)
        summary = client.summarize_stage_failure(cluster_id, step_ids, node_log_location=node_logs)
        fault = client.cluster_fault(cluster_id)

    assert fault.startswith(f"cluster {cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: ")
    assert failure["cluster_fault"] == fault and failure["stage"] == 1
    for report in (failure["report"], summary):
        assert f"cluster {cluster_id} ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE" in report
        assert f"its bootstrap and node logs are under {node_logs}" in report


@pytest.mark.parametrize("state, log_wait, wait", [
    ("RUNNING", 600, 600), ("WAITING", 600, 600), ("TERMINATING", 600, 600),
    ("TERMINATED", 600, ENDED_CLUSTER_LOG_GRACE_SECONDS), ("TERMINATED_WITH_ERRORS", 600, 60),
    ("TERMINATED", 5, 5),  # never longer than the log wait itself
])
def test_an_ended_clusters_logs_are_waited_for_only_a_short_grace(state, log_wait, wait):
    assert log_wait_for({"Id": "j-1", "Status": {"State": state}}, log_wait) == wait


def failed_stage_without_logs(aws, client, end_cluster):
    """A cluster whose stage 1 failed and whose logs never came (deleted); ended if end_cluster."""
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]
    poll_until_ended(client, cluster_id, step_ids[0])
    s3 = boto3.client("s3", region_name=REGION)
    for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{RUN_PREFIX}/logs/").get("Contents", []):
        s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    if end_cluster:
        client.terminate(cluster_id)
    return cluster_id, step_ids


@pytest.mark.parametrize("end_cluster, log_wait, least, most", [
    (True, 600, 0.0, 10.0),  # ended: the grace (0.5 s here), not the log wait
    (False, 1, 1.0, 10.0),  # not ended: the whole log wait
])
def test_the_diagnosis_waits_for_missing_logs_only_while_the_cluster_has_not_ended(aws, end_cluster, log_wait,
                                                                                 least, most):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    client.ended_cluster_log_grace_seconds = 0.5
    with emr_streaming_double():
        cluster_id, step_ids = failed_stage_without_logs(aws, client, end_cluster)
        started = time.monotonic()
        failure = client.diagnose_stage_failure(storage, RUN_PREFIX, cluster_id, step_ids,
                                                log_wait_seconds=log_wait, poll_seconds=0.1)
    assert least <= time.monotonic() - started < most
    step_logs = f"s3://{BUCKET}/{RUN_PREFIX}/logs/{cluster_id}/steps/{step_ids[0]}"
    assert f"its stderr had not reached {step_logs} in time" in failure["report"]


def test_logs_that_cannot_be_read_are_named_in_the_diagnosis_not_raised(aws, monkeypatch):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    cluster_id = new_cluster(aws)
    step_ids = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[broken_step(1), broken_step(2)])["StepIds"]

    def refused(key):
        raise PermissionError("AccessDenied: s3:GetObject")

    monkeypatch.setattr(storage, "exists", refused)
    with emr_streaming_double():
        poll_until_ended(client, cluster_id, step_ids[0])
        failure = client.diagnose_stage_failure(storage, RUN_PREFIX, cluster_id, step_ids, log_wait_seconds=5,
                                                poll_seconds=1)
    assert failure["stage"] == 1 and "-no-such-option" in failure["reason"]
    assert "its logs could not be read (PermissionError: AccessDenied: s3:GetObject)" in failure["report"]


def good_step(number):
    return {"Name": f"stage {number} of 1", "ActionOnFailure": "CANCEL_AND_WAIT",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": [
                "hadoop-streaming", "-input", f"s3://{BUCKET}/in/ratings.csv", "-output",
                f"s3://{BUCKET}/out/{number}", "-mapper", "cat", "-reducer", "cat"]}}


def test_an_ended_clusters_missing_job_history_leaves_its_task_times_unknown_at_once(aws):
    client, storage = EmrClient("aws_default"), open_storage(f"s3://{BUCKET}", "aws_default")
    client.ended_cluster_log_grace_seconds = 0.5
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="in/ratings.csv", Body=b"1,2,5\n")
    cluster_id = new_cluster(aws)
    (step_id,) = aws.add_job_flow_steps(JobFlowId=cluster_id, Steps=[good_step(1)])["StepIds"]
    with emr_streaming_double():
        assert poll_until_ended(client, cluster_id, step_id)["Status"]["State"] == "COMPLETED"
        s3 = boto3.client("s3", region_name=REGION)
        history = f"{RUN_PREFIX}/logs/{cluster_id}/hadoop-mapreduce/"
        for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=history)["Contents"]:
            s3.delete_object(Bucket=BUCKET, Key=item["Key"])
        client.terminate(cluster_id)
        started = time.monotonic()
        figures = client.run_figures(storage, RUN_PREFIX, cluster_id, [step_id], log_wait_seconds=600,
                                     poll_seconds=0.1)
    assert time.monotonic() - started < 10
    assert figures.counter_sources == [f"s3://{BUCKET}/{RUN_PREFIX}/logs/{cluster_id}/steps/{step_id}/stderr.gz"]
    assert figures.task_times["source"] is None and figures.task_times["stages"] == [None]
    assert figures.task_times["missing"].startswith("no job history of stage 1 (job_")
    prediction = one_run_prediction(figures.task_times, figures.timings, 1, {1: 4})
    assert prediction["predictions"] == []
    assert prediction["missing"] == "the task times of stages [1] are unknown"


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


def test_the_client_lists_a_clusters_task_instances_and_reads_ec2s_spot_price_history(aws):
    """On moto: ListInstances of the groups asked for, and EC2's Spot price history through the same
    connection (moto answers every type and zone with one fixed record, long before any cluster)."""
    cluster_id = spot_task_cluster(aws, "spot", core_nodes=1, spot_task_nodes=2)
    client = EmrClient("aws_default")
    tasks = client.list_instances(cluster_id, ["TASK"])
    assert [(task["Market"], task["InstanceType"]) for task in tasks] == [("SPOT", "m5.xlarge")] * 2
    assert len(client.list_instances(cluster_id, ["MASTER", "CORE", "TASK"])) == 4
    cluster = client.describe_cluster(cluster_id)
    zone = cluster["Ec2InstanceAttributes"]["Ec2AvailabilityZone"]
    timeline = cluster["Status"]["Timeline"]
    records = client.spot_price_history("m5.xlarge", zone, timeline["CreationDateTime"],
                                        timeline["CreationDateTime"])
    assert ("m5.xlarge", zone) in {(record["InstanceType"], record["AvailabilityZone"]) for record in records}
    assert all(record["Timestamp"] < timeline["CreationDateTime"] for record in records)

"""airflow/triggers.py: the cluster-ended trigger serializes to itself and fires on either end state."""
import asyncio
import json

import boto3
import pytest
from airflow.providers.amazon.aws.triggers.emr import EmrTerminateJobFlowTrigger

from movielens_emr.airflow.triggers import EmrClusterEndedTrigger
from movielens_emr.emr.client import CLUSTER_ENDED_WAITER_OVERRIDES

from tests.support.emr_double import emr_streaming_double, single_node_cluster

REGION = "us-east-1"


def test_the_cluster_ended_trigger_serializes_to_itself_with_the_overrides():
    trigger = EmrClusterEndedTrigger(job_flow_id="j-1", waiter_delay=2, waiter_max_attempts=7,
                                     aws_conn_id="aws_movielens",
                                     botocore_config={"retries": {"mode": "adaptive"}})
    classpath, kwargs = trigger.serialize()
    assert classpath == "movielens_emr.airflow.triggers.EmrClusterEndedTrigger"
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
    cluster_id = single_node_cluster(emr, "trigger")
    with emr_streaming_double() as double:
        if fault:
            double.fail_bootstrap(before_steps=True)  # at this first describe_cluster
            emr.describe_cluster(ClusterId=cluster_id)
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        trigger = trigger_class(job_flow_id=cluster_id, waiter_delay=1, waiter_max_attempts=3,
                                aws_conn_id="aws_default")
        event = asyncio.run(first_event(trigger))
    assert event["status"] == status, event

"""movielens_similarity on EMR with Spot task nodes, end to end on moto and the EMR double: the cluster keeps
its master and a core node on-demand, EC2 takes the Spot task nodes back during stage 2, Hadoop reruns their
tasks on the core node, and the run ends with the exact answer, records the interruption and what it was
charged, and terminates its cluster.

The steps run through the real bootstrap and the nodes' own Pythons (tests/support/emr_double.py), as in
test_movielens_similarity_emr.py.
"""
import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from movielens_emr.config.instances import instance_type
from movielens_emr.reporting.metrics import metrics_table

from tests.support.aws_faults import Fault, aws_faults
from tests.support.dag_runs import (
    EMR_TASK_STATES,
    REGION,
    S3_ROOT,
    local_similarities_csv,
    run_dag,
    run_state,
    s3_bytes,
    s3_key,
    task_states,
    xcom,
)
from tests.support.emr_double import emr_streaming_double

# 1 master and 1 core node on-demand, 2 task nodes on Spot
SPOT_CONF = {"target": "emr", "dataset": "ml-latest-small", "node_count": 4, "spot_task_nodes": 2,
             "sample_fraction": 0.5}
# A second run whose Spot price EC2 will not tell: it is assumed, and says so.
UNPRICED_CONF = {**SPOT_CONF, "sample_fraction": 0.05}
M5 = instance_type("m5.xlarge")
# What moto's EC2 answers DescribeSpotPriceHistory with, whatever the type and zone: one record of 2006.
MOTO_SPOT_PRICE = 0.00001
DENIED = ("UnauthorizedOperation", "You are not authorized to perform this operation.", 403)


@pytest.fixture(scope="module")
def spot_runs(dagbag):
    """The interrupted run, and a run whose Spot price history is refused; read before moto resets."""
    with pytest.MonkeyPatch.context() as env, mock_aws(), emr_streaming_double() as double:
        env.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
        double.interrupt_spot_task_nodes(step_number=2)
        run = run_dag(dagbag, SPOT_CONF)
        s3, emr = boto3.client("s3", region_name=REGION), boto3.client("emr", region_name=REGION)
        cluster_id, step_ids = xcom(run, "create_cluster"), xcom(run, "submit_stages")
        double.spot_interruption = None  # this one keeps its Spot nodes to the end
        with aws_faults([Fault("ec2", "DescribeSpotPriceHistory", DENIED, times=100)]) as faults:
            unpriced = run_dag(dagbag, UNPRICED_CONF)
        return SimpleNamespace(
            run=run, states=task_states(run), double=double, step_ids=step_ids,
            unpriced=unpriced, unpriced_states=task_states(unpriced), denied=faults.injected,
            cluster=emr.describe_cluster(ClusterId=cluster_id)["Cluster"],
            groups={group["InstanceGroupType"]: group
                    for group in emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]},
            task_instances=emr.list_instances(ClusterId=cluster_id, InstanceGroupTypes=["TASK"])["Instances"],
            metrics=json.loads(s3_bytes(s3, s3_key(run, "metrics.json"))),
            unpriced_metrics=json.loads(s3_bytes(s3, s3_key(unpriced, "metrics.json"))),
            csv=s3_bytes(s3, s3_key(run, "results/similarities.csv")))


@pytest.fixture(scope="module")
def local_csv(dagbag, tmp_path_factory):
    """The same run on the local target, all on this machine: what the interrupted run must match."""
    return local_similarities_csv(dagbag, {**SPOT_CONF, "spot_task_nodes": 0},
                                  tmp_path_factory.mktemp("local-storage"))


def test_a_run_that_loses_its_spot_nodes_succeeds_with_the_exact_answer(spot_runs, local_csv):
    assert run_state(spot_runs.run) == "success", spot_runs.states
    assert spot_runs.states == EMR_TASK_STATES
    assert spot_runs.csv == local_csv
    assert spot_runs.cluster["Status"]["State"] == "TERMINATED"


def test_master_and_core_are_on_demand_and_the_task_nodes_on_spot_at_most_at_the_ec2_price(spot_runs):
    groups = spot_runs.groups
    assert {role: (group["Market"], group["RequestedInstanceCount"]) for role, group in groups.items()} == {
        "MASTER": ("ON_DEMAND", 1), "CORE": ("ON_DEMAND", 1), "TASK": ("SPOT", 2)}
    assert groups["TASK"]["BidPrice"] == "0.192"  # m5.xlarge's 0.24 on-demand less EMR's 0.048


def test_the_interruption_is_recorded_from_emr_and_the_job_history(spot_runs):
    metrics, lost = spot_runs.metrics, spot_runs.task_instances
    assert [instance["Status"]["StateChangeReason"]["Code"] for instance in lost] == ["INSTANCE_FAILURE"] * 2
    assert metrics["spot_interruptions"] == 2
    assert sorted(entry["instance_id"] for entry in metrics["spot_lost_instances"]) == sorted(
        instance["Ec2InstanceId"] for instance in lost)
    # stage 2's map attempts dealt to the lost nodes were killed and rerun; nothing else was
    killed = [[run.attempt for run in spot_runs.double.execution(step_id).tasks if run.killed]
              for step_id in spot_runs.step_ids]
    assert [len(stage) for stage in killed][::2] == [0, 0] and killed[1]
    assert metrics["task_times"]["killed_attempts"] == [len(stage) for stage in killed]
    assert metrics["killed_task_attempts"] == len(killed[1])
    rows = [line.split()[:2] for line in metrics_table(metrics).splitlines()]
    assert ["spot_interruptions", "2"] in rows and ["killed_task_attempts", str(len(killed[1]))] in rows


def test_spot_minutes_are_charged_at_the_spot_price_history_and_the_rest_on_demand(spot_runs):
    metrics = spot_runs.metrics
    assert (metrics["spot_task_nodes"], metrics["on_demand_nodes"], metrics["node_count"]) == (2, 2, 4)
    assert metrics["spot_price_source"] == "spot price history"
    assert metrics["spot_price_description"].startswith("EC2's Spot price history of m5.xlarge in us-east-1a")
    assert metrics["spot_ec2_usd_per_hour"] == MOTO_SPOT_PRICE
    assert metrics["spot_usd_per_node_hour"] == pytest.approx(MOTO_SPOT_PRICE + M5.emr_usd_per_hour)
    assert metrics["price_per_node_hour_usd"] == M5.usd_per_hour  # the on-demand nodes'
    cluster_minutes = metrics["cluster_seconds"] / 60
    assert metrics["on_demand_node_minutes"] == pytest.approx(2 * cluster_minutes, abs=1e-3)
    # the Spot nodes ran from the cluster's start until EC2 took them back, in stage 2
    ended = [instance["Status"]["Timeline"]["EndDateTime"] for instance in spot_runs.task_instances]
    created = spot_runs.cluster["Status"]["Timeline"]["CreationDateTime"]
    assert metrics["spot_node_minutes"] == pytest.approx(
        sum((end - created).total_seconds() for end in ended) / 60, abs=1e-3)
    assert 0 < metrics["spot_node_minutes"] < 2 * cluster_minutes
    assert metrics["node_minutes"] == pytest.approx(
        metrics["on_demand_node_minutes"] + metrics["spot_node_minutes"], abs=1e-3)
    assert metrics["estimated_cost_usd"] == pytest.approx(
        metrics["on_demand_node_minutes"] / 60 * M5.usd_per_hour
        + metrics["spot_node_minutes"] / 60 * metrics["spot_usd_per_node_hour"], abs=1e-4)


def test_a_spot_price_ec2_will_not_tell_is_assumed_and_said(spot_runs):
    assert run_state(spot_runs.unpriced) == "success", spot_runs.unpriced_states
    assert ("ec2", "DescribeSpotPriceHistory") in spot_runs.denied
    metrics = spot_runs.unpriced_metrics
    assert metrics["spot_price_source"] == "assumed"
    assert metrics["spot_price_description"].startswith("assumed: 40% of the on-demand EC2 price")
    assert "DescribeSpotPriceHistory failed" in metrics["spot_price_description"]
    assert metrics["spot_usd_per_node_hour"] == pytest.approx(M5.spot_usd_per_hour)
    # no interruption this time: the Spot nodes ran to the cluster's end
    assert (metrics["spot_interruptions"], metrics["killed_task_attempts"]) == (0, 0)
    assert metrics["spot_node_minutes"] == pytest.approx(2 * metrics["cluster_seconds"] / 60, abs=1e-3)

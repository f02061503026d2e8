"""The EMR target's share of a Spark engine's run: its one step, its event log, its figures."""
import datetime
import json

import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import LocalStorage
from movielens_emr.emr.target import (
    NO_TASK_TIMES,
    EmrTarget,
    event_log_task_times,
    is_spark_step,
    spark_run_figures,
    spot_market_figures,
    spot_price_points,
)
from movielens_emr.engine.registry import engine_named

SHIPPED = ["s3://b/runs/r/job/als_recommender.py", "s3://b/runs/r/job/similarity_kernel.py"]
STAGED = {"job_files": {"shipped": SHIPPED},
          "ratings_uris": ["s3://b/datasets/d/c/ratings.csv"], "movies_uri": "s3://b/datasets/d/c/movies.csv",
          "spark_event_log": "s3://b/runs/r/spark-events"}
STARTED = datetime.datetime(2026, 12, 2, 13, 0, tzinfo=datetime.timezone.utc)


def als_config():
    return validate_run_config({"target": "emr", "engine": "als"}, max_node_count=20,
                               engines=("similarity", "als"))


def test_a_spark_engines_job_is_one_spark_submit_step_writing_its_event_log_to_the_run():
    config = als_config()
    job = engine_named("als").job(config, STAGED)
    (step,) = EmrTarget().steps(job, STAGED, "s3://b/runs/r/output", "manual__1", config, settings_from_env())
    args = step["HadoopJarStep"]["Args"]
    assert args[0] == "spark-submit" and "spark.eventLog.dir=s3://b/runs/r/spark-events" in args


def test_a_described_step_is_a_spark_one_when_it_runs_spark_submit():
    assert is_spark_step({"Config": {"Args": ["spark-submit", "--deploy-mode", "cluster"]}})
    assert not is_spark_step({"Config": {"Args": ["hadoop-streaming", "-files", "x"]}})
    assert not is_spark_step({"Config": {}})


def test_a_spark_steps_figures_are_emrs_timings_and_its_event_logs_tasks(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.put_bytes((json.dumps({"Event": "SparkListenerJobStart"}) + "\n").encode(),
                      "runs/r/spark-events/application_1_0001")
    def at(seconds):
        return STARTED + datetime.timedelta(seconds=seconds)

    cluster = {"Id": "j-1", "Status": {"Timeline": {"CreationDateTime": at(0), "ReadyDateTime": at(300),
                                                    "EndDateTime": at(900)}}}
    steps = [{"Status": {"Timeline": {"StartDateTime": at(310), "EndDateTime": at(700)}}}]
    figures = spark_run_figures(cluster, steps, storage, "runs/r")
    assert (figures["cluster_id"], figures["counters"], figures["counter_sources"]) == ("j-1", {}, None)
    assert figures["timings"] == {"cluster_seconds": 900.0, "provisioning_seconds": 300.0,
                                  "stage_seconds": [390.0]}
    assert figures["task_times"]["missing"] == NO_TASK_TIMES
    spark_tasks = figures["target_figures"]["spark_task_times"]
    assert spark_tasks["jobs"] == 1 and spark_tasks["read_from"].endswith("spark-events/application_1_0001")


def test_no_event_log_leaves_the_spark_tasks_unknown_saying_why(tmp_path):
    storage = LocalStorage(tmp_path)
    assert event_log_task_times(storage, "runs/r/spark-events") == {
        "source": None, "missing": f"0 event logs in {tmp_path}/runs/r/spark-events, not one"}


# Spot task nodes: what EMR and EC2 say of them ------------------------------------------------------
def spot_instance(instance_id, created, ended=None, code=None):
    status = {"State": "TERMINATED" if ended else "RUNNING", "Timeline": {"CreationDateTime": created}}
    if ended:
        status["Timeline"]["EndDateTime"] = ended
        status["StateChangeReason"] = {"Code": code, "Message": f"{code} message"}
    return {"Id": f"ci-{instance_id}", "Ec2InstanceId": instance_id, "Market": "SPOT",
            "InstanceType": "m5.xlarge", "Status": status}


class SpotClient:
    """What spot_market_figures asks of EmrClient: the task instances and EC2's Spot price history."""

    def __init__(self, instances, history=(), list_error=None, history_error=None):
        self.instances, self.history = instances, list(history)
        self.list_error, self.history_error = list_error, history_error
        self.asked = []

    def list_instances(self, cluster_id, group_types):
        if self.list_error:
            raise self.list_error
        return self.instances

    def spot_price_history(self, instance_type, zone, start, end):
        self.asked.append((instance_type, zone, start, end))
        if self.history_error:
            raise self.history_error
        return self.history


def spot_cluster(seconds=3600):
    return {"Id": "j-1", "Ec2InstanceAttributes": {"Ec2AvailabilityZone": "us-east-1a"},
            "Status": {"Timeline": {"CreationDateTime": STARTED,
                                    "EndDateTime": STARTED + datetime.timedelta(seconds=seconds)}}}


def history_record(seconds, price, zone="us-east-1a", product="Linux/UNIX"):
    return {"AvailabilityZone": zone, "InstanceType": "m5.xlarge", "ProductDescription": product,
            "SpotPrice": str(price), "Timestamp": STARTED + datetime.timedelta(seconds=seconds)}


def test_spot_figures_count_the_instances_ec2_took_back_and_the_time_each_ran():
    lost_at = STARTED + datetime.timedelta(seconds=1200)
    end = STARTED + datetime.timedelta(seconds=3600)
    client = SpotClient([spot_instance("i-1", STARTED, lost_at, "INSTANCE_FAILURE"),
                         spot_instance("i-2", STARTED, end, "CLUSTER_TERMINATED"),
                         spot_instance("i-3", STARTED)],
                        [history_record(-60, 0.08), history_record(1800, 0.06)])
    figures = spot_market_figures(client, spot_cluster())
    assert figures["spot_instances"] == 3 and figures["spot_node_seconds"] == 1200 + 3600 + 3600
    assert figures["lost_instances"] == [
        {"instance_id": "i-1", "ended": lost_at.isoformat(), "reason": "INSTANCE_FAILURE message"}]
    assert figures["history_ec2_usd_per_hour"] == pytest.approx(0.07)
    assert figures["why"].startswith("EC2's Spot price history of m5.xlarge in us-east-1a, time-weighted")
    assert client.asked == [("m5.xlarge", "us-east-1a", STARTED, end)]


def test_the_spot_history_is_read_in_the_clusters_zone_for_one_product():
    records = [history_record(-60, 0.08), history_record(-60, 0.5, zone="us-east-1b"),
               history_record(-30, 0.9, product="Windows"), history_record(-10, 0.08, product="Linux/UNIX")]
    assert spot_price_points(records, "us-east-1a") == [
        (STARTED + datetime.timedelta(seconds=-60), 0.08), (STARTED + datetime.timedelta(seconds=-10), 0.08)]


@pytest.mark.parametrize("client, why", [
    (SpotClient([spot_instance("i-1", STARTED)], [history_record(60, 0.07)]),
     "EC2 has no Spot price of m5.xlarge in us-east-1a in force at the cluster's start"),
    (SpotClient([spot_instance("i-1", STARTED)], history_error=PermissionError("AccessDenied")),
     "DescribeSpotPriceHistory failed: PermissionError: AccessDenied"),
])
def test_a_spot_history_that_cannot_be_used_gives_no_price_and_says_why(client, why):
    figures = spot_market_figures(client, spot_cluster())
    assert figures["history_ec2_usd_per_hour"] is None and figures["why"] == why
    assert figures["spot_instances"] == 1 and figures["lost_instances"] == []


def test_task_instances_that_cannot_be_listed_leave_the_spot_figures_unknown():
    figures = spot_market_figures(SpotClient([], list_error=PermissionError("no")), spot_cluster())
    assert figures == {"spot_instances": None, "why": "ListInstances failed: PermissionError: no"}


def test_a_cluster_without_spot_nodes_reads_no_price_history():
    client = SpotClient([])
    figures = spot_market_figures(client, spot_cluster())
    assert (figures["spot_instances"], figures["spot_node_seconds"]) == (0, 0.0)
    assert figures["lost_instances"] == []
    assert client.asked == []

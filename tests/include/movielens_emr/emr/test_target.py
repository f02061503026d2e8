"""The EMR target's share of a Spark engine's run: its one step, its event log, its figures."""
import datetime
import json

from movielens_emr.config.params import validate_run_config
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import LocalStorage
from movielens_emr.emr.target import (
    NO_TASK_TIMES,
    EmrTarget,
    event_log_task_times,
    is_spark_step,
    spark_run_figures,
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

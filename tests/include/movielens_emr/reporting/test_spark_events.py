"""A Spark application's task times from its event log."""
import json

from movielens_emr.reporting.spark_events import SOURCE, spark_task_times


def event(kind, **fields):
    return json.dumps({"Event": kind, **fields})


def task_end(task_type, launched, finished, executor="1", failed=False):
    return event("SparkListenerTaskEnd", **{"Task Type": task_type, "Task Info": {
        "Launch Time": launched, "Finish Time": finished, "Executor ID": executor, "Failed": failed}})


LOG = [
    event("SparkListenerApplicationStart", **{"App ID": "application_1_0001"}),
    event("SparkListenerJobStart", **{"Job ID": 0}),
    event("SparkListenerStageCompleted", **{"Stage Info": {"Stage ID": 0, "Stage Attempt ID": 0}}),
    event("SparkListenerStageCompleted", **{"Stage Info": {"Stage ID": 1, "Stage Attempt ID": 0}}),
    task_end("ShuffleMapTask", 1000, 3500), task_end("ShuffleMapTask", 1000, 2000, executor="2"),
    task_end("ResultTask", 4000, 4250, failed=True),
    '{"Event": "SparkListenerTaskEnd", "Task',  # a line cut short: a log still being written
]


def test_each_task_types_count_total_and_longest_seconds():
    times = spark_task_times(LOG, "s3://b/events/application_1_0001")
    assert (times["source"], times["read_from"], times["application_id"]) == (
        SOURCE, "s3://b/events/application_1_0001", "application_1_0001")
    assert (times["jobs"], times["stages"], times["executors"], times["failed_tasks"]) == (1, 2, 2, 1)
    assert times["task_types"] == {
        "ShuffleMapTask": {"tasks": 2, "total_seconds": 3.5, "max_seconds": 2.5},
        "ResultTask": {"tasks": 1, "total_seconds": 0.25, "max_seconds": 0.25}}


def test_an_empty_log_has_no_tasks():
    assert spark_task_times([])["task_types"]["ResultTask"] == {"tasks": 0, "total_seconds": 0,
                                                                "max_seconds": 0.0}

"""A run's task durations: Hadoop's job history, the local runner's records, their summary, the prediction."""
import json

import pytest

from movielens_emr.reporting.metrics import metrics_table
from movielens_emr.sizing.task_times import (
    HISTORY_SOURCE,
    LOCAL_SOURCE,
    TaskTime,
    history_file_keys,
    killed_attempts,
    local_record_path,
    one_run_prediction,
    one_run_prediction_lines,
    parse_job_history,
    read_local_task_times,
    task_times_record,
    timed_task,
    unknown_task_times,
)

JOB = "job_1764680000000_0003"
NS = "org.apache.hadoop.mapreduce.jobhistory"
T0 = 1_764_680_400_000  # ms


def record(kind, branch, **fields):
    return json.dumps({"type": kind, "event": {f"{NS}.{branch}": fields}}, separators=(",", ":")) + "\n"


def task(number, phase="m"):
    return f"task_1764680000000_0003_{phase}_{number:06d}"


def attempt(number, phase="m", retry=0):
    return f"attempt_1764680000000_0003_{phase}_{number:06d}_{retry}"


def started(number, at, phase="m", retry=0):
    kind = "MAP" if phase == "m" else "REDUCE"
    return record(f"{kind}_ATTEMPT_STARTED", "TaskAttemptStarted", taskid=task(number, phase), taskType=kind,
                  attemptId=attempt(number, phase, retry), startTime=at, trackerName="ip-10-0-0-2",
                  httpPort=8042, shufflePort=13562,
                  containerId=f"container_1764680000000_0003_01_{at % 97:06d}",
                  locality={"string": "NODE_LOCAL"}, avataar={"string": "VIRGIN"})


def finished(number, at, phase="m", retry=0, status="SUCCEEDED"):
    kind = "MAP" if phase == "m" else "REDUCE"
    branch = "MapAttemptFinished" if phase == "m" else "ReduceAttemptFinished"
    ends = {"mapFinishTime": at} if phase == "m" else {"shuffleFinishTime": at, "sortFinishTime": at}
    return record(f"{kind}_ATTEMPT_FINISHED", branch, taskid=task(number, phase),
                  attemptId=attempt(number, phase, retry), taskType=kind, taskStatus=status, **ends,
                  finishTime=at, hostname="ip-10-0-0-2", port=8041, rackname="/default-rack", state="",
                  counters={"name": "COUNTERS", "groups": []}, clockSplits=[], cpuUsages=[], vMemKbytes=[],
                  physMemKbytes=[])


def task_started(number, at, phase="m"):
    return record("TASK_STARTED", "TaskStarted", taskid=task(number, phase),
                  taskType="MAP" if phase == "m" else "REDUCE", startTime=at, splitLocations="ip-10-0-0-2")


def task_finished(number, at, phase="m"):
    return record("TASK_FINISHED", "TaskFinished", taskid=task(number, phase),
                  taskType="MAP" if phase == "m" else "REDUCE", finishTime=at, status="SUCCEEDED",
                  counters={"name": "COUNTERS", "groups": []}, successfulAttemptId=attempt(number, phase))


# A job as its application master writes it: 2 map tasks (the second fails once and is retried, and
# a speculative attempt of the first is killed) and 1 reduce task; its last line cut short.
HISTORY = [
    "Avro-Json\n",
    '{"type":"record","name":"Event","namespace":"org.apache.hadoop.mapreduce.jobhistory","fields":[]}\n',
    record("AM_STARTED", "AMStarted", applicationAttemptId="appattempt_1764680000000_0003_000001",
           startTime=T0, containerId="container_1764680000000_0003_01_000001", nodeManagerHost="ip-10-0-0-2",
           nodeManagerPort=8041, nodeManagerHttpPort=8042),
    record("JOB_SUBMITTED", "JobSubmitted", jobid=JOB, jobName="stage 1", userName="hadoop", submitTime=T0,
           jobConfPath="hdfs://x/job.xml", acls={}, jobQueueName="default", workflowId="", workflowName="",
           workflowNodeName="", workflowAdjacencies=""),
    task_started(0, T0 + 1_000), started(0, T0 + 1_000),
    task_started(1, T0 + 1_100), started(1, T0 + 1_100),
    record("MAP_ATTEMPT_FAILED", "TaskAttemptUnsuccessfulCompletion", taskid=task(1), taskType="MAP",
           attemptId=attempt(1), finishTime=T0 + 3_000, hostname="ip-10-0-0-2", port=8041,
           rackname="/default-rack", status="FAILED", error="Error: PipeMapRed failed",
           counters={"name": "COUNTERS", "groups": []}, clockSplits=[], cpuUsages=[], vMemKbytes=[],
           physMemKbytes=[]),
    started(0, T0 + 4_000, retry=1),
    started(1, T0 + 3_500, retry=1),
    finished(0, T0 + 6_000), task_finished(0, T0 + 6_000),
    record("MAP_ATTEMPT_KILLED", "TaskAttemptUnsuccessfulCompletion", taskid=task(0), taskType="MAP",
           attemptId=attempt(0, retry=1), finishTime=T0 + 6_100, status="KILLED", error=""),
    finished(1, T0 + 9_600, retry=1), task_finished(1, T0 + 9_600),
    task_started(0, T0 + 10_000, "r"), started(0, T0 + 10_000, "r"),
    finished(0, T0 + 12_500, "r"), task_finished(0, T0 + 12_500, "r"),
    record("JOB_FINISHED", "JobFinished", jobid=JOB, finishTime=T0 + 13_000)[:40],
]


def test_the_job_history_gives_each_successful_task_its_span_retries_included():
    assert parse_job_history(HISTORY) == [
        TaskTime("mapper", task(0), (T0 + 1_000) / 1000, 5.0),
        TaskTime("mapper", task(1), (T0 + 1_100) / 1000, 8.5),  # its failed attempt held a slot too
        TaskTime("reducer", task(0, "r"), (T0 + 10_000) / 1000, 2.5),
    ]


def test_without_task_events_the_attempts_give_the_span():
    attempts_only = [line for line in HISTORY if not line.startswith(('{"type":"TASK_',))]
    assert [(t.task, t.seconds) for t in parse_job_history(attempts_only)] == [
        (task(0), 5.0), (task(1), 8.5), (task(0, "r"), 2.5)]


def test_a_task_that_never_succeeded_is_left_out():
    unfinished = [line for line in HISTORY if task(1) not in line or "STARTED" in line]
    assert [t.task for t in parse_job_history(unfinished)] == [task(0), task(0, "r")]
    assert parse_job_history(["Avro-Json\n", "{not json\n", "\n"]) == []


def test_the_history_file_of_a_job_is_picked_by_its_id():
    folder = "runs/r/logs/j-1/hadoop-mapreduce/history/2026/12/02/000000"
    keys = [f"{folder}/{JOB}_conf.xml.gz",
            f"{folder}/{JOB}-1764680400000-hadoop-movielens%2Dsimilarity%20stage%201-1764680413000-2-1-"
            "SUCCEEDED-default-1764680400100.jhist.gz",
            f"{folder}/job_1764680000000_0004-1764680500000-hadoop-x-1764680510000-1-1-SUCCEEDED-default-1.jhist",
            f"{folder}/job_1764680000000_00030-1-hadoop-x-2-1-1-SUCCEEDED-default-1.jhist"]
    assert history_file_keys(keys, JOB) == [keys[1]]
    assert history_file_keys(keys, "job_1764680000000_0004") == [keys[2]]
    assert history_file_keys(keys, "job_1764680000000_0009") == []


def test_local_task_records_are_read_per_stage_in_start_order(tmp_path):
    for step_num, phase, number, at in ((0, "mapper", 1, 12.0), (0, "mapper", 0, 10.0),
                                        (0, "reducer", 0, 15.0), (2, "reducer", 0, 30.0)):
        local_record_path(tmp_path, step_num, phase, number).write_text(
            json.dumps({"started": at, "seconds": at / 10}))
    (tmp_path / "notes.txt").write_text("not a record")
    stage_1, stage_2, stage_3 = read_local_task_times(tmp_path, 3)
    assert stage_1 == [TaskTime("mapper", "mapper 0", 10.0, 1.0), TaskTime("mapper", "mapper 1", 12.0, 1.2),
                       TaskTime("reducer", "reducer 0", 15.0, 1.5)]
    assert stage_2 is None and stage_3 == [TaskTime("reducer", "reducer 0", 30.0, 3.0)]


def test_a_timed_task_records_its_start_and_duration_and_a_failed_one_nothing(tmp_path):
    ran = []
    timed_task(lambda: ran.append(1), tmp_path / "1-mapper-00000.json")
    written = json.loads((tmp_path / "1-mapper-00000.json").read_text())
    assert ran == [1] and written["started"] > 1.7e9 and 0 <= written["seconds"] < 5

    def fail():
        raise RuntimeError("task failed")

    with pytest.raises(RuntimeError, match="task failed"):
        timed_task(fail, tmp_path / "1-mapper-00001.json")
    assert not (tmp_path / "1-mapper-00001.json").exists()


def tasks_of(maps, reduces):
    return ([TaskTime("mapper", f"m{n}", n, seconds) for n, seconds in enumerate(maps)]
            + [TaskTime("reducer", f"r{n}", 100 + n, seconds) for n, seconds in enumerate(reduces)])


def test_the_record_sums_each_phase_and_keeps_the_durations():
    record_ = task_times_record(HISTORY_SOURCE, [tasks_of([3, 4], [2, 6, 1]), None, tasks_of([1], [])],
                                read_from=["s3://a", None, "s3://c"], missing="no job history of stage 2")
    assert record_["source"] == HISTORY_SOURCE and record_["missing"] == "no job history of stage 2"
    assert record_["stages"][0] == {"mapper": {"tasks": 2, "total_seconds": 7, "max_seconds": 4},
                                    "reducer": {"tasks": 3, "total_seconds": 9, "max_seconds": 6}}
    assert record_["stages"][1] is None and record_["task_seconds"][1] is None
    assert record_["stages"][2]["reducer"] == {"tasks": 0, "total_seconds": 0, "max_seconds": 0.0}
    assert record_["task_seconds"][0] == {"mapper": [3, 4], "reducer": [2, 6, 1]}
    unknown = unknown_task_times(3, "reading the job history failed: AccessDenied")
    assert unknown["source"] is None and unknown["stages"] == [None] * 3
    assert unknown["missing"] == "reading the job history failed: AccessDenied"


def measured_run():
    """A run on 2 nodes (2 slots): stage 1 is 5 s of fixed time plus its waves, stage 2 its waves only."""
    times = task_times_record(LOCAL_SOURCE, [tasks_of([4, 4, 4, 4], [6, 6]), tasks_of([2, 2], [3])])
    timings = {"cluster_seconds": 40.0, "stage_seconds": [5 + 8 + 6, 2 + 3]}
    return times, timings


def test_the_one_run_prediction_replays_the_waves_on_each_node_counts_slots():
    times, timings = measured_run()
    prediction = one_run_prediction(times, timings, 2, {1: 1, 2: 2, 4: 4}, 0.5)
    assert prediction["missing"] is None
    assert (prediction["from_node_count"], prediction["from_task_slots"]) == (2, 2)
    by_nodes = {option["node_count"]: option for option in prediction["predictions"]}
    assert by_nodes[2]["cluster_seconds"] == 40.0 and by_nodes[2]["stage_seconds"] == [19, 5]
    # 1 slot: stage 1 = 5 + 16 + 12, stage 2 = 4 + 3; the 16 s outside the stages kept
    assert by_nodes[1]["stage_seconds"] == [33, 7] and by_nodes[1]["cluster_seconds"] == 56
    # 4 slots: locally map and reduce input are cut into twice the tasks: stage 1 = 5 + 4 + 3,
    # stage 2 = 1 + 1.5
    assert by_nodes[4]["stage_seconds"] == [12, 2.5] and by_nodes[4]["cluster_seconds"] == 30.5
    assert by_nodes[4]["cost_usd"] == round(4 * 30.5 / 3600 * 0.5, 4)


def test_on_emr_only_the_reduce_tasks_follow_the_slots():
    times, timings = measured_run()
    times["source"] = HISTORY_SOURCE
    by_nodes = {option["node_count"]: option
                for option in one_run_prediction(times, timings, 2, {2: 2, 4: 4})["predictions"]}
    # stage 1 = 5 + one wave of the 4 measured maps + 4 reduce tasks of 3 s; stage 2 = 2 + 1.5
    assert by_nodes[4]["stage_seconds"] == [12, 3.5] and by_nodes[4]["cluster_seconds"] == 31.5


@pytest.mark.parametrize("change, reason", [
    (lambda times, timings: times["task_seconds"].__setitem__(1, None), "task times of stages [2]"),
    (lambda times, timings: times.__setitem__("task_seconds", [None, None]), "task times of stages [1, 2]"),
    (lambda times, timings: timings.__setitem__("cluster_seconds", None), "cluster or stage times"),
    (lambda times, timings: timings.__setitem__("stage_seconds", [19, None]), "cluster or stage times"),
    (lambda times, timings: timings.__setitem__("stage_seconds", [19, 5, 1]),
     "task times of 2 stages for a run of 3"),
])
def test_no_prediction_from_incomplete_figures_and_the_reason_is_given(change, reason):
    times, timings = measured_run()
    change(times, timings)
    prediction = one_run_prediction(times, timings, 2, {1: 1, 2: 2})
    assert prediction["predictions"] == [] and reason in prediction["missing"]


def test_the_metrics_table_summarises_the_task_times_and_the_prediction():
    times, timings = measured_run()
    prediction = one_run_prediction(times, timings, 2, {1: 1, 2: 2})
    lines = metrics_table({"task_times": times, "one_run_prediction": prediction}).splitlines()
    assert lines[0].split(None, 1) == ["task_times", LOCAL_SOURCE]
    assert lines[1].split(None, 1) == [
        "task_times[1]", "4 mapper tasks, 16.0 s (longest 4.0 s); 2 reducer tasks, 12.0 s (longest 6.0 s)"]
    assert lines[3].split(None, 1) == [
        "one_run_prediction", "from 2 nodes (2 task slots); cluster seconds by nodes: 1: 56, 2: 40"]
    missing = unknown_task_times(2, "no job history of stages 1, 2")
    unknown = metrics_table({"task_times": missing,
                             "one_run_prediction": one_run_prediction(missing, timings, 2, {2: 2})})
    assert unknown.splitlines() == [
        "task_times          unknown: no job history of stages 1, 2", "task_times[1]       unknown",
        "task_times[2]       unknown",
        "one_run_prediction  none: the task times of stages [1, 2] are unknown"]


def test_the_attempts_the_history_records_as_killed_are_counted_apart():
    lines = ["Avro-Json", *(json.dumps(record) for record in [
        {"type": "MAP_ATTEMPT_STARTED", "event": {"x.TaskAttemptStarted": {
            "taskid": "task_1_0001_m_000000", "attemptId": "attempt_1_0001_m_000000_0", "startTime": 1}}},
        {"type": "MAP_ATTEMPT_KILLED", "event": {"x.TaskAttemptUnsuccessfulCompletion": {
            "taskid": "task_1_0001_m_000000", "attemptId": "attempt_1_0001_m_000000_0", "status": "KILLED",
            "error": "Container released on a *lost* node"}}},
        {"type": "MAP_ATTEMPT_FAILED", "event": {"x.TaskAttemptUnsuccessfulCompletion": {
            "taskid": "task_1_0001_m_000001", "attemptId": "attempt_1_0001_m_000001_0", "status": "FAILED"}}},
        {"type": "REDUCE_ATTEMPT_KILLED", "event": {"x.TaskAttemptUnsuccessfulCompletion": {
            "taskid": "task_1_0001_r_000000", "attemptId": "attempt_1_0001_r_000000_0", "status": "KILLED"}}},
    ])]
    assert killed_attempts(lines) == ["attempt_1_0001_m_000000_0", "attempt_1_0001_r_000000_0"]
    record = task_times_record(HISTORY_SOURCE, [[], []], killed=[2, None])
    assert record["killed_attempts"] == [2, None]
    assert "killed_attempts" not in task_times_record(LOCAL_SOURCE, [[]])


def test_the_prediction_reads_in_minutes_once_every_time_is_two_minutes_or_more():
    prediction = {"from_node_count": 4, "from_task_slots": 12, "missing": None,
                  "predictions": [{"node_count": 2, "cluster_seconds": 1800.0},
                                  {"node_count": 4, "cluster_seconds": 120.0}]}
    assert one_run_prediction_lines(prediction) == [
        ("one_run_prediction", "from 4 nodes (12 task slots); cluster minutes by nodes: 2: 30.0, 4: 2.0")]

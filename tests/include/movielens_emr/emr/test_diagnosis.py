"""Explaining a failed stage from EMR's step descriptions and logs."""
import gzip

import pytest

from movielens_emr.emr.diagnosis import (
    cluster_fault,
    failure_reason,
    failure_record,
    first_failed_stage,
    stage_failure_report,
    stage_failure_summary,
    stages_completed,
    stderr_tail,
)


def step(name, state, reason=None, details=None):
    status = {"State": state}
    if reason:
        status["StateChangeReason"] = {"Message": reason}
    if details:
        status["FailureDetails"] = details
    return {"Name": name, "Status": status}


STEPS = [step("stage 1", "COMPLETED"), step("stage 2", "FAILED", details={"Reason": "Unknown error",
                                                                        "Message": "Task failed: exit 1"}),
         step("stage 3", "CANCELLED", reason="Cancelled after stage 2 failed")]


def test_the_failed_stage_wins_over_the_cancelled_ones_after_it():
    number, failed = first_failed_stage(STEPS)
    assert number == 2 and failed["Name"] == "stage 2"


def test_a_cancelled_stage_is_reported_when_none_failed():
    number, _ = first_failed_stage(
        [step("a", "COMPLETED"), step("b", "CANCELLED", reason="cluster terminated")])
    assert number == 2


def test_failure_reason_uses_emrs_own_words():
    assert failure_reason(STEPS[1]) == "Unknown error; Task failed: exit 1"
    assert failure_reason(STEPS[2]) == "Cancelled after stage 2 failed"
    assert failure_reason(step("x", "FAILED")) == "the step ended FAILED without a reason"


def test_stderr_tail_keeps_the_last_lines():
    log = gzip.compress("\n".join(f"line {i}" for i in range(100)).encode())
    assert stderr_tail(log, lines=3) == "line 97\nline 98\nline 99"


def test_report_names_stage_reason_and_stderr():
    report = stage_failure_report(STEPS, "Traceback ...\nTooManyBadLines: 9 of 10 lines", "s3://b/logs/j-1/steps/s-2/")
    assert report.splitlines()[0] == "stage 2 of 3 (stage 2) ended FAILED: Unknown error; Task failed: exit 1"
    assert "TooManyBadLines: 9 of 10 lines" in report and "s3://b/logs/j-1/steps/s-2/" in report


def test_stderr_tail_leaves_out_the_hadoop_clients_counter_block():
    log = gzip.compress("\n".join([
        "INFO mapreduce.Job: Task Id : attempt_1_0001_m_000000_0, Status : FAILED",
        "Error: java.lang.RuntimeException: PipeMapRed.waitOutputThreads(): subprocess failed with code 1",
        "\tat org.apache.hadoop.streaming.PipeMapRed.waitOutputThreads(PipeMapRed.java:326)",
        "INFO mapreduce.Job: Counters: 2", "\tJob Counters", "\t\tFailed map tasks=1", "\tinput",
        "\t\tratings read=7", "ERROR streaming.StreamJob: Job not successful!",
        "Streaming Command Failed!"]).encode())
    assert stderr_tail(log, lines=3).splitlines() == [
        "\tat org.apache.hadoop.streaming.PipeMapRed.waitOutputThreads(PipeMapRed.java:326)",
        "ERROR streaming.StreamJob: Job not successful!", "Streaming Command Failed!"]


def test_report_shows_the_failed_tasks_own_error_before_the_steps_stderr():
    traceback = "task attempt_1_0001_m_000000_0 (container_1_0001_01_000002, s3://b/e):\nTraceback ...\nBoom"
    report = stage_failure_report(STEPS, "Streaming Command Failed!", "s3://b/logs/j-1/steps/s-2",
                                  task_traceback=traceback, container_log_location="s3://b/containers")
    assert report.splitlines()[1:] == [
        "the failed task's own error, from its container's log:", *traceback.splitlines(),
        "last lines of its stderr (s3://b/logs/j-1/steps/s-2):", "Streaming Command Failed!"]


def test_report_says_where_the_task_logs_will_be_when_they_have_not_arrived():
    report = stage_failure_report(STEPS, "Streaming Command Failed!", "s3://b/logs/j-1/steps/s-2",
                                  container_log_location="s3://b/logs/j-1/containers")
    assert "no failed task's log was found in the containers' logs under s3://b/logs/j-1/containers" in report


def test_report_says_when_the_logs_have_not_arrived():
    assert "had not reached s3://b/logs in time" in stage_failure_report(STEPS, None, "s3://b/logs")


def cluster(state, code=None, message=None):
    reason = {key: value for key, value in (("Code", code), ("Message", message)) if value}
    return {"Id": "j-1", "Status": {"State": state, "StateChangeReason": reason}}


def test_a_cluster_fault_is_emrs_code_and_message():
    failed = cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE",
                     "On the master instance (i-1), bootstrap action 1 returned a non-zero return code")
    assert cluster_fault(failed) == (
        "cluster j-1 ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: On the master "
        "instance (i-1), bootstrap action 1 returned a non-zero return code")
    assert cluster_fault(cluster("TERMINATED", "INSTANCE_FAILURE", "lost the master")) == (
        "cluster j-1 ended TERMINATED: INSTANCE_FAILURE: lost the master")


def test_ordinary_ends_and_live_clusters_are_no_fault():
    assert cluster_fault(cluster("TERMINATED", "USER_REQUEST", "Terminated by user request")) is None
    assert cluster_fault(cluster("TERMINATED", "ALL_STEPS_COMPLETED")) is None
    assert cluster_fault(cluster("TERMINATED")) is None
    assert cluster_fault(cluster("RUNNING")) is None
    assert cluster_fault(cluster("WAITING", "INTERNAL_ERROR", "still up")) is None


def test_report_of_a_failed_bootstrap_names_the_clusters_fault_and_its_logs_not_stderr():
    cancelled = [step(f"stage {n}", "CANCELLED", reason="the cluster was terminated") for n in (1, 2, 3)]
    report = stage_failure_report(cancelled, None, "s3://b/logs/j-1/steps/s-1", cluster=cluster(
        "TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", "bootstrap action 1 failed"), node_log_location="s3://b/logs/j-1/node/")
    assert report.splitlines() == [
        "stage 1 of 3 (stage 1) ended CANCELLED: the cluster was terminated",
        "cluster j-1 ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: bootstrap action 1 failed; "
        "its bootstrap and node logs are under s3://b/logs/j-1/node/"]


def test_report_of_a_timed_out_wait_names_the_error_and_each_stages_state():
    steps = [step("stage 1", "COMPLETED"), step("stage 2", "RUNNING"), step("stage 3", "PENDING")]
    report = stage_failure_report(steps, None, "s3://b/logs", cluster=cluster("RUNNING"),
                                  wait_error=TimeoutError("Sensor has timed out"))
    assert report == ("the wait for the stages failed (TimeoutError: Sensor has timed out) "
                      "with no stage failed on EMR: stage 1: COMPLETED, stage 2: RUNNING, stage 3: PENDING")


def test_report_names_logs_it_could_not_read_instead_of_their_lines():
    report = stage_failure_report(STEPS, None, "s3://b/logs/j-1/steps/s-2",
                                  container_log_location="s3://b/logs/j-1/containers",
                                  logs_unreadable="PermissionError: AccessDenied")
    assert report.splitlines()[1:] == [
        "its logs could not be read (PermissionError: AccessDenied); look under "
        "s3://b/logs/j-1/steps/s-2 and s3://b/logs/j-1/containers"]


def test_summary_gives_emrs_reason_and_where_the_diagnosis_follows_without_any_log():
    summary = stage_failure_summary(STEPS, cluster("RUNNING"), metrics_location="s3://b/runs/r/metrics.json")
    assert summary.splitlines() == [
        "stage 2 of 3 (stage 2) ended FAILED: Unknown error; Task failed: exit 1",
        "the full diagnosis follows once the cluster has ended: in the log of diagnose_failure and under "
        '"failure" in s3://b/runs/r/metrics.json']


def test_summary_of_a_failed_bootstrap_names_the_clusters_fault_and_its_node_logs():
    cancelled = [step(f"stage {n}", "CANCELLED", reason="the cluster was terminated") for n in (1, 2)]
    summary = stage_failure_summary(
        cancelled, cluster("TERMINATED_WITH_ERRORS", "BOOTSTRAP_FAILURE", "bootstrap action 1 failed"),
        node_log_location="s3://b/logs/j-1/node/", metrics_location="s3://b/runs/r/metrics.json")
    assert summary.splitlines()[:2] == [
        "stage 1 of 2 (stage 1) ended CANCELLED: the cluster was terminated",
        "cluster j-1 ended TERMINATED_WITH_ERRORS: BOOTSTRAP_FAILURE: bootstrap action 1 failed; "
        "its bootstrap and node logs are under s3://b/logs/j-1/node/"]


def test_summary_of_a_timed_out_wait_names_the_error_and_each_stages_state():
    steps = [step("stage 1", "RUNNING"), step("stage 2", "PENDING")]
    summary = stage_failure_summary(steps, cluster("RUNNING"),
                                    wait_error=TimeoutError("Sensor has timed out"))
    assert summary.splitlines()[0] == ("the wait for the stages failed (TimeoutError: Sensor has timed out) "
                                       "with no stage failed on EMR: stage 1: RUNNING, stage 2: PENDING")


@pytest.mark.parametrize("states, completed", [
    (["COMPLETED", "COMPLETED"], True),
    (["COMPLETED", "FAILED"], False),
    (["COMPLETED", "RUNNING"], False),
    (["CANCELLED", "CANCELLED"], False),
    ([], False),
])
def test_only_stages_that_all_completed_leave_nothing_to_diagnose(states, completed):
    assert stages_completed([step(f"stage {n}", state) for n, state in enumerate(states, 1)]) is completed


def test_the_failure_record_names_the_failed_stage_its_step_and_emrs_reason():
    record = failure_record(STEPS, ["s-1", "s-2", "s-3"], cluster("TERMINATED", "USER_REQUEST"), "the report")
    assert record == {"stage": 2, "step_id": "s-2", "state": "FAILED",
                      "reason": "Unknown error; Task failed: exit 1",
                      "stage_states": ["COMPLETED", "FAILED", "CANCELLED"], "cluster_fault": None,
                      "report": "the report"}


def test_the_failure_record_of_stages_cut_short_by_a_fault_has_the_clusters_fault():
    steps = [step("stage 1", "INTERRUPTED", reason="the cluster was terminated"),
             step("stage 2", "CANCELLED")]
    lost = cluster("TERMINATED_WITH_ERRORS", "INSTANCE_FAILURE", "lost")
    record = failure_record(steps, ["s-1", "s-2"], lost, "the report")
    assert (record["stage"], record["step_id"], record["state"]) == (1, "s-1", "INTERRUPTED")
    assert record["cluster_fault"] == "cluster j-1 ended TERMINATED_WITH_ERRORS: INSTANCE_FAILURE: lost"

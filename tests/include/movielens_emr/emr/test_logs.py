"""Reading EMR's logs where EMR delivers them: a step's counters, and a failed task's own error."""
import gzip
import json
import logging
import threading
import time

import boto3
import pytest
from moto import mock_aws

from movielens_emr.data.storage import LocalStorage
from movielens_emr.emr.logs import (
    container_log_folder,
    failed_step_logs,
    hadoop_client_job,
    history_log_folder,
    last_python_traceback,
    run_counters,
    run_task_times,
    step_counters,
    step_log_folder,
    task_error_text,
    task_failure_traceback,
)
from movielens_emr.sizing.task_times import HISTORY_SOURCE

from tests.support.emr_double import emr_streaming_double

RUN = "runs/r1"
CLUSTER = "j-1"
APP = "application_1764680000000_0002"
ATTEMPT = "attempt_1764680000000_0002_m_000001_0"
CLIENT_STDERR = "\n".join([
    f"2026-12-02 13:00:00,001 INFO impl.YarnClientImpl: Submitted application {APP}",
    "2026-12-02 13:00:00,002 INFO mapreduce.Job: Running job: job_1764680000000_0002",
    f"2026-12-02 13:00:09,000 INFO mapreduce.Job: Task Id : {ATTEMPT}, Status : FAILED",
    "Error: java.lang.RuntimeException: PipeMapRed.waitOutputThreads(): subprocess failed with code 1",
    "\tat org.apache.hadoop.streaming.PipeMapRed.waitOutputThreads(PipeMapRed.java:326)",
    "2026-12-02 13:00:10,000 INFO mapreduce.Job: Counters: 2",
    "\tJob Counters ", "\t\tFailed map tasks=1", "\tinput", "\t\tratings read=7",
    "2026-12-02 13:00:10,001 ERROR streaming.StreamJob: Job not successful!",
    "Streaming Command Failed!", ""])
TRACEBACK = 'Traceback (most recent call last):\n  File "job.py", line 3, in <module>\nValueError: bad rating'


@pytest.fixture
def storage(tmp_path):
    return LocalStorage(tmp_path)


def put_log(storage, key, text):
    storage.put_bytes(gzip.compress(text.encode()), key)


def put_step_log(storage, step_id, name, text):
    put_log(storage, f"{step_log_folder(RUN, CLUSTER, step_id)}/{name}.gz", text)


def put_container_log(storage, container, name, text):
    put_log(storage, f"{container_log_folder(RUN, CLUSTER, APP)}/{container}/{name}.gz", text)


@pytest.mark.parametrize("holder", ["stderr", "syslog", "controller"])
def test_a_steps_counters_are_read_from_whichever_log_holds_the_block(storage, holder):
    for name in ("controller", "stderr", "stdout", "syslog"):
        put_step_log(storage, "s-1", name, CLIENT_STDERR if name == holder else "INFO nothing here\n")
    assert step_counters(storage, RUN, CLUSTER, "s-1") == {"Job Counters: Failed map tasks": 1,
                                                           "input: ratings read": 7}


def test_run_counters_sum_the_steps_and_name_where_each_was_read(storage):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    put_step_log(storage, "s-1", "syslog", "")
    put_step_log(storage, "s-2", "syslog", CLIENT_STDERR)
    read = run_counters(storage, RUN, CLUSTER, ["s-1", "s-2"])
    assert read.counters == {"Job Counters: Failed map tasks": 2, "input: ratings read": 14}
    assert read.read_from == [storage.uri(f"{step_log_folder(RUN, CLUSTER, 's-1')}/stderr.gz"),
                              storage.uri(f"{step_log_folder(RUN, CLUSTER, 's-2')}/syslog.gz")]


def test_a_step_whose_counters_never_arrive_is_named_not_counted_as_zero(storage, caplog):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    put_step_log(storage, "s-2", "stderr", CLIENT_STDERR.split("Counters:")[0])  # pushed before the job ended
    with caplog.at_level(logging.WARNING):
        read = run_counters(storage, RUN, CLUSTER, ["s-1", "s-2", "s-3"], wait_seconds=0.2,
                            poll_seconds=0.05)
    assert read.counters == {"Job Counters: Failed map tasks": 1, "input: ratings read": 7}
    assert read.read_from[0].endswith("/steps/s-1/stderr.gz") and read.read_from[1:] == [None, None]
    assert "stage 2 (s-2): no counter block in its stderr.gz, syslog.gz, controller.gz" in caplog.text
    assert "stage 3 (s-3)" in caplog.text


def test_run_counters_wait_for_logs_delivered_late(storage):
    late = threading.Timer(0.3, put_step_log, (storage, "s-1", "stderr", CLIENT_STDERR))
    late.start()
    try:
        read = run_counters(storage, RUN, CLUSTER, ["s-1"], wait_seconds=10, poll_seconds=0.05)
    finally:
        late.join()
    assert read.counters["input: ratings read"] == 7


def test_hadoop_client_output_names_the_application_and_the_failed_attempts():
    assert hadoop_client_job(CLIENT_STDERR) == (APP, [ATTEMPT])
    assert hadoop_client_job("ERROR streaming.StreamJob: Error Launching job : Output directory exists") == (
        None, [])


def test_task_error_text_starts_at_the_traceback_and_drops_streaming_noise():
    stderr = (f"log4j:WARN No appenders could be found\nreporter:counter:input,ratings read,3\nwarming up\n"
              f"{TRACEBACK}\n")
    assert task_error_text(stderr) == TRACEBACK
    assert task_error_text("usage: job.py [-h]\njob.py: error: --movie-blocks must be at least 1\n") == (
        "usage: job.py [-h]\njob.py: error: --movie-blocks must be at least 1")
    assert task_error_text("reporter:status:sorting\n\n") is None


def put_failed_application(storage, master_syslog=True, client_log="stderr"):
    """The application master, a task that succeeded with a stray traceback, a failed one."""
    put_step_log(storage, "s-1", client_log, CLIENT_STDERR)
    master, healthy, failed = (APP.replace("application_", "container_") + f"_01_00000{n}" for n in (1, 2, 3))
    allocator = "INFO [RMCommunicator Allocator] org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator"
    put_container_log(storage, master, "syslog", (
        f"{allocator}: Assigned container {healthy} to {ATTEMPT.replace('_000001_', '_000000_')}\n"
        f"{allocator}: Assigned container {failed} to {ATTEMPT}\n") if master_syslog else "")
    put_container_log(storage, master, "stderr", "")
    put_container_log(storage, healthy, "stderr", "Traceback (most recent call last):\nWarning: handled\n")
    put_container_log(storage, healthy, "syslog", "INFO [main] org.apache.hadoop.mapred.Task: Task done.\n")
    put_container_log(storage, failed, "stderr", f"reporter:counter:input,ratings read,1\n{TRACEBACK}\n")
    put_container_log(storage, failed, "syslog", "WARN [main] org.apache.hadoop.mapred.YarnChild: "
                      "Exception running child : java.lang.RuntimeException: "
                      "PipeMapRed.waitOutputThreads(): subprocess failed with code 1\n")
    return failed


@pytest.mark.parametrize("client_log", ["stderr", "syslog"])  # EMR 6 and 7; EMR 4 and 5
def test_the_failed_attempts_container_gives_the_tasks_traceback(storage, client_log):
    failed = put_failed_application(storage, client_log=client_log)
    found = task_failure_traceback(storage, RUN, CLUSTER, "s-1")
    stderr_uri = storage.uri(f"{container_log_folder(RUN, CLUSTER, APP)}/{failed}/stderr.gz")
    assert found == f"task {ATTEMPT} ({failed}, {stderr_uri}):\n{TRACEBACK}"


def test_without_the_masters_log_the_container_whose_task_failed_is_found(storage):
    failed = put_failed_application(storage, master_syslog=False)
    found = task_failure_traceback(storage, RUN, CLUSTER, "s-1")
    assert found.startswith(f"a failed task of {APP} ({failed}, ") and found.endswith(f"\n{TRACEBACK}")


def test_the_traceback_is_waited_for_until_the_containers_logs_arrive(storage):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    late = threading.Timer(0.3, put_failed_application, (storage,))
    late.start()
    try:
        found = task_failure_traceback(storage, RUN, CLUSTER, "s-1", wait_seconds=10, poll_seconds=0.05)
    finally:
        late.join()
    assert found.endswith(TRACEBACK)


def test_no_traceback_before_the_containers_logs_arrive(storage):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    assert task_failure_traceback(storage, RUN, CLUSTER, "s-1", wait_seconds=0.1, poll_seconds=0.05) is None
    assert task_failure_traceback(storage, RUN, CLUSTER, "s-2") is None  # no step log at all


def test_a_failed_steps_logs_are_its_stderr_and_its_tasks_error(storage):
    failed = put_failed_application(storage)
    stderr, error = failed_step_logs(storage, RUN, CLUSTER, "s-1")
    assert gzip.decompress(stderr).decode() == CLIENT_STDERR
    assert error.startswith(f"task {ATTEMPT} ({failed}, ") and error.endswith(TRACEBACK)


def test_without_its_stderr_a_failed_step_has_no_logs_to_read(storage):
    assert failed_step_logs(storage, RUN, CLUSTER, "s-1", wait_seconds=0.1, poll_seconds=0.05) == (None, None)


def test_a_failed_steps_logs_are_waited_for_within_one_wait_in_all(storage):
    """The stderr arrives late and the containers' logs never: the whole read still ends at the wait."""
    late = threading.Timer(0.4, put_step_log, (storage, "s-1", "stderr", CLIENT_STDERR))
    late.start()
    started = time.monotonic()
    try:
        stderr, error = failed_step_logs(storage, RUN, CLUSTER, "s-1", wait_seconds=1, poll_seconds=0.05)
    finally:
        late.join()
    assert stderr is not None and error is None
    assert time.monotonic() - started < 1.5


def test_the_traceback_of_a_task_that_failed_on_the_emr_double(storage):
    """The double lays its logs out as EMR does: the traceback is found where EMR would put it."""
    failing = "python3 -c \"import sys; sys.stdin.read(); raise ValueError('bad rating on line 7')\""
    with mock_aws(), emr_streaming_double() as double:
        s3, emr = boto3.client("s3", region_name="us-east-1"), boto3.client("emr", region_name="us-east-1")
        s3.create_bucket(Bucket="logs-test")
        s3.put_object(Bucket="logs-test", Key="in/ratings.csv", Body=b"1,2,5\n")
        cluster_id = emr.run_job_flow(
            Name="c", ReleaseLabel="emr-7.9.0", JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole", LogUri="s3://logs-test/logs/",
            Instances={"InstanceCount": 1, "MasterInstanceType": "m5.xlarge",
                       "KeepJobFlowAliveWhenNoSteps": True})["JobFlowId"]
        args = ["hadoop-streaming", "-input", "s3://logs-test/in/ratings.csv", "-output", "s3://logs-test/out",
                "-mapper", failing, "-reducer", "cat"]
        (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[{
            "Name": "boom", "ActionOnFailure": "CONTINUE",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}])["StepIds"]
        states = [emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]["State"]
                  for _ in range(2)]
    assert states == ["RUNNING", "FAILED"]
    for path, text in double.execution(step_id).logs.items():  # as delivered under the run's log URI
        put_log(storage, f"{RUN}/logs/{cluster_id}/{path}.gz", text)
    found = task_failure_traceback(storage, RUN, cluster_id, step_id)
    assert found.splitlines()[0].startswith("task attempt_") and "_m_000000_0 (container_" in found
    assert found.splitlines()[1] == "Traceback (most recent call last):"
    assert found.endswith("ValueError: bad rating on line 7")


def put_job_history(storage, application, map_seconds, reduce_seconds, gzipped=True):
    """A job's .jhist where EMR archives it: one map and one reduce task of the given seconds."""
    job = application.replace("application_", "job_")
    lines = ["Avro-Json", "{}"]
    for phase, kind, start, seconds in (("m", "MAP", 1_000, map_seconds),
                                        ("r", "REDUCE", 9_000, reduce_seconds)):
        task = f"{job.replace('job_', 'task_')}_{phase}_000000"
        lines += [history_line("TASK_STARTED", "TaskStarted", taskid=task, taskType=kind, startTime=start,
                               splitLocations=""),
                  history_line("TASK_FINISHED", "TaskFinished", taskid=task, taskType=kind,
                               finishTime=start + seconds * 1000, status="SUCCEEDED",
                               counters={"name": "COUNTERS", "groups": []})]
    text = "\n".join(lines) + "\n"
    folder = f"{history_log_folder(RUN, CLUSTER)}/2026/12/02/000000"
    key = f"{folder}/{job}-1-hadoop-stage-2-1-1-SUCCEEDED-default-1.jhist"
    if gzipped:
        put_log(storage, f"{key}.gz", text)
    else:
        storage.put_bytes(text.encode(), key)
    return storage.uri(f"{key}.gz" if gzipped else key)


def history_line(kind, branch, **fields):
    return json.dumps({"type": kind, "event": {f"org.apache.hadoop.mapreduce.jobhistory.{branch}": fields}})


def client_stderr(application):
    return CLIENT_STDERR.replace(APP, application)


def test_task_times_come_from_each_steps_job_history(storage):
    second = APP.replace("_0002", "_0003")
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    put_step_log(storage, "s-2", "syslog", client_stderr(second))  # EMR 5's client logged to syslog
    first_uri = put_job_history(storage, APP, 4, 2)
    second_uri = put_job_history(storage, second, 3, 1, gzipped=False)
    times = run_task_times(storage, RUN, CLUSTER, ["s-1", "s-2"])
    assert times["source"] == HISTORY_SOURCE and times["missing"] is None
    assert times["read_from"] == [first_uri, second_uri]
    assert times["task_seconds"] == [{"mapper": [4.0], "reducer": [2.0]}, {"mapper": [3.0], "reducer": [1.0]}]


def test_a_step_whose_history_never_arrives_has_unknown_task_times(storage, caplog):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    put_step_log(storage, "s-2", "stderr", client_stderr(APP.replace("_0002", "_0003")))
    put_job_history(storage, APP, 4, 2)
    with caplog.at_level(logging.WARNING):
        times = run_task_times(storage, RUN, CLUSTER, ["s-1", "s-2", "s-3"], wait_seconds=0.2,
                               poll_seconds=0.05)
    assert times["source"] == HISTORY_SOURCE and times["stages"][1:] == [None, None]
    assert times["missing"] == ("no job history of stage 2 (job_1764680000000_0003), stage 3 (no job id in "
                                "its logs)")
    assert "no job history under" in caplog.text and times["read_from"][1:] == [None, None]


def test_the_job_history_is_waited_for_until_emr_archives_it(storage):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)
    late = threading.Timer(0.3, put_job_history, (storage, APP, 4, 2))
    late.start()
    try:
        times = run_task_times(storage, RUN, CLUSTER, ["s-1"], wait_seconds=10, poll_seconds=0.05)
    finally:
        late.join()
    assert times["task_seconds"] == [{"mapper": [4.0], "reducer": [2.0]}]


def test_a_store_that_refuses_the_history_leaves_the_task_times_unknown_without_failing(storage, monkeypatch):
    put_step_log(storage, "s-1", "stderr", CLIENT_STDERR)

    def refused(prefix):
        raise PermissionError("AccessDenied: s3:ListBucket")

    monkeypatch.setattr(storage, "list_keys", refused)
    times = run_task_times(storage, RUN, CLUSTER, ["s-1"])
    assert times["source"] is None and times["stages"] == [None]
    assert times["missing"] == "reading the job history failed: AccessDenied: s3:ListBucket"


# a Spark step's logs -------------------------------------------------------------------------------------
SPARK_CLIENT_STDERR = "\n".join([
    f"26/12/02 13:00:00 INFO YarnClientImpl: Submitted application {APP}",
    f"26/12/02 13:00:40 INFO Client: Application report for {APP} (state: FINISHED)",
    "\t final status: FAILED",
    f'Exception in thread "main" org.apache.spark.SparkException: Application {APP} finished with failed '
    "status",
    ""])
DRIVER_STDOUT = "\n".join([
    "26/12/02 13:00:01 WARN NativeCodeLoader: Unable to load native-hadoop library",
    "Traceback (most recent call last):", '  File "als_recommender.py", line 9, in <module>',
    "py4j.protocol.Py4JJavaError: An error occurred while calling z:PythonRDD.collectAndServe.",
    ": org.apache.hadoop.mapred.InvalidInputException: Input path does not exist: s3://b/missing.tsv",
    "\tat org.apache.hadoop.mapred.FileInputFormat.listStatus(FileInputFormat.java:304)",
    "Caused by: java.io.IOException: Input path does not exist: s3://b/missing.tsv", "",
    "26/12/02 13:00:39 INFO ShutdownHookManager: Shutdown hook called", ""])
EXECUTOR_STDERR = "\n".join([
    "26/12/02 13:00:30 INFO Executor: Running task 0.0 in stage 3.0 (TID 7)",
    "26/12/02 13:00:31 ERROR Executor: Exception in task 0.0 in stage 3.0 (TID 7)",
    "org.apache.spark.api.python.PythonException: Traceback (most recent call last):",
    "ZeroDivisionError: division by zero", ""])


def put_failed_spark_application(storage, executor=True):
    put_step_log(storage, "s-1", "stderr", SPARK_CLIENT_STDERR)
    driver, worker = (APP.replace("application_", "container_") + f"_01_00000{n}" for n in (1, 2))
    put_container_log(storage, driver, "stderr", "26/12/02 13:00:01 INFO SparkContext: Running Spark\n")
    put_container_log(storage, driver, "stdout", DRIVER_STDOUT)
    put_container_log(storage, worker, "stderr", EXECUTOR_STDERR if executor else "INFO all well\n")
    return driver, worker


def test_a_failed_spark_steps_driver_traceback_is_read_from_its_containers_stdout_with_java_causes(storage):
    driver, worker = put_failed_spark_application(storage)
    found = task_failure_traceback(storage, RUN, CLUSTER, "s-1")
    folder = container_log_folder(RUN, CLUSTER, APP)
    assert found.startswith(f"the driver ({driver}, {storage.uri(f'{folder}/{driver}/stdout.gz')}):\n"
                            "Traceback (most recent call last):\n")
    assert ("py4j.protocol.Py4JJavaError: An error occurred while calling z:PythonRDD.collectAndServe.\n"
            ": org.apache.hadoop.mapred.InvalidInputException: Input path does not exist: s3://b/missing.tsv\n"
            "Caused by: java.io.IOException: Input path does not exist: s3://b/missing.tsv\n") in found
    assert "FileInputFormat.listStatus" not in found and "ShutdownHookManager" not in found
    executor_log = storage.uri(f"{folder}/{worker}/stderr.gz")
    assert found.endswith(f"an executor's failed task ({worker}, {executor_log}):\n"
                          + EXECUTOR_STDERR[EXECUTOR_STDERR.index("26/12/02 13:00:31"):].rstrip("\n"))


def test_a_spark_step_without_a_failed_executor_gives_the_drivers_error_alone(storage):
    put_failed_spark_application(storage, executor=False)
    found = task_failure_traceback(storage, RUN, CLUSTER, "s-1")
    assert found.startswith("the driver (") and "an executor" not in found


def test_the_last_traceback_ends_at_its_exception_line_when_no_java_cause_follows():
    text = 'noise\nTraceback (most recent call last):\n  File "a.py", line 1\nValueError: bad\nlater log\n'
    assert last_python_traceback(text) == (
        'Traceback (most recent call last):\n  File "a.py", line 1\nValueError: bad')
    assert last_python_traceback("no traceback here") is None

"""The EMR test double itself: streaming and Spark steps really run, in order, a state transition a poll."""
import gzip
import json
import sys
import zipfile
from collections import Counter

import boto3
import pytest
import requests
from moto import mock_aws
from moto.server import ThreadedMotoServer
from mrjob.logs.history import _match_history_log_path, _parse_yarn_history_log

from movielens_emr.reporting.metrics import parse_hadoop_counters
from movielens_emr.sizing.task_times import killed_attempts, parse_job_history

from tests.support import node_pythons, node_spark
from tests.support.emr_double import (
    EmrStreamingDouble,
    MotoS3,
    S3Mirror,
    StepArgsError,
    emr_streaming_double,
    hash_partition,
    java_text_hash,
    line_key,
    parse_spark_submit_args,
    parse_streaming_args,
    spot_task_cluster,
)
from tests.support.node_pythons import NodePythonMissing

REGION = "us-east-1"
BUCKET = "emr-double-test"
LOG_URI = f"s3://{BUCKET}/logs/"
WORD_COUNT = r'''
import os, sys
from itertools import groupby

def mapper():
    name = os.environ["mapreduce_map_input_file"].rsplit("/", 1)[-1]
    words = 0
    for line in sys.stdin.buffer:
        for word in line.split():
            sys.stdout.buffer.write(word + b"\t1\n")
            words += 1
    print(f"reporter:counter:input files,{name},1", file=sys.stderr)
    print(f"reporter:counter:words,mapped,{words}", file=sys.stderr)

def reducer():
    pairs = (line.rstrip(b"\n").split(b"\t") for line in sys.stdin.buffer)
    groups = 0
    for word, group in groupby(pairs, key=lambda pair: pair[0]):
        sys.stdout.buffer.write(word + b"\t" + str(sum(int(count) for _, count in group)).encode() + b"\n")
        groups += 1
    print(f"reporter:counter:words,distinct in {sys.argv[1]},{groups}", file=sys.stderr)

if sys.argv[1] == "map":
    mapper()
else:
    reducer()
'''
TEXTS = {
    "a.txt": "the quick brown fox jumps over the lazy dog\nThe Dog sleeps\n",
    "b.txt": "über den faulen Hund\nthe end the END\n" + "zebra apple mango\n" * 3,
}


def word_count_step(name, output, reducers=3, inputs=(f"s3://{BUCKET}/input",), mapper=None,
                    action_on_failure="CANCEL_AND_WAIT"):
    args = ["hadoop-streaming", "-files", f"s3://{BUCKET}/code/wc.py#wc.py",
            "-D", f"mapreduce.job.reduces={reducers}", "-D", f"mapreduce.job.name={name}"]
    for uri in inputs:
        args += ["-input", uri]
    args += ["-output", output, "-mapper", mapper or "python3 wc.py map",
             "-combiner", "python3 wc.py combine", "-reducer", "python3 wc.py reduce"]
    return {"Name": name, "ActionOnFailure": action_on_failure,
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}


def expected_counts():
    return Counter(word for text in TEXTS.values() for word in text.encode().split())


def setup_world(s3, emr, bootstrap_actions=()):
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/wc.py", Body=WORD_COUNT.encode())
    for name, text in TEXTS.items():
        s3.put_object(Bucket=BUCKET, Key=f"input/{name}", Body=text.encode())
    # Hadoop skips hidden inputs: these would add words if they were read.
    s3.put_object(Bucket=BUCKET, Key="input/_SUCCESS", Body=b"hidden underscore\n")
    s3.put_object(Bucket=BUCKET, Key="input/.crc", Body=b"hidden dot\n")
    return emr.run_job_flow(
        Name="double", ReleaseLabel="emr-7.9.0", LogUri=LOG_URI,
        Instances={"InstanceGroups": [
            {"Name": "master", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}],
            "KeepJobFlowAliveWhenNoSteps": True},
        BootstrapActions=list(bootstrap_actions),
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]


def read_parts(s3, prefix):
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix + "/")["Contents"]
    names = sorted(item["Key"].rsplit("/", 1)[-1] for item in listed)
    parts = {name: s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{name}")["Body"].read()
             for name in names if name.startswith("part-")}
    return names, parts


def step_status(emr, cluster_id, step_id):
    return emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]


def poll_until_terminal(emr, cluster_id, step_id, limit=20):
    states = []
    for _ in range(limit):
        status = step_status(emr, cluster_id, step_id)
        states.append(status["State"])
        if status["State"] in ("COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"):
            return states, status
    raise AssertionError(f"step {step_id} never ended: {states}")


def gunzipped(s3, key):
    return gzip.decompress(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()).decode()


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.client("s3", region_name=REGION), boto3.client("emr", region_name=REGION)


def test_java_text_hash_and_partitioner_match_hadoop():
    # WritableComparator.hashBytes: h = 1; h = 31*h + (signed byte)
    assert java_text_hash(b"") == 1
    assert java_text_hash(b"a") == 31 + 97
    assert java_text_hash(b"\xff") == 31 - 1
    assert java_text_hash(b"ab") == (31 * (31 + 97) + 98)
    # overflow wraps like a Java int; the partitioner masks the sign bit
    long_key = b"x" * 50
    assert 0 <= java_text_hash(long_key) < 2**32
    assert all(0 <= hash_partition(bytes([byte]) * 9, 7) < 7 for byte in range(256))
    assert line_key(b"k\tv\tw") == b"k" and line_key(b"no tab") == b"no tab"


def test_parse_streaming_args_of_the_pipeline_steps():
    from movielens_emr.config.params import validate_run_config
    from movielens_emr.emr.steps import build_stage_steps
    from movielens_emr.engine.protocol import MrjobJob, TaskFile
    from movielens_emr.engine.similarity.job import JOB_CLASS, JOB_FILE, STAGE_NAMES, job_args

    config = validate_run_config({"node_count": 3}, 20)
    job = MrjobJob(JOB_FILE, JOB_CLASS, STAGE_NAMES, tuple(job_args(config, 4)),
                   (TaskFile("--items", "s3://b/ds/movies.csv"),), reduce_tasks=8)
    steps = build_stage_steps(job, ["s3://b/run/job/movie_similarities.py"], ["s3://b/ds/ratings.csv"],
                              "s3://b/run/output", "r1")
    jobs = [parse_streaming_args(step["HadoopJarStep"]["Args"]) for step in steps]
    assert [job.inputs for job in jobs] == [
        ["s3://b/ds/ratings.csv"], ["s3://b/run/output/stage-1"], ["s3://b/run/output/stage-2"]]
    assert [job.output for job in jobs] == [f"s3://b/run/output/stage-{number}" for number in (1, 2, 3)]
    assert all(job.reduces == 8 for job in jobs)
    assert jobs[0].files == [("s3://b/run/job/movie_similarities.py", "movie_similarities.py"),
                             ("s3://b/ds/movies.csv", "movies.csv")]
    assert jobs[1].mapper.startswith("python3.9 movie_similarities.py --step-num=1 --mapper")
    assert jobs[2].reducer.startswith("python3.9 movie_similarities.py --step-num=2 --reducer")
    assert jobs[1].cmdenv == {"PYTHONPATH": "/usr/local/lib/movielens-job/python3.9"}
    with pytest.raises(StepArgsError, match="only hadoop-streaming"):
        parse_streaming_args(["spark-submit", "job.py"])
    with pytest.raises(StepArgsError, match="unrecognized option"):
        parse_streaming_args(["hadoop-streaming", "-inptu", "s3://b/x"])
    with pytest.raises(StepArgsError, match="-output is missing"):
        parse_streaming_args(["hadoop-streaming", "-input", "s3://b/x", "-mapper", "cat"])


def test_word_count_step_runs_one_transition_per_poll(aws):
    s3, emr = aws
    with emr_streaming_double() as double:
        cluster_id = setup_world(s3, emr)
        (step_id,) = emr.add_job_flow_steps(
            JobFlowId=cluster_id, Steps=[word_count_step("wc", f"s3://{BUCKET}/out")])["StepIds"]
        # Listing does not advance: EMR queues a new step as PENDING.
        assert emr.list_steps(ClusterId=cluster_id)["Steps"][0]["Status"]["State"] == "PENDING"

        first = step_status(emr, cluster_id, step_id)
        assert first["State"] == "RUNNING"
        assert "StartDateTime" in first["Timeline"] and "EndDateTime" not in first["Timeline"]
        assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "RUNNING"
        second = step_status(emr, cluster_id, step_id)
        assert second["State"] == "COMPLETED", second
        assert second["Timeline"]["EndDateTime"] >= second["Timeline"]["StartDateTime"]
        assert step_status(emr, cluster_id, step_id) == second  # nothing left to move
        assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "WAITING"

    names, parts = read_parts(s3, "out")
    assert names == ["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    counts = Counter()
    for number, (name, data) in enumerate(sorted(parts.items())):
        keys = [line.split(b"\t")[0] for line in data.splitlines()]
        assert keys == sorted(keys), f"{name} is not sorted by key bytes"
        assert len(keys) == len(set(keys)), f"{name}: a key reached its reducer in two groups"
        assert all(hash_partition(key, 3) == number for key in keys)
        counts.update({key: int(value) for key, value in (line.split(b"\t") for line in data.splitlines())})
    assert counts == expected_counts()  # hidden inputs _SUCCESS and .crc were not read

    execution = double.execution(step_id)
    maps = [task for task in execution.tasks if task.kind == "map"]
    assert sorted(task.input_uri for task in maps) == [f"s3://{BUCKET}/input/{name}" for name in TEXTS]
    assert sum(task.kind == "reduce" for task in execution.tasks) == 3
    assert sum(task.kind == "combine" for task in execution.tasks) == 2

    step_logs = f"logs/{cluster_id}/steps/{step_id}"
    # a command-runner step: the hadoop client's console output, counters included, is the step's stderr
    assert gunzipped(s3, f"{step_logs}/syslog.gz") == ""
    stderr = gunzipped(s3, f"{step_logs}/stderr.gz")
    assert "INFO mapreduce.Job: Counters: " in stderr
    assert f"Submitted application {execution.application_id}" in stderr
    assert stderr.rstrip().endswith(f"INFO streaming.StreamJob: Output directory: s3://{BUCKET}/out")
    counters = parse_hadoop_counters(stderr)
    total_words = sum(expected_counts().values())
    assert counters["input files: a.txt"] == 1 and counters["input files: b.txt"] == 1
    assert counters["words: mapped"] == total_words
    assert counters["Map-Reduce Framework: Map output records"] == total_words
    assert counters["Map-Reduce Framework: Reduce output records"] == len(expected_counts())
    assert counters["Map-Reduce Framework: Combine input records"] == total_words
    assert counters["Job Counters: Launched map tasks"] == 2
    assert counters["words: distinct in reduce"] == len(expected_counts())
    declared = int(stderr.split("Counters: ")[1].split("\n")[0])
    assert declared == len(counters)
    assert "reporter:counter:" not in stderr  # Hadoop streaming consumes the tasks' reporter lines
    controller = gunzipped(s3, f"{step_logs}/controller.gz")
    assert "command-runner.jar hadoop-streaming -files" in controller
    assert "Step succeeded with exitCode 0" in controller
    # the YARN containers: the application master, then one per map and reduce attempt
    containers = f"logs/{cluster_id}/containers/{execution.application_id}/"
    folders = sorted({key.split("/")[-2] for key in list_keys(s3, containers)})
    assert len(folders) == 1 + 2 + 3 and folders[0].endswith("_01_000001")
    master = gunzipped(s3, f"{containers}{folders[0]}/syslog.gz")
    assert master.count("RMContainerAllocator: Assigned container container_") == 5
    # the job's history, archived where EMR puts it: mrjob's parser and the pipeline's both read it
    jhist, lines = job_history(s3, cluster_id, execution.application_id)
    assert lines[0] == "Avro-Json\n"
    parsed = _parse_yarn_history_log(lines)
    assert parsed["counters"]["words"]["mapped"] == total_words
    assert sorted(parsed["attempt_to_container_id"].values()) == folders[1:]
    tasks = parse_job_history(lines)
    assert sorted(task.phase for task in tasks) == ["mapper"] * 2 + ["reducer"] * 3
    runs = {run.attempt.replace("attempt_", "task_").rsplit("_", 1)[0]: run for run in execution.tasks
            if run.kind != "combine"}
    combined = {run.attempt.removesuffix("_combine"): run for run in execution.tasks if run.kind == "combine"}
    for task in tasks:  # a map task's span ends with its combiner's
        run = runs[task.task]
        last = combined.get(run.attempt, run)
        assert task.started == pytest.approx(run.started, abs=0.001)
        assert task.seconds == pytest.approx(last.finished - run.started, abs=0.002)


def job_history(s3, cluster_id, application_id):
    """(key, lines) of a job's .jhist in the cluster's archived job history, beside the job's conf."""
    job_id = application_id.replace("application_", "job_", 1)
    keys = list_keys(s3, f"logs/{cluster_id}/hadoop-mapreduce/history/")
    (jhist,) = [key for key in keys if key.rsplit("/", 1)[1].startswith(f"{job_id}-")]
    assert jhist.endswith(".jhist.gz") and jhist.rsplit("/", 1)[0] + f"/{job_id}_conf.xml.gz" in keys
    assert _match_history_log_path(f"s3://{BUCKET}/{jhist}") == {"job_id": job_id, "yarn": True}
    return jhist, gunzipped(s3, jhist).splitlines(keepends=True)


def list_keys(s3, prefix):
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]


def test_failed_step_cancels_the_later_steps(aws):
    s3, emr = aws
    failing_mapper = "python3 -c \"import sys; sys.exit('boom in the mapper')\""
    with emr_streaming_double() as double:
        cluster_id = setup_world(s3, emr)
        step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[
            word_count_step("one", f"s3://{BUCKET}/out-1"),
            word_count_step("two", f"s3://{BUCKET}/out-2", inputs=[f"s3://{BUCKET}/out-1"],
                            mapper=failing_mapper),
            word_count_step("three", f"s3://{BUCKET}/out-3", inputs=[f"s3://{BUCKET}/out-2"]),
        ])["StepIds"]
        # Polling the last step moves the first ones on: 2 polls per step until one fails.
        states, last = poll_until_terminal(emr, cluster_id, step_ids[-1])
        assert states == ["PENDING", "PENDING", "PENDING", "CANCELLED"]
        assert last["StateChangeReason"]["Message"].startswith("cancelled after step")
        assert "StartDateTime" not in last["Timeline"]

        one, two = (step_status(emr, cluster_id, step_id) for step_id in step_ids[:2])
        assert one["State"] == "COMPLETED"
        assert two["State"] == "FAILED"
        assert "EndDateTime" in two["Timeline"]
        assert "subprocess failed with code 1" in two["StateChangeReason"]["Message"]
        assert two["FailureDetails"]["LogFile"] == f"{LOG_URI}{cluster_id}/steps/{step_ids[1]}/stderr.gz"
        failed = double.execution(step_ids[1])
    # The task's own error is only in its container's stderr, as on EMR: not in EMR's reason, not
    # in the step's stderr, which names the failed attempt and the application.
    assert "boom in the mapper" not in two["StateChangeReason"]["Message"] + two["FailureDetails"]["Message"]
    stderr = gunzipped(s3, f"logs/{cluster_id}/steps/{step_ids[1]}/stderr.gz")
    assert "boom in the mapper" not in stderr
    attempt = next(task.attempt for task in failed.tasks if task.returncode)
    assert f"INFO mapreduce.Job: Task Id : {attempt}, Status : FAILED" in stderr
    pipe_failed = "java.lang.RuntimeException: PipeMapRed.waitOutputThreads(): subprocess failed with code 1"
    assert f"Error: {pipe_failed}\n\tat org.apache.hadoop.streaming.PipeMapRed" in stderr
    assert stderr.rstrip().endswith("Streaming Command Failed!")
    controller = gunzipped(s3, f"logs/{cluster_id}/steps/{step_ids[1]}/controller.gz")
    assert "Step failed with exitCode 1" in controller
    containers = f"logs/{cluster_id}/containers/{failed.application_id}/"
    master_log = next(key for key in list_keys(s3, containers) if key.endswith("_000001/syslog.gz"))
    master = gunzipped(s3, master_log)
    container = master.split(f" to {attempt}")[0].rsplit("Assigned container ", 1)[1]
    assert gunzipped(s3, f"{containers}{container}/stderr.gz") == "boom in the mapper\n"
    assert "YarnChild: Exception running child" in gunzipped(s3, f"{containers}{container}/syslog.gz")
    # its history has the failed attempt, and the tasks that did finish
    jhist, lines = job_history(s3, cluster_id, failed.application_id)
    assert "-FAILED-default-" in jhist
    assert sorted(error["attempt_id"] for error in _parse_yarn_history_log(lines)["errors"]) == sorted(
        run.attempt for run in failed.tasks if run.returncode)
    finished_maps = sum(run.returncode == 0 for run in failed.tasks if run.kind == "map")
    assert len(parse_job_history(lines)) == finished_maps
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="out-")["Contents"]]
    assert all(key.startswith("out-1/") for key in keys)  # the failed step wrote nothing


def test_existing_output_or_missing_input_fails_like_hadoop(aws):
    s3, emr = aws
    with emr_streaming_double():
        cluster_id = setup_world(s3, emr)
        s3.put_object(Bucket=BUCKET, Key="taken/part-00000", Body=b"old\n")
        step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[
            word_count_step("exists", f"s3://{BUCKET}/taken", action_on_failure="CONTINUE"),
            word_count_step("missing", f"s3://{BUCKET}/new", inputs=[f"s3://{BUCKET}/nothing-here"],
                            action_on_failure="CONTINUE"),
        ])["StepIds"]
        _, first = poll_until_terminal(emr, cluster_id, step_ids[0])
        _, second = poll_until_terminal(emr, cluster_id, step_ids[1])
    assert first["State"] == "FAILED" and "already exists" in first["StateChangeReason"]["Message"]
    assert second["State"] == "FAILED"
    assert "Input path does not exist" in second["StateChangeReason"]["Message"]


def test_terminated_cluster_cancels_its_pending_steps(aws):
    s3, emr = aws
    with emr_streaming_double() as double:
        cluster_id = setup_world(s3, emr)
        (step_id,) = emr.add_job_flow_steps(
            JobFlowId=cluster_id, Steps=[word_count_step("wc", f"s3://{BUCKET}/out")])["StepIds"]
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        assert step_status(emr, cluster_id, step_id)["State"] == "CANCELLED"
        assert double.executions == []


def test_a_failed_bootstrap_ends_the_cluster_with_emrs_reason_and_cancels_its_steps(aws):
    s3, emr = aws
    with emr_streaming_double() as double:
        double.fail_bootstrap()
        cluster_id = setup_world(s3, emr)
        step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[
            word_count_step(name, f"s3://{BUCKET}/{name}") for name in ("one", "two")])["StepIds"]
        states = [step_status(emr, cluster_id, step_id)["State"] for step_id in step_ids]
        emr.terminate_job_flows(JobFlowIds=[cluster_id])  # ending an ended cluster changes nothing
        status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    assert states == ["CANCELLED", "CANCELLED"] and double.executions == []
    assert status["State"] == "TERMINATED_WITH_ERRORS"
    assert status["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert status["StateChangeReason"]["Message"].startswith("On the master instance (i-")
    assert status["StateChangeReason"]["Message"].endswith(
        "bootstrap action 1 returned a non-zero return code")


def test_a_bootstrap_failing_before_steps_makes_emr_refuse_them(aws):
    s3, emr = aws
    with emr_streaming_double() as double:
        double.fail_bootstrap(before_steps=True)
        cluster_id = setup_world(s3, emr)
        state = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
        with pytest.raises(emr.exceptions.ClientError, match="ValidationException.*may not be modified"):
            emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[word_count_step("late", f"s3://{BUCKET}/late")])
    assert state == "TERMINATED_WITH_ERRORS"
    assert emr.list_steps(ClusterId=cluster_id)["Steps"] == []


def test_a_held_step_runs_until_its_cluster_is_terminated(aws):
    s3, emr = aws
    with emr_streaming_double() as double:
        double.hold_steps(lambda name: name == "stuck")
        cluster_id = setup_world(s3, emr)
        stuck, after = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[
            word_count_step(name, f"s3://{BUCKET}/{name}") for name in ("stuck", "after")])["StepIds"]
        polled = [step_status(emr, cluster_id, stuck)["State"] for _ in range(5)]
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        ended = [step_status(emr, cluster_id, step_id)["State"] for step_id in (stuck, after)]
    assert polled == ["RUNNING"] * 5 and double.executions == []
    assert ended == ["INTERRUPTED", "CANCELLED"]


PYTHON_PROBE = ("{python} -c \"import importlib.util, sys; print(sys.version_info[:2], sys.executable, "
                "importlib.util.find_spec('numpy')); [print(l, end='') for l in sys.stdin]\"")


@pytest.mark.parametrize("python, version", [
    ("python3", (3, 9)), ("python3.9", (3, 9)), ("python3.11", (3, 11))])
def test_a_map_only_step_runs_under_the_bare_node_python_it_names(aws, python, version):
    step = word_count_step("map only", f"s3://{BUCKET}/maponly", reducers=0,
                           inputs=[f"s3://{BUCKET}/input/a.txt"], mapper=PYTHON_PROBE.format(python=python))
    with emr_streaming_double():
        s3, emr = aws
        cluster_id = setup_world(s3, emr)
        (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"]
        _, status = poll_until_terminal(emr, cluster_id, step_id)
    assert status["State"] == "COMPLETED", status
    names, parts = read_parts(s3, "maponly")
    assert names == ["_SUCCESS", "part-00000"]
    probe, text = parts["part-00000"].decode().split("\n", 1)
    # that version, never this process's interpreter, and no package the bootstrap did not install
    assert probe.startswith(f"{version} ") and probe.endswith(" None")
    assert sys.executable not in probe
    assert text == TEXTS["a.txt"]


# A job file importing a module shipped beside it in -files, and what it prints when that works.
SIBLING_IMPORTS = {
    # Python puts the script's folder on sys.path with symlinks resolved: the job file's own cache folder.
    "naive": "import helper\n",
    # jobs/movie_similarities.py's way: the folder it was run from, as named (the task's working folder).
    "from the working folder": ("import os, sys\n_folder = os.path.dirname(os.path.abspath(__file__))\n"
                                "if _folder not in sys.path:\n    sys.path.append(_folder)\nimport helper\n"),
}


def sibling_import_step(output, python):
    """A map-only step whose job file imports helper.py, both shipped in -files from their own S3 folders."""
    step = word_count_step("sibling import", output, reducers=0, inputs=[f"s3://{BUCKET}/input/a.txt"],
                           mapper=f"{python} job.py")
    step["HadoopJarStep"]["Args"][2] = f"s3://{BUCKET}/code/job.py#job.py,s3://{BUCKET}/lib/helper.py#helper.py"
    return step


@pytest.mark.parametrize("python", ["python3.9", "python3.11"])
@pytest.mark.parametrize("importing", list(SIBLING_IMPORTS))
def test_a_shipped_module_is_importable_from_the_working_folder_not_beside_the_resolved_script(
        aws, python, importing):
    s3, emr = aws
    with emr_streaming_double() as double:
        cluster_id = setup_world(s3, emr)
        s3.put_object(Bucket=BUCKET, Key="code/job.py", Body=(SIBLING_IMPORTS[importing] + (
            "import sys\nsys.stdin.read()\nprint(helper.WORDS)\n")).encode())
        s3.put_object(Bucket=BUCKET, Key="lib/helper.py", Body=b"WORDS = 'imported from beside the job'\n")
        step = sibling_import_step(f"s3://{BUCKET}/sibling", python)
        (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step])["StepIds"]
        _, status = poll_until_terminal(emr, cluster_id, step_id)
        (task,) = double.execution(step_id).tasks
    if importing == "naive":
        assert status["State"] == "FAILED"
        assert task.stderr.decode().rstrip().endswith("ModuleNotFoundError: No module named 'helper'")
        return
    assert status["State"] == "COMPLETED", task.stderr.decode()
    assert read_parts(s3, "sibling")[1]["part-00000"] == b"imported from beside the job\n"


def bootstrap_world(s3, emr, script, args=(), steps=()):
    """setup_world's cluster with one bootstrap action running `script` (bash) staged on S3."""
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="bootstrap/setup.sh", Body=("#!/bin/bash\nset -eu\n" + script).encode())
    cluster_id = setup_world(s3, emr, bootstrap_actions=[{"Name": "setup", "ScriptBootstrapAction": {
        "Path": f"s3://{BUCKET}/bootstrap/setup.sh", "Args": list(args)}}])
    step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=list(steps))["StepIds"] if steps else []
    return cluster_id, step_ids


def test_the_bootstrap_runs_before_the_steps_and_they_find_what_it_installed(aws):
    s3, emr = aws
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="lib/greeting.py", Body=b"WORDS = 'installed by the bootstrap'\n")
    script = ('mkdir -p "$1"\naws s3 cp --only-show-errors s3://emr-double-test/lib/greeting.py "$1/"\n'
              'echo "installed into $1"\n')
    use_it = "python3.9 -c \"import greeting, sys; sys.stdin.read(); print(greeting.WORDS)\""
    step = word_count_step("uses it", f"s3://{BUCKET}/out", reducers=0, inputs=[f"s3://{BUCKET}/input/a.txt"],
                           mapper=use_it)
    step["HadoopJarStep"]["Args"][1:1] = ["-cmdenv", "PYTHONPATH=/usr/local/lib/greeting"]
    with emr_streaming_double() as double:
        cluster_id, (step_id,) = bootstrap_world(s3, emr, script, ["/usr/local/lib/greeting"], [step])
        _, status = poll_until_terminal(emr, cluster_id, step_id)
        node = double.node(cluster_id)
        (run,) = double.bootstraps
    assert status["State"] == "COMPLETED", status
    assert read_parts(s3, "out")[1]["part-00000"] == b"installed by the bootstrap\n"
    # the node's folder stood for /usr/local; the action's output is where EMR delivers it
    assert run.returncode == 0 and run.args == [f"{node.root}/usr/local/lib/greeting"]
    (instance,) = [item["Ec2InstanceId"] for item in emr.list_instances(ClusterId=cluster_id)["Instances"]]
    stdout = gunzipped(s3, f"logs/{cluster_id}/node/{instance}/bootstrap-actions/1/stdout.gz")
    assert stdout == f"installed into {node.root}/usr/local/lib/greeting\n"


@pytest.mark.parametrize("script", [
    "echo 'no such wheel' >&2; exit 3\n",
    "aws s3 cp s3://emr-double-test/missing.whl /tmp/\n",  # a missing object
    "aws s3 sync s3://emr-double-test/lib /tmp/lib\n",  # more than the double's aws does: refused
])
def test_a_failing_bootstrap_action_ends_the_cluster_as_emr_does(aws, script):
    reason = "bootstrap action 1 returned a non-zero return code"
    s3, emr = aws
    with emr_streaming_double() as double:
        cluster_id, (step_id,) = bootstrap_world(s3, emr, script, steps=[word_count_step("wc", f"s3://{BUCKET}/o")])
        state = step_status(emr, cluster_id, step_id)["State"]
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    assert state == "CANCELLED" and double.executions == []
    assert cluster["State"] == "TERMINATED_WITH_ERRORS"
    assert cluster["StateChangeReason"]["Code"] == "BOOTSTRAP_FAILURE"
    assert cluster["StateChangeReason"]["Message"].startswith("On the master instance (i-")
    assert cluster["StateChangeReason"]["Message"].endswith(f"), {reason}")
    (instance,) = [item["Ec2InstanceId"] for item in emr.list_instances(ClusterId=cluster_id)["Instances"]]
    assert gunzipped(s3, f"logs/{cluster_id}/node/{instance}/bootstrap-actions/1/stderr.gz").strip()


def test_a_bootstrap_script_missing_from_s3_fails_the_cluster(aws):
    s3, emr = aws
    with emr_streaming_double():
        s3.create_bucket(Bucket=BUCKET)
        cluster_id = setup_world(s3, emr, bootstrap_actions=[{"Name": "gone", "ScriptBootstrapAction": {
            "Path": f"s3://{BUCKET}/bootstrap/gone.sh", "Args": []}}])
        steps = [word_count_step("wc", f"s3://{BUCKET}/o")]
        (step_id,) = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
        assert step_status(emr, cluster_id, step_id)["State"] == "CANCELLED"
        status = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
    reason = status["StateChangeReason"]["Message"]
    assert reason.endswith("failed to download bootstrap action 1 file from S3")


def test_a_node_python_missing_from_this_machine_fails_loudly_with_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(node_pythons, "_bare", {})
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    monkeypatch.delenv("MOVIELENS_TEST_PYTHON39", raising=False)
    missing = r"python3\.9, the Python of the EMR nodes .* `pyenv install 3\.9`"
    with pytest.raises(NodePythonMissing, match=missing):
        EmrStreamingDouble()
    monkeypatch.setenv("MOVIELENS_TEST_PYTHON39", str(tmp_path / "python3.9"))
    with pytest.raises(NodePythonMissing, match="MOVIELENS_TEST_PYTHON39 is .* not an executable Python"):
        EmrStreamingDouble()


def test_the_double_works_behind_a_threaded_moto_server():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        clients = {service: boto3.client(service, region_name=REGION, endpoint_url=f"http://{host}:{port}",
                                         aws_access_key_id="testing", aws_secret_access_key="testing")
                   for service in ("s3", "emr")}
        s3, emr = clients["s3"], clients["emr"]
        with emr_streaming_double() as double:
            cluster_id = setup_world(s3, emr)
            (step_id,) = emr.add_job_flow_steps(
                JobFlowId=cluster_id, Steps=[word_count_step("wc", f"s3://{BUCKET}/out")])["StepIds"]
            states, status = poll_until_terminal(emr, cluster_id, step_id)
        assert states == ["RUNNING", "COMPLETED"], status
        _, parts = read_parts(s3, "out")
        counts = Counter({key: int(value) for data in parts.values()
                          for key, value in (line.split(b"\t") for line in data.splitlines())})
        assert counts == expected_counts()
        assert double.execution(step_id).state == "COMPLETED"
        assert parse_hadoop_counters(gunzipped(s3, f"logs/{cluster_id}/steps/{step_id}/stderr.gz"))[
            "words: mapped"] == sum(expected_counts().values())
    finally:
        requests.post(f"http://{host}:{port}/moto-api/reset", timeout=10)  # the backends outlive the server
        server.stop()


# Spark steps ----------------------------------------------------------------------------------------
WORDS_APP = r'''
import json, sys
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
context = spark.sparkContext
words = context.textFile(sys.argv[1]).flatMap(lambda line: line.split()).map(lambda word: (word, 1))
counts = words.reduceByKey(lambda a, b: a + b).collect()
path = context._jvm.org.apache.hadoop.fs.Path(sys.argv[2] + "/counts.json")
stream = path.getFileSystem(context._jsc.hadoopConfiguration()).create(path, True)
stream.write(bytearray(json.dumps({"counts": dict(counts), "driver": sys.version.split()[0],
                                   "workers": context.parallelize([0], 1).map(
                                       lambda _: sys.version.split()[0]).first(),
                                   "shipped": open("greeting.txt").read()}).encode()))
stream.close()
if len(sys.argv) > 3:
    raise ValueError(sys.argv[3])
'''


def spark_world(s3, emr, applications=("Hadoop", "Spark")):
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="code/words.py", Body=WORDS_APP.encode())
    s3.put_object(Bucket=BUCKET, Key="code/greeting.txt", Body=b"hello from S3")
    s3.put_object(Bucket=BUCKET, Key="input/a.txt", Body=b"to be or not to be\n")
    return emr.run_job_flow(
        Name="double", ReleaseLabel="emr-7.9.0", LogUri=LOG_URI,
        Applications=[{"Name": name} for name in applications],
        Instances={"InstanceGroups": [
            {"Name": "master", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}],
            "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]


def words_step(*extra):
    return {"Name": "words", "ActionOnFailure": "CANCEL_AND_WAIT", "HadoopJarStep": {
        "Jar": "command-runner.jar", "Args": [
            "spark-submit", "--deploy-mode", "cluster", "--master", "yarn",
            "--conf", "spark.pyspark.python=python3.9", "--conf", "spark.ui.enabled=false",
            "--files", f"s3://{BUCKET}/code/greeting.txt#greeting.txt",
            f"s3://{BUCKET}/code/words.py", f"s3://{BUCKET}/input", f"s3://{BUCKET}/output", *extra]}}


def test_parse_spark_submit_args_of_the_pipelines_step():
    parsed = parse_spark_submit_args(words_step("x")["HadoopJarStep"]["Args"])
    assert parsed.script == f"s3://{BUCKET}/code/words.py"
    assert parsed.app_args == [f"s3://{BUCKET}/input", f"s3://{BUCKET}/output", "x"]
    assert parsed.conf == {"spark.pyspark.python": "python3.9", "spark.ui.enabled": "false"}


@pytest.mark.parametrize(("args", "message"), [
    (["spark-submit", "--bogus", "x", "app.py"], "unrecognized option '--bogus'"),
    (["spark-submit", "--master", "local[2]", "app.py"], "runs on YARN"),
    (["spark-submit", "--conf"], "option --conf needs a value"),
    (["spark-submit", "--deploy-mode", "cluster"], "missing the application's script"),
])
def test_spark_submit_args_spark_submit_would_refuse_are_refused(args, message):
    with pytest.raises(StepArgsError, match=message):
        parse_spark_submit_args(args)


def test_a_spark_step_on_a_cluster_without_spark_fails_as_on_emr(aws):
    s3, emr = aws
    cluster_id = spark_world(s3, emr, applications=("Hadoop",))
    with emr_streaming_double():
        step_id = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[words_step()])["StepIds"][0]
        _, status = poll_until_terminal(emr, cluster_id, step_id)
    assert status["State"] == "FAILED"
    assert 'Cannot run program "spark-submit"' in status["FailureDetails"]["Reason"]


def test_a_spark_step_really_runs_under_the_nodes_python_with_s3_as_its_file_system(aws):
    s3, emr = aws
    cluster_id = spark_world(s3, emr)
    with emr_streaming_double() as double:
        step_id = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[words_step()])["StepIds"][0]
        states, status = poll_until_terminal(emr, cluster_id, step_id)
        failing = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[words_step("the driver fails")])
        _, failed = poll_until_terminal(emr, cluster_id, failing["StepIds"][0])
    assert states == ["RUNNING", "COMPLETED"], status
    written = json.loads(s3.get_object(Bucket=BUCKET, Key="output/counts.json")["Body"].read())
    assert written["counts"] == {"to": 2, "be": 2, "or": 1, "not": 1}
    assert written["shipped"] == "hello from S3"
    # the driver and the executors' Python workers under the node's bare 3.9, not this process's Python
    assert written["driver"].startswith("3.9.") and written["workers"].startswith("3.9.")
    assert not [key for key in list_keys(s3, "output/") if "/." in key]  # no .crc files: EMRFS writes none
    execution = double.execution(step_id)
    stderr = gunzipped(s3, f"logs/{cluster_id}/steps/{step_id}/stderr.gz")
    assert f"Submitted application {execution.application_id}" in stderr
    assert "final status: SUCCEEDED" in stderr
    # the failed driver's traceback is in its container's stdout, as spark-submit's PythonRunner writes it
    assert failed["State"] == "FAILED" and "finished with failed status" in failed["FailureDetails"]["Reason"]
    application = double.execution(failing["StepIds"][0]).application_id
    container = application.replace("application_", "container_", 1) + "_01_000001"
    driver = gunzipped(s3, f"logs/{cluster_id}/containers/{application}/{container}/stdout.gz")
    assert "Traceback (most recent call last):" in driver and "ValueError: the driver fails" in driver


def test_the_s3_mirror_writes_back_what_changed_and_deletes_what_went(aws, tmp_path):
    s3, emr = aws
    spark_world(s3, emr)
    s3.put_object(Bucket=BUCKET, Key="data/old.txt", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key="data/kept.txt", Body=b"kept")
    s3.put_object(Bucket=BUCKET, Key="events/", Body=b"")
    mirror = S3Mirror(MotoS3("123456789012", REGION), tmp_path)
    assert mirror.fetch(f"s3://{BUCKET}/data") == (tmp_path / BUCKET / "data").as_uri()
    assert mirror.fetch(f"s3://{BUCKET}/events/").endswith("/events/")
    assert (tmp_path / BUCKET / "events").is_dir()
    (tmp_path / BUCKET / "data" / "old.txt").unlink()
    (tmp_path / BUCKET / "data" / "new.txt").write_bytes(b"new")
    (tmp_path / BUCKET / "data" / ".new.txt.crc").write_bytes(b"crc")
    (tmp_path / BUCKET / "events" / "_temporary").mkdir()
    (tmp_path / BUCKET / "events" / "_temporary" / "part").write_bytes(b"x")
    assert mirror.write_back() == [f"s3://{BUCKET}/data/new.txt"]
    assert list_keys(s3, "data/") == ["data/kept.txt", "data/new.txt"]


def test_the_nodes_spark_has_pyspark_and_py4j_where_spark_submit_puts_them_on_the_path():
    lib = node_spark.spark_home() / "python" / "lib"
    with zipfile.ZipFile(lib / "pyspark.zip") as archive:
        names = set(archive.namelist())
    assert "pyspark/__init__.py" in names and not any(name.startswith("pyspark/jars/") for name in names)
    assert (lib / node_spark.py4j_zip_name()).exists()
    assert (node_spark.spark_home() / "bin" / "spark-submit").exists()


def test_lost_spot_task_nodes_kill_their_attempts_which_rerun_on_the_nodes_left(aws):
    s3, emr = aws
    with emr_streaming_double() as double:
        setup_world(s3, emr)
        cluster_id = spot_task_cluster(emr, "spot", log_uri=LOG_URI, core_nodes=1, spot_task_nodes=2)
        double.interrupt_spot_task_nodes(step_number=2)
        step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[
            word_count_step("wc", f"s3://{BUCKET}/out"),
            word_count_step("again", f"s3://{BUCKET}/out-2", inputs=[f"s3://{BUCKET}/input"])])["StepIds"]
        _, status = poll_until_terminal(emr, cluster_id, step_ids[-1])
        assert status["State"] == "COMPLETED"
        tasks = emr.list_instances(ClusterId=cluster_id, InstanceGroupTypes=["TASK"])["Instances"]
        (core,) = emr.list_instances(ClusterId=cluster_id, InstanceGroupTypes=["CORE"])["Instances"]
        groups = {group["InstanceGroupType"]: group
                  for group in emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]}
        first, second = double.execution(step_ids[0]), double.execution(step_ids[1])
        emr.terminate_job_flows(JobFlowIds=[cluster_id])
        (core_after,) = emr.list_instances(ClusterId=cluster_id, InstanceGroupTypes=["CORE"])["Instances"]
    # EMR's account: both Spot instances TERMINATED by EC2, not with the cluster, which went on
    assert [(task["Status"]["State"], task["Status"]["StateChangeReason"]["Code"]) for task in tasks] == [
        ("TERMINATED", "INSTANCE_FAILURE")] * 2
    assert all("EndDateTime" in task["Status"]["Timeline"] for task in tasks)
    assert core["Status"]["State"] == "RUNNING"
    assert (groups["TASK"]["RequestedInstanceCount"], groups["TASK"]["RunningInstanceCount"]) == (2, 0)
    assert core_after["Status"]["StateChangeReason"]["Code"] == "CLUSTER_TERMINATED"

    # YARN's: the first step ran on all three nodes; in the second, the map attempts dealt to the lost
    # nodes were killed and rerun as attempt 1 on the core node, where every later attempt ran
    lost_hosts = {task["PrivateDnsName"] for task in tasks}
    assert not any(run.killed for run in first.tasks)
    assert {run.host for run in first.tasks if run.kind == "reduce"} == lost_hosts | {core["PrivateDnsName"]}
    killed = [run for run in second.tasks if run.killed]
    assert len(killed) == 1 and killed[0].kind == "map" and killed[0].returncode == -100  # map 1 of 2
    assert killed[0].host in lost_hosts
    reruns = {run.attempt for run in second.tasks if run.attempt.endswith("_1")}
    assert reruns == {killed[0].attempt.removesuffix("_0") + "_1"}
    assert {run.host for run in second.tasks if not run.killed} == {core["PrivateDnsName"]}

    # the answer is exact, and the counters count each record once
    for output in ("out", "out-2"):
        counts = Counter()
        for data in read_parts(s3, output)[1].values():
            counts.update({key: int(value) for key, value in (line.split(b"\t") for line in data.split(b"\n")
                                                               if line)})
        assert counts == expected_counts()
    counters = parse_hadoop_counters(gunzipped(s3, f"logs/{cluster_id}/steps/{step_ids[1]}/stderr.gz"))
    assert counters["words: mapped"] == sum(expected_counts().values())
    assert counters["Map-Reduce Framework: Map input records"] == sum(
        len(text.splitlines()) for text in TEXTS.values())
    jobs = {name: amount for name, amount in counters.items() if name.startswith("Job Counters: ")}
    assert (jobs["Job Counters: Killed map tasks"], jobs["Job Counters: Launched map tasks"]) == (1, 3)
    assert "Job Counters: Failed map tasks" not in counters

    # the job history records the kill, which is not a failure: mrjob finds no error, every task finished
    _, lines = job_history(s3, cluster_id, second.application_id)
    assert killed_attempts(lines) == [killed[0].attempt]
    assert '"error":"Container released on a *lost* node"' in "".join(lines)
    assert _parse_yarn_history_log(lines).get("errors", []) == []
    assert sorted(task.phase for task in parse_job_history(lines)) == ["mapper"] * 2 + ["reducer"] * 3
    # a killed attempt's container logs were lost with its node; the application master assigned it one
    containers = f"logs/{cluster_id}/containers/{second.application_id}/"
    master_log = next(key for key in list_keys(s3, containers) if key.endswith("_000001/syslog.gz"))
    assigned = gunzipped(s3, master_log)
    folders = {key.split("/")[-2] for key in list_keys(s3, containers)}
    for run in killed:
        container = assigned.split(f" to {run.attempt}")[0].rsplit("Assigned container ", 1)[1]
        assert container not in folders

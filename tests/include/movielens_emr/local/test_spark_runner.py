"""The local target's Spark: the Java it needs, the spark-submit command it runs, the event log it reads."""
import json
import os
import stat
from pathlib import Path

import pytest

from movielens_emr.engine.protocol import SparkJob, TaskFile
from movielens_emr.local.spark_runner import (
    JavaMissing,
    event_log_times,
    java_runtime,
    spark_home,
    spark_submit_command,
)
from movielens_emr.local.target import LocalTarget


def fake_java(folder, version_line):
    """A java that prints version_line as `java -version` does (to stderr)."""
    java = folder / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return java


def test_without_java_the_error_says_spark_needs_one_and_how_to_install_it():
    with pytest.raises(JavaMissing, match=r"Spark needs a Java runtime and this machine has none \(no java "
                                          r"on PATH and no JAVA_HOME\): install Debian's headless Java 17.*"
                                          r"openjdk-17-jre-headless"):
        java_runtime({"PATH": "/nonexistent"})


def test_a_java_home_without_java_is_named():
    with pytest.raises(JavaMissing, match="JAVA_HOME is /nowhere, which has no bin/java"):
        java_runtime({"JAVA_HOME": "/nowhere", "PATH": "/usr/bin"})


@pytest.mark.parametrize(("line", "version"), [('openjdk version "17.0.15" 2025-04-15', 17),
                                               ('java version "1.8.0_392"', 8)])
def test_java_home_is_used_and_its_version_read(tmp_path, line, version):
    java = fake_java(tmp_path, line)
    assert java_runtime({"JAVA_HOME": str(tmp_path), "PATH": "/nonexistent"}) == (str(java), version)


def test_a_java_spark_does_not_run_on_is_refused(tmp_path):
    fake_java(tmp_path, 'openjdk version "25" 2025-09-16')
    with pytest.raises(JavaMissing, match=r"is Java 25; Spark 3.5 runs on Java 8, 11, 17"):
        java_runtime({"JAVA_HOME": str(tmp_path)})


def test_this_machines_java_runs_spark():
    assert java_runtime(dict(os.environ))[1] in (8, 11, 17)


def test_the_command_runs_the_script_in_local_mode_with_node_count_cores(tmp_path):
    job = SparkJob(script=Path("/jobs/app.py"), stage_names=("fit",), options=("--rank", "2"),
                   task_files=(TaskFile("--items", "/data/movies.csv"),), support_files=(Path("/jobs/k.py"),),
                   properties=(("spark.serializer", "Kryo"),))
    command = spark_submit_command(job, [Path("/data/r.csv")], "/out", 3, tmp_path, python="/venv/python")
    assert command[0] == str(spark_home() / "bin" / "spark-submit")
    assert command[command.index("--master") + 1] == "local[3]"
    properties = [command[index + 1] for index, arg in enumerate(command) if arg == "--conf"]
    assert {"spark.pyspark.python=/venv/python", "spark.serializer=Kryo",
            f"spark.eventLog.dir={(tmp_path / 'spark-events').as_uri()}"} <= set(properties)
    assert command[command.index("--py-files") + 1] == "/jobs/k.py"
    assert command[command.index("/jobs/app.py") + 1:] == [
        "--rank", "2", "--items", "/data/movies.csv", "--ratings", "/data/r.csv", "--output", "/out"]


def test_the_event_log_gives_the_task_times_and_more_than_one_is_refused(tmp_path):
    (tmp_path / "local-1").write_text(json.dumps({"Event": "SparkListenerJobStart"}) + "\n")
    (tmp_path / ".local-1.crc").write_text("")
    assert event_log_times(tmp_path)["jobs"] == 1
    (tmp_path / "local-2").write_text("")
    assert event_log_times(tmp_path) == {"source": None, "missing": f"2 event logs in {tmp_path}, not one"}


def test_the_local_target_runs_a_spark_job_with_sparks_runner_and_an_mrjob_job_with_mrjobs(monkeypatch):
    from movielens_emr.local import target

    calls = []
    monkeypatch.setattr(target, "run_local_spark_job", lambda *args: calls.append("spark") or {})
    monkeypatch.setattr(target, "run_local_job", lambda *args: calls.append("mrjob") or {})
    spark_job = SparkJob(script=Path("a.py"), stage_names=("x",), options=())
    LocalTarget().run_job(spark_job, [], "out", 2, "work")
    LocalTarget().run_job(object(), [], "out", 2, "work")
    assert calls == ["spark", "mrjob"]


def test_a_spark_runs_figures_add_its_event_logs_task_times():
    run = {"seconds": 5.0, "stage_seconds": [5.0], "counters": {}, "spark_task_times": {"jobs": 3}}
    figures = LocalTarget().run_figures({"run_local_job": run}, None, None, "runs/r", 1)
    assert figures["target_figures"] == {"spark_task_times": {"jobs": 3}}
    del run["spark_task_times"]
    assert LocalTarget().run_figures({"run_local_job": run}, None, None, "runs/r", 1)["target_figures"] == {}

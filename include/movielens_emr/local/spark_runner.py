"""The local target's Spark: an engine's SparkJob run by spark-submit in Spark's local mode, node_count cores.

As the mrjob runner does (runner.py), the job runs in a process group of its own that dies with the task
that started it: `python -m movielens_emr.local.spark_runner` asks to die with its parent, then runs
spark-submit (a JVM, the script's Python driver, Spark's Python workers) in its group and times it.
Spark needs a Java runtime: java_runtime() finds it, or says how to install one.
"""
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from movielens_emr.local.runner import (
    LocalJobFailed,
    child_env,
    run_as_child,
    run_job_process,
    stop_leftover_job,
)
from movielens_emr.reporting.spark_events import spark_task_times, unknown_spark_task_times
from movielens_emr.sizing.task_times import unknown_task_times

log = logging.getLogger(__name__)
# Spark 3.5 (EMR 7's) runs on Java 8, 11 and 17; EMR 7 runs it on 17.
SUPPORTED_JAVA = (8, 11, 17)
JAVA_INSTALL_HINT = ("install Debian's headless Java 17 runtime (scripts/bootstrap.sh does: "
                     "apt-get install openjdk-17-jre-headless) or set JAVA_HOME to a Java 17")
# Spark's local mode runs the driver and its executors in one JVM: its heap (measured enough for ml-100k and
# ml-latest-small; not measured beyond).
LOCAL_DRIVER_MEMORY = "2g"
EVENT_LOG_FOLDER = "spark-events"
NO_TASK_TIMES = ("a Spark application: its tasks are under spark_task_times (Spark's event log); the "
                 "one-run prediction models MapReduce task waves only")


class JavaMissing(RuntimeError):
    """No usable Java runtime for Spark on this machine; the message says how to get one."""


def java_runtime(environ=None):
    """The java executable Spark will run (JAVA_HOME's, else the one on PATH) and its major version;
    JavaMissing when there is none or it is not one Spark 3.5 runs on."""
    environ = os.environ if environ is None else environ
    home = environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java", path=environ.get("PATH"))
    if not java or not os.access(java, os.X_OK):
        where = f"JAVA_HOME is {home}, which has no bin/java" if home else "no java on PATH and no JAVA_HOME"
        raise JavaMissing(f"Spark needs a Java runtime and this machine has none ({where}): "
                          f"{JAVA_INSTALL_HINT}")
    version = java_major_version(java)
    if version not in SUPPORTED_JAVA:
        raise JavaMissing(f"{java} is Java {version}; Spark 3.5 runs on Java "
                          f"{', '.join(map(str, SUPPORTED_JAVA))}: {JAVA_INSTALL_HINT}")
    return java, version


def java_major_version(java):
    """The major version `java -version` reports (1.8 is 8), or None when it says none."""
    done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def spark_home():
    """The folder of the installed pyspark (its bin/spark-submit, its jars), as SPARK_HOME."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise LocalJobFailed("pyspark is not installed in this environment (requirements.txt pins it; run "
                             "scripts/bootstrap.sh)")
    return Path(list(spec.submodule_search_locations)[0])


def spark_submit_command(job, input_paths, output_dir, cores, work_dir, python=sys.executable):
    """spark-submit's command line of a SparkJob in local mode with `cores` cores; its event log and scratch
    in work_dir."""
    command = [str(spark_home() / "bin" / "spark-submit"), "--master", f"local[{int(cores)}]",
               "--driver-memory", LOCAL_DRIVER_MEMORY,
               "--conf", f"spark.pyspark.python={python}", "--conf", "spark.ui.enabled=false",
               "--conf", "spark.eventLog.enabled=true",
               "--conf", f"spark.eventLog.dir={(Path(work_dir) / EVENT_LOG_FOLDER).as_uri()}",
               "--conf", f"spark.local.dir={Path(work_dir) / 'tmp'}"]
    for name, value in job.properties:
        command += ["--conf", f"{name}={value}"]
    if job.support_files:
        command += ["--py-files", ",".join(map(str, job.support_files))]
    inputs = [str(path) for path in input_paths]
    return [*command, str(job.script),
            *job.script_args(inputs, str(output_dir), lambda task_file: task_file.uri)]


def run_local_spark_job(job, input_paths, output_dir, cores, work_dir):
    """Run the SparkJob here; {"seconds", "stage_seconds", "counters", "task_times", "spark_task_times"}.

    work_dir is this run's folder on this machine: job.json (the process group, as runner.py's), Spark's
    event log (spark-events/, kept) and its scratch (tmp/, removed when the job ends).
    """
    work_dir = Path(work_dir)
    stop_leftover_job(work_dir)
    java, _ = java_runtime()
    events = work_dir / EVENT_LOG_FOLDER
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    result_file = work_dir / "result.json"
    result_file.unlink(missing_ok=True)
    request = {"command": spark_submit_command(job, input_paths, output_dir, cores, work_dir),
               "events": str(events), "java_home": str(Path(java).resolve().parents[1])}
    command = [sys.executable, "-m", "movielens_emr.local.spark_runner", json.dumps(request),
               str(result_file), str(os.getpid())]
    try:
        returncode, last_lines = run_job_process(command, work_dir)
    finally:
        shutil.rmtree(work_dir / "tmp", ignore_errors=True)
    if returncode != 0:
        raise LocalJobFailed(f"spark-submit exited with code {returncode}; its last lines:\n"
                             + "\n".join(last_lines))
    return json.loads(result_file.read_text())


def run_spark_submit(command, events, java_home):
    """spark-submit run in this process's group (its output to this one's), timed; the run's record."""
    env = {**child_env(), "SPARK_HOME": str(spark_home()), "JAVA_HOME": java_home}
    started = time.monotonic()
    returncode = subprocess.run(command, env=env, check=False).returncode
    seconds = round(time.monotonic() - started, 3)
    if returncode != 0:
        sys.exit(returncode)
    return {"seconds": seconds, "stage_seconds": [seconds], "counters": {},
            "task_times": unknown_task_times(1, NO_TASK_TIMES), "spark_task_times": event_log_times(events)}


def event_log_times(folder):
    """spark_task_times of the one application whose event log is in folder."""
    logs = sorted(path for path in Path(folder).iterdir() if not path.name.startswith("."))
    if len(logs) != 1:
        return unknown_spark_task_times(f"{len(logs)} event logs in {folder}, not one")
    with open(logs[0], encoding="utf-8", errors="replace") as lines:
        return spark_task_times(lines, str(logs[0]))


def main(argv):
    """python -m movielens_emr.local.spark_runner REQUEST_JSON RESULT_FILE PARENT_PID"""
    run_as_child(argv, run_spark_submit)


if __name__ == "__main__":
    main(sys.argv)

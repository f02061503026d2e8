"""EMR's log layout under a run's log URI, and what the pipeline reads there: counters, a failed task's error.

The layout, from the Amazon EMR Management Guide ("View log files", "View log files archived to
Amazon S3"), under <log URI>/<cluster id>/:

* steps/<step id>/{controller,stderr,stdout,syslog}.gz: a step's logs. controller is EMR's step
  runner's own (the command line, the exit code). For a command-runner.jar step (this pipeline's
  hadoop-streaming steps) stderr holds the hadoop client's output: the application id, the progress,
  the failed task attempts ("Task Id : attempt_..., Status : FAILED") and the counter block; syslog
  may be empty. EMR 4 and 5 wrote the job client's log4j records (counters, "Task Id" lines) to
  syslog, where mrjob reads them, and AMI 3.x to controller: all three are read.
* containers/<application id>/<container id>/{stderr,stdout,syslog}.gz: the YARN containers' logs.
  A streaming task's own stderr (a Python traceback) is only there, in its container's stderr; the
  application master's container (id ending _000001) logs which container ran which attempt. For a
  spark-submit step in cluster deploy mode, the step's stderr is spark-submit's YARN client (the
  application id, "Application report for ...", the final status); the application master's container
  runs the driver, whose Python traceback is in its stdout (spark-submit's PythonRunner merges the
  Python driver's stderr into it), and an executor's container stderr logs its failed tasks.
* node/<instance id>/...: the nodes' logs, the bootstrap actions' included.
* hadoop-mapreduce/history/...: the MapReduce job history files of the cluster's jobs, one .jhist.gz
  per job named after its job id (job_<...>-<submit time>-<user>-<job name>-...jhist.gz), beside its
  _conf.xml.gz; mrjob 0.7 looks for them there (EmrJobRunner._stream_history_log_dirs) on every
  release from 4. They hold each task's start and finish (task_times.parse_job_history).

EMR uploads logs about every five minutes: they arrive minutes after a step ends, the containers' last.
"""
import dataclasses
import gzip
import itertools
import logging
import re
import time

from movielens_emr.reporting.metrics import parse_hadoop_counters
from movielens_emr.sizing.task_times import (
    HISTORY_SOURCE,
    history_file_keys,
    job_id_of,
    killed_attempts,
    parse_job_history,
    task_times_record,
    unknown_task_times,
)

log = logging.getLogger(__name__)
# Where a command-runner step's counter block may be, most likely first.
COUNTER_LOGS = ("stderr.gz", "syslog.gz", "controller.gz")
CLIENT_LOGS = COUNTER_LOGS[:2]
SUBMITTED_APPLICATION = re.compile(r"Submitted application (application_\d+_\d+)")
FAILED_ATTEMPT = re.compile(r"Task Id *: (attempt_\d+_\d+_[mr]_\d+_\d+), Status *: FAILED")
ASSIGNED_CONTAINER = re.compile(r"Assigned container (container_[\w]+) to (attempt_\d+_\d+_[mr]_\d+_\d+)")
APPLICATION_MASTER_SUFFIX = "_000001"
TASK_FAILED = re.compile(r"YarnChild: Exception running child|PipeMapRed\.waitOutputThreads\(\): subprocess")
PYTHON_TRACEBACK = "Traceback (most recent call last):"
# Lines Hadoop streaming or log4j add to a task's stderr that say nothing about its failure.
TASK_STDERR_NOISE = re.compile(r"reporter:(counter|status):.*|log4j:WARN .*")
TASK_ERROR_LINES = 60
# A spark-submit client's output (a Spark step's stderr), and an executor's log of a task that failed.
SPARK_CLIENT = re.compile(r"INFO (?:yarn\.)?Client: Application report for application_|SparkSubmit")
EXECUTOR_TASK_FAILED = re.compile(r"ERROR (?:executor\.)?Executor: Exception in task")
JAVA_CAUSE = re.compile(r"(?:: |Caused by: )\S")
MAX_CONTAINERS_SCANNED = 100


def step_log_folder(run_prefix, cluster_id, step_id):
    """Where EMR delivers a step's logs (controller, stderr, stdout, syslog) under the run's log URI."""
    return f"{run_prefix}/logs/{cluster_id}/steps/{step_id}"


def node_log_folder(run_prefix, cluster_id):
    """Where EMR delivers the nodes' logs, the bootstrap actions' included."""
    return f"{run_prefix}/logs/{cluster_id}/node/"


def container_log_folder(run_prefix, cluster_id, application_id=""):
    """Where EMR delivers the YARN containers' logs: of one application, or (without one) of all."""
    return f"{run_prefix}/logs/{cluster_id}/containers/{application_id}".rstrip("/")


def history_log_folder(run_prefix, cluster_id):
    """Where EMR archives the cluster's MapReduce job history files (in dated subfolders)."""
    return f"{run_prefix}/logs/{cluster_id}/hadoop-mapreduce/history"


def read_log(storage, key):
    """A gzipped log's text, or None if it has not been delivered."""
    if not storage.exists(key):
        return None
    return gzip.decompress(storage.get_bytes(key)).decode("utf-8", errors="replace")


def step_counters(storage, run_prefix, cluster_id, step_id):
    """A step's Hadoop counters from the first of its logs holding the counter block; {} if none does yet."""
    return _counters_and_source(storage, step_log_folder(run_prefix, cluster_id, step_id))[0]


def _counters_and_source(storage, folder):
    for name in COUNTER_LOGS:
        counters = parse_hadoop_counters(read_log(storage, f"{folder}/{name}") or "")
        if counters:
            return counters, f"{folder}/{name}"
    return {}, None


@dataclasses.dataclass(frozen=True)
class RunCounters:
    """The steps' counters summed, and per step the log URI they were read from (None: found nowhere)."""

    counters: dict
    read_from: list


def run_counters(storage, run_prefix, cluster_id, step_ids, wait_seconds=0, poll_seconds=30):
    """The counters of a run's steps, waiting up to wait_seconds in all for EMR to deliver their logs.

    A step whose logs hold no counter block by then is named in a warning and left out, with None
    as its source: its counts are missing, never taken as zero.
    """
    found = {}

    def all_found():
        for step_id in step_ids:
            if step_id not in found:
                folder = step_log_folder(run_prefix, cluster_id, step_id)
                counters, key = _counters_and_source(storage, folder)
                if key:
                    found[step_id] = (counters, storage.uri(key))
        return len(found) == len(step_ids)

    poll(all_found, wait_seconds, poll_seconds)
    totals = {}
    for number, step_id in enumerate(step_ids, start=1):
        if step_id not in found:
            log.warning("stage %d (%s): no counter block in its %s under %s: its counts are missing from the "
                        "metrics", number, step_id, ", ".join(COUNTER_LOGS),
                        storage.uri(step_log_folder(run_prefix, cluster_id, step_id)))
            continue
        for name, amount in found[step_id][0].items():
            totals[name] = totals.get(name, 0) + amount
    return RunCounters(totals, [found[step_id][1] if step_id in found else None for step_id in step_ids])


def poll(check, wait_seconds, poll_seconds):
    """check()'s first truthy result, tried every poll_seconds for at most wait_seconds; else its last one."""
    deadline = time.monotonic() + wait_seconds
    while True:
        result = check()
        remaining = deadline - time.monotonic()
        if result or remaining <= 0:
            return result
        time.sleep(min(poll_seconds, remaining))


def wait_for_object(storage, key, wait_seconds, poll_seconds):
    """The object's bytes once it exists, waiting at most wait_seconds (EMR delivers logs minutes late)."""
    deadline = time.monotonic() + wait_seconds
    while not storage.exists(key):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(poll_seconds, remaining))
    return storage.get_bytes(key)


def hadoop_client_job(step_stderr):
    """(application id or None, failed task attempt ids in order) from a step's hadoop client output."""
    application = SUBMITTED_APPLICATION.search(step_stderr)
    attempts = list(dict.fromkeys(FAILED_ATTEMPT.findall(step_stderr)))
    return (application.group(1) if application else None), attempts


def task_failure_traceback(storage, run_prefix, cluster_id, step_id, wait_seconds=0, poll_seconds=30):
    """The failed task's own error (its Python traceback, or what it wrote) and where it was found; or None.

    As mrjob's log interpretation does: the step's stderr (the hadoop client's output) names the
    YARN application and the failed task attempts; the application master's syslog says which
    container ran each attempt; that container's stderr holds what the task wrote. Without the
    master's log, the containers whose syslog logs a task's failure are searched. Waits up to
    wait_seconds for EMR to deliver the logs (the containers' arrive minutes after the step's).
    """
    def find():
        return _find_task_error(storage, run_prefix, cluster_id, step_id)

    return poll(find, wait_seconds, poll_seconds)


def _find_task_error(storage, run_prefix, cluster_id, step_id):
    step_folder = step_log_folder(run_prefix, cluster_id, step_id)
    # the job client's records: in stderr on current releases, in syslog on EMR 4 and 5 (mrjob reads there)
    client_log = "\n".join(read_log(storage, f"{step_folder}/{name}") or "" for name in CLIENT_LOGS)
    application_id, attempts = hadoop_client_job(client_log)
    if not application_id:
        return None
    folder = container_log_folder(run_prefix, cluster_id, application_id)
    stderr_keys = {key.split("/")[-2]: key for key in storage.list_keys(folder) if key.endswith("/stderr.gz")}
    if SPARK_CLIENT.search(client_log):
        return _spark_errors(storage, stderr_keys)
    containers = _attempt_containers(storage, folder, stderr_keys)
    for attempt in attempts:
        container = containers.get(attempt)
        if container not in stderr_keys:
            continue
        error = task_error_text(read_log(storage, stderr_keys[container]) or "")
        if error:
            return f"task {attempt} ({container}, {storage.uri(stderr_keys[container])}):\n{error}"
    for container, key in sorted(stderr_keys.items())[:MAX_CONTAINERS_SCANNED]:
        if not TASK_FAILED.search(read_log(storage, f"{folder}/{container}/syslog.gz") or ""):
            continue  # as mrjob, only a container whose syslog logs the task's failure
        error = task_error_text(read_log(storage, key) or "")
        if error:
            return f"a failed task of {application_id} ({container}, {storage.uri(key)}):\n{error}"
    return None


def _spark_errors(storage, stderr_keys):
    """A failed Spark application's errors: its driver's and the first failed executor task's; None when
    neither is there yet.

    In cluster deploy mode the driver runs in the application master's container; spark-submit's
    PythonRunner merges the Python driver's stderr into its own stdout, so its traceback is in that
    container's stdout (read first) or stderr. An executor's failed task is logged in its container's
    stderr from "ERROR Executor: Exception in task" on.
    """
    found, executor = [], None
    for container, key in sorted(stderr_keys.items())[:MAX_CONTAINERS_SCANNED]:
        if container.endswith(APPLICATION_MASTER_SUFFIX):
            for log_key in (key.replace("/stderr.gz", "/stdout.gz"), key):
                error = last_python_traceback(read_log(storage, log_key) or "")
                if error:
                    found.append(f"the driver ({container}, {storage.uri(log_key)}):\n{error}")
                    break
        elif executor is None:
            text = read_log(storage, key) or ""
            failed = EXECUTOR_TASK_FAILED.search(text)
            if failed:
                line_start = text.rfind("\n", 0, failed.start()) + 1
                error = "\n".join(text[line_start:].splitlines()[:TASK_ERROR_LINES])
                executor = f"an executor's failed task ({container}, {storage.uri(key)}):\n{error}"
    return "\n".join([*found, *([executor] if executor else [])]) or None


def last_python_traceback(text, lines=TASK_ERROR_LINES):
    """The last Python traceback in text, through the line that names its exception and the Java causes a
    Py4JJavaError adds after it (": ..." and "Caused by: ..." lines; not their stack frames); or None."""
    all_lines = text.splitlines()
    starts = [number for number, line in enumerate(all_lines) if line.startswith(PYTHON_TRACEBACK)]
    if not starts:
        return None
    block = all_lines[starts[-1]:]
    end = next((number for number, line in enumerate(block[1:], start=1)
                if line.strip() and not line[0].isspace()), len(block) - 1)
    after = itertools.takewhile(str.strip, block[end + 1:])  # up to the first blank line
    causes = [line for line in after if JAVA_CAUSE.match(line)]
    return "\n".join([*block[:end + 1], *causes][-lines:])


def _attempt_containers(storage, folder, containers):
    """{attempt id: container id} from the application masters' syslogs ("Assigned container ... to ...")."""
    assigned = {}
    for container in containers:
        if container.endswith(APPLICATION_MASTER_SUFFIX):
            syslog = read_log(storage, f"{folder}/{container}/syslog.gz") or ""
            assigned.update((attempt, held) for held, attempt in ASSIGNED_CONTAINER.findall(syslog))
    return assigned


def failed_step_logs(storage, run_prefix, cluster_id, step_id, wait_seconds=0, poll_seconds=30):
    """(a failed step's gzipped stderr, its failed task's own error) as far as EMR has delivered them,
    waiting at most wait_seconds in all; None for either one not there by then (no error without stderr)."""
    deadline = time.monotonic() + wait_seconds
    stderr_key = f"{step_log_folder(run_prefix, cluster_id, step_id)}/stderr.gz"
    stderr = wait_for_object(storage, stderr_key, wait_seconds, poll_seconds)
    if stderr is None:
        return None, None
    remaining = max(deadline - time.monotonic(), 0)
    return stderr, task_failure_traceback(storage, run_prefix, cluster_id, step_id, remaining, poll_seconds)


def task_error_text(task_stderr, lines=TASK_ERROR_LINES):
    """What a task wrote of its failure: from its first Python traceback on, else all it wrote; or None.

    Hadoop streaming's reporter lines and log4j's warnings are left out, as mrjob does.
    """
    kept = [line.rstrip() for line in task_stderr.splitlines()
            if line.strip() and not TASK_STDERR_NOISE.fullmatch(line.strip())]
    if PYTHON_TRACEBACK in kept:
        kept = kept[kept.index(PYTHON_TRACEBACK):]
    return "\n".join(kept[-lines:]) or None


def run_task_times(storage, run_prefix, cluster_id, step_ids, wait_seconds=0, poll_seconds=30):
    """metrics.json's task_times of a run's steps, from their job history files (task_times_record).

    Each step's job is the application its hadoop client submitted (its stderr or syslog). Waits up
    to wait_seconds in all for EMR to archive the files; a step whose history is not there by then is
    named in a warning and its tasks are unknown (None), never guessed. Reading never fails the run:
    an error of the store leaves the task times unknown, saying why.
    """
    found, jobs = {}, {}

    def all_found():
        _find_histories(storage, run_prefix, cluster_id, step_ids, jobs, found)
        return len(found) == len(step_ids)

    try:
        poll(all_found, wait_seconds, poll_seconds)
    except Exception as error:  # a refused or failed read: the run's metrics go on without task times
        log.warning("the steps' job history could not be read (%s: %s): task times unknown",
                    type(error).__name__, error)
        return unknown_task_times(len(step_ids), f"reading the job history failed: {error}")
    missing = [f"stage {number} ({jobs.get(step_id) or 'no job id in its logs'})"
               for number, step_id in enumerate(step_ids, start=1) if step_id not in found]
    if missing:
        log.warning("no job history under %s for %s: their task times are unknown",
                    storage.uri(history_log_folder(run_prefix, cluster_id)), ", ".join(missing))
    return task_times_record(
        HISTORY_SOURCE, [found[step_id][0] if step_id in found else None for step_id in step_ids],
        read_from=[found[step_id][1] if step_id in found else None for step_id in step_ids],
        missing=f"no job history of {', '.join(missing)}" if missing else None,
        killed=[len(found[step_id][2]) if step_id in found else None for step_id in step_ids])


def _find_histories(storage, run_prefix, cluster_id, step_ids, jobs, found):
    """Add to found {step id: (its tasks, the history's URI, its killed attempts)} the steps whose history
    has arrived."""
    keys = None
    for step_id in step_ids:
        if step_id in found:
            continue
        if not jobs.get(step_id):
            folder = step_log_folder(run_prefix, cluster_id, step_id)
            client_log = "\n".join(read_log(storage, f"{folder}/{name}") or "" for name in CLIENT_LOGS)
            jobs[step_id] = job_id_of(hadoop_client_job(client_log)[0])
        if jobs[step_id]:
            keys = storage.list_keys(history_log_folder(run_prefix, cluster_id)) if keys is None else keys
            histories = history_file_keys(keys, jobs[step_id])
            if histories:  # the newest name of a job's history (one, unless re-archived)
                lines = _log_lines(storage, histories[-1])
                uri = storage.uri(histories[-1])
                found[step_id] = (parse_job_history(lines), uri, killed_attempts(lines))


def _log_lines(storage, key):
    data = storage.get_bytes(key)
    return (gzip.decompress(data) if key.endswith(".gz") else data).decode("utf-8", "replace").splitlines()

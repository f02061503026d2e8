"""A test double of EMR's compute for moto: the steps of a moto cluster really run, as Hadoop streaming or
as spark-submit (see "Spark steps" below).

moto accepts EMR clusters and steps but never runs a step: its first step stays RUNNING and the
others PENDING for ever. While `emr_streaming_double()` is installed, every `describe_step` call
(the EmrStepSensor's poke, a boto waiter's poll) first moves the polled cluster's steps on by one
state transition, in order, as EMR's step scheduler would:

    PENDING -> RUNNING (StartDateTime set)
    RUNNING -> the step really runs here -> COMPLETED or FAILED (EndDateTime set)

A FAILED step's reason is in StateChangeReason.Message and FailureDetails. Its ActionOnFailure
applies: CANCEL_AND_WAIT cancels the later pending steps, TERMINATE_CLUSTER also ends the cluster
(TERMINATED_WITH_ERRORS), CONTINUE goes on with the next step. With no step left the cluster
WAITs (KeepJobFlowAliveWhenNoSteps) or terminates; steps still pending on a terminated cluster are
CANCELLED.

Running a step means doing what `hadoop-streaming` does with the step's own HadoopJarStep.Args
(`-files`, `-D`, `-cmdenv`, `-input`, `-output`, `-mapper`, `-combiner`, `-reducer`): fetch each
-files object from moto's S3 into a cache folder of its own and link it into every task's working folder
under its '#' name, as YARN localizes them (so `python3 job.py` run there has the job's cache folder as
sys.path[0], where no other shipped file is), one map task per input object (a key, or the
visible objects of a prefix) with stdin = the object and `mapreduce_map_input_file` = its URI, the
combiner on each sorted map output, a stable sort by key (the bytes before the first tab, in byte
order) of each partition (Hadoop's HashPartitioner over `mapreduce.job.reduces` reducers), one
reduce task per partition, and part-NNNNN plus _SUCCESS under -output. The task commands are run as
separate processes, split into words like Hadoop does, with the Pythons an EMR 7 node has on PATH
(node_pythons.py: `python3` and `python3.9` are a bare CPython 3.9, `python3.11` a bare 3.11; never the
test process's own interpreter, and no package but what the bootstrap installed). Counters come from
the tasks' `reporter:counter:<group>,<counter>,<amount>` stderr lines. The logs go where and as EMR
delivers them for a command-runner.jar step (see "EMR's log layout" below):
`<LogUri>/<cluster id>/steps/<step id>/{controller,stderr,stdout,syslog}.gz`, the hadoop client's
output (application id, failed attempts, counter block) in `stderr.gz`, and each task attempt's own
stderr only in `<LogUri>/<cluster id>/containers/<application id>/<container id>/stderr.gz`. Each
job's MapReduce job history goes where EMR archives it, `<LogUri>/<cluster id>/hadoop-mapreduce/
history/<yyyy>/<mm>/<dd>/000000/<job id>-<submit ms>-hadoop-<job name>-<finish ms>-<maps>-<reduces>-
<status>-default-<start ms>.jhist.gz` beside `<job id>_conf.xml.gz`: Hadoop's Avro-JSON events
(Events.avpr: AM_STARTED, JOB_SUBMITTED, TASK_STARTED, MAP_ATTEMPT_STARTED, MAP_ATTEMPT_FINISHED or
_FAILED, TASK_FINISHED or TASK_FAILED, ..., JOB_FINISHED or JOB_FAILED) with the tasks' real start and
finish times (a map task ends with its combiner), which mrjob's history parser reads too.

The cluster's bootstrap actions really run, at its first step poll, before any step, as EMR runs them
on every node before the cluster takes work: each script is fetched from S3 and run with its Args
under bash with the node's PATH (its Pythons, and an `aws` whose `s3 cp` downloads from moto's S3 through
a moto server the double starts: aws_cli.py). The node's filesystem is a folder per cluster: the node
folders an action or a step names (NODE_FOLDERS, e.g. the packages folder /usr/local/lib/...) are
moved under it, in the actions' Args and the steps' -cmdenv values alike, so a step finds what the
bootstrap installed. An action's stdout and stderr go where EMR delivers them, <LogUri>/<cluster
id>/node/<instance id>/bootstrap-actions/<n>/{stdout,stderr}.gz; one that exits non-zero ends the
cluster TERMINATED_WITH_ERRORS with EMR's reason, "On the master instance (<id>), bootstrap action <n>
returned a non-zero return code", and its steps CANCELLED.

Faults, for the tests of what the pipeline does when EMR goes wrong:

* `fail_bootstrap(message)`: every cluster's bootstrap fails, whatever its actions. At its first step poll the
  cluster ends TERMINATED_WITH_ERRORS with StateChangeReason Code BOOTSTRAP_FAILURE, as EMR
  reports it, and its steps are CANCELLED. With `before_steps=True` it fails sooner, at the first
  describe_cluster, before steps could be added.
* `hold_steps(predicate)`: steps for which predicate(step name) is true start but never end,
  like a stage stuck on a hung task, until their cluster is terminated (then INTERRUPTED).
* `interrupt_spot_task_nodes(step_number)`: EC2 reclaims a cluster's Spot task nodes as the map phase of
  one step starts. A step's tasks are dealt to the cluster's core and task nodes in turn (their hosts
  in the job history); those dealt to the lost nodes are KILLED (exit -100, "Container released on a
  *lost* node", MAP_ or REDUCE_ATTEMPT_KILLED in the history, no container logs) and rerun as attempt
  _1 on the nodes left, so the step completes with the same output. ListInstances then shows the lost
  instances TERMINATED with reason code INSTANCE_FAILURE, ListInstanceGroups their group running none;
  when the cluster ends, its other instances end with CLUSTER_TERMINATED, as EMR shows them.

Terminating a cluster that has already ended changes nothing, and adding steps to it fails with
EMR's ValidationException, as on EMR.

S3 and EMR are reached through moto's backend objects, which `mock_aws()` and a `ThreadedMotoServer`
in the same process share: the double works in both (with the server, steps run in its thread).
A step runs inside the describe_step call that ends it, so that call lasts as long as the step: behind a
server, keep test jobs well under botocore's 60 s read timeout (a Spark step of the pipeline takes about a
minute: run it under mock_aws(), where no socket times out). Not modelled: retries of failed tasks, input
splits of large files, speculative execution, step concurrency above 1, steps other than hadoop-streaming and
spark-submit (FAILED), the minutes EMR takes to deliver logs (the double writes them all as the step
ends), a job history's full schema line (trimmed to the record names) and its tasks' Hadoop counters (only
their reporter counters), bootstrap actions on more than one node (all nodes share one filesystem here:
the master's).
"""
import contextlib
import dataclasses
import datetime
import gzip
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

from moto.core.utils import utcnow
from moto.emr.exceptions import ValidationException
from moto.emr.models import Cluster, ElasticMapReduceBackend, Instance, InstanceGroup, Step
from moto.s3.models import s3_backends
from moto.server import ThreadedMotoServer
from moto.utilities.utils import get_partition

from tests.support.node_pythons import node_python_commands
from tests.support.node_spark import spark_home

TERMINAL_STEP_STATES = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
ENDED_CLUSTER_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
STREAMING_COMMAND = "hadoop-streaming"
GENERIC_OPTIONS = ("-files", "-D", "-cmdenv")
SINGLE_OPTIONS = ("-output", "-mapper", "-combiner", "-reducer")
COUNTER_LINE = "reporter:counter:"
TASK_TIMEOUT_SECONDS = 900
BOOTSTRAP_TIMEOUT_SECONDS = 900
# Folders of an EMR node's own filesystem that actions and steps may name: moved under the cluster's
# node folder here.
NODE_FOLDERS = ("/usr/local/", "/mnt/", "/home/hadoop/")
AWS_CLI = Path(__file__).resolve().parent / "aws_cli.py"
# What a node's processes see of this machine's environment: the credentials moto takes, nothing else.
NODE_ENV_PASSED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "LANG", "TZ")
# A node's NodeManager: its host (a cluster of one's, or one whose instances moto does not list) and ports.
NODE_HOST, NODE_PORT, NODE_HTTP_PORT, SHUFFLE_PORT = "ip-10-0-0-2.ec2.internal", 8041, 8042, 13562
# What YARN reports of a container on a node it lost (ContainerExitStatus.ABORTED, SchedulerUtils'
# diagnostic), and the MapReduce application master then records of its attempt, KILLED.
CONTAINER_ABORTED = -100
LOST_NODE_DIAGNOSTIC = "Container released on a *lost* node"


class StepArgsError(ValueError):
    """Step arguments hadoop-streaming would refuse."""


class StepFailure(RuntimeError):
    """A step that ran and failed; the message is the step's failure reason."""


@dataclasses.dataclass
class StreamingJob:
    """A hadoop-streaming command line, parsed."""

    files: list  # [(uri, local name)]
    jobconf: dict
    cmdenv: dict
    inputs: list
    output: str
    mapper: str
    combiner: str | None
    reducer: str | None

    @property
    def reduces(self):
        try:
            return int(self.jobconf.get("mapreduce.job.reduces", "1"))
        except ValueError:
            raise StepArgsError(f"mapreduce.job.reduces is not a number: "
                                f"{self.jobconf['mapreduce.job.reduces']!r}") from None


def parse_streaming_args(args):
    """The StreamingJob of a command-runner.jar step's Args, or StepArgsError."""
    if not args or args[0] != STREAMING_COMMAND:
        raise StepArgsError(f"the EMR double runs only {STREAMING_COMMAND} steps, not {args[:1]}")
    options = {"-files": [], "-D": [], "-cmdenv": [], "-input": []}
    words = list(args[1:])
    while words:
        option = words.pop(0)
        if option not in (*GENERIC_OPTIONS, "-input", *SINGLE_OPTIONS):
            raise StepArgsError(f"hadoop-streaming: unrecognized option {option!r}")
        if not words:
            raise StepArgsError(f"hadoop-streaming: option {option} needs a value")
        value = words.pop(0)
        if option in SINGLE_OPTIONS:
            if option in options:
                raise StepArgsError(f"hadoop-streaming: {option} given twice")
            options[option] = value
        else:
            options[option].append(value)
    return _streaming_job(options)


def _streaming_job(options):
    for required in ("-input", "-output", "-mapper"):
        if not options.get(required):
            raise StepArgsError(f"hadoop-streaming: required option {required} is missing")
    return StreamingJob(
        files=[_file_spec(spec) for value in options["-files"] for spec in value.split(",") if spec],
        jobconf=dict(_key_value(pair, "-D") for pair in options["-D"]),
        cmdenv=dict(_key_value(pair, "-cmdenv") for pair in options["-cmdenv"]),
        inputs=options["-input"], output=options["-output"], mapper=options["-mapper"],
        combiner=options.get("-combiner"), reducer=options.get("-reducer"))


def _file_spec(spec):
    uri, _, name = spec.partition("#")
    return uri, name or uri.rstrip("/").rsplit("/", 1)[-1]


def _key_value(pair, option):
    key, equals, value = pair.partition("=")
    if not equals or not key:
        raise StepArgsError(f"hadoop-streaming: {option} expects key=value, got {pair!r}")
    return key, value


def split_s3_uri(uri):
    match = re.fullmatch(r"s3[an]?://([^/]+)/?(.*)", uri)
    if not match:
        raise StepArgsError(f"not an s3:// URI: {uri!r}")
    return match.group(1), match.group(2)


class MotoS3:
    """Objects of moto's S3 backend of one account, by s3:// URI (no HTTP: works with or without a server)."""

    def __init__(self, account_id, region_name):
        self.backend = s3_backends[account_id][get_partition(region_name)]

    def _bucket(self, bucket_name):
        try:
            return self.backend.get_bucket(bucket_name)
        except Exception as error:  # moto's MissingBucket
            raise StepFailure(f"no such bucket {bucket_name!r} ({type(error).__name__})") from None

    def get(self, uri):
        bucket, key = split_s3_uri(uri)
        found = self._bucket(bucket).keys.get(key) if key else None
        if found is None:
            raise StepFailure(f"File does not exist: {uri}")
        return found.value

    def exists(self, uri):
        bucket, key = split_s3_uri(uri)
        return bool(key) and self._bucket(bucket).keys.get(key) is not None

    def list(self, uri):
        """(URI, name) of the objects directly under the folder uri, in key order."""
        bucket, key = split_s3_uri(uri)
        prefix = key.rstrip("/") + "/" if key else ""
        names = sorted(name for name in self._bucket(bucket).keys.keys() if name.startswith(prefix))
        return [(f"s3://{bucket}/{name}", name[len(prefix):]) for name in names]

    def put(self, uri, data):
        bucket, key = split_s3_uri(uri)
        self._bucket(bucket)
        self.backend.put_object(bucket, key, data)

    def delete(self, uri):
        bucket, key = split_s3_uri(uri)
        self.backend.delete_object(bucket, key)


def java_text_hash(key):
    """org.apache.hadoop.io.Text#hashCode: WritableComparator.hashBytes over the key's bytes (signed)."""
    value = 1
    for byte in key:
        value = (31 * value + (byte - 256 if byte > 127 else byte)) & 0xFFFFFFFF
    return value


def hash_partition(key, reduces):
    """The reducer of a key under Hadoop's default HashPartitioner."""
    return (java_text_hash(key) & 0x7FFFFFFF) % reduces


def line_key(line):
    """The streaming key of a line: the bytes before the first tab (all of it without one)."""
    return line.split(b"\t", 1)[0]


def split_lines(data):
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def sort_by_key(lines):
    """Stable sort by key bytes, in unsigned byte order (Hadoop's Text comparator)."""
    return sorted(lines, key=line_key)


def join_lines(lines):
    return b"".join(line + b"\n" for line in lines)


def parse_counter_lines(stderr):
    """Counters from `reporter:counter:<group>,<counter>,<amount>` lines, as {(group, counter): amount}."""
    counters = {}
    for line in stderr.decode("utf-8", errors="replace").splitlines():
        if not line.startswith(COUNTER_LINE):
            continue
        items = line[len(COUNTER_LINE):].split(",")
        if len(items) == 3 and re.fullmatch(r"-?\d+", items[2].strip()):
            key = (items[0], items[1])
            counters[key] = counters.get(key, 0) + int(items[2])
    return counters


def add_counters(total, more):
    for key, amount in more.items():
        total[key] = total.get(key, 0) + amount


@dataclasses.dataclass
class TaskRun:
    """One task attempt that ran: its id, command, exit code and stderr."""

    attempt: str
    kind: str  # map, combine or reduce
    command: str
    input_uri: str | None
    returncode: int
    stderr: bytes
    input_records: int
    output_records: int
    seconds: float = 0.0
    started: float = 0.0  # seconds since the epoch, as the job history records a task's start and finish
    finished: float = 0.0
    host: str = NODE_HOST  # the node it ran on
    killed: bool = False  # YARN took its container away (its node was lost): not a failure, it is rerun

    @property
    def failed(self):
        return self.returncode != 0 and not self.killed

    def failure_reason(self):
        """What the job client and EMR say of a failed streaming task: its exit code, not what it wrote."""
        return (f"Task {self.attempt} failed: PipeMapRed.waitOutputThreads(): subprocess failed with code "
                f"{self.returncode} ({self.kind} task)")


@dataclasses.dataclass
class StepExecution:
    """What the double did for one step: for tests to look at."""

    cluster_id: str
    step_id: str
    name: str
    state: str = "RUNNING"
    reason: str | None = None
    job: StreamingJob | None = None
    tasks: list = dataclasses.field(default_factory=list)
    counters: dict = dataclasses.field(default_factory=dict)
    outputs: list = dataclasses.field(default_factory=list)
    log_uri: str | None = None
    application_id: str | None = None
    logs: dict = dataclasses.field(default_factory=dict)  # {path under <LogUri>/<cluster id>/: text}
    spark: "SparkRun | None" = None  # a spark-submit step's: what ran and what it wrote


def write_command(path, command):
    """An executable at path that runs command (a list of words) with its own arguments."""
    path.write_text(f"#!/bin/sh\nexec {shlex.join(str(word) for word in command)} \"$@\"\n")
    path.chmod(0o755)


@dataclasses.dataclass
class Node:
    """An EMR node of one cluster, here: its filesystem's folder and the commands on its PATH."""

    root: Path

    @classmethod
    def make(cls, root, pythons):
        """A node whose PATH has pythons ({command name: interpreter}) and the AWS CLI's `aws s3 cp`."""
        node = cls(Path(root))
        node.bin.mkdir(parents=True)
        (node.root / "home" / "hadoop").mkdir(parents=True)
        for name, interpreter in pythons.items():
            write_command(node.bin / name, [interpreter])
        write_command(node.bin / "aws", [sys.executable, AWS_CLI])
        return node

    @property
    def bin(self):
        return self.root / "bin"

    def path_of(self, value):
        """value (a path, or a list of them joined by ':') with each one in a node folder moved under root."""
        return os.pathsep.join(f"{self.root}{part}" if part.startswith(NODE_FOLDERS) else part
                               for part in value.split(os.pathsep))

    def env(self, extra=()):
        """A node process's environment: its PATH and HOME, moto's credentials, then extra's variables."""
        env = {key: os.environ[key] for key in NODE_ENV_PASSED if key in os.environ}
        env.update({"PATH": f"{self.bin}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
                    "HOME": str(self.root / "home" / "hadoop")})
        env.update(extra)
        return env


class StreamingRunner:
    """Runs one StreamingJob in a local working directory of a cluster's node against moto's S3."""

    def __init__(self, job, s3, workdir, node, workers, execution, application_id, hosts=(), loss=None):
        self.job, self.s3, self.workdir, self.execution = job, s3, Path(workdir), execution
        self.node, self.workers = node, workers
        # The nodes whose NodeManagers run the tasks (a cluster's core and task nodes, its master when alone),
        # and the NodeLoss to happen during this step, if any.
        self.hosts, self.loss = list(hosts) or [NODE_HOST], loss
        self.cache = self.workdir / "filecache"
        self.localized = {}  # {link name: the localized file it links to}
        self.application_id = application_id
        self.job_id = application_id.replace("application_", "job_", 1)

    def run(self):
        reduces = self.job.reduces
        if reduces < 0:
            raise StepArgsError(f"mapreduce.job.reduces must be >= 0, not {reduces}")
        if self.s3.list(self.job.output) or self.s3.exists(self.job.output):
            raise StepFailure(f"org.apache.hadoop.mapred.FileAlreadyExistsException: "
                              f"Output directory {self.job.output} already exists")
        self._fetch_files()
        inputs = self._input_files()
        map_outputs = self._run_phase("map", list(enumerate(inputs)), self._map_task)
        if reduces == 0:
            parts = map_outputs
        else:
            partitions = self._partition(map_outputs, reduces)
            parts = self._run_phase("reduce", list(enumerate(partitions)), self._reduce_task)
        self._write_output(parts)

    def _fetch_files(self):
        """Localize each -files object as YARN does: in a numbered cache folder of its own, under the
        object's own name; each task's working folder gets a link to it under its '#' name."""
        self.cache.mkdir()
        for number, (uri, name) in enumerate(self.job.files):
            if "/" in name or name in ("", ".", ".."):
                raise StepArgsError(f"-files: bad link name {name!r} in {uri}#{name}")
            folder = self.cache / str(number)
            folder.mkdir()
            self.localized[name] = folder / uri.rstrip("/").rsplit("/", 1)[-1]
            self.localized[name].write_bytes(self.s3.get(uri))

    def _input_files(self):
        """Every input object: the key itself, else the visible objects of the folder (as FileInputFormat)."""
        files = []
        for uri in self.job.inputs:
            if self.s3.exists(uri):
                files.append(uri)
                continue
            listed = [(child, name) for child, name in self.s3.list(uri) if "/" not in name]
            if not listed:
                raise StepFailure(f"org.apache.hadoop.mapreduce.lib.input.InvalidInputException: "
                                  f"Input path does not exist: {uri}")
            files += [child for child, name in listed if not name.startswith(("_", "."))]
        return files

    def _run_phase(self, phase, tasks, function):
        """Run a phase's tasks, dealt to the live hosts in turn as YARN spreads containers. When the step's
        NodeLoss happens in this phase, its nodes are lost as the phase starts: the attempts dealt to them
        are killed, and each task reruns as attempt 1 on the hosts left."""
        lost = self.loss.hosts if self.loss and self.loss.phase == phase else set()
        placed = [(task, self.hosts[index % len(self.hosts)]) for index, task in enumerate(tasks)]
        if lost:
            self.loss.happen()
            self.hosts = [host for host in self.hosts if host not in lost]
            if not self.hosts:  # YARN would wait for nodes for ever; the pipeline always keeps a core node
                raise StepFailure("every node that runs tasks was lost: no node left to rerun them on")
        results = self._run_attempts([(task, host, 0, host in lost) for task, host in placed], function)
        rerun = [(number, task) for number, (task, host) in enumerate(placed) if host in lost]
        reruns = self._run_attempts([(task, self.hosts[index % len(self.hosts)], 1, False)
                                     for index, (_, task) in enumerate(rerun)], function)
        for (number, _), result in zip(rerun, reruns, strict=True):
            results[number] = result
        failed = next((run for run in self.execution.tasks if run.failed), None)
        if failed:
            raise StepFailure(failed.failure_reason())
        return [result[0] for result in results]

    def _run_attempts(self, attempts, function):
        """[(output lines, runs)] of function's attempts [(task, host, attempt number, killed)], in order."""
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            results = list(pool.map(lambda attempt: function(*attempt[0], *attempt[1:]), attempts))
        self.execution.tasks += [run for result in results for run in result[1]]
        return results

    def _map_task(self, number, uri, host=NODE_HOST, attempt_number=0, killed=False):
        attempt = f"attempt_{self.job_id[4:]}_m_{number:06d}_{attempt_number}"
        env = {"mapreduce_map_input_file": uri, "map_input_file": uri, "mapreduce_task_ismap": "true",
               "mapreduce_task_partition": str(number)}
        if killed:
            return None, [self._kill_task(attempt, "map", self.job.mapper, env, uri, host)]
        data = self.s3.get(uri)
        run, output = self._run_task(attempt, "map", self.job.mapper, data, env, uri, host)
        runs = [run]
        if run.returncode == 0 and self.job.combiner and self.job.reduces:
            combine_attempt = attempt + "_combine"
            combined, output = self._run_task(combine_attempt, "combine", self.job.combiner,
                                              join_lines(sort_by_key(split_lines(output))), env, uri, host)
            runs.append(combined)
        return split_lines(output), runs

    def _partition(self, map_outputs, reduces):
        partitions, partition_of = [[] for _ in range(reduces)], {}
        for lines in map_outputs:
            for line in lines:
                key = line_key(line)
                number = partition_of.get(key)
                if number is None:
                    number = partition_of[key] = hash_partition(key, reduces)
                partitions[number].append(line)
        return [sort_by_key(lines) for lines in partitions]

    def _reduce_task(self, number, lines, host=NODE_HOST, attempt_number=0, killed=False):
        attempt = f"attempt_{self.job_id[4:]}_r_{number:06d}_{attempt_number}"
        env = {"mapreduce_task_ismap": "false", "mapreduce_task_partition": str(number)}
        reducer = self.job.reducer or "cat"
        if killed:
            return None, [self._kill_task(attempt, "reduce", reducer, env, None, host)]
        run, output = self._run_task(attempt, "reduce", reducer, join_lines(lines), env, None, host)
        return split_lines(output), [run]

    def _task_dir(self, attempt):
        task_dir = self.workdir / attempt
        task_dir.mkdir()
        for name, path in self.localized.items():
            (task_dir / name).symlink_to(path)
        return task_dir

    def _kill_task(self, attempt, kind, command, extra_env, input_uri, host):
        """An attempt whose container starts on a node as the node is lost: its process is killed before it
        has read its input, and YARN reports the container ABORTED (exit status -100)."""
        task_dir, env = self._task_dir(attempt), self._task_env(attempt, extra_env)
        started = time.time()
        try:
            process = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=task_dir,
                                       env=env)
            process.kill()
            process.wait(timeout=TASK_TIMEOUT_SECONDS)
        except (OSError, ValueError):
            pass  # a command that cannot start is lost with its node all the same
        return TaskRun(attempt, kind, command, input_uri, CONTAINER_ABORTED, b"", input_records=0,
                       output_records=0, started=started, finished=time.time(), host=host, killed=True)

    def _run_task(self, attempt, kind, command, stdin_data, extra_env, input_uri, host=NODE_HOST):
        task_dir = self._task_dir(attempt)
        env = self._task_env(attempt, extra_env)
        started, started_at = time.monotonic(), time.time()
        try:
            words = shlex.split(command)
            done = subprocess.run(words, input=stdin_data, capture_output=True, cwd=task_dir, env=env,
                                  timeout=TASK_TIMEOUT_SECONDS, check=False)
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except (OSError, ValueError, subprocess.TimeoutExpired) as error:
            returncode, stdout, stderr = 127, b"", f"cannot run {command!r}: {error}\n".encode()
        run = TaskRun(attempt, kind, command, input_uri, returncode, stderr,
                      input_records=len(split_lines(stdin_data)), output_records=len(split_lines(stdout)),
                      seconds=round(time.monotonic() - started, 3), started=started_at, finished=time.time(),
                      host=host)
        return run, stdout

    def _task_env(self, attempt, extra_env):
        env = {key.replace(".", "_"): value for key, value in self.job.jobconf.items()}
        env.update({key: self.node.path_of(value) for key, value in self.job.cmdenv.items()})
        env.update(extra_env)
        env.update({"mapreduce_task_attempt_id": attempt, "mapreduce_job_id": self.job_id})
        return self.node.env(env)

    def _write_output(self, parts):
        output = self.job.output.rstrip("/")
        for number, lines in enumerate(parts):
            uri = f"{output}/part-{number:05d}"
            self.s3.put(uri, join_lines(lines))
            self.execution.outputs.append(uri)
        self.s3.put(f"{output}/_SUCCESS", b"")

    def counter_groups(self):
        """Hadoop's own counters plus the tasks' reporter counters, as {group: {counter: amount}}: every
        launched attempt counts as launched, a killed attempt's records and reporter counters not at all."""
        launched = self.execution.tasks
        runs = [run for run in launched if not run.killed]
        by_kind = {kind: [run for run in runs if run.kind == kind] for kind in ("map", "combine", "reduce")}
        attempts = task_attempts(launched)
        groups = {
            "Job Counters": {"Launched map tasks": sum(run.kind == "map" for run in launched),
                             "Launched reduce tasks": sum(run.kind == "reduce" for run in launched),
                             **{f"Failed {kind} tasks": failed for kind in ("map", "reduce")
                                if (failed := sum(run.failed for run in attempts if run.kind == kind))},
                             **{f"Killed {kind} tasks": killed for kind in ("map", "reduce")
                                if (killed := sum(run.killed for run in attempts if run.kind == kind))}},
            "Map-Reduce Framework": {
                "Map input records": sum(run.input_records for run in by_kind["map"]),
                "Map output records": sum(run.output_records for run in by_kind["map"]),
                "Combine input records": sum(run.input_records for run in by_kind["combine"]),
                "Combine output records": sum(run.output_records for run in by_kind["combine"]),
                "Reduce input records": sum(run.input_records for run in by_kind["reduce"]),
                "Reduce output records": sum(run.output_records for run in by_kind["reduce"]),
            },
        }
        reported = {}
        for run in runs:
            add_counters(reported, parse_counter_lines(run.stderr))
        for (group, counter), amount in sorted(reported.items()):
            groups.setdefault(group, {})[counter] = amount
        return groups


# EMR's log layout, as the Amazon EMR Management Guide describes it ("View log files", "View log
# files archived to Amazon S3"), under <LogUri>/<cluster id>/:
#   steps/<step id>/controller.gz  EMR's step runner: the command line, the exit code
#   steps/<step id>/stderr.gz      a command-runner.jar step's child process stderr: the hadoop
#                                  client's console log (application id, progress, failed attempts,
#                                  the counter block) in Hadoop 3's console layout
#   steps/<step id>/stdout.gz      its stdout ("packageJobJar: ...")
#   steps/<step id>/syslog.gz      empty: a command-runner step's client logs to the console
#   containers/<application id>/<container id>/{stderr,stdout,syslog}.gz: the YARN containers,
#       the MapReduce application master first (..._000001, "Assigned container ... to attempt_...")
#       then one per task attempt; a streaming task's stderr (less its reporter: lines, which
#       Hadoop streaming consumes) is only there.
# The messages are Hadoop's (org.apache.hadoop.mapreduce.Job, streaming.StreamJob, YarnChild,
# RMContainerAllocator), trimmed to the lines mrjob's log parsers and this pipeline read.
PIPE_FAILED = "java.lang.RuntimeException: PipeMapRed.waitOutputThreads(): subprocess failed with code"
JAVA_STACK = ("\tat org.apache.hadoop.streaming.PipeMapRed.waitOutputThreads(PipeMapRed.java:326)",
              "\tat org.apache.hadoop.streaming.PipeMapRed.mapRedFinished(PipeMapRed.java:539)",
              "\tat org.apache.hadoop.mapred.YarnChild.main(YarnChild.java:178)")


def log_stamp(moment):
    """A log4j ISO8601 time stamp, as Hadoop's logs carry."""
    return moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}"


def task_attempts(runs):
    """The map and reduce attempts (a combiner runs inside its map attempt, and fails it)."""
    attempts = {run.attempt: run for run in runs if run.kind != "combine"}
    for run in runs:
        if run.kind == "combine" and run.returncode != 0:
            attempt = run.attempt.removesuffix("_combine")
            attempts[attempt] = dataclasses.replace(attempts[attempt], returncode=run.returncode)
    return [attempts[run.attempt] for run in runs if run.kind != "combine"]


def container_ids(application_id, runs):
    """{attempt id: container id} of the task attempts; the application master has container 1."""
    prefix = application_id.replace("application_", "container_", 1) + "_01_"
    return {run.attempt: f"{prefix}{number:06d}" for number, run in enumerate(task_attempts(runs), start=2)}


def hadoop_client_stderr(execution, counter_groups, started, ended):
    """The step's stderr: what `hadoop jar hadoop-streaming.jar` prints to the console as the job runs."""
    def line(moment, level, logger, message):
        return f"{log_stamp(moment)} {level} {logger}: {message}"

    job_id = (execution.application_id or "").replace("application_", "job_", 1)
    lines = []
    if execution.application_id:
        submitted = f"Submitted application {execution.application_id}"
        lines += [line(started, "INFO", "impl.YarnClientImpl", submitted),
                  line(started, "INFO", "mapreduce.Job", f"Running job: {job_id}")]
        for run in task_attempts(execution.tasks):
            if run.failed:  # the client prints failed attempts only (mapreduce.client.output.filter)
                lines += [line(ended, "INFO", "mapreduce.Job", f"Task Id : {run.attempt}, Status : FAILED"),
                          f"Error: {PIPE_FAILED} {run.returncode}", *JAVA_STACK]
        lines.append(line(ended, "INFO", "mapreduce.Job", " map 100% reduce 100%"))
    if execution.state == "COMPLETED":
        lines.append(line(ended, "INFO", "mapreduce.Job", f"Job {job_id} completed successfully"))
    elif execution.application_id:
        lines.append(line(ended, "INFO", "mapreduce.Job", f"Job {job_id} failed with state FAILED due to: "
                          "Task failed"))
    else:
        lines.append(line(ended, "ERROR", "streaming.StreamJob", f"Error Launching job : {execution.reason}"))
    if counter_groups:
        total = sum(len(counters) for counters in counter_groups.values())
        lines.append(line(ended, "INFO", "mapreduce.Job", f"Counters: {total}"))
        for group, counters in counter_groups.items():
            lines.append(f"\t{group} ")
            lines += [f"\t\t{name}={amount}" for name, amount in counters.items()]
    if execution.state == "COMPLETED":
        lines.append(line(ended, "INFO", "streaming.StreamJob", f"Output directory: {execution.job.output}"))
    else:
        lines += [line(ended, "ERROR", "streaming.StreamJob", "Job not successful!"),
                  "Streaming Command Failed!"]
    return "\n".join(lines) + "\n"


def step_controller(execution, step_number, args, started, ended):
    """The step's controller log: EMR's step runner starting command-runner.jar and its exit code."""
    def stamp(moment):
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    exit_code = 0 if execution.state == "COMPLETED" else 1
    seconds = round((ended - started).total_seconds())
    folder = f"/mnt/var/log/hadoop/steps/{execution.step_id}"
    lines = [f"{stamp(started)} INFO Ensure step {step_number} jar file command-runner.jar",
             f"INFO startExec 'hadoop jar /var/lib/aws/emr/step-runner/hadoop-jars/command-runner.jar "
             f"{shlex.join(args)}'",
             f"INFO redirectOutput to {folder}/stdout", f"INFO redirectError to {folder}/stderr",
             f"INFO waitProcessCompletion ended with exit code {exit_code}",
             f"INFO total process run time: {seconds} seconds"]
    if execution.application_id:
        lines.append(f"{stamp(ended)} INFO Step created jobs: "
                     f"{execution.application_id.replace('application_', 'job_', 1)}")
    verdict = "INFO Step succeeded" if exit_code == 0 else "WARN Step failed"
    lines.append(f"{stamp(ended)} {verdict} with exitCode {exit_code} and took {seconds} seconds")
    return "\n".join(lines) + "\n"


def container_logs(execution, started, ended):
    """{containers/<application>/<container>/<log>: text} of the application master and each task attempt."""
    application_id = execution.application_id
    containers = container_ids(application_id, execution.tasks)
    master = application_id.replace("application_", "container_", 1) + "_01_000001"
    allocator = "INFO [RMCommunicator Allocator] org.apache.hadoop.mapreduce.v2.app.rm.RMContainerAllocator"
    application_attempt = application_id.replace("application_", "appattempt_", 1) + "_000001"
    master_syslog = [f"{log_stamp(started)} INFO [main] org.apache.hadoop.mapreduce.v2.app.MRAppMaster: "
                     f"Created MRAppMaster for application {application_attempt}"]
    master_syslog += [f"{log_stamp(started)} {allocator}: Assigned container {container} to {attempt}"
                      for attempt, container in containers.items()]
    logs = {f"{master}/{name}": "" for name in ("stderr", "stdout")}
    logs[f"{master}/syslog"] = "\n".join(master_syslog) + "\n"
    runs = {run.attempt: run for run in execution.tasks}
    for run in task_attempts(execution.tasks):
        if run.killed:  # its container's logs were on the lost node: YARN never aggregates them
            continue
        folder = containers[run.attempt]
        combined = runs.get(f"{run.attempt}_combine")
        stderr = b"".join(task.stderr for task in (runs[run.attempt], combined) if task)
        lines = stderr.decode("utf-8", "replace").splitlines()
        logs[f"{folder}/stderr"] = "".join(line + "\n" for line in lines
                                           if not line.startswith(("reporter:counter:", "reporter:status:")))
        logs[f"{folder}/stdout"] = ""
        logs[f"{folder}/syslog"] = task_syslog(run, ended)
    return {f"containers/{application_id}/{path}": text for path, text in logs.items()}


def task_syslog(run, ended):
    """A task attempt's container syslog (YarnChild's): its split, its command, how it ended."""
    lines = []
    if run.input_uri:
        lines.append(f"{log_stamp(ended)} INFO [main] org.apache.hadoop.mapred.MapTask: Processing split: "
                     f"{run.input_uri}:0+{run.input_records}")
    lines.append(f"{log_stamp(ended)} INFO [main] org.apache.hadoop.streaming.PipeMapRed: PipeMapRed exec "
                 f"{shlex.split(run.command)}")
    if run.returncode == 0:
        lines.append(f"{log_stamp(ended)} INFO [main] org.apache.hadoop.mapred.Task: "
                     f"Task '{run.attempt}' done.")
    else:
        lines += [f"{log_stamp(ended)} WARN [main] org.apache.hadoop.mapred.YarnChild: "
                  f"Exception running child : {PIPE_FAILED} {run.returncode}", *JAVA_STACK]
    return "\n".join(lines) + "\n"


# Hadoop's MapReduce job history, as hadoop-mapreduce-client-core's Events.avpr defines it (the
# fields mrjob's logs/history.py and this pipeline read, and the rest of each record): the
# application master writes one Avro-JSON file per job, "Avro-Json", the Event schema, then one
# event a line, times in ms since the epoch; the job history server moves it to its done folder,
# <yyyy>/<mm>/<dd>/<serial>/, named after the job (FileNameIndexUtils), beside <job id>_conf.xml;
# EMR archives that folder under <LogUri>/<cluster id>/hadoop-mapreduce/history/, where mrjob
# looks for it. The double runs one attempt per task, two for a task whose first was killed with its node.
HISTORY_NAMESPACE = "org.apache.hadoop.mapreduce.jobhistory"
HISTORY_RECORDS = {  # event type: its record, the branch of the Event union
    "AM_STARTED": "AMStarted", "JOB_SUBMITTED": "JobSubmitted", "JOB_INITED": "JobInited",
    "JOB_INFO_CHANGED": "JobInfoChange", "TASK_STARTED": "TaskStarted",
    "MAP_ATTEMPT_STARTED": "TaskAttemptStarted", "REDUCE_ATTEMPT_STARTED": "TaskAttemptStarted",
    "MAP_ATTEMPT_FINISHED": "MapAttemptFinished", "REDUCE_ATTEMPT_FINISHED": "ReduceAttemptFinished",
    "MAP_ATTEMPT_FAILED": "TaskAttemptUnsuccessfulCompletion",
    "REDUCE_ATTEMPT_FAILED": "TaskAttemptUnsuccessfulCompletion",
    "MAP_ATTEMPT_KILLED": "TaskAttemptUnsuccessfulCompletion",
    "REDUCE_ATTEMPT_KILLED": "TaskAttemptUnsuccessfulCompletion",
    "TASK_FINISHED": "TaskFinished", "TASK_FAILED": "TaskFailed",
    "JOB_FINISHED": "JobFinished", "JOB_FAILED": "JobUnsuccessfulCompletion",
}
HISTORY_USER = "hadoop"
JOB_NAME_LIMIT = 50  # mapreduce.jobhistory.jobname.limit
HISTORY_FOLDER = "hadoop-mapreduce/history"


def epoch_ms(moment):
    """Milliseconds since the epoch of a naive UTC datetime (moto's) or of seconds since the epoch."""
    if isinstance(moment, datetime.datetime):
        moment = moment.replace(tzinfo=datetime.timezone.utc).timestamp()
    return int(moment * 1000)


def history_event(kind, **fields):
    """One job history record: {"type": kind, "event": {<namespace>.<record>: fields}}."""
    return {"type": kind, "event": {f"{HISTORY_NAMESPACE}.{HISTORY_RECORDS[kind]}": fields}}


def jh_counters(name, groups):
    """A JhCounters record of {group: {counter: amount}}."""
    return {"name": name, "groups": [
        {"name": group, "displayName": group, "counts": [
            {"name": counter, "displayName": counter, "value": amount}
            for counter, amount in counters.items()]}
        for group, counters in groups.items()]}


def task_counter_groups(*runs):
    """{group: {counter: amount}} of the reporter lines of one task's processes."""
    reported = {}
    for run in runs:
        add_counters(reported, parse_counter_lines(run.stderr))
    groups = {}
    for (group, counter), amount in sorted(reported.items()):
        groups.setdefault(group, {})[counter] = amount
    return groups


def task_id_of(attempt):
    """The task of an attempt id: attempt_<cluster>_<job>_m_000003_1 -> task_<cluster>_<job>_m_000003."""
    return attempt.replace("attempt_", "task_", 1).rsplit("_", 1)[0]


def task_history_events(attempts, runs, containers):
    """[(ms, record)] of one task: started, then each attempt started and killed, failed or finished, then
    the task's own end (its last attempt's)."""
    first, last = attempts[0], attempts[-1]
    kind, task_id = ("MAP" if first.kind == "map" else "REDUCE"), task_id_of(first.attempt)
    started = epoch_ms(first.started)
    events = [(started, history_event("TASK_STARTED", taskid=task_id, taskType=kind, startTime=started,
                                      splitLocations=first.host if kind == "MAP" else ""))]
    for run in attempts:
        events += attempt_history_events(run, runs.get(f"{run.attempt}_combine"), containers[run.attempt],
                                         kind, task_id)
    combined = runs.get(f"{last.attempt}_combine")
    finished = epoch_ms((combined or last).finished)
    counters = jh_counters("COUNTERS", task_counter_groups(*(task for task in (last, combined) if task)))
    if last.returncode != 0:
        error = f"Error: {PIPE_FAILED} {last.returncode}"
        return events + [(finished, history_event(
            "TASK_FAILED", taskid=task_id, taskType=kind, finishTime=finished, error=error,
            failedDueToAttempt={"string": last.attempt}, status="FAILED", counters=counters))]
    return events + [(finished, history_event(
        "TASK_FINISHED", taskid=task_id, taskType=kind, finishTime=finished, status="SUCCEEDED",
        counters=counters, successfulAttemptId=last.attempt))]


def attempt_history_events(run, combined, container, kind, task_id):
    """[(ms, record)] of one attempt: started, then killed (its node lost), failed or finished."""
    started, finished = epoch_ms(run.started), epoch_ms((combined or run).finished)
    counters = jh_counters("COUNTERS", task_counter_groups(*(task for task in (run, combined) if task)))
    events = [(started, history_event(
        f"{kind}_ATTEMPT_STARTED", taskid=task_id, taskType=kind, attemptId=run.attempt, startTime=started,
        trackerName=run.host, httpPort=NODE_HTTP_PORT, shufflePort=SHUFFLE_PORT, containerId=container,
        locality={"string": "NODE_LOCAL"}, avataar={"string": "VIRGIN"}))]
    where = {"hostname": run.host, "port": NODE_PORT, "rackname": "/default-rack"}
    usage = {"clockSplits": [], "cpuUsages": [], "vMemKbytes": [], "physMemKbytes": []}
    if run.killed:
        return events + [(finished, history_event(
            f"{kind}_ATTEMPT_KILLED", taskid=task_id, taskType=kind, attemptId=run.attempt,
            finishTime=finished, **where, status="KILLED", error=LOST_NODE_DIAGNOSTIC,
            counters=jh_counters("COUNTERS", {}), **usage))]
    if run.returncode != 0:
        return events + [(finished, history_event(
            f"{kind}_ATTEMPT_FAILED", taskid=task_id, taskType=kind, attemptId=run.attempt,
            finishTime=finished, **where, status="FAILED", error=f"Error: {PIPE_FAILED} {run.returncode}",
            counters=counters, **usage))]
    phase_ends = ({"mapFinishTime": epoch_ms(run.finished)} if kind == "MAP"
                  else {"shuffleFinishTime": started, "sortFinishTime": started})
    return events + [(finished, history_event(
        f"{kind}_ATTEMPT_FINISHED", taskid=task_id, attemptId=run.attempt, taskType=kind,
        taskStatus="SUCCEEDED", **phase_ends, finishTime=finished, **where, state=run.kind, counters=counters,
        **usage))]


def job_history_events(execution, counter_groups, started, ended):
    """[(ms, record)] of the step's job, in the order its application master writes them."""
    application_id = execution.application_id
    job_id, attempt_id = (application_id.replace("application_", prefix, 1)
                          for prefix in ("job_", "appattempt_"))
    submitted, finished = epoch_ms(started), epoch_ms(ended)
    containers = container_ids(application_id, execution.tasks)
    runs = {run.attempt: run for run in execution.tasks}
    tasks = {}  # {task id: its attempts, in order}
    for run in task_attempts(execution.tasks):
        tasks.setdefault(task_id_of(run.attempt), []).append(run)
    ends = [attempts[-1] for attempts in tasks.values()]
    totals = {kind: sum(run.kind == kind for run in ends) for kind in ("map", "reduce")}
    done = {kind: sum(run.kind == kind and run.returncode == 0 for run in ends) for kind in totals}
    killed = {kind: sum(run.kind == kind and run.killed for attempts in tasks.values() for run in attempts)
              for kind in totals}
    events = [
        (submitted, history_event(
            "AM_STARTED", applicationAttemptId=f"{attempt_id}_000001", startTime=submitted,
            containerId=application_id.replace("application_", "container_", 1) + "_01_000001",
            nodeManagerHost=NODE_HOST, nodeManagerPort=NODE_PORT, nodeManagerHttpPort=NODE_HTTP_PORT)),
        (submitted, history_event(
            "JOB_SUBMITTED", jobid=job_id, jobName=job_name(execution), userName=HISTORY_USER,
            submitTime=submitted, jobConfPath=f"hdfs://{NODE_HOST}:8020/tmp/hadoop-yarn/staging/{HISTORY_USER}"
                                              f"/.staging/{job_id}/job.xml",
            acls={}, jobQueueName="default", workflowId="", workflowName="", workflowNodeName="",
            workflowAdjacencies="")),
        (submitted, history_event("JOB_INITED", jobid=job_id, launchTime=submitted, totalMaps=totals["map"],
                                  totalReduces=totals["reduce"], jobStatus="INITED", uberized=False)),
        (submitted, history_event("JOB_INFO_CHANGED", jobid=job_id, submitTime=submitted,
                                  launchTime=submitted))]
    for attempts in tasks.values():
        events += task_history_events(attempts, runs, containers)
    if execution.state == "COMPLETED":
        events.append((finished, history_event(
            "JOB_FINISHED", jobid=job_id, finishTime=finished, finishedMaps=done["map"],
            finishedReduces=done["reduce"], failedMaps=0, failedReduces=0,
            totalCounters=jh_counters("TOTAL_COUNTERS", counter_groups),
            mapCounters=jh_counters("MAP_COUNTERS", {}), reduceCounters=jh_counters("REDUCE_COUNTERS", {}),
            killedMaps=killed["map"], killedReduces=killed["reduce"])))
    else:
        events.append((finished, history_event("JOB_FAILED", jobid=job_id, finishTime=finished,
                                               finishedMaps=done["map"], finishedReduces=done["reduce"],
                                               jobStatus="FAILED")))
    return sorted(events, key=lambda event: event[0]), done


def job_name(execution):
    """The job's name: its mapreduce.job.name, else hadoop-streaming's own."""
    return execution.job.jobconf.get("mapreduce.job.name") or "streamjob.jar"


def history_file_name(execution, done, submitted, finished):
    """The done file's name: the job's index fields joined by "-", each with its own "-" escaped."""
    def field(text):
        return "%2D".join(urllib.parse.quote(part, safe="") for part in str(text).split("-"))

    job_id = execution.application_id.replace("application_", "job_", 1)
    status = "SUCCEEDED" if execution.state == "COMPLETED" else "FAILED"
    fields = [job_id, submitted, HISTORY_USER, field(job_name(execution)[:JOB_NAME_LIMIT]), finished,
              done["map"], done["reduce"], status, "default", submitted]
    return "-".join(map(str, fields)) + ".jhist"


def job_history_logs(execution, counter_groups, started, ended):
    """{hadoop-mapreduce/history/<yyyy>/<mm>/<dd>/000000/<file>: text}: the step job's .jhist and conf."""
    events, done = job_history_events(execution, counter_groups, started, ended)
    schema = {"type": "record", "name": "Event", "namespace": HISTORY_NAMESPACE, "fields": [
        {"name": "type", "type": {"type": "enum", "name": "EventType", "symbols": list(HISTORY_RECORDS)}},
        {"name": "event", "type": sorted(set(HISTORY_RECORDS.values()))}]}
    lines = ["Avro-Json", json.dumps(schema, separators=(",", ":")),
             *(json.dumps(record, separators=(",", ":")) for _, record in events)]
    folder = f"{HISTORY_FOLDER}/{ended:%Y/%m/%d}/000000"
    name = history_file_name(execution, done, epoch_ms(started), epoch_ms(ended))
    job_id = execution.application_id.replace("application_", "job_", 1)
    conf = ('<?xml version="1.0" encoding="UTF-8" standalone="no"?><configuration>'
            f"<property><name>mapreduce.job.name</name><value>{job_name(execution)}</value></property>"
            "</configuration>")
    return {f"{folder}/{name}": "\n".join(lines) + "\n", f"{folder}/{job_id}_conf.xml": conf}


def emr_step_logs(execution, step_number, args, counter_groups, started):
    """{path under <LogUri>/<cluster id>/: text} of every log EMR delivers for one step."""
    ended = utcnow()
    folder = f"steps/{execution.step_id}"
    logs = {f"{folder}/controller": step_controller(execution, step_number, args, started, ended),
            f"{folder}/stderr": hadoop_client_stderr(execution, counter_groups, started, ended),
            f"{folder}/stdout": "packageJobJar: [] [/usr/lib/hadoop/hadoop-streaming.jar] /tmp/streamjob.jar "
                                "tmpDir=null\n" if execution.application_id else "",
            f"{folder}/syslog": ""}
    if execution.application_id:
        logs.update(container_logs(execution, started, ended))
        logs.update(job_history_logs(execution, counter_groups, started, ended))
    return logs


def master_instance_id(cluster):
    return next((instance.ec2_instance.id for instance in cluster.ec2_instances), "i-00000000000000000")


@dataclasses.dataclass
class BootstrapRun:
    """One bootstrap action that ran on a cluster's node: for tests to look at."""

    cluster_id: str
    number: int
    path: str
    args: list  # as the script got them: node folders moved under the node's
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float

    def failure_reason(self):
        """EMR's words for it, or for a script it could not fetch."""
        if self.returncode == DOWNLOAD_FAILED:
            return f"failed to download bootstrap action {self.number} file from S3"
        return f"bootstrap action {self.number} returned a non-zero return code"


DOWNLOAD_FAILED = -1


def run_bootstrap_action(s3, cluster_id, node, number, action, env):
    """Fetch one action's script from S3 and run it on node with its Args; its BootstrapRun."""
    args = [node.path_of(arg) for arg in action.args]
    started = time.monotonic()
    folder = node.root / "emr" / "bootstrap-actions" / str(number)
    folder.mkdir(parents=True)
    script = folder / (action.script_path or "").rsplit("/", 1)[-1]
    try:
        script.write_bytes(s3.get(action.script_path or ""))
    except (StepFailure, StepArgsError) as error:
        return BootstrapRun(cluster_id, number, action.script_path, args, DOWNLOAD_FAILED, b"",
                            str(error).encode(), 0.0)
    script.chmod(0o755)
    try:
        done = subprocess.run([str(script), *args], capture_output=True, cwd=folder, env=node.env(env),
                              timeout=BOOTSTRAP_TIMEOUT_SECONDS, check=False)
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    except (OSError, subprocess.TimeoutExpired) as error:
        returncode, stdout, stderr = 1, b"", f"cannot run {script.name}: {error}\n".encode()
    return BootstrapRun(cluster_id, number, action.script_path, args, returncode, stdout, stderr,
                        round(time.monotonic() - started, 3))


def write_bootstrap_logs(s3, cluster, run):
    """An action's stdout and stderr where EMR delivers them: node/<instance id>/bootstrap-actions/<n>/."""
    if not cluster.log_uri:
        return
    folder = (f"{cluster.log_uri.rstrip('/')}/{cluster.id}/node/{master_instance_id(cluster)}/"
              f"bootstrap-actions/{run.number}")
    with contextlib.suppress(StepFailure, StepArgsError):  # a missing log bucket: EMR logs nothing either
        for name, data in (("stdout", run.stdout), ("stderr", run.stderr)):
            s3.put(f"{folder}/{name}.gz", gzip.compress(data))


# How EMR reports an instance's end in ListInstances (InstanceStateChangeReason): one lost with its Spot
# capacity, and one ended with its cluster. The pipeline reads the codes; the messages are for people.
SPOT_INTERRUPTED = ("INSTANCE_FAILURE", "The Spot Instance was interrupted: Amazon EC2 reclaimed it")
ENDED_WITH_CLUSTER = ("CLUSTER_TERMINATED", "Instance was terminated as its cluster was terminated")


def end_instance(instance, reason):
    """Mark a cluster's instance (moto's) TERMINATED now, for reason (code, message)."""
    instance.ended = {"State": "TERMINATED", "Code": reason[0], "Message": reason[1], "EndDateTime": utcnow()}


def _model_patches():
    """(owner, name, replacement) for moto's models, as EMR behaves.

    A status carries EMR's failure details and reason code; terminating an ended cluster does nothing, and
    terminating a cluster ends its instances and groups.
    """
    original_status = Step.status
    original_cluster_status = Cluster.status
    original_terminate = Cluster.terminate

    def status(step):
        status_dict = original_status.fget(step)
        if getattr(step, "failure_details", None):
            status_dict["FailureDetails"] = step.failure_details
        return status_dict

    def cluster_status(cluster):
        status_dict = original_cluster_status.fget(cluster)
        if getattr(cluster, "state_change_reason_code", None):
            status_dict["StateChangeReason"]["Code"] = cluster.state_change_reason_code
        return status_dict

    def terminate(cluster):
        if cluster.state not in ENDED_CLUSTER_STATES:
            original_terminate(cluster)
            end_cluster_instances(cluster)

    return ((Step, "status", property(status)),
            (Cluster, "status", property(cluster_status)),
            (Cluster, "terminate", terminate))


def end_cluster_instances(cluster):
    """Its instances still up end with the cluster (CLUSTER_TERMINATED), and its instance groups too."""
    for instance in cluster.ec2_instances:
        if not getattr(instance, "ended", None):
            end_instance(instance, ENDED_WITH_CLUSTER)
    for group in cluster.instance_groups:
        group.state, group.end_date_time = "TERMINATED", cluster.end_datetime


def _instance_patches():
    """(owner, name, replacement) for moto's instances: one that ended (end_instance) shows when and why in
    ListInstances, and its group no longer counts it running."""
    original_instance_status = Instance.status

    def instance_status(instance):
        status_dict = original_instance_status.fget(instance)
        ended = getattr(instance, "ended", None)
        if ended:
            status_dict["State"] = ended["State"]
            status_dict["StateChangeReason"] = {"Code": ended["Code"], "Message": ended["Message"]}
            status_dict["Timeline"]["EndDateTime"] = ended["EndDateTime"]
        return status_dict

    def running_instance_count(group):
        return 0 if group.state == "TERMINATED" else group.num_instances - getattr(group, "lost_instances", 0)

    return ((Instance, "status", property(instance_status)),
            (InstanceGroup, "running_instance_count", property(running_instance_count)))


# Spark steps: `command-runner.jar spark-submit ...`, as EMR runs them on a cluster with the Spark
# application: spark-submit's own options (--deploy-mode cluster, --master yarn, --conf, --files,
# --py-files), then the application's script and its arguments. On EMR, YARN localizes the script,
# --files (under their '#' name) and --py-files into the driver's container (the application master's,
# in cluster mode), and EMRFS serves s3:// URIs to Spark's Hadoop file system. Here the step runs for
# real with the pinned pyspark laid out as EMR's /usr/lib/spark (node_spark.py), in Spark's local mode
# (the driver and executors in one JVM, the double's workers as cores), the driver and the executors'
# Python workers under the node's Python (spark.pyspark.python resolved on the node's PATH) with the
# node's packages (spark.yarn.appMasterEnv.* and spark.executorEnv.*, node folders moved under the
# node's). S3 is a mirror folder: each s3:// URI of the arguments and --conf values is fetched (an
# object, or every object of a prefix; a key ending in "/" a folder) and replaced by its file:// path;
# once spark-submit ends, what it added or changed there goes back to S3 (and what it deleted goes),
# hidden files (Hadoop's .crc) and _temporary/ left out, as EMRFS writes none of them.
# Not modelled: YARN's executors in containers of their own (one JVM here: an executor's log is in the
# driver's), dynamic allocation, client deploy mode's console, Spark's own application id (its
# event log is named local-<ms>, not application_<...>).
SPARK_SUBMIT = "spark-submit"
SPARK_VALUE_OPTIONS = ("--master", "--deploy-mode", "--conf", "--files", "--py-files", "--name",
                       "--driver-memory", "--executor-memory", "--executor-cores", "--num-executors")
SPARK_TIMEOUT_SECONDS = 900
APP_MASTER_ENV = "spark.yarn.appMasterEnv."
S3_URI = re.compile(r"s3[an]?://[^\s,#]+")
NOT_MIRRORED = re.compile(r"(^|/)(\.|_temporary/)")


@dataclasses.dataclass
class SparkSubmitArgs:
    """A spark-submit command line, parsed: its options, the application's script and its arguments."""

    options: list  # [(option, value)] in order, --conf included
    script: str
    app_args: list

    def values(self, option):
        return [value for name, value in self.options if name == option]

    @property
    def conf(self):
        return dict(_key_value(value, "--conf") for value in self.values("--conf"))


def parse_spark_submit_args(args):
    """The SparkSubmitArgs of a command-runner.jar step's Args, or StepArgsError as spark-submit refuses."""
    if not args or args[0] != SPARK_SUBMIT:
        raise StepArgsError(f"not a {SPARK_SUBMIT} step: {args[:1]}")
    words, options = list(args[1:]), []
    while words and words[0].startswith("--"):
        option = words.pop(0)
        if option not in SPARK_VALUE_OPTIONS:
            raise StepArgsError(f"spark-submit: unrecognized option {option!r}")
        if not words:
            raise StepArgsError(f"spark-submit: option {option} needs a value")
        options.append((option, words.pop(0)))
    if not words:
        raise StepArgsError("spark-submit: missing the application's script")
    parsed = SparkSubmitArgs(options, words[0], words[1:])
    if parsed.values("--master") not in ([], ["yarn"]):
        raise StepArgsError(f"spark-submit on EMR runs on YARN: --master {parsed.values('--master')}")
    if parsed.values("--deploy-mode") not in ([], ["cluster"], ["client"]):
        raise StepArgsError(f"spark-submit: bad --deploy-mode {parsed.values('--deploy-mode')}")
    return parsed


@dataclasses.dataclass
class SparkRun:
    """What the double ran for one spark-submit step: for tests to look at."""

    submitted: SparkSubmitArgs
    command: list = dataclasses.field(default_factory=list)
    env: dict = dataclasses.field(default_factory=dict)
    returncode: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    seconds: float = 0.0
    uploaded: list = dataclasses.field(default_factory=list)  # s3:// URIs written back from the mirror


class S3Mirror:
    """The s3:// URIs a Spark step names, as a local folder: fetched before it runs, written back after."""

    def __init__(self, s3, root):
        self.s3, self.root = s3, Path(root)
        self.before = {}

    def local(self, uri):
        bucket, key = split_s3_uri(uri)
        return self.root / bucket / key

    def fetch(self, uri):
        """uri's object, or every object under it as a folder, into the mirror; its file:// URI."""
        bucket, key = split_s3_uri(uri)
        if key and not key.endswith("/") and self.s3.exists(uri):
            self._fetch_object(uri)
        else:
            if key.endswith("/"):
                self.local(uri).mkdir(parents=True, exist_ok=True)
            for child, name in self.s3.list(uri):
                if name and not name.endswith("/"):
                    self._fetch_object(child)
                else:
                    self.local(child).mkdir(parents=True, exist_ok=True)
        path = self.local(uri)
        return path.as_uri() + ("/" if uri.endswith("/") else "")

    def _fetch_object(self, uri):
        path = self.local(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.s3.get(uri))
        self.before[path] = _file_state(path)

    def write_back(self):
        """Put what was added or changed under the mirror, delete what was removed; the URIs put."""
        put = []
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).as_posix()
            if not path.is_file() or NOT_MIRRORED.search(relative):
                continue
            if self.before.get(path) != _file_state(path):
                uri = f"s3://{relative}"
                self.s3.put(uri, path.read_bytes())
                put.append(uri)
        for path in self.before:
            if not path.exists():
                self.s3.delete(f"s3://{path.relative_to(self.root).as_posix()}")
        return put


def _file_state(path):
    status = path.stat()
    return status.st_size, status.st_mtime_ns


class SparkSubmitRunner:
    """Runs one spark-submit step on a cluster's node against moto's S3 (see the section's comment)."""

    def __init__(self, submitted, s3, workdir, node, cores, execution, application_id):
        self.submitted, self.s3, self.node, self.cores = submitted, s3, node, cores
        self.workdir, self.execution, self.application_id = Path(workdir), execution, application_id
        self.container = self.workdir / "container"
        self.mirror = S3Mirror(s3, self.workdir / "s3")
        self.run_record = execution.spark = SparkRun(submitted)

    def run(self):
        self.container.mkdir(parents=True)
        spark_submit = self.node.bin / SPARK_SUBMIT
        if not spark_submit.exists():
            write_command(spark_submit, [spark_home() / "bin" / SPARK_SUBMIT])
        command = [SPARK_SUBMIT, "--master", f"local[{self.cores}]", *self._options(), self._localize(
            self.submitted.script, self.container), *map(self._mirrored, self.submitted.app_args)]
        env = self.node.env({"SPARK_HOME": str(spark_home()), **_java_home(), **self._app_master_env()})
        self.run_record.command, self.run_record.env = command, env
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, cwd=self.container, env=env,
                                  timeout=SPARK_TIMEOUT_SECONDS, check=False)
            returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
        except (OSError, subprocess.TimeoutExpired) as error:
            returncode, stdout, stderr = 127, b"", f"cannot run {SPARK_SUBMIT}: {error}\n".encode()
        finally:
            self.run_record.uploaded = self.mirror.write_back()
        record = self.run_record
        record.returncode, record.stdout, record.stderr = returncode, stdout, stderr
        self.run_record.seconds = round(time.monotonic() - started, 3)
        if returncode != 0:
            raise StepFailure(f"org.apache.spark.SparkException: Application {self.application_id} finished "
                              "with failed status")

    def _options(self):
        """The step's options for Spark's local mode: no master or deploy mode (this machine's), --files
        localized into the driver's container, --py-files as local files, node folders and s3:// URIs
        in --conf values moved to the node's and the mirror's."""
        options = []
        for option, value in self.submitted.options:
            if option in ("--master", "--deploy-mode", "--driver-memory", "--executor-memory",
                          "--executor-cores", "--num-executors"):
                continue
            if option == "--files":
                for spec in filter(None, value.split(",")):
                    uri, name = _file_spec(spec)
                    self._localize(uri, self.container, name)
            elif option == "--py-files":
                folder = self.workdir / "py-files"
                local = [self._localize(uri, folder / str(number))
                         for number, uri in enumerate(filter(None, value.split(",")))]
                options += ["--py-files", ",".join(local)]
            elif option == "--conf":
                name, setting = _key_value(value, "--conf")
                if not name.startswith(APP_MASTER_ENV):
                    options += ["--conf", f"{name}={self._mirrored(self.node.path_of(setting))}"]
            else:
                options += [option, value]
        return options

    def _app_master_env(self):
        """The driver's environment from spark.yarn.appMasterEnv.* (cluster mode: the driver is the AM)."""
        return {name[len(APP_MASTER_ENV):]: self.node.path_of(value)
                for name, value in self.submitted.conf.items() if name.startswith(APP_MASTER_ENV)}

    def _localize(self, uri, folder, name=None):
        """An s3:// object fetched into folder (as YARN localizes it), under name or its own; its path."""
        if "/" in (name or "x") or name in ("", ".", ".."):
            raise StepArgsError(f"--files: bad link name {name!r} in {uri}")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (name or uri.rstrip("/").rsplit("/", 1)[-1])
        path.write_bytes(self.s3.get(uri))
        return str(path)

    def _mirrored(self, value):
        return S3_URI.sub(lambda match: self.mirror.fetch(match.group(0)), value)


def _java_home():
    return {"JAVA_HOME": os.environ["JAVA_HOME"]} if os.environ.get("JAVA_HOME") else {}


def spark_client_stderr(execution, started, ended):
    """The step's stderr: spark-submit's YARN client in cluster mode, polling its application to the end."""
    def line(moment, level, logger, message):
        return f"{moment:%y/%m/%d %H:%M:%S} {level} {logger}: {message}"

    application = execution.application_id
    if not application:
        return f"Error: {execution.reason}\n"
    succeeded = execution.state == "COMPLETED"
    lines = [line(started, "INFO", "Client", f"Submitting application {application} to ResourceManager"),
             line(started, "INFO", "YarnClientImpl", f"Submitted application {application}"),
             line(started, "INFO", "Client", f"Application report for {application} (state: RUNNING)"),
             line(ended, "INFO", "Client", f"Application report for {application} (state: FINISHED)"),
             line(ended, "INFO", "Client", ""),
             "\t client token: N/A",
             f"\t diagnostics: {'N/A' if succeeded else 'User application exited with status 1'}",
             f"\t final status: {'SUCCEEDED' if succeeded else 'FAILED'}",
             f"\t tracking URL: http://{NODE_HOST}:20888/proxy/{application}/",
             "\t user: hadoop"]
    if not succeeded:
        lines += [f'Exception in thread "main" org.apache.spark.SparkException: Application {application} '
                  "finished with failed status",
                  "\tat org.apache.spark.deploy.yarn.Client.run(Client.scala:1321)",
                  "\tat org.apache.spark.deploy.SparkSubmit.main(SparkSubmit.scala)"]
    lines.append(line(ended, "INFO", "ShutdownHookManager", "Shutdown hook called"))
    return "\n".join(lines) + "\n"


def spark_step_logs(execution, step_number, args, started):
    """{path under <LogUri>/<cluster id>/: text} of a spark-submit step: the step's own logs, and the
    driver's container (the application master's, in cluster mode) with what the driver wrote."""
    ended = utcnow()
    folder = f"steps/{execution.step_id}"
    logs = {f"{folder}/controller": step_controller(execution, step_number, args, started, ended),
            f"{folder}/stderr": spark_client_stderr(execution, started, ended),
            f"{folder}/stdout": "", f"{folder}/syslog": ""}
    if execution.application_id and execution.spark:
        driver = execution.application_id.replace("application_", "container_", 1) + "_01_000001"
        prefix = f"containers/{execution.application_id}/{driver}"
        logs[f"{prefix}/stderr"] = execution.spark.stderr.decode("utf-8", "replace")
        logs[f"{prefix}/stdout"] = execution.spark.stdout.decode("utf-8", "replace")
    return logs


@dataclasses.dataclass
class NodeLoss:
    """Nodes a step loses as one of its phases (map or reduce) starts: their hosts, and what ends their
    instances in moto (happen)."""

    phase: str
    hosts: set
    happen: object


def instance_host(instance):
    """The host name of a cluster's instance (moto's), as its NodeManager is known to YARN."""
    return instance.ec2_instance.private_dns_name


def task_instances(cluster):
    """The cluster's instances (moto's) whose NodeManagers run tasks: its core and task nodes still up, or
    its master when it has none; [] when moto lists no instances (a cluster made without instance groups)."""
    live = [instance for instance in cluster.ec2_instances if not getattr(instance, "ended", None)]
    workers = [instance for instance in live if instance.instance_group.role in ("CORE", "TASK")]
    return workers or [instance for instance in live if instance.instance_group.role == "MASTER"]


def spot_task_instances(cluster):
    """The cluster's task instances on Spot that are still up (moto's)."""
    return [instance for instance in task_instances(cluster)
            if instance.instance_group.role == "TASK" and instance.instance_group.market == "SPOT"]


class EmrStreamingDouble:
    """Install with `with EmrStreamingDouble().installed():` (or the emr_streaming_double() helper)."""

    def __init__(self, workers=None, work_root=None, keep_workdirs=False):
        # Every Python an EMR 7 node has, found now: one missing fails the test here, saying how to get it.
        self.pythons = node_python_commands()
        self.workers = workers or max(2, os.cpu_count() or 2)
        self.work_root = work_root
        self.keep_workdirs = keep_workdirs
        self.executions = []
        self.bootstraps = []  # BootstrapRun of every action run, in order
        self.polls = 0
        self.nodes = {}  # {cluster id: Node}
        self.bootstrapped = set()  # ids of the clusters whose bootstrap actions have run
        self._server = None
        self.bootstrap_failure = None
        self.bootstrap_fails_before_steps = False
        self.held = lambda step_name: False
        self.spot_interruption = None  # (step number, phase) of interrupt_spot_task_nodes
        self.interrupted = set()  # ids of the clusters whose Spot task nodes were lost
        self._epochs = {}
        self._lock = threading.RLock()

    def fail_bootstrap(self, message="bootstrap action 1 returned a non-zero return code",
                       before_steps=False):
        """Make every cluster's bootstrap fail with EMR's reason message."""
        self.bootstrap_failure, self.bootstrap_fails_before_steps = message, before_steps

    def hold_steps(self, predicate):
        """Keep the steps whose name satisfies predicate RUNNING until their cluster ends."""
        self.held = predicate

    def interrupt_spot_task_nodes(self, step_number=2):
        """EC2 takes back every Spot task node of a cluster as the map phase of its step_number-th streaming
        step starts (mid-run: the steps before it ran on those nodes), once per cluster: the attempts dealt
        to those nodes are KILLED (YARN's ABORTED container, "Container released on a *lost* node") and
        rerun as attempt 1 on the nodes left, and ListInstances shows the instances TERMINATED
        (INSTANCE_FAILURE), their group running none. The map phase, because then no finished map output
        is on a lost node yet (Hadoop would rerun those maps too, which the double does not model). Not
        modelled either: the two-minute notice, EMR provisioning replacements."""
        self.spot_interruption = (step_number, "map")

    @contextlib.contextmanager
    def installed(self):
        with contextlib.ExitStack() as stack:
            stack.callback(self._clean_up)
            patches = (*self._backend_patches(), *_model_patches(), *_instance_patches())
            for owner, name, replacement in patches:
                stack.enter_context(mock.patch.object(owner, name, replacement))
            yield self

    def _clean_up(self):
        if self._server is not None:
            self._server.stop()
            self._server = None
        if not self.keep_workdirs:
            for node in self.nodes.values():
                shutil.rmtree(node.root, ignore_errors=True)

    def node(self, cluster_id):
        """The cluster's node: made at its first use, kept while the double is installed."""
        if cluster_id not in self.nodes:
            root = tempfile.mkdtemp(prefix=f"emr-node-{cluster_id}-", dir=self.work_root)
            self.nodes[cluster_id] = Node.make(root, self.pythons)
        return self.nodes[cluster_id]

    def s3_endpoint(self):
        """The URL of a moto server over this process's backends, for the nodes' `aws` (started once)."""
        if self._server is None:
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._server.start()
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def _backend_patches(self):
        """(owner, name, replacement) for the backend calls the double steers: polls advance its steps."""
        double = self
        original_describe_step = ElasticMapReduceBackend.describe_step
        original_describe_cluster = ElasticMapReduceBackend.describe_cluster
        original_add_steps = ElasticMapReduceBackend.add_job_flow_steps

        def describe_step(backend, cluster_id, step_id):
            double.advance(backend, cluster_id)
            return original_describe_step(backend, cluster_id, step_id)

        def describe_cluster(backend, cluster_id):
            cluster = original_describe_cluster(backend, cluster_id)
            if double.bootstrap_fails_before_steps:
                with double._lock:
                    double._fail_bootstrap_of(cluster)
            return cluster

        def add_job_flow_steps(backend, job_flow_id, steps):
            cluster = backend.clusters.get(job_flow_id)
            if cluster is not None and cluster.state in ENDED_CLUSTER_STATES:
                raise ValidationException(
                    "A job flow that is shutting down, terminated, or finished may not be modified.")
            added = original_add_steps(backend, job_flow_id, steps)
            for step in added:  # EMR queues new steps; the scheduler starts them (moto starts the first)
                if step.start_date_time is None:
                    step.state = "PENDING"
            return added

        return ((ElasticMapReduceBackend, "describe_step", describe_step),
                (ElasticMapReduceBackend, "describe_cluster", describe_cluster),
                (ElasticMapReduceBackend, "add_job_flow_steps", add_job_flow_steps))

    def advance(self, backend, cluster_id):
        """One state transition of the cluster's steps, in order; runs a step on its RUNNING -> end move."""
        with self._lock:
            self.polls += 1
            cluster = backend.clusters.get(cluster_id)
            if cluster is None:
                return
            self._fail_bootstrap_of(cluster)
            if cluster.state not in ENDED_CLUSTER_STATES and cluster.id not in self.bootstrapped:
                self._bootstrap(backend, cluster)
            if cluster.state in ENDED_CLUSTER_STATES:
                self._cancel_pending(cluster.steps, "the cluster was terminated")
                return
            step = next((step for step in cluster.steps if step.state not in TERMINAL_STEP_STATES), None)
            if step is None:
                return
            if step.state == "PENDING" or step.start_date_time is None:
                step.state, step.start_date_time = "RUNNING", utcnow()
                cluster.state = "RUNNING"
                return
            if self.held(step.name):
                return
            self._finish(backend, cluster, step)

    def _fail_bootstrap_of(self, cluster):
        if not self.bootstrap_failure or cluster.state in ENDED_CLUSTER_STATES:
            return
        self._end_bootstrap_failed(cluster, self.bootstrap_failure)

    @staticmethod
    def _end_bootstrap_failed(cluster, message):
        cluster.terminate()
        cluster.state = "TERMINATED_WITH_ERRORS"
        cluster.state_change_reason_code = "BOOTSTRAP_FAILURE"
        master = master_instance_id(cluster)
        cluster.last_state_change_reason = f"On the master instance ({master}), {message}"

    def _bootstrap(self, backend, cluster):
        """Run the cluster's bootstrap actions on its node, in order; the first to fail ends the cluster."""
        self.bootstrapped.add(cluster.id)
        node, s3 = self.node(cluster.id), MotoS3(backend.account_id, backend.region_name)
        env = {"AWS_ENDPOINT_URL": self.s3_endpoint(), "AWS_DEFAULT_REGION": backend.region_name,
               "AWS_REGION": backend.region_name} if cluster.bootstrap_actions else {}
        for number, action in enumerate(cluster.bootstrap_actions, start=1):
            run = run_bootstrap_action(s3, cluster.id, node, number, action, env)
            self.bootstraps.append(run)
            write_bootstrap_logs(s3, cluster, run)
            if run.returncode != 0:
                self._end_bootstrap_failed(cluster, run.failure_reason())
                return

    def _finish(self, backend, cluster, step):
        execution = self.run_step(backend, cluster, step)
        step.state, step.end_date_time = execution.state, utcnow()
        if execution.state == "FAILED":
            step.last_state_change_reason = execution.reason
            step.failure_details = {"Reason": execution.reason.splitlines()[0][:256],
                                    "Message": execution.reason[-10240:],
                                    "LogFile": f"{execution.log_uri}stderr.gz" if execution.log_uri else ""}
            later = cluster.steps[cluster.steps.index(step) + 1:]
            if step.action_on_failure in ("CANCEL_AND_WAIT", "TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
                self._cancel_pending(later, f"cancelled after step {step.id} failed")
            if step.action_on_failure in ("TERMINATE_CLUSTER", "TERMINATE_JOB_FLOW"):
                cluster.terminate()
                cluster.state = "TERMINATED_WITH_ERRORS"
                cluster.last_state_change_reason = f"Shut down as step failed: {step.name}"
                return
        if all(other.state in TERMINAL_STEP_STATES for other in cluster.steps):
            if cluster.keep_job_flow_alive_when_no_steps:
                cluster.state = "WAITING"
            else:
                cluster.terminate()
                cluster.last_state_change_reason = "Steps completed"

    @staticmethod
    def _cancel_pending(steps, reason):
        for step in steps:
            if step.state == "PENDING":
                step.state = "CANCELLED"
                step.last_state_change_reason = reason
            elif step.state == "RUNNING":
                step.state, step.end_date_time = "INTERRUPTED", utcnow()
                step.last_state_change_reason = reason

    def run_step(self, backend, cluster, step):
        """Run one step's hadoop-streaming job; its StepExecution (state COMPLETED or FAILED)."""
        execution = StepExecution(cluster.id, step.id, step.name)
        application_number = sum(done.cluster_id == cluster.id for done in self.executions) + 1
        self.executions.append(execution)
        s3 = MotoS3(backend.account_id, backend.region_name)
        started = utcnow()
        workdir = Path(tempfile.mkdtemp(prefix=f"emr-double-{step.id}-", dir=self.work_root))
        runner = None
        step_number = cluster.steps.index(step) + 1
        try:
            application_id = f"application_{self._cluster_epoch(cluster.id)}_{application_number:04d}"
            runner = self._runner(cluster, list(step.args), s3, workdir, execution, application_id,
                                  step_number)
            runner.run()
            execution.state = "COMPLETED"
        except (StepArgsError, StepFailure) as error:
            execution.state, execution.reason = "FAILED", str(error)
        except Exception:  # a bug of the double itself: fail the step loudly rather than break moto
            execution.state = "FAILED"
            execution.reason = "internal error of the EMR test double\n" + traceback.format_exc()
        finally:
            if not self.keep_workdirs:
                shutil.rmtree(workdir, ignore_errors=True)
        if runner and (execution.tasks or execution.spark and execution.spark.command):
            execution.application_id = runner.application_id  # the client submitted an application
        self._write_logs(s3, cluster, execution, runner, step_number, list(step.args), started)
        return execution

    def _runner(self, cluster, args, s3, workdir, execution, application_id, step_number=1):
        """A step's runner: Hadoop streaming's, or spark-submit's on a cluster that has Spark."""
        if args[:1] == [SPARK_SUBMIT]:
            if "Spark" not in {application.name for application in cluster.applications}:
                raise StepFailure(f'Cannot run program "{SPARK_SUBMIT}": error=2, No such file or directory '
                                  "(the cluster was created without the Spark application)")
            return SparkSubmitRunner(parse_spark_submit_args(args), s3, workdir, self.node(cluster.id),
                                     self.workers, execution, application_id)
        execution.job = parse_streaming_args(args)
        hosts = [instance_host(instance) for instance in task_instances(cluster)]
        return StreamingRunner(execution.job, s3, workdir, self.node(cluster.id), self.workers, execution,
                               application_id, hosts, self._node_loss(cluster, step_number))

    def _node_loss(self, cluster, step_number):
        """The NodeLoss of the step, when interrupt_spot_task_nodes names it and its cluster has Spot task
        nodes still up; None otherwise."""
        if not self.spot_interruption or cluster.id in self.interrupted:
            return None
        interrupted_step, phase = self.spot_interruption
        lost = spot_task_instances(cluster) if step_number == interrupted_step else []
        if not lost:
            return None

        def happen():
            self.interrupted.add(cluster.id)
            for instance in lost:
                end_instance(instance, SPOT_INTERRUPTED)
                group = instance.instance_group
                group.lost_instances = getattr(group, "lost_instances", 0) + 1

        return NodeLoss(phase, {instance_host(instance) for instance in lost}, happen)

    def _cluster_epoch(self, cluster_id):
        """The YARN ResourceManager's start time in ms, the first part of the cluster's application ids."""
        return self._epochs.setdefault(cluster_id, int(time.time() * 1000))

    @staticmethod
    def _write_logs(s3, cluster, execution, runner, step_number, args, started):
        if args[:1] == [SPARK_SUBMIT]:
            execution.logs = spark_step_logs(execution, step_number, args, started)
        else:
            groups = runner.counter_groups() if runner and execution.tasks else {}
            execution.counters = {f"{group}: {name}": amount
                                  for group, counters in groups.items() for name, amount in counters.items()}
            execution.logs = emr_step_logs(execution, step_number, args, groups, started)
        if not cluster.log_uri:
            return
        folder = f"{cluster.log_uri.rstrip('/')}/{cluster.id}"
        execution.log_uri = f"{folder}/steps/{execution.step_id}/"
        try:
            for path, text in execution.logs.items():
                s3.put(f"{folder}/{path}.gz", gzip.compress(text.encode()))
        except (StepFailure, StepArgsError):  # a log bucket that is missing: EMR logs nothing either
            execution.log_uri = None

    def execution(self, step_id):
        return next(execution for execution in self.executions if execution.step_id == step_id)


def single_node_cluster(emr, name, log_uri=None):
    """A one-node EMR 7 cluster that waits for steps, created with the boto3 EMR client emr; its id."""
    logs = {"LogUri": log_uri} if log_uri else {}
    return emr.run_job_flow(
        Name=name, ReleaseLabel="emr-7.9.0", JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        **logs)["JobFlowId"]


@contextlib.contextmanager
def emr_streaming_double(**kwargs):
    """Install the double for the duration of the block; yields it (its .executions record what ran)."""
    double = EmrStreamingDouble(**kwargs)
    with double.installed():
        yield double


def spot_task_cluster(emr, name, log_uri=None, core_nodes=1, spot_task_nodes=2):
    """An EMR 7 cluster of m5.xlarge that waits for steps: a master and core_nodes core nodes on-demand,
    spot_task_nodes task nodes on Spot, made with the boto3 EMR client emr; its id."""
    logs = {"LogUri": log_uri} if log_uri else {}

    def group(role, count, market):
        bid = {"BidPrice": "0.192"} if market == "SPOT" else {}
        return {"InstanceRole": role, "InstanceType": "m5.xlarge", "InstanceCount": count, "Market": market,
                **bid}

    return emr.run_job_flow(
        Name=name, ReleaseLabel="emr-7.9.0", JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        Instances={"KeepJobFlowAliveWhenNoSteps": True, "InstanceGroups": [
            group("MASTER", 1, "ON_DEMAND"), group("CORE", core_nodes, "ON_DEMAND"),
            group("TASK", spot_task_nodes, "SPOT")]},
        **logs)["JobFlowId"]

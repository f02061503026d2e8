"""A run's task durations by stage and phase (Hadoop's job history, the local runner); its one-run prediction.

On EMR, Hadoop's MapReduce application master writes one job history file per job (.jhist): a line
"Avro-Json", the Event schema, then one Avro-JSON record per event, {"type": "TASK_STARTED", "event":
{"org.apache.hadoop.mapreduce.jobhistory.TaskStarted": {"taskid": ..., "startTime": ...}}}, times in
ms since the epoch (the schema is Events.avpr in hadoop-mapreduce-client-core; mrjob's
logs/history.py reads the same records for counters and errors). Locally, the pipeline times each
task of mrjob's local runner itself (local_run.record_task_times).
"""
import dataclasses
import json
import re
import time
from pathlib import Path

from movielens_emr.sizing.durations import time_column

PHASES = ("mapper", "reducer")
HISTORY_SOURCE = "job history"
LOCAL_SOURCE = "local task times"
# The phases (indexes into PHASES) whose task count follows the task slots, by source: on EMR the
# reduce tasks (the pipeline asks for one per slot; map tasks follow the input's splits), locally
# both (mrjob's local runner cuts map and reduce input by --num-cores).
SPLIT_PHASES = {HISTORY_SOURCE: (1,), LOCAL_SOURCE: (0, 1)}
# A task's span: its first start (task or attempt) to its successful finish.
START_EVENTS = ("TASK_STARTED", "MAP_ATTEMPT_STARTED", "REDUCE_ATTEMPT_STARTED")
FINISH_EVENTS = {"TASK_FINISHED": "status", "MAP_ATTEMPT_FINISHED": "taskStatus",
                 "REDUCE_ATTEMPT_FINISHED": "taskStatus"}
# An attempt YARN took its container from (a lost node's, a preempted one): not a failure, it is rerun.
KILLED_EVENTS = ("MAP_ATTEMPT_KILLED", "REDUCE_ATTEMPT_KILLED")
TASK_ID = re.compile(r"task_\d+_\d+_([mr])_\d+")
TASK_PHASES = {"m": "mapper", "r": "reducer"}
# A done job's history file: <job id>-<submit time>-<user>-<job name>-...-<status>-<queue>-<start>.jhist,
# gzipped when EMR archives it.
HISTORY_FILE = re.compile(r"(job_\d+_\d+)-[^/]*\.jhist(\.gz)?")
LOCAL_RECORD = re.compile(r"(\d+)-(mapper|reducer)-(\d+)\.json")


@dataclasses.dataclass(frozen=True)
class TaskTime:
    """One task: its phase (mapper or reducer), id, start (seconds since the epoch) and duration."""

    phase: str
    task: str
    started: float
    seconds: float


# Job history (EMR) ---------------------------------------------------------------------------------

def history_events(lines):
    """(event type, event fields) of each record of a .jhist file; the header and bad lines skipped."""
    for line in lines:
        if not line.startswith("{"):
            continue  # "Avro-Json", an empty line
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short: a file still being written
        event = record.get("event") if isinstance(record, dict) else None
        if isinstance(event, dict):  # the union's branch: {"org.apache...TaskStarted": {fields}}
            for fields in event.values():
                if isinstance(fields, dict):
                    yield record.get("type"), fields


def parse_job_history(lines):
    """The successful map and reduce tasks of one job history file, in start order.

    A task runs from its first start (TASK_STARTED, or an attempt's) to its successful finish
    (TASK_FINISHED, or the successful attempt's): a retried task's span includes its failed
    attempts, which held a slot too. A task with no successful finish is left out.
    """
    starts, finishes = {}, {}
    for kind, fields in history_events(lines):
        task = fields.get("taskid")
        if not isinstance(task, str):
            continue
        if kind in START_EVENTS and _is_time(fields.get("startTime")):
            starts[task] = min(starts.get(task, fields["startTime"]), fields["startTime"])
        elif (kind in FINISH_EVENTS and fields.get(FINISH_EVENTS[kind]) == "SUCCEEDED"
              and _is_time(fields.get("finishTime"))):
            finishes[task] = max(finishes.get(task, fields["finishTime"]), fields["finishTime"])
    tasks = [TaskTime(task_phase(task), task, starts[task] / 1000, (finishes[task] - starts[task]) / 1000)
             for task in starts if task in finishes and task_phase(task)]
    return sorted(tasks, key=lambda task: (task.started, task.task))


def killed_attempts(lines):
    """The attempt ids a job history file records as killed (KILLED_EVENTS), in its order: on EMR, the
    attempts that ran on a node the cluster lost (a Spot node reclaimed), which Hadoop reran elsewhere."""
    return [fields.get("attemptId") for kind, fields in history_events(lines) if kind in KILLED_EVENTS]


def _is_time(value):
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def task_phase(task_id):
    """mapper or reducer from a Hadoop task id (task_<cluster>_<job>_m_000000); None for anything else."""
    match = TASK_ID.fullmatch(task_id)
    return TASK_PHASES[match.group(1)] if match else None


def history_file_keys(keys, job_id):
    """The keys, among keys, of job_id's history files (not its _conf.xml), in name order."""
    return sorted(key for key in keys
                  if (match := HISTORY_FILE.fullmatch(key.rsplit("/", 1)[-1])) and match.group(1) == job_id)


def job_id_of(application_id):
    """The MapReduce job id of a YARN application id: application_1_0001 -> job_1_0001."""
    return application_id.replace("application_", "job_", 1) if application_id else None


# The local runner ----------------------------------------------------------------------------------

def local_record_path(folder, step_num, phase, task_num):
    """Where timed_task records one local task: <stage>-<phase>-<task>.json in folder."""
    return Path(folder) / f"{step_num + 1}-{phase}-{task_num:05d}.json"


def timed_task(func, record_path):
    """Run one task function of mrjob's local runner, then write its start and duration to record_path.

    Runs in the local runner's pool process; a failed task records nothing (the run fails anyway).
    """
    started, clock = time.time(), time.monotonic()
    func()
    Path(record_path).write_text(json.dumps({"started": started, "seconds": time.monotonic() - clock}))


def read_local_task_times(folder, stages):
    """Per stage (1..stages), the tasks recorded in folder by timed_task in start order; None for a stage
    without any."""
    found = {stage: [] for stage in range(1, stages + 1)}
    for path in sorted(Path(folder).glob("*.json")):
        match = LOCAL_RECORD.fullmatch(path.name)
        if not match or int(match.group(1)) not in found:
            continue
        record = json.loads(path.read_text())
        found[int(match.group(1))].append(
            TaskTime(match.group(2), f"{match.group(2)} {int(match.group(3))}", record["started"],
                     record["seconds"]))
    return [sorted(tasks, key=lambda task: (task.started, task.task)) or None for tasks in found.values()]


# metrics.json ---------------------------------------------------------------------------------------

def task_times_record(source, stage_tasks, read_from=None, missing=None, killed=None):
    """metrics.json's task_times: per stage, each phase's task count, total and longest seconds, and
    the durations in start order (task_seconds); None for a stage whose tasks are unknown.

    stage_tasks: per stage a list of TaskTime, or None. source is None when no stage's are known.
    killed: per stage the number of killed attempts (killed_attempts), None where unknown; left out when
    the source does not record them (the local runner).
    """
    stages = [None if tasks is None else
              {phase: _phase_summary([task.seconds for task in tasks if task.phase == phase])
               for phase in PHASES}
              for tasks in stage_tasks]
    seconds = [None if tasks is None else
               {phase: [round(task.seconds, 3) for task in tasks if task.phase == phase] for phase in PHASES}
               for tasks in stage_tasks]
    known = any(stage is not None for stage in stages)
    record = {"source": source if known else None, "missing": missing, "read_from": read_from,
              "stages": stages, "task_seconds": seconds}
    if killed is not None:
        record["killed_attempts"] = killed
    return record


def unknown_task_times(stages, missing):
    """task_times when none are known, saying why."""
    return task_times_record(None, [None] * stages, missing=missing)


def _phase_summary(seconds):
    return {"tasks": len(seconds), "total_seconds": round(sum(seconds), 3),
            "max_seconds": round(max(seconds), 3) if seconds else 0.0}


def one_run_prediction(task_times, timings, node_count, slots_by_node_count, price_per_node_hour=None):
    """metrics.json's one_run_prediction: this run's stages' task waves simulated on the task slots of
    other node counts (sizing.one_run_predictions); its predictions empty, and `missing` saying why,
    when the run's task times or timings are incomplete.

    slots_by_node_count: {node count: task slots}, this run's node count among them.
    """
    # Imported here: sizing imports scipy (about a second), and the local job's process, which times
    # its tasks with this module, never predicts.
    from movielens_emr.sizing.model import one_run_predictions

    record = {"from_node_count": node_count, "from_task_slots": slots_by_node_count[node_count],
              "missing": _why_no_prediction(task_times, timings), "predictions": []}
    if record["missing"] is None:
        phases = [[stage[phase] for phase in PHASES] for stage in task_times["task_seconds"]]
        record["predictions"] = one_run_predictions(
            timings["cluster_seconds"], timings["stage_seconds"], phases, record["from_task_slots"],
            slots_by_node_count, price_per_node_hour, SPLIT_PHASES[task_times["source"]])
    return record


def _why_no_prediction(task_times, timings):
    stage_seconds = timings.get("stage_seconds") or []
    if timings.get("cluster_seconds") is None or not stage_seconds or None in stage_seconds:
        return "the run's cluster or stage times are unknown"
    stages = task_times.get("task_seconds") or []
    if len(stages) != len(stage_seconds):
        return f"task times of {len(stages)} stages for a run of {len(stage_seconds)}"
    unknown = [number for number, stage in enumerate(stages, start=1) if stage is None]
    return f"the task times of stages {unknown} are unknown" if unknown else None


def task_times_lines(task_times):
    """Table rows (name, text) of task_times, for the metrics table."""
    head = task_times["source"] or f"unknown: {task_times['missing']}"
    if task_times["source"] and task_times["missing"]:
        head += f" ({task_times['missing']})"
    rows = [("task_times", head)]
    for number, stage in enumerate(task_times["stages"], start=1):
        text = "unknown" if stage is None else "; ".join(
            f"{stage[phase]['tasks']} {phase} tasks, {stage[phase]['total_seconds']:,.1f} s "
            f"(longest {stage[phase]['max_seconds']:,.1f} s)" for phase in PHASES)
        rows.append((f"task_times[{number}]", text))
    return rows


def one_run_prediction_lines(prediction):
    """Table rows (name, text) of one_run_prediction: cluster time by node count, on one row, in seconds when
    the shortest is under two minutes (durations.time_column), else in minutes."""
    origin = f"from {prediction['from_node_count']} nodes ({prediction['from_task_slots']} task slots)"
    if prediction["missing"]:
        return [("one_run_prediction", f"none: {prediction['missing']}")]
    options = prediction["predictions"]
    unit, shown = time_column([option["cluster_seconds"] for option in options])
    times = ", ".join(f"{option['node_count']}: {shown(option['cluster_seconds'])}" for option in options)
    return [("one_run_prediction", f"{origin}; cluster {unit} by nodes: {times}")]

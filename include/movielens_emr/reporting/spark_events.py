"""A Spark application's task times, from its event log (spark.eventLog.dir: one JSON event a line, as
Spark's EventLoggingListener writes them; "Launch Time" and "Finish Time" in ms since the epoch)."""
import json

SOURCE = "spark event log"
# Spark names its tasks by what they end in: a shuffle's map side, or a result sent to the driver.
TASK_TYPES = ("ShuffleMapTask", "ResultTask")


def events(lines):
    """The events of an event log's lines; a line cut short (a log still being written) is skipped."""
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "Event" in event:
            yield event


def spark_task_times(lines, read_from=None):
    """metrics.json's spark_task_times: the application's jobs, stages and tasks, each task type's count,
    total and longest seconds (launch to finish, of every attempt, failed ones too: they held a core)."""
    jobs, stages, executors, application = 0, set(), set(), None
    tasks = {task_type: [] for task_type in TASK_TYPES}
    failed = 0
    for event in events(lines):
        kind = event["Event"]
        if kind == "SparkListenerApplicationStart":
            application = event.get("App ID")
        elif kind == "SparkListenerJobStart":
            jobs += 1
        elif kind == "SparkListenerStageCompleted":
            info = event.get("Stage Info") or {}
            stages.add((info.get("Stage ID"), info.get("Stage Attempt ID")))
        elif kind == "SparkListenerTaskEnd":
            info = event.get("Task Info") or {}
            seconds = (info.get("Finish Time", 0) - info.get("Launch Time", 0)) / 1000
            tasks.setdefault(event.get("Task Type"), []).append(max(seconds, 0.0))
            executors.add(info.get("Executor ID"))
            failed += bool(info.get("Failed"))
    return {"source": SOURCE, "read_from": read_from, "application_id": application, "jobs": jobs,
            "stages": len(stages), "executors": len(executors), "failed_tasks": failed,
            "task_types": {task_type: _summary(seconds) for task_type, seconds in tasks.items()}}


def _summary(seconds):
    return {"tasks": len(seconds), "total_seconds": round(sum(seconds), 3),
            "max_seconds": round(max(seconds), 3) if seconds else 0.0}


def unknown_spark_task_times(missing):
    """spark_task_times when no event log was found, saying why."""
    return {"source": None, "missing": missing}

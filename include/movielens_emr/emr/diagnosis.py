"""Why a run's stages failed: the failed stage, EMR's reason, its task's error and logs, a cluster fault."""
import gzip
import re

# The task that writes the full diagnosis once the cluster has ended (the stage wait only says where).
DIAGNOSIS_TASK_ID = "diagnose_failure"
STEP_FAILURE_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")
ENDED_CLUSTER_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
# Cluster ends that are not a fault: asked for, or the work was done.
ORDINARY_END_CODES = ("USER_REQUEST", "ALL_STEPS_COMPLETED")
STDERR_TAIL_LINES = 40
COUNTERS_HEADER = re.compile(r"(?:^|\s)Counters: \d+\s*$")


def first_failed_stage(steps):
    """(stage number, step) of the first failed step, in stage order; a cancelled one only if none failed."""
    failed = [(number, step) for number, step in enumerate(steps, start=1)
              if step["Status"]["State"] in STEP_FAILURE_STATES]
    hard = [(number, step) for number, step in failed if step["Status"]["State"] == "FAILED"]
    return (hard or failed or [(None, None)])[0]


def failure_reason(step):
    """EMR's own words for a step's failure: FailureDetails when present, else the state change reason."""
    status = step["Status"]
    details = status.get("FailureDetails") or {}
    parts = [details.get("Reason"), details.get("Message"),
             (status.get("StateChangeReason") or {}).get("Message")]
    text = "; ".join(dict.fromkeys(part for part in parts if part))
    return text or f"the step ended {status['State']} without a reason"


def cluster_fault(cluster):
    """EMR's account of a cluster ended by a fault (a failed bootstrap, lost instances...); else None."""
    status = cluster["Status"]
    reason = status.get("StateChangeReason") or {}
    if status["State"] not in ENDED_CLUSTER_STATES or reason.get("Code") in ORDINARY_END_CODES:
        return None
    if status["State"] != "TERMINATED_WITH_ERRORS" and not reason.get("Code"):
        return None  # terminated without a recorded cause: the pipeline's own teardown, say
    words = ": ".join(part for part in (reason.get("Code"), reason.get("Message")) if part)
    return f"cluster {cluster['Id']} ended {status['State']}" + (f": {words}" if words else "")


def stderr_tail(gzipped_log, lines=STDERR_TAIL_LINES):
    """The last lines of a step's gzipped stderr log, without the hadoop client's counter block."""
    text = gzip.decompress(gzipped_log).decode("utf-8", errors="replace")
    return "\n".join(without_counter_block(text.splitlines())[-lines:])


def without_counter_block(lines):
    """A job client's log lines less its counter block ("Counters: N" and the indented lines after it)."""
    kept, in_block = [], False
    for line in lines:
        if COUNTERS_HEADER.search(line):
            in_block = True
        elif not (in_block and line[:1].isspace()):
            in_block = False
            kept.append(line)
    return kept


def stages_completed(steps):
    """Whether every stage's step completed: then no stage failed, and there is nothing to diagnose."""
    return bool(steps) and all(step["Status"]["State"] == "COMPLETED" for step in steps)


def stage_states(steps):
    return ", ".join(f"stage {number}: {step['Status']['State']}" for number, step in enumerate(steps, 1))


def failure_headline(steps, cluster=None, node_log_location="", wait_error=None):
    """What EMR's descriptions alone say of a failure, as lines: the failed stage and EMR's reason (or,
    with none failed, the wait's error and each stage's state), then the cluster's fault if it had one."""
    number, step = first_failed_stage(steps)
    fault = cluster_fault(cluster) if cluster else None
    if step is None:
        ended = f" ({type(wait_error).__name__}: {wait_error})" if wait_error else ""
        lines = [f"the wait for the stages failed{ended} with no stage failed on EMR: {stage_states(steps)}"]
    else:
        lines = [f"stage {number} of {len(steps)} ({step['Name']}) ended {step['Status']['State']}: "
                 f"{failure_reason(step)}"]
    if fault:
        lines.append(f"{fault}; its bootstrap and node logs are under {node_log_location}")
    return lines


def stage_failure_summary(steps, cluster=None, node_log_location="", wait_error=None, metrics_location=""):
    """The stage wait's account of its failure, from describe_step and describe_cluster alone (no log is
    waited for: the cluster is terminated at once), and where the full diagnosis follows."""
    return "\n".join([
        *failure_headline(steps, cluster, node_log_location, wait_error),
        f"the full diagnosis follows once the cluster has ended: in the log of {DIAGNOSIS_TASK_ID} and "
        f'under "failure" in {metrics_location}'])


def stage_failure_report(steps, stderr_of_failed=None, log_location="", cluster=None, node_log_location="",
                         wait_error=None, task_traceback=None, container_log_location="",
                         logs_unreadable=None):
    """The full account of why the stages failed, for the diagnosis' log and metrics.json.

    steps: describe_step results in stage order; stderr_of_failed: the tail of the failed step's
    stderr (the hadoop client's output), or None if it was not delivered; cluster: its
    describe_cluster result; wait_error: the exception that ended the wait (a sensor timeout, say);
    task_traceback: the failed task's own error from its container log (emr_logs.task_failure_traceback),
    or None if it was not found under container_log_location; logs_unreadable: why the logs could
    not be read at all, if so.
    """
    _, step = first_failed_stage(steps)
    lines = failure_headline(steps, cluster, node_log_location, wait_error)
    if step is not None and step["Status"]["State"] == "FAILED":
        if logs_unreadable:
            lines.append(f"its logs could not be read ({logs_unreadable}); look under {log_location} and "
                         f"{container_log_location}")
        else:
            lines += _failed_step_logs(stderr_of_failed, log_location, task_traceback, container_log_location)
    return "\n".join(lines)


def _failed_step_logs(stderr_of_failed, log_location, task_traceback, container_log_location):
    if stderr_of_failed is None:
        return [f"its stderr had not reached {log_location} in time; look there for the task logs"]
    if task_traceback:
        lines = ["the failed task's own error, from its container's log:", task_traceback]
    else:
        where = f" under {container_log_location}" if container_log_location else ""
        lines = [f"no failed task's log was found in the containers' logs{where} in time (EMR delivers them "
                 "minutes after the step); look there later"]
    return lines + [f"last lines of its stderr ({log_location}):", stderr_of_failed]


def failure_record(steps, step_ids, cluster, report):
    """metrics.json's "failure": the failed stage (None if none failed), its step id, state and EMR's
    reason, each stage's state, the cluster's fault (None without one) and the full report."""
    number, step = first_failed_stage(steps)
    return {
        "stage": number, "step_id": step_ids[number - 1] if number else None,
        "state": step["Status"]["State"] if step else None, "reason": failure_reason(step) if step else None,
        "stage_states": [stage["Status"]["State"] for stage in steps],
        "cluster_fault": cluster_fault(cluster) if cluster else None,
        "report": report,
    }

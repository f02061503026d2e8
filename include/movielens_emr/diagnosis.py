"""Why a run's stages failed: the first failed stage, EMR's reason, and the tail of that step's stderr."""
import gzip

STEP_FAILURE_STATES = ("FAILED", "CANCELLED", "INTERRUPTED")
STDERR_TAIL_LINES = 40


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
    parts = [details.get("Reason"), details.get("Message"), (status.get("StateChangeReason") or {}).get("Message")]
    text = "; ".join(dict.fromkeys(part for part in parts if part))
    return text or f"the step ended {status['State']} without a reason"


def stderr_tail(gzipped_log, lines=STDERR_TAIL_LINES):
    """The last lines of a step's gzipped stderr log."""
    text = gzip.decompress(gzipped_log).decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def stage_failure_report(steps, stderr_of_failed=None, log_location=""):
    """A readable account of the failure for the task log."""
    number, step = first_failed_stage(steps)
    if step is None:
        return "no stage failed: " + ", ".join(f"stage {n}: {s['Status']['State']}" for n, s in enumerate(steps, 1))
    lines = [f"stage {number} of {len(steps)} ({step['Name']}) ended {step['Status']['State']}: {failure_reason(step)}"]
    if stderr_of_failed is not None:
        lines += [f"last lines of its stderr ({log_location}):", stderr_of_failed]
    else:
        lines.append(f"its stderr had not reached {log_location} in time; look there for the task logs")
    return "\n".join(lines)

"""The stages' progress as the task log shows it: one line when a stage starts and one when it ends."""
STEP_END_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED"})


def stage_label(step):
    """A step's name without the run id the pipeline appends: "stage 2 of 3: pair statistics ..."."""
    return step["Name"].rsplit(" [", 1)[0]


def progress_lines(seen, steps, now):
    """Lines for the stages whose state changed since `seen` ({step id: state}, updated in place): a started
    stage with how long it has run, an ended one with its state and duration (EMR's timeline)."""
    lines = []
    for step in steps:
        state = step["Status"]["State"]
        if seen.get(step["Id"]) == state:
            continue
        seen[step["Id"]] = state
        timeline = step["Status"].get("Timeline") or {}
        started, ended = timeline.get("StartDateTime"), timeline.get("EndDateTime")
        if state in STEP_END_STATES:
            took = f" in {_duration(ended - started)}" if started and ended else ""
            lines.append(f"{stage_label(step)}: {state}{took}")
        elif state == "RUNNING":
            since = f", started {_duration(now - started)} ago" if started else ""
            lines.append(f"{stage_label(step)}: RUNNING{since}")
        else:
            lines.append(f"{stage_label(step)}: {state}")
    return lines


def _duration(delta):
    seconds = max(int(delta.total_seconds()), 0)
    return f"{seconds // 60} m {seconds % 60} s" if seconds >= 60 else f"{seconds} s"

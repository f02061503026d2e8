"""Durations as the plans and the metrics table print them: seconds when short, minutes otherwise (no heavy
imports: the local job's own process reads them)."""

# Below this many seconds a duration reads better in seconds ("42 s") than in minutes ("0.7 min").
SECONDS_BELOW = 120


def duration(seconds):
    """A duration as the plans print it: whole seconds when short, else minutes to one decimal."""
    return f"{seconds:.0f} s" if seconds < SECONDS_BELOW else f"{seconds / 60:.1f} min"


def time_column(all_seconds):
    """A table's time column as (header, format of one value): seconds when its shortest time is under
    SECONDS_BELOW (a column of "0.7" minutes says little), minutes otherwise. Both headers are 7 wide."""
    if all_seconds and min(all_seconds) < SECONDS_BELOW:
        return "seconds", lambda seconds: f"{seconds:.0f}"
    return "minutes", lambda seconds: f"{seconds / 60:.1f}"

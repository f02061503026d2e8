"""Why a failed `airflow dags test` run failed, from its log: the exception that ends each traceback."""
import re
import sys
from pathlib import Path

TRACEBACK = "Traceback (most recent call last):"
# The line that ends a traceback: a class name (dotted or not), then its message if it has one.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*)(?::(?P<message>.*))?$")
TAIL_LINES = 5


def failures(log_text):
    """The last line of every Python traceback in the log, in order, each exception once.

    Any class name counts (TooManyBadLines, LocalJobFailed, ...). An exception printed twice, once by
    its bare name and once with its module (a job's traceback and Airflow's), is kept as first seen.
    """
    found, seen = [], set()
    for line in _traceback_ends(log_text.splitlines()):
        match = EXCEPTION_LINE.match(line)
        key = (match["name"], (match["message"] or "").strip()) if match else (line, "")
        if key not in seen:
            seen.add(key)
            found.append(line)
    return found


def _traceback_ends(lines):
    """The first unindented line after each traceback's frames (where Python writes the exception)."""
    inside = False
    for line in lines:
        if line.startswith(TRACEBACK):
            inside = True
        elif inside and line.strip() and not line[0].isspace():
            inside = False
            yield line.rstrip()


def summary(log_path):
    """The text run_local.sh shows for a failed run: its exceptions, or the log's last lines."""
    text = Path(log_path).read_text(errors="replace")
    shown = failures(text)
    if not shown:
        shown = ["(no Python traceback in the log; its last lines:)", *text.splitlines()[-TAIL_LINES:]]
    return "\n".join(["movielens_similarity FAILED:", *("  " + line for line in shown),
                      f"full log: {log_path}"])


if __name__ == "__main__":
    print(summary(sys.argv[1]))

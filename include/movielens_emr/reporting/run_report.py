"""What a command-line run produced: the newest run's metrics and results, or the errors of a failed run."""
import argparse
import gzip
import itertools
import json
import re
import sys
from pathlib import Path

from movielens_emr.reporting.metrics import metrics_table, records_failure

TRACEBACK = "Traceback (most recent call last):"
# The line that ends a traceback: a class name (dotted or not), then its message if it has one.
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*)(?::(?P<message>.*))?$")
TAIL_LINES = 5


def newest_run(storage_root):
    """The run folder whose metrics.json is newest of those of successful runs, or None."""
    runs = sorted(Path(storage_root).expanduser().glob("runs/*/metrics.json"),
                  key=lambda path: path.stat().st_mtime)
    succeeded = [path for path in runs if not records_failure(json.loads(path.read_text()))]
    return succeeded[-1].parent if succeeded else None


def failure_lines(log_text):
    """The last line of every Python traceback in the log, in order, each exception once.

    Any class name counts (TooManyBadLines, LocalJobFailed, ...), not only ...Error. An exception printed
    twice, once by its bare name and once with its module (a job's traceback and Airflow's), is kept as
    first seen.
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


def report(storage_root, log_path, status):
    """The text to show after a run; `status` is the exit status of `airflow dags test`. A failed run's:
    the exception ending each traceback in its log, else the log's last lines."""
    if status != 0:
        text = Path(log_path).read_text(errors="replace")
        shown = failure_lines(text) or [
            "(no Python traceback in the log; its last lines:)", *text.splitlines()[-TAIL_LINES:]]
        return "\n".join(["movielens_similarity FAILED:", *("  " + line for line in shown),
                          f"full log: {log_path}"])
    folder = newest_run(storage_root)
    if folder is None:
        return f"movielens_similarity succeeded, but no metrics.json is under {storage_root}/runs"
    metrics = json.loads((folder / "metrics.json").read_text())
    results = folder / "results" / "similarities.csv"
    if not results.exists() and results.with_name("similarities.csv.gz").exists():
        results = results.with_name("similarities.csv.gz")  # collect_results compresses a large CSV
    head = first_lines(results, 6) if results.exists() else []
    return "\n".join([f"movielens_similarity succeeded: {folder}", "", metrics_table(metrics), "",
                      f"{results} (first rows):", *head, f"log: {log_path}"])


def first_lines(path, count):
    """The first `count` lines of a text file, gzip-compressed if its name ends in .gz, read no further."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as text:
        return [line.rstrip("\n") for line in itertools.islice(text, count)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("storage_root")
    parser.add_argument("log")
    parser.add_argument("status", type=int)
    args = parser.parse_args(argv)
    print(report(args.storage_root, args.log, args.status))
    return 0


if __name__ == "__main__":
    sys.exit(main())

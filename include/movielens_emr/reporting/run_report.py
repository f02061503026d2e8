"""What a command-line run produced: the newest run's metrics and results, or the errors of a failed run."""
import argparse
import gzip
import itertools
import json
import re
import sys
from pathlib import Path

from movielens_emr.reporting.metrics import metrics_table, records_failure

EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Mismatch|InvalidParam|NotFound)\w*: .+")


def newest_run(storage_root):
    """The run folder whose metrics.json is newest of those of successful runs, or None."""
    runs = sorted(Path(storage_root).expanduser().glob("runs/*/metrics.json"),
                  key=lambda path: path.stat().st_mtime)
    succeeded = [path for path in runs if not records_failure(json.loads(path.read_text()))]
    return succeeded[-1].parent if succeeded else None


def failure_lines(log_text):
    """The exception lines of a failed run's log, each once, in order."""
    seen = []
    for line in log_text.splitlines():
        if EXCEPTION_LINE.match(line.strip()) and line.strip() not in seen:
            seen.append(line.strip())
    return seen


def report(storage_root, log_path, status):
    """The text to show after a run; `status` is the exit status of `airflow dags test`."""
    if status != 0:
        errors = failure_lines(Path(log_path).read_text(errors="replace"))
        shown = errors or ["(no exception in the log)"]
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

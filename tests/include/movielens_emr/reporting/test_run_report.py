"""The summary printed after a command-line run."""
import gzip
import json

import pytest

from movielens_emr.reporting.run_report import failure_lines, newest_run, report

# The job's and the pipeline's own exceptions, none of whose names ends in Error or Exception.
PROJECT_EXCEPTIONS = ["jobs.movie_similarities.TooManyBadLines", "movie_similarities.ItemsFileUnusable",
                      "movie_similarities.BadBlockPlan", "movielens_emr.local.runner.LocalJobFailed",
                      "movielens_emr.data.storage.RunFolderTaken",
                      "movielens_emr.data.datasets.UnknownDataset",
                      "movielens_emr.data.staging.StagedDatasetCorrupt"]


def traceback(exception_line, frame="  File \"task.py\", line 1, in run\n    raise Failure()\n"):
    return f"Traceback (most recent call last):\n{frame}{exception_line}\n"


@pytest.mark.parametrize("exception_line", [f"{name}: it broke" for name in PROJECT_EXCEPTIONS]
                         + ["KeyboardInterrupt"])  # a class printed without a message
def test_the_exception_ending_a_traceback_is_found_whatever_its_name(exception_line):
    log = f"2026-01-01T00:00:00Z [info     ] starting\n{traceback(exception_line)}2026-01-01T00:00:01Z done\n"
    assert failure_lines(log) == [exception_line]


def test_an_exception_printed_bare_and_with_its_module_is_shown_once():
    log = traceback("TooManyBadLines: 5 of 7 lines are bad") + traceback(
        "movie_similarities.TooManyBadLines: 5 of 7 lines are bad")
    assert failure_lines(log) == ["TooManyBadLines: 5 of 7 lines are bad"]


def test_a_wrapping_exception_comes_before_the_job_lines_it_quotes():
    log = traceback("movielens_emr.local.runner.LocalJobFailed: the job's process exited with code 1; "
                    "its last lines:") + "mrjob.local: \nProbable cause of failure:\n\n" + traceback(
        "TooManyBadLines: 5 of 7 lines are bad") + "\nwhile reading input from /tmp/input\n"
    assert failure_lines(log) == [
        "movielens_emr.local.runner.LocalJobFailed: the job's process exited with code 1; its last lines:",
        "TooManyBadLines: 5 of 7 lines are bad"]


def test_job_lines_relayed_in_the_task_log_are_not_read_as_tracebacks():
    log = ("2026-01-01T00:00:00Z [info     ] job: Traceback (most recent call last): [runner]\n"
           "2026-01-01T00:00:00Z [info     ] job: TooManyBadLines: 5 of 7 lines are bad [runner]\n")
    assert failure_lines(log) == []


def test_a_log_without_a_traceback_shows_its_last_lines(tmp_path):
    log = tmp_path / "last-run.log"
    log.write_text("".join(f"line {number}\n" for number in range(1, 9)) + "Killed\n")
    assert report(tmp_path, log, 1).splitlines() == [
        "movielens_similarity FAILED:", "  (no Python traceback in the log; its last lines:)",
        "  line 5", "  line 6", "  line 7", "  line 8", "  Killed", f"full log: {log}"]


def test_report_of_a_success_shows_metrics_and_first_results(tmp_path):
    run = tmp_path / "runs" / "manual_1"
    (run / "results").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"wall_seconds": 12.5, "output_pairs": 3}))
    (run / "results" / "similarities.csv").write_text("movie_id,movie_title\n1,Toy Story (1995)\n")
    assert newest_run(tmp_path) == run
    text = report(tmp_path, tmp_path / "log", 0)
    assert "succeeded" in text and "output_pairs  3" in text and "1,Toy Story (1995)" in text


def test_report_shows_the_first_rows_of_a_compressed_csv(tmp_path):
    run = tmp_path / "runs" / "manual_1"
    (run / "results").mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"output_pairs": 9}))
    text = "movie_id,movie_title\n" + "".join(f"{number},Movie {number}\n" for number in range(9))
    (run / "results" / "similarities.csv.gz").write_bytes(gzip.compress(text.encode()))
    lines = report(tmp_path, tmp_path / "log", 0).splitlines()
    assert f"{run}/results/similarities.csv.gz (first rows):" in lines
    assert "4,Movie 4" in lines and "5,Movie 5" not in lines


def test_report_of_a_failure_shows_the_errors(tmp_path):
    log = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'
    (tmp_path / "log").write_text(log)
    assert report(tmp_path, tmp_path / "log", 1).splitlines()[:2] == [
        "movielens_similarity FAILED:", "  ValueError: boom"]


def test_a_failed_runs_metrics_are_never_taken_for_the_newest_success(tmp_path):
    succeeded, failed = tmp_path / "runs" / "manual_1", tmp_path / "runs" / "manual_2"
    for run, metrics in ((succeeded, {"output_pairs": 3}), (failed, {"run_id": "manual_2", "failure": {}})):
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps(metrics))  # the failed run's written last
    assert newest_run(tmp_path) == succeeded
    (succeeded / "metrics.json").unlink()
    assert newest_run(tmp_path) is None

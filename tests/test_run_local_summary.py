"""What scripts/run_local.sh says when a run fails: the exception that ends each traceback, by any name."""
import os
import subprocess

import pytest

from scripts.failure_summary import failures, summary

from conftest import REPO

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
    assert failures(log) == [exception_line]


def test_an_exception_printed_bare_and_with_its_module_is_shown_once():
    log = traceback("TooManyBadLines: 5 of 7 lines are bad") + traceback(
        "movie_similarities.TooManyBadLines: 5 of 7 lines are bad")
    assert failures(log) == ["TooManyBadLines: 5 of 7 lines are bad"]


def test_a_wrapping_exception_comes_before_the_job_lines_it_quotes():
    log = traceback("movielens_emr.local.runner.LocalJobFailed: the job's process exited with code 1; "
                    "its last lines:") + "mrjob.local: \nProbable cause of failure:\n\n" + traceback(
        "TooManyBadLines: 5 of 7 lines are bad") + "\nwhile reading input from /tmp/input\n"
    assert failures(log) == [
        "movielens_emr.local.runner.LocalJobFailed: the job's process exited with code 1; its last lines:",
        "TooManyBadLines: 5 of 7 lines are bad"]


def test_job_lines_relayed_in_the_task_log_are_not_read_as_tracebacks():
    log = ("2026-01-01T00:00:00Z [info     ] job: Traceback (most recent call last): [runner]\n"
           "2026-01-01T00:00:00Z [info     ] job: TooManyBadLines: 5 of 7 lines are bad [runner]\n")
    assert failures(log) == []


def test_a_log_without_a_traceback_shows_its_last_lines(tmp_path):
    log = tmp_path / "last-run.log"
    log.write_text("".join(f"line {number}\n" for number in range(1, 9)) + "Killed\n")
    assert summary(log).splitlines() == [
        "movielens_similarity FAILED:", "  (no Python traceback in the log; its last lines:)",
        "  line 5", "  line 6", "  line 7", "  line 8", "  Killed", f"full log: {log}"]


def mostly_bad_ml_100k(folder):
    """An ml-100k folder (u.data, u.item) whose ratings are two-thirds non-numeric."""
    dataset = folder / "ml-100k"
    dataset.mkdir(parents=True)
    good = [f"{user}\t{movie}\t{(user + movie) % 5 + 1}\t881250949\n" for user in range(1, 21)
            for movie in range(1, 6)]
    bad = [f"{user}\t{movie}\tgreat\t881250949\n" for user in range(1, 21) for movie in range(6, 16)]
    (dataset / "u.data").write_text("".join(good + bad))
    (dataset / "u.item").write_text("".join(f"{movie}|Movie {movie} (1995)|01-Jan-1995||\n"
                                            for movie in range(1, 16)))
    return folder


def test_run_local_names_the_jobs_own_exception_on_bad_data(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "MOVIELENS_STORAGE_ROOT": str(tmp_path / "store"),
           "MOVIELENS_SOURCE_DIR": str(mostly_bad_ml_100k(tmp_path / "source")),
           "MOVIELENS_TASK_RETRIES": "0"}  # the job's failure is deterministic: one attempt is enough
    for name in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
                 "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        env.pop(name, None)  # the script sets up its own Airflow, as on a fresh machine
    conf = '{"dataset": "ml-100k", "node_count": 1}'
    result = subprocess.run([str(REPO / "scripts" / "run_local.sh"), conf], env=env, capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "movielens_similarity FAILED:"
    assert ("  movielens_emr.local.runner.LocalJobFailed: the job's process exited with code 1; "
            "its last lines:") in lines
    job_lines = [line for line in lines if "TooManyBadLines" in line]
    assert len(job_lines) == 1, lines
    assert job_lines[0].startswith("  TooManyBadLines: 200 of 300 ratings lines in ")
    assert job_lines[0].endswith("u.data are bad, above --max-bad-fraction 0.01; "
                                 "e.g. '1\\t6\\tgreat\\t881250949' (non-numeric rating)")
    assert lines[-1] == f"full log: {tmp_path / 'airflow' / 'last-run.log'}"

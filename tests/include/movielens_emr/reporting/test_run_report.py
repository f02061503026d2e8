"""The summary printed after a command-line run."""
import gzip
import json

from movielens_emr.reporting.run_report import failure_lines, newest_run, report


def test_failure_lines_pick_each_exception_once():
    log = ("2026 [error] Task failed with exception\nTraceback (most recent call last):\n  File x\n"
           "movielens_emr.config.params.InvalidParam: nodes: not a parameter of this DAG\n"
           "movielens_emr.config.params.InvalidParam: nodes: not a parameter of this DAG\n"
           "airflow.sdk.exceptions.AirflowException: Dag run failed\n")
    assert failure_lines(log) == [
        "movielens_emr.config.params.InvalidParam: nodes: not a parameter of this DAG",
        "airflow.sdk.exceptions.AirflowException: Dag run failed"]


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
    (tmp_path / "log").write_text("ValueError: boom\n")
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

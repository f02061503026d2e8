"""What scripts/run_local.sh says when a run fails: the exception that ends each traceback, by any name."""
import os
import subprocess

from conftest import REPO


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

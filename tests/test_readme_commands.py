"""The README's first command, as a newcomer runs it: the pipeline's local default, end to end."""
import os
import re
import subprocess

from conftest import REPO


def test_run_local_runs_the_pipeline_and_reports_it(tmp_path):
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "MOVIELENS_STORAGE_ROOT": str(tmp_path / "store")}
    for name in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
                 "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        env.pop(name, None)  # the script sets up its own Airflow, as on a fresh machine
    result = subprocess.run([str(REPO / "scripts" / "run_local.sh")], env=env, capture_output=True, text=True,
                            timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "movielens_similarity succeeded" in result.stdout
    assert re.search(r"^dataset +ml-latest-small-sample$", result.stdout, re.M)
    assert re.search(r"^output_pairs +16,458$", result.stdout, re.M)
    assert list((tmp_path / "store" / "runs").glob("*/results/similarities.csv"))

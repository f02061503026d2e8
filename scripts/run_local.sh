#!/usr/bin/env bash
# Installs everything, then runs movielens_similarity once on this machine (local target, bundled sample).
# Extra arguments are a JSON conf for the run, e.g. '{"dataset": "ml-100k", "node_count": 2}'.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh

conf=${1:-'{}'}
export AIRFLOW_HOME=${AIRFLOW_HOME:-$PWD/.airflow}
export AIRFLOW__CORE__DAGS_FOLDER=$PWD/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$PWD/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export PYTHONPATH=$PWD/include${PYTHONPATH:+:$PYTHONPATH}
export MOVIELENS_STORAGE_ROOT=${MOVIELENS_STORAGE_ROOT:-$HOME/.movielens-emr}
mkdir -p "$AIRFLOW_HOME"

echo "run_local: preparing the Airflow metadata database in $AIRFLOW_HOME" >&2
.venv/bin/airflow db migrate > "$AIRFLOW_HOME/db-migrate.log" 2>&1 || { cat "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }

log=$AIRFLOW_HOME/last-run.log
echo "run_local: running movielens_similarity with conf $conf (log: $log)" >&2
status=0
.venv/bin/airflow dags test movielens_similarity -c "$conf" > "$log" 2>&1 || status=$?
# The run's metrics and first results; for a failed run, the exception ending each traceback in its log,
# whatever its class is named (TooManyBadLines, LocalJobFailed, ...).
.venv/bin/python -m movielens_emr.reporting.run_report "$MOVIELENS_STORAGE_ROOT" "$log" "$status"
exit $status

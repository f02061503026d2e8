"""
### Reaper of leaked MovieLens EMR clusters

Hourly, terminates the EMR clusters tagged `movielens:pipeline=movielens-similarity` whose
`movielens_similarity` run is no longer queued or running (a worker died, a run was marked failed
by hand), and any such cluster older than `MOVIELENS_CLUSTER_MAX_AGE_HOURS` (default 12) whatever
its run. Clusters without the tag are never touched. Every cluster also carries a one-hour idle
auto-termination policy as the last backstop.

On this machine it also stops the local jobs (`runs/<run_id>/local-job/job.json`) whose run is no
longer queued or running.
"""
import datetime

import pendulum
from airflow.sdk import dag, task

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.config.settings import settings_from_env


@dag(
    dag_id="movielens_cluster_reaper",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["movielens", "emr", "safety"],
    doc_md=__doc__,
    default_args={"owner": "data-engineering", "retries": settings_from_env().task_retries,
                  "retry_delay": datetime.timedelta(minutes=5)},
)
def movielens_cluster_reaper():
    task(task_id="reap_clusters")(tasks.reap_clusters)()
    task(task_id="reap_local_jobs")(tasks.reap_local_jobs)()


movielens_cluster_reaper()

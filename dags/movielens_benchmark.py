"""
### MovieLens benchmark: movielens_similarity over a sweep of node counts, with either engine

Runs `movielens_similarity` with one `engine` (`similarity`, the MapReduce job, or `als`, ALS on
Spark) once per node count, sample fraction and repetition (one at a time unless `parallel`), waits
for every member run, then writes `report.md`, `summary.json` and PNG plots under
`benchmarks/<run_id>/` of the storage root, each naming the engine: median wall, cluster, provisioning,
per-stage and overhead seconds per configuration; speedup and parallel efficiency against the
smallest node count; node-minutes and cost; Amdahl's law fitted to the stage times (parallel
fraction relative to the smallest node count, as the study did, and absolute); how cluster time
grows with the input; for an engine whose runs score their recommendations (`als`), the median
P@10, R@10, NDCG@10, MAP@10 and coverage per recommender. A failed member run is reported as
failed, never averaged in, and fails the benchmark run once the report is written.

Member runs (`member_runs`): **trigger** (default) triggers them with `TriggerDagRunOperator`
and needs a scheduler; **cli** runs each with `airflow dags test movielens_similarity`, for
`airflow dags test movielens_benchmark` (which runs no triggered run), e.g. on this machine:
`{"target": "local", "dataset": "ml-latest-small", "node_counts": [1, 2], "member_runs": "cli"}`
(add `"engine": "als"` for the als engine; each of its member runs takes about a minute here).

Scheduled weekly; set `MOVIELENS_BENCHMARK_SCHEDULE` to a cron expression or preset, or `none`.
"""
import datetime

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, TriggerRule, dag, task

from movielens_emr.airflow import benchmark_tasks
from movielens_emr.airflow.similarity_tasks import max_node_count
from movielens_emr.config.settings import settings_from_env
from movielens_emr.engine.registry import engine_names
from movielens_emr.reporting.benchmark import (
    SIMILARITY_DAG_ID,
    benchmark_param_schemas,
    schedule_from_env,
    trigger_arguments,
)

SETTINGS = settings_from_env()
# A member run is a whole cluster: never re-run by a retry, which would also skew the timings.
MEMBER_RUN = {"trigger_dag_id": SIMILARITY_DAG_ID, "wait_for_completion": True, "reset_dag_run": True,
              "fail_when_dag_is_paused": True, "poke_interval": SETTINGS.poll_seconds, "retries": 0,
              "map_index_template": "{{ task.trigger_run_id }}"}


@dag(
    dag_id="movielens_benchmark",
    schedule=schedule_from_env(),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["movielens", "emr", "benchmark"],
    doc_md=__doc__,
    default_args={"owner": "data-engineering", "retries": SETTINGS.task_retries,
                  "retry_delay": datetime.timedelta(minutes=1)},
    params={name: Param(**spec) for name, spec in
            benchmark_param_schemas(max_node_count(), SETTINGS.default_target, engine_names()).items()},
)
def movielens_benchmark():
    config = task(task_id="validate_benchmark", retries=0)(benchmark_tasks.validate_benchmark)()
    members = task(task_id="plan_member_runs")(benchmark_tasks.plan_member_runs)(config)
    branch = task.branch(task_id="choose_member_runs")(benchmark_tasks.choose_member_runs)(config)

    triggers = members.map(trigger_arguments)
    one_at_a_time = TriggerDagRunOperator.partial(
        task_id="trigger_members_one_at_a_time", max_active_tis_per_dag=1, **MEMBER_RUN,
    ).expand_kwargs(triggers)
    in_parallel = TriggerDagRunOperator.partial(
        task_id="trigger_members_in_parallel", **MEMBER_RUN).expand_kwargs(triggers)
    by_cli = task(task_id="run_members_by_cli", retries=0)(benchmark_tasks.run_members_by_cli)(
        config, members)

    # ALL_DONE: failed member runs are part of the result, reported rather than stopping the report.
    outcome = task(task_id="report_benchmark", trigger_rule=TriggerRule.ALL_DONE)(
        benchmark_tasks.report_benchmark)(config, members)
    checked = task(task_id="check_member_runs", retries=0)(benchmark_tasks.check_member_runs)(outcome)

    members >> branch >> [one_at_a_time, in_parallel, by_cli] >> outcome >> checked


movielens_benchmark()

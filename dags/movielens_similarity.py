"""
### MovieLens movie similarity on EMR (or on this machine)

Pick a dataset and a node count in the trigger form (**[plan first](movielens/#plan)**: the predicted
time and cost of every node count, from the run history). The run stages the MovieLens files to the
storage root (once per content checksum) and measures on them the plan that balances stage 2's
reduce tasks, then either

* **emr**: creates an EMR cluster of `node_count` nodes (1 master + `node_count - 1` core),
  submits the job's three MapReduce stages as three Hadoop streaming steps, waits for the last,
  and always terminates the cluster (`terminate_cluster` is the teardown of `create_cluster`), or
* **local**: runs the same job file with mrjob's local runner, `node_count` tasks at a time;
  (for the `als` engine: one spark-submit step on a cluster with Spark, or Spark's local mode with
  `node_count` cores; its results also include `results/recommendations.csv` and `results/evaluation.json`);

then writes `results/similarities.csv` and `results/top_neighbours.json` and records
`metrics.json` (wall, cluster, provisioning and per-stage seconds, overhead, node-minutes,
estimated cost, ratings read, bad lines, pairs, the tasks' durations and the run's one-run
prediction of other node counts) under `runs/<run_id>/` of the storage root.
When a stage fails, `wait_for_stages` fails at once with EMR's reason so that the cluster is terminated
without delay; once it has ended, `diagnose_failure` writes the full diagnosis (the failed task's
traceback, the step's stderr) to its log and, under `failure`, to the run's `metrics.json`.
See docs/pipeline.md for the settings (MOVIELENS_* environment variables) and docs/aws.md for the AWS set-up.
"""
import datetime

import pendulum
from airflow.providers.amazon.aws.operators.emr import EmrTerminateJobFlowOperator
from airflow.sdk import Param, TriggerRule, dag, task

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.airflow.links import task_with_run_page_link
from movielens_emr.airflow.operators import (
    EmrAddStepsOnceOperator,
    EmrClusterEndedSensor,
    EmrStagesSensor,
    LeakProofEmrCreateJobFlowOperator,
)
from movielens_emr.config.params import param_schemas
from movielens_emr.config.settings import AWS_CLIENT_CONFIG, settings_from_env
from movielens_emr.engine.registry import engine_names
from movielens_emr.reporting import history

SETTINGS = settings_from_env()
AWS = {"aws_conn_id": SETTINGS.aws_conn_id, "botocore_config": AWS_CLIENT_CONFIG}


@dag(
    dag_id="movielens_similarity",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["movielens", "emr", "mapreduce"],
    doc_md=__doc__,
    default_args={"owner": "data-engineering", "retries": SETTINGS.task_retries,
                  "retry_delay": datetime.timedelta(minutes=1)},
    params={name: Param(**spec) for name, spec in
            param_schemas(tasks.max_node_count(), SETTINGS.default_target, engine_names()).items()},
)
def movielens_similarity():
    config = task(task_id="validate_config", retries=0)(tasks.validate_config)()
    staged = task(task_id="stage_dataset")(tasks.stage_dataset)(config)
    branch = task.branch(task_id="choose_target")(tasks.choose_target)(config)

    plan = task(task_id="plan_emr_run", multiple_outputs=True)(tasks.plan_emr_run)(
        config, staged, dag_id="{{ dag.dag_id }}")
    # Not retried: a try that failed has terminated its cluster, and a new cluster is a new cost.
    create_cluster = LeakProofEmrCreateJobFlowOperator(
        task_id="create_cluster", job_flow_overrides=plan["job_flow"], emr_conn_id=None, retries=0, **AWS)
    submit_stages = EmrAddStepsOnceOperator(
        task_id="submit_stages", job_flow_id=create_cluster.output, steps=plan["steps"], **AWS)
    wait = task(task_id="prepare_stage_wait")(tasks.prepare_stage_wait)(
        submit_stages.output, plan["wait_timeout"])
    # Polls, or defers under AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE; a failed stage fails it at once, with
    # EMR's reason: reading the logs would keep the cluster up for as long as EMR takes to deliver them.
    wait_for_stages = EmrStagesSensor.partial(
        task_id="wait_for_stages", job_flow_id=create_cluster.output, retries=0, **AWS).expand_kwargs(wait)
    # Asks EMR to terminate and returns; wait_for_termination waits, for either end state.
    terminate_cluster = EmrTerminateJobFlowOperator(
        task_id="terminate_cluster", job_flow_id=create_cluster.output, deferrable=False, **AWS)
    wait_for_termination = EmrClusterEndedSensor(
        task_id="wait_for_termination", job_flow_id=create_cluster.output,
        poke_interval=SETTINGS.poll_seconds, timeout=3600, **AWS)

    local_run = task(task_id="run_local_job")(tasks.run_local_job)(config, staged)
    # Each with an extra link to the run's page in the benchmarks plugin (results, metrics, or why it failed).
    collected = task_with_run_page_link(
        task_id="collect_results", outlets=[tasks.RESULTS_ASSET],
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(tasks.collect_results)(config)
    metrics = task_with_run_page_link(
        task_id="record_metrics", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)(
        tasks.record_metrics)(config, collected, staged)

    # Whatever happened, once the cluster has ended (its logs are then in S3 or never will be); skipped
    # when the stages all completed or none were submitted.
    diagnosis = task(task_id="diagnose_failure", trigger_rule=TriggerRule.ALL_DONE)(
        tasks.diagnose_failure)(config)

    # A teardown: it runs whatever failed, and it does not decide the run's state.
    run_history = task(task_id="record_run_history")(history.record_run_history)().as_teardown()

    branch >> [plan, local_run]
    wait_for_stages >> terminate_cluster.as_teardown(setups=create_cluster) >> wait_for_termination
    [wait_for_stages, local_run] >> collected
    wait_for_termination >> [metrics, diagnosis]
    [metrics, wait_for_termination, diagnosis] >> run_history


movielens_similarity()

"""The local target's share of a run: nothing to check or ship beyond the dataset (a Java runtime for a Spark
engine); the run's job run by its kind's runner (mrjob's local runner, or Spark's local mode); the run's
figures are the runner's own clock and counters."""
from movielens_emr.config.params import InvalidParam
from movielens_emr.config.targets import LOCAL
from movielens_emr.engine.protocol import SparkJob, needs_spark
from movielens_emr.engine.registry import engine_named
from movielens_emr.local.runner import run_local_job
from movielens_emr.local.spark_runner import JavaMissing, java_runtime, run_local_spark_job
from movielens_emr.sizing.task_times import unknown_task_times


class LocalTarget:
    """This machine: run_local_job in the DAG, node_count tasks (or Spark cores) at a time."""

    target = LOCAL
    first_task = "run_local_job"
    result_tasks = ("run_local_job",)

    def check_config(self, config, settings):
        """Any instance type, release or node Python will do: none of them is used here. A Spark engine
        needs a Java runtime, checked now rather than once the dataset is staged."""
        if needs_spark(engine_named(config.engine)):
            try:
                java_runtime()
            except JavaMissing as error:
                raise InvalidParam(f"engine: {error}") from None

    def stage_run_files(self, storage, run_prefix, config, settings, engine):
        """Nothing: the local runner reads the job file where it is."""
        return {}

    def run_job(self, job, input_paths, output_dir, parallel_tasks, work_dir):
        """The job run here by its kind's runner (runner.run_local_job, spark_runner.run_local_spark_job)."""
        run = run_local_spark_job if isinstance(job, SparkJob) else run_local_job
        return run(job, input_paths, output_dir, parallel_tasks, work_dir)

    def run_figures(self, results, settings, storage, run_prefix, stage_count):
        """The local run's clock (provisioning 0) and counters; results: {task id: XCom} of result_tasks."""
        local_run = results["run_local_job"]
        return {"cluster_id": None,
                "timings": {"cluster_seconds": local_run["seconds"], "provisioning_seconds": 0.0,
                            "stage_seconds": local_run["stage_seconds"]},
                "counters": local_run["counters"], "counter_sources": None,
                "task_times": local_run.get("task_times") or unknown_task_times(
                    stage_count, "the local run did not time its tasks"),
                "target_figures": target_figures(local_run)}


def target_figures(run):
    """The figures a run's kind adds: a Spark application's task times from its event log."""
    return {"spark_task_times": run["spark_task_times"]} if "spark_task_times" in run else {}

"""The local target's share of a run: nothing to check or ship beyond the dataset; the run's figures are
the local runner's own clock and counters."""
from movielens_emr.config.targets import LOCAL
from movielens_emr.sizing.task_times import unknown_task_times


class LocalTarget:
    """This machine: run_local_job in the DAG, node_count tasks at a time."""

    target = LOCAL
    first_task = "run_local_job"
    result_tasks = ("run_local_job",)

    def check_config(self, config, settings):
        """Any instance type, release or node Python will do: none of them is used here."""

    def stage_run_files(self, storage, run_prefix, config, settings, engine):
        """Nothing: the local runner reads the job file where it is."""
        return {}

    def run_figures(self, results, settings, storage, run_prefix, stage_count):
        """The local run's clock (provisioning 0) and counters; results: {task id: XCom} of result_tasks."""
        local_run = results["run_local_job"]
        return {"cluster_id": None,
                "timings": {"cluster_seconds": local_run["seconds"], "provisioning_seconds": 0.0,
                            "stage_seconds": local_run["stage_seconds"]},
                "counters": local_run["counters"], "counter_sources": None,
                "task_times": local_run.get("task_times") or unknown_task_times(
                    stage_count, "the local run did not time its tasks")}

"""The EMR target's share of a run: what it checks before anything is staged, what it ships to the cluster,
the steps of the engine's job, and where the run's figures are read once the cluster has ended."""
import logging

from movielens_emr.config.params import InvalidParam
from movielens_emr.config.targets import EMR
from movielens_emr.emr.client import EmrClient
from movielens_emr.emr.cluster import node_python_for
from movielens_emr.emr.job_files import stage_job_files
from movielens_emr.emr.steps import build_stage_steps
from movielens_emr.emr.wheelhouse import node_wheels, requirements_file

log = logging.getLogger(__name__)


class EmrTarget:
    """A new EMR cluster per run; its tasks are create_cluster .. wait_for_termination in the DAG."""

    target = EMR
    # The DAG's first task of this target's branch, and the tasks whose results give the run's figures.
    first_task = "plan_emr_run"
    result_tasks = ("create_cluster", "submit_stages")

    def check_config(self, config, settings):
        """The nodes' Python must exist on the run's release and instance type."""
        try:
            node_python_for(config, settings.cluster)
        except ValueError as error:
            raise InvalidParam(str(error)) from None

    def stage_run_files(self, storage, run_prefix, config, settings, engine):
        """The engine's job files, the bootstrap and its pins, and the nodes' wheels: {"job_files": URIs}."""
        node, cluster = node_python_for(config, settings.cluster), settings.cluster
        wheels = node_wheels(node, settings.cache_dir, cluster.wheelhouse_dir, requirements_file(cluster))
        return {"job_files": stage_job_files(storage, run_prefix, engine.shipped_files(), node, wheels,
                                             requirements_file(cluster))}

    def steps(self, job, staged, output_uri, run_id, config, settings):
        """The EMR steps of the engine's job (steps.build_stage_steps), under the nodes' Python."""
        return build_stage_steps(job, staged["job_files"]["shipped"], staged["ratings_uris"], output_uri,
                                 run_id, node_python_for(config, settings.cluster))

    def run_figures(self, results, settings, storage, run_prefix, stage_count):
        """Timings from EMR's timestamps, counters from the steps' logs, task times from the job history;
        results: {task id: its XCom} of result_tasks."""
        cluster_id, step_ids = results["create_cluster"], results["submit_stages"]
        figures = EmrClient(settings.aws_conn_id).run_figures(
            storage, run_prefix, cluster_id, step_ids, settings.log_wait_seconds, settings.poll_seconds)
        return {"cluster_id": cluster_id, "timings": figures.timings, "counters": figures.counters,
                "counter_sources": figures.counter_sources, "task_times": figures.task_times}

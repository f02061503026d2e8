"""The pipeline's one EMR client: describe, list, terminate and diagnose, through the provider's hook."""
import logging

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from movielens_emr.diagnosis import cluster_fault, first_failed_stage, stage_failure_report, stderr_tail
from movielens_emr.emr_logs import (
    container_log_folder,
    node_log_folder,
    run_counters,
    step_log_folder,
    task_failure_traceback,
    wait_for_object,
)
from movielens_emr.metrics import emr_timings
from movielens_emr.settings import AWS_CLIENT_CONFIG

log = logging.getLogger(__name__)

# The states a cluster ends in. Both end a teardown's wait: a cluster that ended by a fault (a failed
# bootstrap, lost instances) is as gone as one that was asked to terminate.
CLUSTER_END_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
# The provider's job_flow_terminated waiter with both end states as success (the waiter JSON's shape).
CLUSTER_ENDED_WAITER_OVERRIDES = {"acceptors": [
    {"matcher": "path", "argument": "Cluster.Status.State", "expected": state, "state": "success"}
    for state in CLUSTER_END_STATES]}


class EmrClient:
    """EMR's API as the pipeline uses it, over one EmrHook (the provider's, or an operator's own)."""

    def __init__(self, aws_conn_id="aws_default", hook=None):
        self.hook = hook or EmrHook(aws_conn_id=aws_conn_id, config=AWS_CLIENT_CONFIG)

    def describe_cluster(self, cluster_id):
        emr = self.hook.conn
        return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]

    def describe_steps(self, cluster_id, step_ids):
        """describe_step results, in step_ids' order."""
        emr = self.hook.conn
        return [emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"] for step_id in step_ids]

    def list_steps(self, cluster_id):
        """Every step of the cluster, newest first (as EMR lists them)."""
        emr = self.hook.conn
        return [step for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id)
                for step in page["Steps"]]

    def describe_clusters_in(self, states):
        """describe_cluster results of every cluster in one of the states."""
        emr = self.hook.conn
        pages = emr.get_paginator("list_clusters").paginate(ClusterStates=list(states))
        return [self.describe_cluster(summary["Id"]) for page in pages for summary in page["Clusters"]]

    def terminate(self, cluster_id):
        """Ask EMR to terminate the cluster; returns at once (a cluster already ended stays as it is)."""
        emr = self.hook.conn
        emr.terminate_job_flows(JobFlowIds=[cluster_id])

    def cluster_fault(self, cluster_id):
        """EMR's account of the cluster's end when it ended by a fault; None otherwise."""
        return cluster_fault(self.describe_cluster(cluster_id))

    def timings_and_counters(self, storage, run_prefix, cluster_id, step_ids, log_wait_seconds=0,
                             poll_seconds=30):
        """(timings from EMR's own timestamps, the steps' Hadoop counters, the log each stage's came from).

        Waits at most log_wait_seconds for EMR to deliver the steps' logs (emr_logs.run_counters).
        """
        cluster = self.describe_cluster(cluster_id)
        steps = self.describe_steps(cluster_id, step_ids)
        timings = emr_timings(cluster["Status"]["Timeline"], [step["Status"]["Timeline"] for step in steps])
        counters = run_counters(storage, run_prefix, cluster_id, step_ids, log_wait_seconds, poll_seconds)
        return timings, counters.counters, counters.read_from

    def explain_stage_failure(self, storage, run_prefix, cluster_id, step_ids, wait_error=None,
                              log_wait_seconds=300, poll_seconds=30):
        """Why the stages' wait failed, as a report: the failed stage, EMR's reason, the failed task's
        own error from its container's log, and the tail of the step's stderr.

        Waits at most log_wait_seconds for a failed step's stderr, then as long again for the task's
        container logs (EMR delivers logs minutes late); includes the cluster's own fault when it
        ended by one (a failed bootstrap, say).
        """
        cluster = self.describe_cluster(cluster_id)
        steps = self.describe_steps(cluster_id, step_ids)
        number, step = first_failed_stage(steps)
        step_id = step_ids[(number or 1) - 1]
        log_folder = step_log_folder(run_prefix, cluster_id, step_id)
        stderr = traceback = None
        if step is not None and step["Status"]["State"] == "FAILED":  # only a step that ran has logs
            stderr = wait_for_object(storage, f"{log_folder}/stderr.gz", log_wait_seconds, poll_seconds)
        if stderr:
            traceback = task_failure_traceback(storage, run_prefix, cluster_id, step_id, log_wait_seconds,
                                               poll_seconds)
        return stage_failure_report(
            steps, stderr_tail(stderr) if stderr else None, storage.uri(log_folder), cluster=cluster,
            node_log_location=storage.uri(node_log_folder(run_prefix, cluster_id)), wait_error=wait_error,
            task_traceback=traceback,
            container_log_location=storage.uri(container_log_folder(run_prefix, cluster_id)))


def attempts_within(timeout_seconds, poll_seconds):
    """How many polls poll_seconds apart fit in timeout_seconds (at least one)."""
    return max(1, int(timeout_seconds // poll_seconds))


class EmrClusterEndedTrigger(AwsBaseWaiterTrigger):
    """Polls (deferred) until the cluster has ended in either end state; the provider's trigger fails on one.

    The provider's EmrTerminateJobFlowTrigger waits with job_flow_terminated, whose waiter takes
    TERMINATED_WITH_ERRORS for a failure; this one overrides its acceptors with CLUSTER_END_STATES.
    """

    aws_hook_class = EmrHook

    def __init__(self, job_flow_id, waiter_delay=30, waiter_max_attempts=60, aws_conn_id="aws_default",
                 region_name=None, verify=None, botocore_config=None):
        super().__init__(
            serialized_fields={"job_flow_id": job_flow_id}, waiter_name="job_flow_terminated",
            waiter_args={"ClusterId": job_flow_id}, waiter_config_overrides=CLUSTER_ENDED_WAITER_OVERRIDES,
            failure_message=f"cluster {job_flow_id} did not end",
            status_message=f"cluster {job_flow_id} not ended yet",
            status_queries=["Cluster.Status.State", "Cluster.Status.StateChangeReason"],
            return_value=None, waiter_delay=waiter_delay, waiter_max_attempts=waiter_max_attempts,
            aws_conn_id=aws_conn_id, region_name=region_name, verify=verify, botocore_config=botocore_config)

"""The pipeline's one EMR client: describe, list, terminate and diagnose, through the provider's hook."""
import dataclasses
import logging
import time

from airflow.providers.amazon.aws.hooks.ec2 import EC2Hook
from airflow.providers.amazon.aws.hooks.emr import EmrHook

from movielens_emr.config.settings import AWS_CLIENT_CONFIG
from movielens_emr.emr.diagnosis import (
    cluster_fault,
    failure_record,
    first_failed_stage,
    stage_failure_report,
    stage_failure_summary,
    stderr_tail,
)
from movielens_emr.emr.logs import (
    container_log_folder,
    failed_step_logs,
    node_log_folder,
    run_counters,
    run_task_times,
    step_log_folder,
)
from movielens_emr.reporting.metrics import emr_timings

log = logging.getLogger(__name__)

# The states a cluster ends in. Both end a teardown's wait: a cluster that ended by a fault (a failed
# bootstrap, lost instances) is as gone as one that was asked to terminate.
CLUSTER_END_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
# The provider's job_flow_terminated waiter with both end states as success (the waiter JSON's shape).
CLUSTER_ENDED_WAITER_OVERRIDES = {"acceptors": [
    {"matcher": "path", "argument": "Cluster.Status.State", "expected": state, "state": "success"}
    for state in CLUSTER_END_STATES]}
# EMR pushes a cluster's remaining logs to S3 as part of terminating it: once the cluster has ended,
# its logs are there or never will be. A minute covers the last objects landing as the state changes,
# where the full log wait (MOVIELENS_LOG_WAIT_SECONDS) covers EMR's upload every five minutes.
ENDED_CLUSTER_LOG_GRACE_SECONDS = 60
# The Spot price history's names for the Linux the EMR nodes run, in a VPC first (every EMR 7 cluster is in
# one); EC2 prices both alike.
LINUX_PRODUCTS = ("Linux/UNIX (Amazon VPC)", "Linux/UNIX")


def log_wait_for(cluster, log_wait_seconds, grace_seconds=ENDED_CLUSTER_LOG_GRACE_SECONDS):
    """How long to wait for a cluster's logs (its describe_cluster result): the full log wait while it
    has not ended, at most the grace once it has."""
    if cluster["Status"]["State"] in CLUSTER_END_STATES:
        return min(log_wait_seconds, grace_seconds)
    return log_wait_seconds


@dataclasses.dataclass(frozen=True)
class RunFigures:
    """What record_metrics reads of an EMR run: timings from EMR's own timestamps, the steps' Hadoop
    counters summed, the log each stage's counters came from (None: found nowhere), the tasks' times."""

    timings: dict
    counters: dict
    counter_sources: list
    task_times: dict


class EmrClient:
    """EMR's API as the pipeline uses it, over one EmrHook (the provider's, or an operator's own)."""

    ended_cluster_log_grace_seconds = ENDED_CLUSTER_LOG_GRACE_SECONDS

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

    def list_instances(self, cluster_id, group_types):
        """ListInstances of the cluster's instance groups of the types (MASTER, CORE, TASK): every instance
        the groups ever had, ended ones included, with its Market, Status and Timeline."""
        emr = self.hook.conn
        pages = emr.get_paginator("list_instances").paginate(
            ClusterId=cluster_id, InstanceGroupTypes=list(group_types))
        return [instance for page in pages for instance in page["Instances"]]

    def spot_price_history(self, instance_type, availability_zone, start, end):
        """EC2's Spot price records of a Linux instance type in one availability zone from start to end
        (describe_spot_price_history, which also returns the last change before start, the price in force
        then), through an EC2 client of the same connection and region."""
        ec2 = EC2Hook(api_type="client_type", aws_conn_id=self.hook.aws_conn_id,
                      region_name=self.hook.conn.meta.region_name, config=AWS_CLIENT_CONFIG).conn
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=[instance_type], AvailabilityZone=availability_zone, StartTime=start, EndTime=end,
            ProductDescriptions=list(LINUX_PRODUCTS))
        return [record for page in pages for record in page["SpotPriceHistory"]]

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

    def run_figures(self, storage, run_prefix, cluster_id, step_ids, log_wait_seconds=0, poll_seconds=30):
        """The run's RunFigures; waits at most log_wait_for(the cluster, log_wait_seconds) in all for EMR
        to deliver the steps' logs and job history files (emr_logs.run_counters, run_task_times)."""
        cluster = self.describe_cluster(cluster_id)
        steps = self.describe_steps(cluster_id, step_ids)
        timings = emr_timings(cluster["Status"]["Timeline"], [step["Status"]["Timeline"] for step in steps])
        wait = self._log_wait(cluster, log_wait_seconds)
        logs_due = time.monotonic() + wait
        counters = run_counters(storage, run_prefix, cluster_id, step_ids, wait, poll_seconds)
        task_times = run_task_times(storage, run_prefix, cluster_id, step_ids,
                                    max(logs_due - time.monotonic(), 0), poll_seconds)
        return RunFigures(timings, counters.counters, counters.read_from, task_times)

    def summarize_stage_failure(self, cluster_id, step_ids, wait_error=None, node_log_location="",
                                metrics_location=""):
        """The stage wait's short account of a failure (diagnosis.stage_failure_summary), from EMR's
        descriptions of the steps and the cluster alone: it reads no log, so it never waits."""
        cluster = self.describe_cluster(cluster_id)
        steps = self.describe_steps(cluster_id, step_ids)
        return stage_failure_summary(steps, cluster, node_log_location, wait_error, metrics_location)

    def diagnose_stage_failure(self, storage, run_prefix, cluster_id, step_ids, log_wait_seconds=300,
                               poll_seconds=30):
        """metrics.json's "failure" (diagnosis.failure_record) of stages that did not all complete; its
        report gives the failed stage, EMR's reason, the failed task's own error from its container's log,
        the tail of the step's stderr, and the cluster's own fault when it ended by one (a failed bootstrap).

        Waits at most log_wait_for(the cluster, log_wait_seconds) in all for the failed step's logs (EMR
        delivers them minutes late, the rest as it terminates the cluster). Logs it cannot read are
        named in the report, never raised: the stage's failure is the one the run reports.
        """
        cluster = self.describe_cluster(cluster_id)
        steps = self.describe_steps(cluster_id, step_ids)
        number, step = first_failed_stage(steps)
        step_id = step_ids[(number or 1) - 1]
        stderr = traceback = unreadable = None
        if step is not None and step["Status"]["State"] == "FAILED":  # only a step that ran has logs
            stderr, traceback, unreadable = self._read_failed_step_logs(
                storage, run_prefix, cluster, step_id, log_wait_seconds, poll_seconds)
        report = stage_failure_report(
            steps, stderr_tail(stderr) if stderr else None,
            storage.uri(step_log_folder(run_prefix, cluster_id, step_id)), cluster=cluster,
            node_log_location=storage.uri(node_log_folder(run_prefix, cluster_id)), task_traceback=traceback,
            container_log_location=storage.uri(container_log_folder(run_prefix, cluster_id)),
            logs_unreadable=unreadable)
        return failure_record(steps, step_ids, cluster, report)

    def _read_failed_step_logs(self, storage, run_prefix, cluster, step_id, log_wait_seconds, poll_seconds):
        """(gzipped stderr, task error, None) as emr_logs.failed_step_logs found them; (None, None, why)
        when the logs could not be read."""
        wait = self._log_wait(cluster, log_wait_seconds)
        try:
            return (*failed_step_logs(storage, run_prefix, cluster["Id"], step_id, wait, poll_seconds), None)
        except Exception as error:  # an unreadable log costs the report its logs, not the diagnosis
            log.warning("the logs of step %s could not be read", step_id, exc_info=True)
            return None, None, f"{type(error).__name__}: {error}"

    def _log_wait(self, cluster, log_wait_seconds):
        wait = log_wait_for(cluster, log_wait_seconds, self.ended_cluster_log_grace_seconds)
        if wait < log_wait_seconds:
            log.info("cluster %s has ended (%s): its logs are in or will not come; waiting at most %s s for "
                     "them, not %s", cluster["Id"], cluster["Status"]["State"], wait, log_wait_seconds)
        return wait


def attempts_within(timeout_seconds, poll_seconds):
    """How many polls poll_seconds apart fit in timeout_seconds (at least one)."""
    return max(1, int(timeout_seconds // poll_seconds))

"""The pipeline's own deferrable trigger: the cluster-ended wait, over the provider's waiter trigger."""
from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.triggers.base import AwsBaseWaiterTrigger

from movielens_emr.emr.client import CLUSTER_ENDED_WAITER_OVERRIDES


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

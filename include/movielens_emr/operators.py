"""The provider's EMR operators and sensors, each with one behaviour the pipeline needs, over emr.py."""
import ast

from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.sdk.exceptions import TaskDeferred
from botocore.exceptions import ClientError

from movielens_emr.emr import EmrClient


class ClusterEndedError(RuntimeError):
    """The cluster ended by a fault (a failed bootstrap, say) before the stages could be submitted."""


class DuplicateStepsError(RuntimeError):
    """Only some of a submission's steps exist on the cluster: a state no retry should guess through."""


def already_submitted(listed_steps, wanted_names):
    """Ids of wanted_names' steps, in their order, if all are on the cluster; None if none are."""
    ids_by_name = {}
    for step in listed_steps:
        ids_by_name.setdefault(step["Name"], step["Id"])
    found = [ids_by_name.get(name) for name in wanted_names]
    if all(found):
        return found
    if any(found):
        missing = [name for name, step_id in zip(wanted_names, found, strict=True) if not step_id]
        raise DuplicateStepsError(f"the cluster has some of this run's steps but not {missing}")
    return None


class EmrAddStepsOnceOperator(EmrAddStepsOperator):
    """EmrAddStepsOperator that a retry cannot make submit the same steps twice.

    Steps are recognised by name (the pipeline's names carry the run id): when all are
    already on the cluster, their ids are returned instead of adding them again.
    """

    def execute(self, context):
        try:
            return self._add_steps_once(context)
        except ClientError as error:
            fault = self._cluster_fault()
            if fault:  # EMR's own reason says more than "may not be modified"
                raise ClusterEndedError(f"the stages cannot be submitted: {fault}") from error
            raise

    def _cluster_fault(self):
        try:
            return EmrClient(hook=self.hook).cluster_fault(self.job_flow_id)
        except ClientError:
            return None

    def _add_steps_once(self, context):
        steps = ast.literal_eval(self.steps) if isinstance(self.steps, str) else self.steps
        if self.job_flow_id:
            listed = EmrClient(hook=self.hook).list_steps(self.job_flow_id)
            step_ids = already_submitted(listed, [step["Name"] for step in steps])
            if step_ids:
                self.log.info("Steps already submitted to %s by an earlier try: %s",
                              self.job_flow_id, step_ids)
                context["ti"].xcom_push(key="job_flow_id", value=self.job_flow_id)
                return step_ids
        return super().execute(context)


class LeakProofEmrCreateJobFlowOperator(EmrCreateJobFlowOperator):
    """EmrCreateJobFlowOperator that terminates the cluster it created when it then fails.

    The provider's operator cleans up only when its own waiter fails. Any other error after
    RunJobFlow succeeded (describing the new cluster for its log link, say, denied or throttled
    past the retries) would leave the cluster running with no teardown to end it: a teardown runs
    only after a setup that succeeded.
    """

    def execute(self, context):
        self._job_flow_id = None  # not a cluster of an earlier try
        try:
            return super().execute(context)
        except TaskDeferred:
            raise
        except Exception as error:
            if self._job_flow_id:
                self.terminate_after_failure(self._job_flow_id, error)
            raise

    def terminate_after_failure(self, cluster_id, error):
        self.log.error("Creating the cluster failed after EMR created %s (%s: %s); terminating %s",
                       cluster_id, type(error).__name__, error, cluster_id)
        try:
            EmrClient(hook=self.hook).terminate(cluster_id)
        except Exception:  # the original error is the one to report; this one is logged
            self.log.exception("Could not terminate %s: the movielens_cluster_reaper DAG will, within the "
                               "hour, or its idle auto-termination policy", cluster_id)
        else:
            self.log.info("Terminated %s, created by this failed try", cluster_id)

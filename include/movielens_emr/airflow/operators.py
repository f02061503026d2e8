"""The provider's EMR operators and sensors, each with one behaviour the pipeline needs, over emr.py."""
import ast
from datetime import datetime, timedelta, timezone

from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator, EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.sensors.emr import EmrJobFlowSensor, EmrStepSensor
from airflow.sdk.exceptions import (
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferred,
)
from botocore.exceptions import ClientError

from movielens_emr.airflow.triggers import EmrClusterEndedTrigger
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import open_storage, run_folder
from movielens_emr.emr.client import CLUSTER_END_STATES, EmrClient, attempts_within
from movielens_emr.emr.logs import node_log_folder
from movielens_emr.emr.progress import progress_lines


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


class StagesFailedError(RuntimeError):
    """A stage failed on EMR (or was cancelled with its cluster): the message says which, EMR's reason,
    and where the full diagnosis follows."""


class EmrAddStepsOnceOperator(EmrAddStepsOperator):
    """EmrAddStepsOperator that submits and returns at once, and that a retry cannot make submit twice.

    It never waits for the steps, whatever [operators] default_deferrable says: waiting is the
    stage sensor's job, with the timeout computed from the data. Steps are recognised by name (the
    pipeline's names carry the run id): when all are already on the cluster, their ids are returned
    instead of adding them again.
    """

    def __init__(self, **kwargs):
        super().__init__(**{**kwargs, "wait_for_completion": False, "deferrable": False})

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


class EmrStagesSensor(EmrStepSensor):
    """Waits for the last stage's step, polling or deferred, up to `timeout`; on a failure, fails at once.

    On a failed or cancelled stage, a timed-out wait or a failed trigger, it logs a short account from
    EMR's descriptions alone (emr.EmrClient.summarize_stage_failure: the stage, EMR's reason, the
    cluster's fault) and fails, in poke mode and after a deferral alike: it reads no log, so the
    teardown can terminate the cluster at once. The failed task's own error and the step's stderr
    follow from the diagnose_failure task, once the cluster has ended.

    stage_step_ids: every stage's step id, in stage order (the last is the one waited for).
    """

    template_fields = (*EmrStepSensor.template_fields, "stage_step_ids")

    def __init__(self, *, stage_step_ids, timeout, poke_interval, **kwargs):
        super().__init__(step_id=stage_step_ids[-1], timeout=timeout, poke_interval=poke_interval,
                         max_attempts=attempts_within(timeout, poke_interval), **kwargs)
        self.stage_step_ids = stage_step_ids
        self._stage_states = {}

    def poke(self, context):
        """The provider's poke of the last stage, after a line for each stage that started or ended since
        the last poke (emr.progress), so that the task log follows the stages."""
        try:
            steps = EmrClient(hook=self.hook).describe_steps(self.job_flow_id, self.stage_step_ids)
        except ClientError as error:  # the progress is a courtesy: the wait goes on without it
            self.log.warning("stage progress unknown this time: %s", error)
        else:
            now = datetime.now(timezone.utc)
            for line in progress_lines(self._stage_states, steps, now):
                self.log.info("%s", line)
        return super().poke(context)

    def execute(self, context):
        try:
            return super().execute(context)
        except (AirflowRescheduleException, AirflowSkipException, TaskDeferred):
            raise
        except Exception as error:
            self._fail_explained(context, error)

    def resume_execution(self, next_method, next_kwargs, context):
        """After a deferral: the trigger's event (execute_complete), or the deferral's timeout."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except Exception as error:
            self._fail_explained(context, error)

    def _fail_explained(self, context, error):
        try:
            report = self.explain_failure(context, error)
        except Exception:  # the wait's own error is the one to raise; this one is logged
            self.log.exception("Could not explain why the wait for the stages failed")
            raise error from None
        self.log.error("%s", report)
        if isinstance(error, AirflowSensorTimeout):
            raise error  # a timeout stays a timeout: sensors do not retry one
        raise StagesFailedError(report) from error

    def explain_failure(self, context, error):
        """The short account of the failure, naming the run folder's node logs and metrics.json."""
        storage = open_storage(settings_from_env().storage_root, self.aws_conn_id)
        folder = run_folder(context["run_id"])
        return EmrClient(hook=self.hook).summarize_stage_failure(
            self.job_flow_id, self.stage_step_ids, error,
            node_log_location=storage.uri(node_log_folder(folder, self.job_flow_id)),
            metrics_location=storage.uri(f"{folder}/metrics.json"))


class EmrClusterEndedSensor(EmrJobFlowSensor):
    """Waits until the cluster has ended, TERMINATED or TERMINATED_WITH_ERRORS, polling or deferred.

    A cluster that ended by a fault (a failed bootstrap) is as gone as one asked to terminate: the
    teardown's wait succeeds either way. The provider's sensor, deferred, fails on the second.
    """

    def __init__(self, *, timeout, poke_interval, **kwargs):
        super().__init__(target_states=list(CLUSTER_END_STATES), timeout=timeout, poke_interval=poke_interval,
                         max_attempts=attempts_within(timeout, poke_interval), **kwargs)
        self.failed_states = []

    def execute(self, context):
        if not self.deferrable:
            return super().execute(context)
        if not self.poke(context):
            self.defer(
                trigger=EmrClusterEndedTrigger(
                    job_flow_id=self.job_flow_id, waiter_delay=int(self.poke_interval),
                    waiter_max_attempts=self.max_attempts, aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name, verify=self.verify, botocore_config=self.botocore_config),
                method_name="execute_complete",
                # a minute more than the trigger's own attempts: it reports its end before this timeout
                timeout=timedelta(seconds=self.max_attempts * self.poke_interval + 60))
        return None

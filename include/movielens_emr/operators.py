"""A thin layer over the Amazon provider where its operators lack one behaviour the pipeline needs."""
import ast

from airflow.providers.amazon.aws.operators.emr import EmrAddStepsOperator


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
        missing = [name for name, step_id in zip(wanted_names, found) if not step_id]
        raise DuplicateStepsError(f"the cluster has some of this run's steps but not {missing}")
    return None


class EmrAddStepsOnceOperator(EmrAddStepsOperator):
    """EmrAddStepsOperator that a retry cannot make submit the same steps twice.

    Steps are recognised by name (the pipeline's names carry the run id): when all are
    already on the cluster, their ids are returned instead of adding them again.
    """

    def execute(self, context):
        steps = ast.literal_eval(self.steps) if isinstance(self.steps, str) else self.steps
        if self.job_flow_id:
            paginator = self.hook.conn.get_paginator("list_steps")
            listed = [step for page in paginator.paginate(ClusterId=self.job_flow_id) for step in page["Steps"]]
            step_ids = already_submitted(listed, [step["Name"] for step in steps])
            if step_ids:
                self.log.info("Steps already submitted to %s by an earlier try: %s", self.job_flow_id, step_ids)
                context["ti"].xcom_push(key="job_flow_id", value=self.job_flow_id)
                return step_ids
        return super().execute(context)

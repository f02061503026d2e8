"""links.py: the result tasks' link to their run's page, made by the worker and by the API server alike."""
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from airflow.serialization.serialized_objects import DagSerialization

from movielens_emr.airflow.links import (
    PLUGIN_PATH,
    RUN_PAGE_LINK_NAME,
    RunPageLink,
    RunPageTaskOperator,
    run_page_path,
)

DAG_ID = "movielens_similarity"
LINKED_TASKS = {"collect_results", "record_metrics"}
RUN_ID = "manual__2026-03-01T12:00:00.123456+00:00"


def task_instance_key(task_id, run_id=RUN_ID):
    return SimpleNamespace(dag_id=DAG_ID, task_id=task_id, run_id=run_id, try_number=1, map_index=-1)


@pytest.mark.parametrize("run_id, path", [
    ("manual__2026-03-01T12:00:00+00:00", "movielens/runs/manual__2026-03-01T12%3A00%3A00%2B00%3A00"),
    ("scheduled__x", "movielens/runs/scheduled__x"),
    ("a/../b?c#d", "movielens/runs/a%2F..%2Fb%3Fc%23d"),
])
def test_run_page_path_quotes_the_whole_run_id(run_id, path):
    assert run_page_path(run_id) == path
    assert unquote(path.removeprefix(f"{PLUGIN_PATH}/runs/")) == run_id


def test_the_link_is_made_from_the_run_id_alone():
    # The worker passes its task instance, the API server a TaskInstanceKey: both carry the run id.
    assert RunPageLink().get_link(None, ti_key=task_instance_key("collect_results")) == run_page_path(RUN_ID)


def test_the_result_tasks_and_only_they_carry_the_link(dagbag):
    dag = dagbag.get_dag(DAG_ID)
    linked = {task.task_id for task in dag.tasks
              if any(isinstance(link, RunPageLink) for link in task.operator_extra_links)}
    assert linked == LINKED_TASKS
    for task_id in LINKED_TASKS:
        task = dag.get_task(task_id)
        assert isinstance(task, RunPageTaskOperator) and task.custom_operator_name == "@task"


def test_the_result_tasks_still_run_their_callables_with_their_trigger_rules(dagbag):
    from movielens_emr.airflow import similarity_tasks

    dag = dagbag.get_dag(DAG_ID)
    assert dag.get_task("collect_results").python_callable is similarity_tasks.collect_results
    assert dag.get_task("record_metrics").python_callable is similarity_tasks.record_metrics
    assert {dag.get_task(task_id).trigger_rule for task_id in LINKED_TASKS} == {"none_failed_min_one_success"}
    assert [outlet.name for outlet in dag.get_task("collect_results").outlets] == ["movielens_similarities"]


def test_the_api_server_makes_the_link_itself_even_for_a_task_that_never_ran(dagbag):
    """As the UI asks for it: the serialized DAG, the plugin's link registered for RunPageTaskOperator
    (an upstream_failed task has nothing in XCom)."""
    serialized = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.get_dag(DAG_ID)))
    for task in serialized.tasks:
        never_ran = SimpleNamespace(key=task_instance_key(task.task_id))
        if task.task_id in LINKED_TASKS:
            assert task.extra_links == [RUN_PAGE_LINK_NAME]
            assert task.get_extra_links(never_ran, RUN_PAGE_LINK_NAME) == run_page_path(RUN_ID)
        else:  # the Amazon provider's operators keep their own links (EMR Cluster, ...)
            assert RUN_PAGE_LINK_NAME not in task.extra_links, task.task_id


def test_the_plugin_registers_the_link_for_the_result_tasks_operator():
    from airflow import plugins_manager

    [link] = [link for link in plugins_manager.get_operator_extra_links() if isinstance(link, RunPageLink)]
    assert link.operators == [RunPageTaskOperator]

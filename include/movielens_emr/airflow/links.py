"""The operator extra link from a run's result tasks to that run's page in the benchmarks plugin."""
from urllib.parse import quote

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk import BaseOperatorLink
from airflow.sdk.bases.decorator import task_decorator_factory

# Where the plugin mounts its app, relative to the UI's base URL (the UI's pages carry <base href>, so a
# relative link also works when Airflow is served under a path prefix).
PLUGIN_PATH = "movielens"
RUN_PAGE_LINK_NAME = "Results and metrics"


def run_page_path(run_id):
    """The run's page under the UI's base URL; the run id quoted whole (manual__...T10:00:00+00:00)."""
    return f"{PLUGIN_PATH}/runs/{quote(run_id, safe='')}"


class RunPageLink(BaseOperatorLink):
    """The run's page: its metrics, stage times, first neighbours, result files, or why it failed. Known
    from the run id alone, so it is the same on either target and whatever state the task is in."""

    name = RUN_PAGE_LINK_NAME

    def get_link(self, operator, *, ti_key):
        return run_page_path(ti_key.run_id)


class RunPageTaskOperator(_PythonDecoratedOperator):
    """The @task operator with RunPageLink. The worker stores the link in XCom as each try ends; the plugin
    (movielens_benchmarks_plugin) registers it for this class too, so that the API server makes it
    itself, also for a task that never ran (upstream_failed in a failed run)."""

    operator_extra_links = (RunPageLink(),)


RunPageLink.operators = [RunPageTaskOperator]


def task_with_run_page_link(**kwargs):
    """airflow.sdk.task with the run page link: the same arguments, the same task."""
    return task_decorator_factory(decorated_operator_class=RunPageTaskOperator, **kwargs)

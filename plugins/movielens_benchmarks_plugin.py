"""The AirflowPlugin that mounts the MovieLens benchmarks page (package movielens_benchmarks) in the UI, and
registers the link from a run's result tasks to that run's page in it."""
from airflow.plugins_manager import AirflowPlugin
from movielens_benchmarks.app import URL_PREFIX, app

from movielens_emr.airflow.links import RunPageLink


class MovielensBenchmarksPlugin(AirflowPlugin):
    name = "movielens_benchmarks"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "MovieLens benchmarks"}]
    # href is relative: the UI resolves it against its base URL, so the page also works under a path prefix.
    external_views = [{"name": "MovieLens benchmarks", "href": "movielens/", "destination": "nav",
                       "url_route": "movielens-benchmarks", "category": "browse"}]
    # Registered here, the API server makes the link from the run id itself instead of reading the one the
    # worker stored in XCom: a task that never ran (upstream_failed in a failed run) links to the page too.
    operator_extra_links = [RunPageLink()]

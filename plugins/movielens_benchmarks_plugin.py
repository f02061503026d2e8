"""The AirflowPlugin that mounts the MovieLens benchmarks page (package movielens_benchmarks) in the UI."""
from airflow.plugins_manager import AirflowPlugin
from movielens_benchmarks.app import URL_PREFIX, app


class MovielensBenchmarksPlugin(AirflowPlugin):
    name = "movielens_benchmarks"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "MovieLens benchmarks"}]
    # href is relative: the UI resolves it against its base URL, so the page also works under a path prefix.
    external_views = [{"name": "MovieLens benchmarks", "href": "movielens/", "destination": "nav",
                       "url_route": "movielens-benchmarks", "category": "browse"}]

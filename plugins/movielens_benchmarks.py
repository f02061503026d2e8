"""The Airflow UI's "MovieLens benchmarks" page: run history, the latest benchmark report, similar movies."""
import functools
import json
import re
from pathlib import Path
from typing import Annotated

import jinja2
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from markdown_it import MarkdownIt
from sqlalchemy.exc import SQLAlchemyError

from movielens_emr import report as benchmark_report
from movielens_emr.datasets import CATALOGUE
from movielens_emr.history import ensure_schema, fetch_runs, history_engine
from movielens_emr.params import TARGETS
from movielens_emr.results import id_order
from movielens_emr.settings import settings_from_env
from movielens_emr.storage import LocalStorage, open_storage

DAG_ID = "movielens_similarity"
URL_PREFIX = "/movielens"
TEMPLATES = Path(__file__).with_suffix("")
HISTORY_LIMIT = 200
MATCH_LIMIT = 20
# Folder and file names as the benchmark DAG writes them; no leading dot, so no way out of benchmarks/.
SAFE_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"
PLOT_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*\.png$"
# A number as report.py prints it ("1,868.0", "100 %", "1/1", "-"): right-aligned like numbers.
NUMERIC_TEXT = r"[-+]?[\d,]*\.?\d+( %)?|\d+/\d+|-"
YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")


# --- what the page shows, from storage and the history table ---------------------------------------------

def modified_at(storage, key):
    """When a stored object was last written, in seconds since the epoch."""
    if isinstance(storage, LocalStorage):
        return Path(storage.uri(key)).stat().st_mtime
    return storage.hook.get_key(storage.key(key), bucket_name=storage.bucket).last_modified.timestamp()


def latest_report_folder(storage):
    """The benchmarks/<run> folder whose summary.json or report.md was written last, or None."""
    keys = [key for key in storage.list_keys("benchmarks")
            if key.count("/") == 2 and key.rsplit("/", 1)[-1] in ("summary.json", "report.md")]
    newest = max(keys, key=lambda key: modified_at(storage, key), default=None)
    return newest.rsplit("/", 1)[0] if newest else None


def load_report(storage, folder):
    """A benchmark report folder as plain data: its summary, report text and plot file names."""
    names = {key.rsplit("/", 1)[-1] for key in storage.list_keys(folder) if key.count("/") == 2}
    summary, markdown = (storage.get_bytes(f"{folder}/{name}") if name in names else None
                         for name in ("summary.json", "report.md"))
    return {
        "folder": folder.split("/", 1)[1],
        "summary": json.loads(summary) if summary is not None else None,
        "report_markdown": markdown.decode() if markdown is not None else None,
        "plots": sorted(name for name in names if re.match(PLOT_NAME, name)),
    }


def summary_blocks(summary):
    """summary.json as tables: its figures, the configurations as report.md has them, other flat records."""
    summary = summary if isinstance(summary, dict) else {"summary": summary}
    blocks = [{"title": "Figures", "columns": ["figure", "value"], "rows": _figures(summary)}]
    for name, value in summary.items():
        if name == "configurations" and isinstance(value, list):
            blocks.append({"title": "Configurations (medians)", "columns": list(benchmark_report.COLUMNS),
                           "rows": benchmark_report.summary_rows(value)})
        elif isinstance(value, list) and value and all(_is_record(item) for item in value):
            columns = list(dict.fromkeys(column for item in value for column in item))
            blocks.append({"title": name, "columns": columns,
                           "rows": [[item.get(column) for column in columns] for item in value]})
    return [block for block in blocks if block["rows"]]


def _figures(summary):
    """(name, value) of every scalar or list of scalars, one level of mapping flattened as parent.name."""
    rows = []
    for name, value in summary.items():
        if isinstance(value, dict):
            rows += [(f"{name}.{key}", item) for key, item in value.items() if _is_figure(item)]
        elif _is_figure(value) and name != "plots":  # the plots are shown as images
            rows.append((name, value))
    return rows


def report_html(markdown, plot_url):
    """report.md as HTML with raw HTML refused; images naming one of the report's plots point at it."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            src = child.attrGet("src") if child.type == "image" else None
            if src and re.match(PLOT_NAME, src.removeprefix("./")):
                child.attrSet("src", plot_url(src.removeprefix("./")))
    return md.renderer.render(tokens, md.options, {})


def latest_results_key(storage, successful_runs):
    """top_neighbours.json of the newest successful run that has one, else the newest one under runs/."""
    for run in successful_runs:
        key = f"{run['run_folder']}/results/top_neighbours.json"
        if storage.exists(key):
            return key
    keys = [key for key in storage.list_keys("runs") if key.endswith("/results/top_neighbours.json")]
    return max(keys, key=lambda key: modified_at(storage, key), default=None)


def find_similar(movies, query, limit=MATCH_LIMIT):
    """(count, first `limit` matches): movies whose title holds `query` in any case, closest titles first."""
    needle = query.strip().casefold()
    if not needle:
        return 0, []
    found = [(movie_id, movie) for movie_id, movie in movies.items()
             if needle in (movie["title"] or "").casefold()]
    found.sort(key=lambda item: _match_order(item, needle))
    return len(found), [{"movie_id": movie_id, **movie} for movie_id, movie in found[:limit]]


def _match_order(item, needle):
    """Whole titles (with or without the year) first, then titles starting with `needle`, then the rest."""
    movie_id, movie = item
    title = (movie["title"] or "").casefold()
    rank = 0 if needle in (title, YEAR_SUFFIX.sub("", title)) else 1 if title.startswith(needle) else 2
    return rank, title, id_order(movie_id)


def _format(value, float_format):
    """A table cell: floats in `float_format`, integers with thousands separators, containers as JSON."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return format(value, float_format)
    if _is_number(value):
        return f"{value:,}"
    return value if isinstance(value, str) else json.dumps(value)


def _is_number(value):
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value):
    return value is None or isinstance(value, str | int | float | bool)


def _is_figure(value):
    """A scalar, or a non-empty list of them."""
    return _is_scalar(value) or (isinstance(value, list) and value != [] and all(map(_is_scalar, value)))


def _is_record(value):
    return isinstance(value, dict) and all(_is_scalar(item) for item in value.values())


# --- storage and database access, per request --------------------------------------------------------------

def _storage():
    settings = settings_from_env()
    return open_storage(settings.storage_root, settings.aws_conn_id)


def _history(**filters):
    engine = history_engine(settings_from_env())
    ensure_schema(engine)
    return fetch_runs(engine, **filters)


@functools.lru_cache(maxsize=2)
def _neighbours(root, aws_conn_id, key, modified):
    # Keyed by modification time: a rerun that rewrites the file is read again, a page view is not.
    return json.loads(open_storage(root, aws_conn_id).get_bytes(key))


def _latest_neighbours(storage):
    """(run folder, {movie_id: {title, neighbours}}) of the latest results, or 404."""
    try:
        successful = _history(outcome="success", limit=20)
    except SQLAlchemyError:
        successful = []  # the run folders still hold the results
    key = latest_results_key(storage, successful)
    if key is None:
        raise HTTPException(404, f"no results yet: no top_neighbours.json under {storage.uri('runs')}")
    settings = settings_from_env()
    movies = _neighbours(settings.storage_root, settings.aws_conn_id, key, modified_at(storage, key))
    return key.split("/results/")[0], movies


def _latest_report(storage):
    folder = latest_report_folder(storage)
    if folder is None:
        raise HTTPException(404, f"no benchmark report yet: nothing under {storage.uri('benchmarks')}")
    return load_report(storage, folder)


# --- the app -----------------------------------------------------------------------------------------------

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


async def require_run_access(request: Request, credentials: Credentials):
    """401 or 403 unless the caller may read movielens_similarity's runs: Airflow leaves plugin apps open."""
    # Imported here, not at the top: every task process loads the plugins, and these pull in the API server.
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import get_user

    user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                                details=DagDetails(id=DAG_ID), user=user):
        raise HTTPException(403, "Forbidden")


app = FastAPI(title="MovieLens benchmarks", dependencies=[Depends(require_run_access)])
templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
templates.filters.update(number=lambda value, digits=1: _format(value, f",.{digits}f"),
                         figure=lambda value: _format(value, ",.6g"),
                         when=lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "–")
templates.tests["numeric"] = lambda value: _is_number(value) or (
    isinstance(value, str) and re.fullmatch(NUMERIC_TEXT, value) is not None)
FilterParam = Annotated[str | None, Query(max_length=64)]


def _plot_url(folder, name):
    return f"reports/{folder}/plots/{name}"


@app.get("/api/history")
def history_json(dataset: FilterParam = None, target: FilterParam = None, outcome: FilterParam = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_LIMIT):
    return {"runs": _history(dataset=dataset, target=target, outcome=outcome, limit=limit)}


@app.get("/api/report/latest")
def latest_report_json():
    report = _latest_report(_storage())
    plots = [{"name": name, "url": _plot_url(report["folder"], name)} for name in report["plots"]]
    return {**report, "plots": plots}


@app.get("/api/similar")
def similar_json(title: Annotated[str, Query(min_length=1, max_length=200)]):
    run, movies = _latest_neighbours(_storage())
    total, matches = find_similar(movies, title)
    return {"run_folder": run, "query": title, "total": total, "matches": matches}


@app.get("/reports/{folder}/plots/{name}")
def plot_png(folder: Annotated[str, PathParam(pattern=SAFE_NAME)],
             name: Annotated[str, PathParam(pattern=PLOT_NAME)]):
    storage, key = _storage(), f"benchmarks/{folder}/{name}"
    if not storage.exists(key):
        raise HTTPException(404, f"no plot {name} in benchmarks/{folder}")
    return Response(storage.get_bytes(key), media_type="image/png", headers={"Cache-Control": "max-age=60"})


@app.get("/", response_class=HTMLResponse)
def page(dataset: FilterParam = None, target: FilterParam = None,
         title: Annotated[str, Query(max_length=200)] = ""):
    storage = _storage()
    context = {"dag_id": DAG_ID, "dataset": dataset or "", "target": target or "", "title": title.strip(),
               "datasets": list(CATALOGUE), "targets": list(TARGETS), "storage_root": storage.uri("")}
    return templates.get_template("page.html").render(
        **context, **_history_section(dataset, target), **_report_section(storage),
        **_similar_section(storage, title.strip()))


def _history_section(dataset, target):
    try:
        return {"runs": _history(dataset=dataset, target=target, limit=HISTORY_LIMIT), "history_error": None}
    except SQLAlchemyError as error:
        return {"runs": [], "history_error": str(error.__cause__ or error).splitlines()[0]}


def _report_section(storage):
    folder = latest_report_folder(storage)
    if folder is None:
        return {"report": None}
    report = load_report(storage, folder)
    plot_url = functools.partial(_plot_url, report["folder"])
    blocks = summary_blocks(report["summary"]) if report["summary"] is not None else []
    html = report_html(report["report_markdown"] or "", plot_url)
    return {"report": {**report, "blocks": blocks, "html": html,
                       "plot_urls": [(name, plot_url(name)) for name in report["plots"]]}}


def _similar_section(storage, title):
    try:
        run, movies = _latest_neighbours(storage)
    except HTTPException:
        return {"results_run": None, "matches": [], "total": 0}
    total, matches = find_similar(movies, title)
    return {"results_run": run, "matches": matches, "total": total}


class MovielensBenchmarksPlugin(AirflowPlugin):
    name = "movielens_benchmarks"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "MovieLens benchmarks"}]
    # href is relative: the UI resolves it against its base URL, so the page also works under a path prefix.
    external_views = [{"name": "MovieLens benchmarks", "href": "movielens/", "destination": "nav",
                       "url_route": "movielens-benchmarks", "category": "browse"}]

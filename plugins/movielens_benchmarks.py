"""The Airflow UI's "MovieLens benchmarks" page: run history, the latest benchmark report, similar movies."""
import functools
import json
import logging
import re
from pathlib import Path
from typing import Annotated

import jinja2
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from movielens_emr.config.params import (
    DEFAULT_INSTANCE_TYPE,
    INSTANCE_TYPE_PATTERN,
    MAX_BUDGET_USD,
    MAX_DEADLINE_MINUTES,
    TARGETS,
)
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.datasets import CATALOGUE
from movielens_emr.data.storage import LocalStorage, open_storage
from movielens_emr.reporting import benchmark_report
from movielens_emr.reporting.history import fetch_runs, history_engine
from movielens_emr.reporting.results import id_order
from movielens_emr.sizing.advise import plan_run
from movielens_emr.sizing.prices import BadPriceVariable, configured_overrides, price_in_force

log = logging.getLogger(__name__)
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
NOTE_CHARACTERS = 300
PLAN_MAX_NODES = 20


class UnreadableFile(ValueError):
    """A stored result or report file that is not as its writer writes it; the message names it and why."""


class NoResults(LookupError):
    """Nothing of the kind asked for has been written yet."""


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


def read_json(storage, key):
    """A stored JSON document; UnreadableFile when it is not UTF-8 JSON (cut short, or not written by us)."""
    data = storage.get_bytes(key)
    try:
        return json.loads(data)
    except ValueError as error:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        raise UnreadableFile(f"{key} is not valid JSON ({len(data):,} bytes): {error}") from error


def read_text(storage, key):
    """A stored UTF-8 text; UnreadableFile when it is not UTF-8."""
    try:
        return storage.get_bytes(key).decode()
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"{key} is not UTF-8 text: {error}") from error


REPORT_FILES = (("summary.json", "summary", read_json), ("report.md", "report_markdown", read_text))


def load_report(storage, folder):
    """A benchmark report folder as plain data: its summary, report text and plot file names. A file that
    is missing or unreadable is None; why it is unreadable is in `problems`."""
    names = {key.rsplit("/", 1)[-1] for key in storage.list_keys(folder) if key.count("/") == 2}
    report = {"folder": folder.split("/", 1)[1], "summary": None, "report_markdown": None,
              "plots": sorted(name for name in names if re.match(PLOT_NAME, name)), "problems": []}
    for name, field, read in REPORT_FILES:
        try:
            report[field] = read(storage, f"{folder}/{name}") if name in names else None
        except UnreadableFile as error:
            report["problems"].append(str(error))
    return report


def summary_blocks(summary):
    """summary.json as tables: its figures, the configurations as report.md has them, other flat records."""
    summary = summary if isinstance(summary, dict) else {"summary": summary}
    blocks = [{"title": "Figures", "columns": ["figure", "value"], "rows": _figures(summary)}]
    for name, value in summary.items():
        if name == "configurations" and isinstance(value, list):
            blocks.append(configurations_block(value))
        elif isinstance(value, list) and value and all(_is_record(item) for item in value):
            columns = list(dict.fromkeys(column for item in value for column in item))
            blocks.append({"title": name, "columns": columns,
                           "rows": [[item.get(column) for column in columns] for item in value]})
    return [block for block in blocks if block["rows"] or block.get("problem")]


def configurations_block(configurations):
    """The configurations as report.md tabulates them; a `problem` instead of rows if they lack its fields."""
    block = {"title": "Configurations (medians)", "columns": list(benchmark_report.COLUMNS)}
    try:
        return {**block, "rows": benchmark_report.summary_rows(configurations)}
    except (KeyError, TypeError, ValueError) as error:
        reason = f"a configuration has no field {error}" if isinstance(error, KeyError) else error
        return {**block, "rows": [], "problem": f"summary.json: configurations not as movielens_benchmark "
                                                f"writes them ({reason})"}


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


def check_neighbours(movies, key):
    """`movies` if shaped as top_neighbours.json is ({movie id: {"title", "neighbours": [{...}]}}), else
    UnreadableFile naming the first movie that is not."""
    if not isinstance(movies, dict):
        raise UnreadableFile(f"{key}: not a mapping of movie ids to movies but a {type(movies).__name__}")
    for movie_id, movie in movies.items():
        if not _is_movie(movie):
            raise UnreadableFile(f"{key}: movie {movie_id} is not a title with a list of neighbours")
    return movies


def _is_movie(movie):
    """A movie as top_neighbours.json holds it: a title (or null) and a list of flat neighbour records."""
    return (isinstance(movie, dict) and "title" in movie and isinstance(movie["title"], str | None)
            and isinstance(movie.get("neighbours"), list) and all(map(_is_record, movie["neighbours"])))


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
    if value is None or isinstance(value, jinja2.Undefined):
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
    # Read only: the schema is record_run_history's to create and migrate, never a page view's.
    return fetch_runs(history_engine(settings_from_env()), **filters)


@functools.lru_cache(maxsize=2)
def _neighbours(root, aws_conn_id, key, modified):
    # Keyed by modification time: a rerun that rewrites the file is read again, a page view is not.
    return check_neighbours(read_json(open_storage(root, aws_conn_id), key), key)


def _latest_neighbours(storage):
    """(run folder, {movie_id: {title, neighbours}}) of the latest results; NoResults or UnreadableFile."""
    try:
        successful = _history(outcome="success", limit=20)
    except SQLAlchemyError:
        successful = []  # the run folders still hold the results
    key = latest_results_key(storage, successful)
    if key is None:
        raise NoResults(f"no results yet: no top_neighbours.json under {storage.uri('runs')}")
    settings = settings_from_env()
    movies = _neighbours(settings.storage_root, settings.aws_conn_id, key, modified_at(storage, key))
    return key.split("/results/")[0], movies


def _latest_report(storage):
    folder = latest_report_folder(storage)
    if folder is None:
        raise NoResults(f"no benchmark report yet: nothing under {storage.uri('benchmarks')}")
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


# The generated docs and schema are routes of their own below, so that they too need require_run_access.
app = FastAPI(title="MovieLens benchmarks", dependencies=[Depends(require_run_access)],
              docs_url=None, redoc_url=None, openapi_url=None)
templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
templates.filters.update(number=lambda value, digits=1: _format(value, f",.{digits}f"),
                         figure=lambda value: _format(value, ",.6g"),
                         when=lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "–")
templates.tests["numeric"] = lambda value: _is_number(value) or (
    isinstance(value, str) and re.fullmatch(NUMERIC_TEXT, value) is not None)
FilterParam = Annotated[str | None, Query(max_length=64)]


def _plot_url(folder, name):
    return f"reports/{folder}/plots/{name}"


def describe(error):
    """Why a section could not be read, in one line."""
    if isinstance(error, SQLAlchemyError):
        text = str(error.__cause__ or error)  # the driver's own words, without SQLAlchemy's SQL and links
    elif isinstance(error, UnreadableFile):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return (text.splitlines() or [""])[0][:NOTE_CHARACTERS]


# The JSON endpoints' failures, each for its own section: nothing yet, a bad stored file, no database.
@app.exception_handler(NoResults)
def no_results(request, error):
    return JSONResponse({"detail": str(error)}, status_code=404)


@app.exception_handler(UnreadableFile)
def unreadable_file(request, error):
    return JSONResponse({"detail": str(error)}, status_code=502)


@app.exception_handler(SQLAlchemyError)
def unreadable_history(request, error):
    return JSONResponse({"detail": f"the run history database could not be read: {describe(error)}"},
                        status_code=503)


@app.get("/openapi.json", include_in_schema=False)
def openapi_json():
    return app.openapi()


@app.get("/docs", include_in_schema=False)
def swagger_docs():
    # Relative: the app is mounted under URL_PREFIX, itself perhaps under the API server's base path.
    return get_swagger_ui_html(openapi_url="openapi.json", title=f"{app.title} - API")


@app.get("/redoc", include_in_schema=False)
def redoc_docs():
    return get_redoc_html(openapi_url="openapi.json", title=f"{app.title} - API")


@app.get("/api/history")
def history_json(dataset: FilterParam = None, target: FilterParam = None, outcome: FilterParam = None,
                 limit: Annotated[int, Query(ge=1, le=1000)] = HISTORY_LIMIT):
    return {"runs": _history(dataset=dataset, target=target, outcome=outcome, limit=limit)}


@app.get("/api/report/latest")
def latest_report_json():
    report = _latest_report(_storage())
    problems = report.pop("problems")
    if problems:
        raise UnreadableFile("; ".join(problems))
    plots = [{"name": name, "url": _plot_url(report["folder"], name)} for name in report["plots"]]
    return {**report, "plots": plots}


@app.get("/api/similar")
def similar_json(title: Annotated[str, Query(min_length=1, max_length=200)]):
    run, movies = _latest_neighbours(_storage())
    total, matches = find_similar(movies, title)
    return {"run_folder": run, "query": title, "total": total, "matches": matches}


Deadline = Annotated[float | None, Query(gt=0, le=MAX_DEADLINE_MINUTES)]
Budget = Annotated[float | None, Query(gt=0, le=MAX_BUDGET_USD)]
# Checked by _plan: the form's pattern uses a look-ahead that FastAPI's validator cannot compile.
InstanceType = Annotated[str, Query(max_length=64)]


@app.get("/api/plan")
def plan_json(dataset: Annotated[str, Query(pattern="|".join(map(re.escape, CATALOGUE)))],
              target: Annotated[str, Query(pattern="^(emr|local)$")] = "emr",
              instance_type: InstanceType = DEFAULT_INSTANCE_TYPE, deadline_minutes: Deadline = None,
              budget_usd: Budget = None):
    """The sizing advisor's plan (movielens_emr.sizing.advise.plan_run), priced as the pipeline prices its
    runs (`price` says at what and from where); 422 naming why when it has no answer, 503 when the price
    Variable cannot be read."""
    try:
        return _plan(dataset, target, instance_type, deadline_minutes, budget_usd)
    except BadPriceVariable as error:  # the deployment's setting, not the request, is wrong
        raise HTTPException(503, str(error)) from error
    except ValueError as error:  # too little history, or no node count meets the goal
        raise HTTPException(422, str(error)) from error


def _plan(dataset, target, instance_type, deadline_minutes, budget_usd):
    if not re.match(INSTANCE_TYPE_PATTERN, instance_type):
        raise ValueError(f"instance_type: {instance_type!r} is not an EC2 instance type such as m5.xlarge")
    # The pipeline's rule (tasks.run_price): the Variable movielens_hourly_prices, else the built-in table.
    price = price_in_force(instance_type, configured_overrides() if target == "emr" else {}, target)
    rows = _history(target=target, outcome="success", limit=10_000)
    plan = plan_run(rows, dataset, target, instance_type, price.usd_per_node_hour, 1.0,
                    range(1, PLAN_MAX_NODES + 1), deadline_minutes, budget_usd)
    return {**plan, "price": price.as_dict()}


@app.get("/reports/{folder}/plots/{name}")
def plot_png(folder: Annotated[str, PathParam(pattern=SAFE_NAME)],
             name: Annotated[str, PathParam(pattern=PLOT_NAME)]):
    storage, key = _storage(), f"benchmarks/{folder}/{name}"
    if not storage.exists(key):
        raise HTTPException(404, f"no plot {name} in benchmarks/{folder}")
    return Response(storage.get_bytes(key), media_type="image/png", headers={"Cache-Control": "max-age=60"})


@app.get("/", response_class=HTMLResponse)
def page(dataset: FilterParam = None, target: FilterParam = None,
         title: Annotated[str, Query(max_length=200)] = "", plan_dataset: FilterParam = None,
         plan_target: FilterParam = None, plan_instance_type: InstanceType = DEFAULT_INSTANCE_TYPE,
         deadline_minutes: Deadline = None, budget_usd: Budget = None):
    storage, title = _storage(), title.strip()
    plan_request = {"dataset": plan_dataset, "target": plan_target or "emr",
                    "instance_type": plan_instance_type, "deadline_minutes": deadline_minutes,
                    "budget_usd": budget_usd}
    context = {"dag_id": DAG_ID, "dataset": dataset or "", "target": target or "", "title": title,
               "datasets": list(CATALOGUE), "targets": list(TARGETS), "storage_root": storage.uri(""),
               "plan_request": plan_request}
    return templates.get_template("page.html").render(
        **context, history_section=_section("history", context, lambda: _history_section(dataset, target)),
        report_section=_section("report", context, lambda: _report_section(storage)),
        similar_section=_section("similar", context, lambda: _similar_section(storage, title)),
        plan_section=_section("plan", context, lambda: _plan_section(plan_request)))


def _section(name, context, build):
    """The page's section `name`: its template filled with build()'s data or, when reading or showing them
    fails, with the reason as `error`. One bad file or database never takes the other sections down."""
    template = templates.get_template(f"{name}.html")
    try:
        return Markup(template.render(**context, **build()))
    except Exception as error:  # whatever broke, it stays in this section, said in one line and logged
        log.warning("MovieLens benchmarks page: the %s section failed", name, exc_info=True)
        return Markup(template.render(**context, error=describe(error)))


def _history_section(dataset, target):
    return {"runs": _history(dataset=dataset, target=target, limit=HISTORY_LIMIT)}


def _report_section(storage):
    try:
        report = _latest_report(storage)
    except NoResults:
        return {"report": None}
    plot_url = functools.partial(_plot_url, report["folder"])
    blocks = summary_blocks(report["summary"]) if report["summary"] is not None else []
    html = report_html(report["report_markdown"] or "", plot_url)
    return {"report": {**report, "blocks": blocks, "html": html,
                       "plot_urls": [(name, plot_url(name)) for name in report["plots"]]}}


def _plan_section(request):
    if not request["dataset"]:
        return {"plan": None, "problem": None}
    try:
        return {"plan": _plan(**request), "problem": None}
    except ValueError as error:  # the advisor's own answer, not a broken section
        return {"plan": None, "problem": str(error)}


def _similar_section(storage, title):
    try:
        run, movies = _latest_neighbours(storage)
    except NoResults:
        return {"results_run": None, "matches": [], "total": 0}
    total, matches = find_similar(movies, title)
    return {"results_run": run, "matches": matches, "total": total}


class MovielensBenchmarksPlugin(AirflowPlugin):
    name = "movielens_benchmarks"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "MovieLens benchmarks"}]
    # href is relative: the UI resolves it against its base URL, so the page also works under a path prefix.
    external_views = [{"name": "MovieLens benchmarks", "href": "movielens/", "destination": "nav",
                       "url_route": "movielens-benchmarks", "category": "browse"}]

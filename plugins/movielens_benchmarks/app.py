"""The page's web app: its routes and their parameters, who may call them, and failures as HTTP statuses."""
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from movielens_emr.airflow.links import PLUGIN_PATH
from movielens_emr.config.params import DEFAULT_INSTANCE_TYPE, MAX_BUDGET_USD, MAX_DEADLINE_MINUTES
from movielens_emr.config.settings import settings_from_env
from movielens_emr.sizing.prices import BadPriceVariable

from . import planning, run_page, runs, sources, views
from .runs import RUN_ID_PATTERN, NotThisRun, UnsafeName
from .sources import PLOT_NAME, SAFE_NAME, NoResults, UnreadableFile

# Where the run page link (movielens_emr.airflow.links) expects the app.
URL_PREFIX = f"/{PLUGIN_PATH}"
MEDIA_TYPES = {".csv": "text/csv", ".json": "application/json", ".gz": "application/gzip"}

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


async def may_read(request, credentials, entity_name):
    """Whether the caller may read movielens_similarity's `entity_name` (a DagAccessEntity); 401 without a
    user."""
    # Imported here, not at the top: every task process loads the plugins, and these pull in the API server.
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import get_user

    user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    return get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity[entity_name],
                                                details=DagDetails(id=sources.DAG_ID), user=user)


async def require_run_access(request: Request, credentials: Credentials):
    """401 or 403 unless the caller may read movielens_similarity's runs: Airflow leaves plugin apps open."""
    if not await may_read(request, credentials, "RUN"):
        raise HTTPException(403, "Forbidden")


async def may_read_task_logs(request: Request, credentials: Credentials) -> bool:
    """Whether the caller may read movielens_similarity's task logs, where a failed run's reason may be."""
    return await may_read(request, credentials, "TASK_LOGS")


# The generated docs and schema are routes of their own below, so that they too need require_run_access.
app = FastAPI(title="MovieLens benchmarks", dependencies=[Depends(require_run_access)],
              docs_url=None, redoc_url=None, openapi_url=None)

TaskLogAccess = Annotated[bool, Depends(may_read_task_logs)]
RunId = Annotated[str, PathParam(pattern=RUN_ID_PATTERN, max_length=250,
                                 description="the run id of a movielens_similarity run")]
FilterParam = Annotated[str | None, Query(max_length=64)]
Title = Annotated[str, Query(max_length=200)]
# The plan's fields are text: a form sends a field left empty as "", which means absent. planning.plan_request
# reads them, so that the page can say in its plan section what is wrong with one.
InstanceType = Annotated[str | None, Query(
    max_length=200, description=f"an EC2 instance type; empty: {DEFAULT_INSTANCE_TYPE}")]
Deadline = Annotated[str | None, Query(
    max_length=200, description=f"minutes of cluster time, more than 0 and at most {MAX_DEADLINE_MINUTES:,}; "
                                "empty: none")]
Budget = Annotated[str | None, Query(
    max_length=200, description=f"US dollars, more than 0 and at most {MAX_BUDGET_USD:,}; empty: none")]


# The JSON endpoints' failures, each for its own section: nothing yet, a bad stored file, no database.
@app.exception_handler(NoResults)
def no_results(request, error):
    return JSONResponse({"detail": str(error)}, status_code=404)


@app.exception_handler(UnreadableFile)
def unreadable_file(request, error):
    return JSONResponse({"detail": str(error)}, status_code=502)


@app.exception_handler(UnsafeName)
def unsafe_name(request, error):
    return JSONResponse({"detail": str(error)}, status_code=422)


@app.exception_handler(NotThisRun)
def not_this_run(request, error):
    return JSONResponse({"detail": str(error)}, status_code=404)


@app.exception_handler(SQLAlchemyError)
def unreadable_history(request, error):
    return JSONResponse({"detail": f"the run history database could not be read: {views.describe(error)}"},
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
                 limit: Annotated[int, Query(ge=1, le=1000)] = views.HISTORY_LIMIT):
    return {"runs": sources.history(dataset=dataset, target=target, outcome=outcome, limit=limit)}


@app.get("/api/report/latest")
def latest_report_json():
    report = sources.latest_report(sources.deployment_storage())
    problems = report.pop("problems")
    if problems:
        raise UnreadableFile("; ".join(problems))
    plots = [{"name": name, "url": views.plot_url(report["folder"], name)} for name in report["plots"]]
    return {**report, "plots": plots}


@app.get("/api/similar")
def similar_json(title: Annotated[str, Query(min_length=1, max_length=200)]):
    run, movies = sources.latest_neighbours(sources.deployment_storage())
    total, matches = views.find_similar(movies, title)
    return {"run_folder": run, "query": title, "total": total, "matches": matches}


@app.get("/api/plan")
def plan_json(dataset: Annotated[str, Query(pattern=planning.DATASET_PATTERN)],
              target: Annotated[str | None, Query(pattern=planning.TARGET_PATTERN)] = None,
              instance_type: InstanceType = DEFAULT_INSTANCE_TYPE, deadline_minutes: Deadline = None,
              budget_usd: Budget = None):
    """The sizing advisor's plan (movielens_emr.sizing.advise.plan_run), priced as the pipeline prices its
    runs (`price` says at what and from where), for the deployment's own target unless `target` names one;
    on a cluster target also `across_types`, the plan across the instance catalogue's types with Spot task
    nodes (its Pareto front, each type's best and the recommendation with its reason, or `unavailable`: why
    not), and `single_machine`, this machine's time for the same input beside the cluster's;
    422 naming why when it has no answer (a field not as asked, too little history and which runs would
    let it answer, no node count meeting the goal), 503 when the price Variable cannot be read."""
    form = planning.PlanForm(dataset, target, instance_type, deadline_minutes, budget_usd)
    try:
        return planning.plan_for(planning.plan_request(form, settings_from_env().default_target))
    except BadPriceVariable as error:  # the deployment's setting, not the request, is wrong
        raise HTTPException(503, str(error)) from error
    except ValueError as error:  # a field, too little history, or no node count meets the goal
        raise HTTPException(422, str(error)) from error


@app.get("/reports/{folder}/plots/{name}")
def plot_png(folder: Annotated[str, PathParam(pattern=SAFE_NAME)],
             name: Annotated[str, PathParam(pattern=PLOT_NAME)]):
    storage, key = sources.deployment_storage(), f"benchmarks/{folder}/{name}"
    if not storage.exists(key):
        raise HTTPException(404, f"no plot {name} in benchmarks/{folder}")
    return Response(storage.get_bytes(key), media_type="image/png", headers={"Cache-Control": "max-age=60"})


@app.get("/api/runs/{run_id}")
def run_json(run_id: RunId, read_logs: TaskLogAccess):
    """A run of movielens_similarity as its page shows it: Airflow's state and failed tasks, its folder,
    metrics.json, result files and why it failed; 404 when neither Airflow nor the storage root knows it."""
    record = run_page.run_record(sources.deployment_storage(), run_id, read_logs)
    if not run_page.is_known(record):
        raise HTTPException(404, f"no run {run_id} of {sources.DAG_ID}")
    return jsonable_encoder(record)


@app.get("/runs/{run_id}", response_class=HTMLResponse)
def run_html(run_id: RunId, read_logs: TaskLogAccess, title: Title = ""):
    html, status = run_page.page(sources.deployment_storage(), run_id, title.strip(), read_logs)
    return HTMLResponse(html, status_code=status)


@app.get("/runs/{run_id}/stages.png")
def run_stage_chart(run_id: RunId):
    storage = sources.deployment_storage()
    folder = _stored_folder(storage, run_id)
    chart = run_page.stage_chart_png(run_id, runs.read_metrics(storage, folder) or {})
    if chart is None:
        raise HTTPException(404, f"no stage times in {folder}/metrics.json")
    return Response(chart, media_type="image/png", headers={"Cache-Control": "max-age=60"})


@app.get("/runs/{run_id}/metrics.json")
def run_metrics_file(run_id: RunId):
    storage = sources.deployment_storage()
    return stored_file(storage, runs.metrics_key(storage, _stored_folder(storage, run_id)))


@app.get("/runs/{run_id}/results/{name}")
def run_result_file(run_id: RunId, name: Annotated[str, PathParam(pattern=SAFE_NAME, max_length=200)]):
    storage = sources.deployment_storage()
    return stored_file(storage, runs.result_key(storage, _stored_folder(storage, run_id), name))


def _stored_folder(storage, run_id):
    folder = runs.owned_folder(storage, run_id)
    if folder is None:
        raise NoResults(f"nothing of run {run_id} is stored under {storage.uri('runs')}")
    return folder


def stored_file(storage, key):
    """A stored file as a download, streamed: from its path on this machine, or from S3 in chunks."""
    name = key.rsplit("/", 1)[-1]
    media_type = MEDIA_TYPES.get("." + name.rsplit(".", 1)[-1], "application/octet-stream")
    path = runs.local_file(storage, key)
    if path is not None:
        return FileResponse(path, media_type=media_type, filename=name)
    return StreamingResponse(runs.s3_chunks(storage, key), media_type=media_type,
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@app.get("/", response_class=HTMLResponse)
def page(read_logs: TaskLogAccess, dataset: FilterParam = None, target: FilterParam = None, title: Title = "",
         plan_dataset: FilterParam = None, plan_target: FilterParam = None,
         plan_instance_type: InstanceType = None, deadline_minutes: Deadline = None,
         budget_usd: Budget = None):
    plan_form = planning.PlanForm(plan_dataset, plan_target, plan_instance_type, deadline_minutes, budget_usd)
    return views.page(sources.deployment_storage(), dataset, target, title.strip(), plan_form, read_logs)

"""The page's web app: its routes and their parameters, who may call them, and failures as HTTP statuses."""
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from movielens_emr.config.params import DEFAULT_INSTANCE_TYPE, MAX_BUDGET_USD, MAX_DEADLINE_MINUTES
from movielens_emr.config.settings import settings_from_env
from movielens_emr.sizing.prices import BadPriceVariable

from . import planning, sources, views
from .sources import PLOT_NAME, SAFE_NAME, NoResults, UnreadableFile

URL_PREFIX = "/movielens"

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


async def require_run_access(request: Request, credentials: Credentials):
    """401 or 403 unless the caller may read movielens_similarity's runs: Airflow leaves plugin apps open."""
    # Imported here, not at the top: every task process loads the plugins, and these pull in the API server.
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.api_fastapi.core_api.security import get_user

    user = await get_user(request, _oauth_token=None, bearer_credentials=credentials)
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN,
                                                details=DagDetails(id=sources.DAG_ID), user=user):
        raise HTTPException(403, "Forbidden")


# The generated docs and schema are routes of their own below, so that they too need require_run_access.
app = FastAPI(title="MovieLens benchmarks", dependencies=[Depends(require_run_access)],
              docs_url=None, redoc_url=None, openapi_url=None)

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


@app.get("/", response_class=HTMLResponse)
def page(dataset: FilterParam = None, target: FilterParam = None, title: Title = "",
         plan_dataset: FilterParam = None, plan_target: FilterParam = None,
         plan_instance_type: InstanceType = None, deadline_minutes: Deadline = None,
         budget_usd: Budget = None):
    plan_form = planning.PlanForm(plan_dataset, plan_target, plan_instance_type, deadline_minutes, budget_usd)
    return views.page(sources.deployment_storage(), dataset, target, title.strip(), plan_form)

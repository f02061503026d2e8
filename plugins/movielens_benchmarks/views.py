"""What the page shows: its sections, each filled from the sources and failing alone; tables and formats."""
import functools
import json
import logging
import re
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError

from movielens_emr.config.params import TARGETS
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.datasets import CATALOGUE
from movielens_emr.engine.similarity.results import id_order
from movielens_emr.reporting import benchmark_report
from movielens_emr.sizing.durations import duration

from . import failures, planning, runs, sources
from .sources import PLOT_NAME, NoResults, UnreadableFile, is_record, is_scalar

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).with_name("templates")
HISTORY_LIMIT = 200
# The newest failed runs in the history whose reason is read (metrics.json, the failed tasks' logs).
REASON_LIMIT = 20
# A failed run's reason in the history: this many characters at most, the whole in its tooltip.
REASON_CHARACTERS = 160
MATCH_LIMIT = 20
# A number as report.py prints it ("1,868.0", "100 %", "1/1", "-"): right-aligned like numbers.
NUMERIC_TEXT = r"[-+]?[\d,]*\.?\d+( %)?|\d+/\d+|-"
YEAR_SUFFIX = re.compile(r"\s*\(\d{4}\)\s*$")
NOTE_CHARACTERS = 300


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


def _size(size):
    """A file's size as people read it: 512 B, 12.2 MB."""
    if not _is_number(size):
        return "–"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000


templates = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
templates.filters.update(number=lambda value, digits=1: _format(value, f",.{digits}f"), size=_size,
                         figure=lambda value: _format(value, ",.6g"),
                         duration=lambda seconds: "–" if seconds is None else duration(seconds),
                         when=lambda value: value.strftime("%Y-%m-%d %H:%M UTC") if value else "–")
templates.globals["REASON_CHARACTERS"] = REASON_CHARACTERS
templates.tests["numeric"] = lambda value: _is_number(value) or (
    isinstance(value, str) and re.fullmatch(NUMERIC_TEXT, value) is not None)


# --- the page and its sections -----------------------------------------------------------------------------

def page(storage, dataset, target, title, plan_form, read_logs=False):
    """The whole page, its history filtered by dataset and target, its lookup of `title` and its plan of
    `plan_form` (a planning.PlanForm); a section that fails shows why in its place (section). `read_logs`:
    the caller may read the DAG's task logs, where a failed run's reason may be."""
    default_target = settings_from_env().default_target
    context = {"dag_id": sources.DAG_ID, "dataset": dataset or "", "target": target or "", "title": title,
               "datasets": list(CATALOGUE), "targets": list(TARGETS), "storage_root": storage.uri(""),
               "plan_form": plan_form.shown(default_target)}
    return templates.get_template("page.html").render(
        **context, history_section=section("history", context,
                                lambda: history_section(storage, dataset, target, read_logs)),
        report_section=section("report", context, lambda: report_section(storage)),
        similar_section=section("similar", context, lambda: similar_section(storage, title)),
        plan_section=section("plan", context, lambda: plan_section(plan_form, default_target)))


def section(name, context, build):
    """The page's section `name`: its template filled with build()'s data or, when reading or showing them
    fails, with the reason as `error`. One bad file or database never takes the other sections down."""
    template = templates.get_template(f"{name}.html")
    try:
        return Markup(template.render(**context, **build()))
    except Exception as error:  # whatever broke, it stays in this section, said in one line and logged
        log.warning("MovieLens benchmarks page: the %s section failed", name, exc_info=True)
        return Markup(template.render(**context, error=describe(error)))


def history_section(storage, dataset, target, read_logs):
    """The history's rows, each with its run page (`page`) and, for the newest REASON_LIMIT failed runs,
    why it failed (`reason`, failures.reason_of)."""
    rows = sources.history(dataset=dataset, target=target, limit=HISTORY_LIMIT)
    failed = [row["run_id"] for row in rows if row["outcome"] == "failed"][:REASON_LIMIT]
    reasons = {run_id: failure_reason(storage, run_id, read_logs) for run_id in failed}
    return {"runs": [{**row, "page": runs.page_path(row["run_id"]), "reason": reasons.get(row["run_id"])}
                     for row in rows]}


def failure_reason(storage, run_id, read_logs):
    """failures.reason_of, or None when it cannot be read: the row still names the failed tasks."""
    try:
        return failures.reason_of(storage, run_id, read_logs)
    except Exception:  # a row of the history is never lost to its failure's account
        log.warning("MovieLens benchmarks page: why %s failed could not be read", run_id, exc_info=True)
        return None


def report_section(storage):
    try:
        report = sources.latest_report(storage)
    except NoResults:
        return {"report": None}
    url = functools.partial(plot_url, report["folder"])
    blocks = summary_blocks(report["summary"]) if report["summary"] is not None else []
    html = report_html(report["report_markdown"] or "", url)
    return {"report": {**report, "blocks": blocks, "html": html,
                       "plot_urls": [(name, url(name)) for name in report["plots"]]}}


def similar_section(storage, title):
    try:
        run, movies = sources.latest_neighbours(storage)
    except NoResults:
        return {"results_run": None, "matches": [], "total": 0}
    total, matches = find_similar(movies, title)
    return {"results_run": run, "matches": matches, "total": total}


def plan_section(plan_form, default_target):
    """The plan of a form that names a dataset; else, why there is none: a field to correct (`invalid`),
    runs the history lacks (`needs_history`), or the advisor's or price's own answer (`problem`)."""
    if not plan_form.dataset:
        return {}
    try:
        return {"plan": planning.plan_for(planning.plan_request(plan_form, default_target))}
    except planning.InvalidPlanField as error:
        return {"invalid": str(error)}
    except planning.HistoryCannotAnswer as error:
        return {"needs_history": error}
    except ValueError as error:  # no node count meets the goal, or a malformed price Variable
        return {"problem": str(error)}


def plot_url(folder, name):
    """A report's plot, relative to the page (and to the JSON endpoints, under the same prefix)."""
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


# --- the report's tables and text --------------------------------------------------------------------------

def summary_blocks(summary):
    """summary.json as tables: its figures, the configurations as report.md has them, other flat records."""
    summary = summary if isinstance(summary, dict) else {"summary": summary}
    blocks = [{"title": "Figures", "columns": ["figure", "value"], "rows": _figures(summary)}]
    for name, value in summary.items():
        if name == "configurations" and isinstance(value, list):
            blocks.append(configurations_block(value))
        elif isinstance(value, list) and value and all(is_record(item) for item in value):
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


def _is_figure(value):
    """A scalar, or a non-empty list of them."""
    return is_scalar(value) or (isinstance(value, list) and value != [] and all(map(is_scalar, value)))


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


# --- the lookup of similar movies --------------------------------------------------------------------------

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

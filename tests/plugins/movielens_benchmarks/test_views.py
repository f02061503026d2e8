"""What the page shows: its tables, texts, formats and sections, without a web server."""
import datetime
import json

import pytest
from markupsafe import escape
from sqlalchemy.exc import OperationalError

from plugins.movielens_benchmarks import views
from plugins.movielens_benchmarks.planning import PlanForm
from plugins.movielens_benchmarks.sources import UnreadableFile
from plugins.movielens_benchmarks.views import find_similar, report_html, summary_blocks

from tests.plugins.movielens_benchmarks.stored import add_sized_runs, add_typed_runs, neighbours_json


def test_find_similar_ranks_whole_titles_then_prefixes():
    movies = json.loads(neighbours_json("Heat (1995)", "Heatwave (2010)", "The Heat (2013)", "Cheats (2002)"))
    assert [match["title"] for match in find_similar(movies, " heat ")[1]] == [
        "Heat (1995)", "Heatwave (2010)", "Cheats (2002)", "The Heat (2013)"]
    assert find_similar(movies, "heat", limit=1)[0] == 4


def test_find_similar_of_a_blank_query_finds_nothing():
    assert find_similar(json.loads(neighbours_json("Heat (1995)")), "  ") == (0, [])


def test_summary_blocks_of_any_document():
    blocks = summary_blocks({"dataset": "ml-1m", "params": {"nodes": [2, 4], "deep": {"x": 1}},
                             "plots": ["a.png"], "runs": [{"a": 1}, {"b": 2}], "nested": [{"a": {"b": 1}}],
                             "none_yet": []})
    assert blocks == [
        {"title": "Figures", "columns": ["figure", "value"],
         "rows": [("dataset", "ml-1m"), ("params.nodes", [2, 4])]},
        {"title": "runs", "columns": ["a", "b"], "rows": [[1, None], [None, 2]]},
    ]


def test_report_html_refuses_raw_html_and_points_plot_images_at_the_plot_route():
    html = report_html('<img src=x onerror=alert(1)>\n\n![a](./a.png) ![b](https://example.com/b.png)',
                       lambda name: f"plots/{name}")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert '<img src="plots/a.png" alt="a"' in html and '<img src="https://example.com/b.png"' in html


@pytest.mark.parametrize("value, number, figure", [
    (1868.0, "1,868.0", "1,868"), (12345, "12,345", "12,345"), (None, "–", "–"), ("ml-1m", "ml-1m", "ml-1m"),
    ([2, 4], "[2, 4]", "[2, 4]"), (0.123456789, "0.1", "0.123457"),
])
def test_cells_are_formatted_as_numbers_and_figures(value, number, figure):
    assert views.templates.filters["number"](value) == number
    assert views.templates.filters["figure"](value) == figure


def test_times_are_shown_in_utc_minutes():
    when = views.templates.filters["when"]
    moment = datetime.datetime(2026, 3, 1, 12, 30, 59, tzinfo=datetime.timezone.utc)
    assert when(moment) == "2026-03-01 12:30 UTC"
    assert when(None) == "–"


@pytest.mark.parametrize("text, numeric", [
    ("1,868.0", True), ("100 %", True), ("1/1", True), ("-", True), (7, True),
    ("ml-1m", False), (True, False),
])
def test_numeric_cells_are_told_apart(text, numeric):
    assert views.templates.tests["numeric"](text) is numeric


def driver_error(message):
    """A database error as SQLAlchemy raises it, from the driver's own."""
    error = OperationalError("SELECT 1", {}, ConnectionRefusedError(message))
    error.__cause__ = error.orig
    return error


@pytest.mark.parametrize("error, note", [
    (UnreadableFile("runs/x/results/top_neighbours.json is not valid JSON"),
     "runs/x/results/top_neighbours.json is not valid JSON"),
    (driver_error("connection refused\nIs the server running?"), "connection refused"),
    (RuntimeError("x" * 400), "RuntimeError: " + "x" * 286),
], ids=["a stored file", "the history database", "anything else"])
def test_describe_says_why_in_one_short_line(error, note):
    assert views.describe(error) == note


def test_a_section_that_fails_shows_why_in_its_place():
    def broken():
        raise RuntimeError("no history today")

    html = views.section("history", {"datasets": [], "targets": []}, broken)
    assert "The run history database could not be read: RuntimeError: no history today" in html


def test_the_plan_section_is_empty_until_a_dataset_is_chosen():
    assert views.plan_section(PlanForm(deadline_minutes="20"), "local") == {}


def test_the_plan_section_names_a_field_to_correct():
    section = views.plan_section(PlanForm(dataset="ml-1m", budget_usd="cheap"), "local")
    assert section == {"invalid": "budget_usd must be a number of US dollars, more than 0 and at most "
                                  "100,000; got 'cheap'"}


def test_the_plan_section_shows_the_front_across_types_the_choice_and_this_machine(storage_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    add_sized_runs(storage_root, "emr")
    add_sized_runs(storage_root, "local")
    add_typed_runs(storage_root)
    form = PlanForm("ml-1m", "emr", deadline_minutes="20")
    data = views.plan_section(form, "local")
    html = views.section("plan", {"datasets": ["ml-1m"], "targets": ["emr", "local"],
                                  "plan_form": form.shown("local")}, lambda: data)
    across = data["plan"]["across_types"]
    chosen = across["recommendation"]
    assert (f"Recommended across types: {chosen['node_count']} × {chosen['instance_type']}" in html
            and f"Why: {escape(chosen['reason'])}." in html)
    pareto = html.split('<table class="plan pareto">')[1].split("</table>")[0]
    assert pareto.count("<tr class=") == len(across["pareto"]) and '<tr class="spot' in pareto
    assert "If Spot lost" in pareto and "<strong>assumed</strong> Spot price" in html
    assert '<table class="plan best-by-type">' in html
    assert ("Against a single machine: a single machine (this one, 8 parallel tasks) takes 10.9 min, "
            "measured by run sized-local-8-1.0") in html
    assert "Against a single machine, across types: " in html

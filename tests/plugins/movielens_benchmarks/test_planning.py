"""The page's "Plan a run": its fields read as the advisor takes them, its plan, the runs it lacks."""
import re

import pytest

from movielens_emr.config.instances import catalogue
from movielens_emr.config.params import TARGETS
from plugins.movielens_benchmarks import planning
from plugins.movielens_benchmarks.planning import (
    HistoryCannotAnswer,
    InvalidPlanField,
    PlanForm,
    PlanRequest,
    plan_request,
)

from tests.plugins.movielens_benchmarks.stored import add_sized_runs, add_typed_runs


@pytest.mark.parametrize("blank", [None, "", "  "])
def test_blank_fields_are_absent(blank):
    form = PlanForm("ml-1m", target=blank, instance_type=blank, deadline_minutes=blank, budget_usd=blank)
    assert plan_request(form, "local") == PlanRequest("ml-1m", "local", "m5.xlarge", None, None)


@pytest.mark.parametrize("default_target", ["emr", "local"])
def test_the_target_is_the_deployments_unless_one_is_chosen(default_target):
    assert plan_request(PlanForm("ml-1m"), default_target).target == default_target
    assert plan_request(PlanForm("ml-1m", target="emr"), default_target).target == "emr"


def test_numbers_are_read_as_numbers():
    form = PlanForm("ml-1m", "emr", "c5.2xlarge", deadline_minutes=" 20 ", budget_usd="0.5")
    assert plan_request(form, "local") == PlanRequest("ml-1m", "emr", "c5.2xlarge", 20.0, 0.5)


@pytest.mark.parametrize("field, value, message", [
    ("deadline_minutes", "soon",
     "deadline_minutes must be a number of minutes, more than 0 and at most 10,080; got 'soon'"),
    ("deadline_minutes", "0", "got '0'"),
    ("deadline_minutes", "10081", "got '10081'"),
    ("deadline_minutes", "nan", "got 'nan'"),
    ("deadline_minutes", "inf", "got 'inf'"),
    ("budget_usd", "-1", "budget_usd must be a number of US dollars, more than 0 and at most 100,000; "
                         "got '-1'"),
    ("budget_usd", "$5", "got '$5'"),
    ("instance_type", "huge\n", "instance_type: 'huge\\n' is not an EC2 instance type such as m5.xlarge"),
    ("target", "emr2", "target must be one of emr, local; got 'emr2'"),
    ("target", "local\n", "target must be one of emr, local; got 'local\\n'"),
    ("dataset", "xml-1mx", "dataset must be one of .*ml-1m.*; got 'xml-1mx'"),
    ("dataset", None, "dataset must be one of .*; got None"),
])
def test_a_field_not_as_the_form_asks_is_named(field, value, message):
    form = PlanForm(**{"dataset": "ml-1m", field: value})
    with pytest.raises(InvalidPlanField, match=re.escape(message) if ".*" not in message else message):
        plan_request(form, "local")


def test_the_target_pattern_is_made_of_the_targets():
    assert planning.TARGET_PATTERN == "^(" + "|".join(TARGETS) + ")$" == "^(emr|local)$"
    assert [name for name in ("emr", "local", "emrx", "") if re.fullmatch(planning.TARGET_PATTERN, name)] == [
        "emr", "local"]


def test_the_form_shows_what_was_sent_and_defaults_for_blanks():
    form = PlanForm("ml-1m", target="", instance_type="", deadline_minutes="soon", budget_usd=None)
    assert form.shown("emr") == {"dataset": "ml-1m", "target": "emr", "instance_type": "m5.xlarge",
                                 "deadline_minutes": "soon", "budget_usd": ""}


@pytest.mark.parametrize("target, needed", [
    ("local", "4 or more successful runs of movielens_similarity on local, at two or more node counts, "
              "one of them at least of ml-100k"),
    ("emr", "4 or more successful runs of movielens_similarity on emr of c5.xlarge, at two or more node "
            "counts (1 and 2 nodes count as one: both run their tasks on one machine), one of them at least "
            "of ml-100k"),
])
def test_runs_needed_names_the_target_its_machines_and_the_dataset(target, needed):
    assert planning.runs_needed(PlanRequest("ml-100k", target, "c5.xlarge")) == (
        f"Runs that would let it answer: {needed}; runs on a sample of the users (sample_fraction) count too")


def test_plan_for_says_which_runs_would_let_the_history_answer(storage_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    add_sized_runs(storage_root, "local")
    with pytest.raises(HistoryCannotAnswer) as raised:
        planning.plan_for(PlanRequest("ml-25m", "local"))
    assert raised.value.reason.startswith("no successful run of ml-25m with a pair work count")
    assert raised.value.runs_needed == planning.runs_needed(PlanRequest("ml-25m", "local"))
    assert str(raised.value) == f"{raised.value.reason}. {raised.value.runs_needed}"


def test_plan_for_fits_the_targets_runs_at_its_price(storage_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    add_sized_runs(storage_root, "local")
    plan = planning.plan_for(PlanRequest("ml-1m", "local", deadline_minutes=20))
    assert plan["model"]["runs"] == 6 and plan["price"]["source"] == "local"
    assert plan["recommendation"]["cluster_seconds"] <= 20 * 60


@pytest.fixture
def history_here(storage_root, monkeypatch):
    """The history database in the storage root, as on a deployment without a history connection."""
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    return storage_root


def test_plan_for_sets_this_machines_runs_beside_a_cluster_plan(history_here):
    add_sized_runs(history_here, "emr")
    add_sized_runs(history_here, "local")
    plan = planning.plan_for(PlanRequest("ml-1m", "emr", deadline_minutes=20))
    # The fastest local run of the whole input: 8 parallel tasks.
    assert (plan["single_machine"]["run_id"], plan["single_machine"]["source"]) == ("sized-local-8-1.0",
                                                                                    "measured")
    assert plan["model"]["runs"] == 6  # the local runs reach the single-machine line, not the EMR model
    assert plan["across_types"]["single_machine"]["run_id"] == "sized-local-8-1.0"


def test_plan_for_plans_across_the_catalogues_types_with_spot_task_nodes(history_here):
    add_sized_runs(history_here, "emr")
    add_typed_runs(history_here)
    across = planning.plan_for(PlanRequest("ml-1m", "emr", deadline_minutes=20))["across_types"]
    planned = {"m5.xlarge", "c5.2xlarge", "r5.xlarge"}
    assert set(across["types"]) == planned and set(across["unplanned"]) == set(catalogue()) - planned
    assert {option["market"] for option in across["pareto"]} >= {"spot"}
    chosen = across["recommendation"]
    meeting = [option["cost_usd"] for option in across["options"] if option["cluster_seconds"] <= 1200]
    assert chosen["cost_usd"] == min(meeting) and "the cheapest within 20 min" in chosen["reason"]
    assert across["single_machine"] is None  # no local run in this history


def test_a_plan_for_one_machine_has_no_types_to_choose(history_here):
    add_sized_runs(history_here, "local")
    assert planning.plan_for(PlanRequest("ml-1m", "local"))["across_types"] is None


def test_across_types_says_why_it_has_no_answer(history_here):
    add_sized_runs(history_here, "emr")
    rows = planning.planning_history("emr")
    answer = planning.across_types(rows, PlanRequest("ml-1m", "emr", deadline_minutes=1), {})
    assert re.match(r"no instance type and node count fits: the fastest, \d+ x m5\.xlarge on-demand, takes ",
                    answer["unavailable"])
    answer = planning.across_types(rows, PlanRequest("ml-25m", "emr"), {})
    assert answer["unavailable"].startswith("no successful run of ml-25m with a pair work count")

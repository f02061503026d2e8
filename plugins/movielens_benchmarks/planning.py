"""The page's "Plan a run": the form's fields as the advisor takes them, its plan at the pipeline's prices for
the chosen instance type and across the instance catalogue's types (with Spot task nodes), this machine's time
beside them, and which runs would let it answer when the history cannot."""
import re
from dataclasses import dataclass

from movielens_emr.config.instances import catalogue
from movielens_emr.config.params import (
    DEFAULT_INSTANCE_TYPE,
    INSTANCE_TYPE_PATTERN,
    MAX_BUDGET_USD,
    MAX_DEADLINE_MINUTES,
    TARGETS,
)
from movielens_emr.config.targets import LOCAL, target_named
from movielens_emr.data.datasets import CATALOGUE
from movielens_emr.sizing.advise import plan_run
from movielens_emr.sizing.counted_work import counted_pair_work
from movielens_emr.sizing.instance_plan import plan_instance_types
from movielens_emr.sizing.model import MIN_RUNS, NotEnoughHistory
from movielens_emr.sizing.prices import configured_overrides, price_in_force

from . import sources

PLAN_MAX_NODES = 20
# A plan is fitted to every successful run of its target (and sets this machine's beside a cluster's): this
# many history rows at most of each.
PLAN_HISTORY_ROWS = 10_000
# The number fields: what each holds, and its largest value (the trigger form's bounds).
NUMBER_FIELDS = {"deadline_minutes": ("a number of minutes", MAX_DEADLINE_MINUTES),
                 "budget_usd": ("a number of US dollars", MAX_BUDGET_USD)}


def one_of(names):
    """A pattern that matches exactly one of `names`, whole."""
    return "^(" + "|".join(map(re.escape, names)) + ")$"


DATASET_PATTERN = one_of(CATALOGUE)
TARGET_PATTERN = one_of(TARGETS)


class InvalidPlanField(ValueError):
    """A plan field that is not as the form asks; the message names it, what it must be and what it got."""


class HistoryCannotAnswer(ValueError):
    """Too few usable runs for the advisor's model: its reason, and which runs would let it answer."""

    def __init__(self, reason, runs_needed):
        super().__init__(f"{reason}. {runs_needed}")
        self.reason = reason
        self.runs_needed = runs_needed


@dataclass(frozen=True)
class PlanForm:
    """The plan's fields as a form or the API sends them: text, None or blank when left empty."""

    dataset: str | None = None
    target: str | None = None
    instance_type: str | None = None
    deadline_minutes: str | None = None
    budget_usd: str | None = None

    def shown(self, default_target):
        """What the form's fields show: the text sent, a blank target or instance type as its default."""
        return {"dataset": self.dataset or "", "target": _text(self.target) or default_target,
                "instance_type": _text(self.instance_type) or DEFAULT_INSTANCE_TYPE,
                "deadline_minutes": self.deadline_minutes or "", "budget_usd": self.budget_usd or ""}


@dataclass(frozen=True)
class PlanRequest:
    """A plan request as the advisor takes it."""

    dataset: str
    target: str
    instance_type: str = DEFAULT_INSTANCE_TYPE
    deadline_minutes: float | None = None
    budget_usd: float | None = None


def plan_request(form, default_target):
    """The PlanRequest of a PlanForm. A blank field is absent: the deployment's target, the default instance
    type, no deadline, no budget. InvalidPlanField names the first field that is not as the form asks."""
    return PlanRequest(
        dataset=_choice("dataset", form.dataset, DATASET_PATTERN, CATALOGUE),
        target=_choice("target", _text(form.target) or default_target, TARGET_PATTERN, TARGETS),
        instance_type=_instance_type(_text(form.instance_type) or DEFAULT_INSTANCE_TYPE),
        deadline_minutes=_number("deadline_minutes", form.deadline_minutes),
        budget_usd=_number("budget_usd", form.budget_usd))


def _text(value):
    """A field's text, or None when it was left empty (or holds only spaces)."""
    return value if value and value.strip() else None


def _choice(name, value, pattern, choices):
    if value is None or not re.fullmatch(pattern, value):
        raise InvalidPlanField(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _instance_type(value):
    if not re.match(INSTANCE_TYPE_PATTERN, value):
        raise InvalidPlanField(f"instance_type: {value!r} is not an EC2 instance type such as m5.xlarge")
    return value


def _number(name, value):
    """A number field's value, None when left empty."""
    if _text(value) is None:
        return None
    what, largest = NUMBER_FIELDS[name]
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is None or not 0 < number <= largest:  # NaN and infinities fail the bounds too
        raise InvalidPlanField(f"{name} must be {what}, more than 0 and at most {largest:,}; got {value!r}")
    return number


def plan_for(request):
    """The advisor's plan (movielens_emr.sizing.advise.plan_run) with the `price` it used, as the pipeline
    prices its runs, and `across_types` (across_types). HistoryCannotAnswer when the history is too short
    for the chosen type; the advisor's other ValueErrors (no node count meets the goal) and
    BadPriceVariable as they come."""
    target = target_named(request.target)
    # The pipeline's rule: the Variable movielens_hourly_prices, else the built-in table; none if unpriced.
    overrides = configured_overrides() if target.priced else {}
    price = price_in_force(request.instance_type, overrides, request.target)
    rows = planning_history(request.target)
    try:
        plan = plan_run(rows, request.dataset, request.target, request.instance_type, price.usd_per_node_hour,
                        1.0, range(1, PLAN_MAX_NODES + 1), request.deadline_minutes, request.budget_usd,
                        count_work=counted_pair_work)
    except NotEnoughHistory as error:
        raise HistoryCannotAnswer(str(error), runs_needed(request)) from error
    return {**plan, "price": price.as_dict(), "across_types": across_types(rows, request, overrides)}


def planning_history(target):
    """The target's successful runs and, for a cluster, this machine's too: the plan sets a single machine's
    time for the same input beside the cluster's (the COST line), which only local runs give."""
    rows = sources.history(target=target, outcome="success", limit=PLAN_HISTORY_ROWS)
    if target_named(target).cluster:
        rows += sources.history(target=LOCAL.name, outcome="success", limit=PLAN_HISTORY_ROWS)
    return rows


def across_types(rows, request, overrides):
    """The plan across the instance catalogue's types, on-demand and with Spot task nodes, for a cluster
    target (movielens_emr.sizing.instance_plan.plan_instance_types), at the prices of `overrides` over the
    built-in table; {"unavailable": why} when the history cannot answer it or no option meets the goal;
    None for a target of one machine, where there is no type to choose."""
    if not target_named(request.target).cluster:
        return None
    try:
        return plan_instance_types(
            rows, request.dataset, request.target, list(catalogue()),
            lambda name: price_in_force(name, overrides, request.target).usd_per_node_hour, 1.0,
            range(1, PLAN_MAX_NODES + 1), request.deadline_minutes, request.budget_usd)
    except ValueError as error:  # too little history on every type, or no option meets the goal
        return {"unavailable": str(error)}


def runs_needed(request):
    """Which runs would let the advisor plan `request`: what its model is fitted to (sizing.model)."""
    target = target_named(request.target)
    machines = f" of {request.instance_type}" if target.instance_type_of(request.instance_type) else ""
    same = target.task_machines(1) == target.task_machines(2)
    counts = " (1 and 2 nodes count as one: both run their tasks on one machine)" if same else ""
    return (f"Runs that would let it answer: {MIN_RUNS} or more successful runs of {sources.DAG_ID} on "
            f"{target.name}{machines}, at two or more node counts{counts}, one of them at least of "
            f"{request.dataset}; runs on a sample of the users (sample_fraction) count too")

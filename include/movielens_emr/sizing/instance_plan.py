"""Plan over instance types, node counts and Spot task nodes: which machines, how many, and on which market.

A type with enough history of its own has its own fitted model (advise.plan_run's). A type with only a
run or two is planned from the best-fitted type's model scaled by a speed factor, the median ratio of
its measured working time to what that model predicts for the same nodes and work (one sample run
calibrates it: a small sample_fraction will do); its predictions are always low confidence, and say
so. A type that never ran is not planned: the plan names the run that would calibrate it.

Beside each all-on-demand option of 3 or more nodes on a cluster, a Spot option: the master and one core
node on-demand, the other nodes Spot task nodes (EMR's guidance for task nodes), priced at the instance
catalogue's ASSUMED Spot price (config/instances.toml: spot_price_fraction of the EC2 price, EMR's charge in
full). Task nodes run tasks as core nodes do, so its time is predicted as the same nodes on-demand; but a
reclaimed task node's tasks are rerun on the others, and the run takes longer: each Spot option says so,
with the model's time at worst (every Spot node lost near the end, its work done again on the core node).
"""
import dataclasses
import statistics

from movielens_emr.config.instances import catalogue, memory_fit_error
from movielens_emr.config.params import DEFAULT_ENGINE, MIN_ON_DEMAND_NODES, InvalidParam, validate_run_config
from movielens_emr.config.targets import target_named
from movielens_emr.engine.registry import UnknownEngine, engine_named
from movielens_emr.sizing.durations import duration, time_column
from movielens_emr.sizing.history_rows import observation, planned_pair_work, usable_runs
from movielens_emr.sizing.model import (
    NoNodeCountFits,
    NotEnoughHistory,
    PlannedWork,
    fit_run_model,
    predictions,
)
from movielens_emr.sizing.single_machine import baseline_phrase, single_machine

SCALED_NOTE = "scaled from {reference} by a speed factor of {factor:.2f} ({runs} run(s) of {name})"
ON_DEMAND, SPOT = "on-demand", "spot"
# A Spot option keeps the master and one core node on-demand, as the pipeline's clusters do (params'
# MIN_ON_DEMAND_NODES: HDFS lives on the core nodes): a Spot task node needs a cluster of a node more.
ON_DEMAND_NODES_WITH_SPOT = MIN_ON_DEMAND_NODES
SPOT_PRICE_NOTE = ("an ASSUMED Spot price, ${usd:.4g} per node-hour (the instance catalogue's "
                   "spot_price_fraction of the EC2 price, EMR's charge in full), not a quote")
SPOT_RISK_NOTE = ("Spot task nodes can be reclaimed: Hadoop reruns a lost node's tasks on the others, so the "
                  "run takes longer, at worst about {worst} (every Spot node lost near the end, its work "
                  "done again on the on-demand core node)")


@dataclasses.dataclass(frozen=True)
class TypeModel:
    """The time model a type is planned with, and how it was obtained."""

    instance_type: str
    model: object
    how: str
    runs: int
    scaled_from: str | None = None


def type_models(rows, target, instance_types, engine=DEFAULT_ENGINE):
    """({type: TypeModel} of the plannable types, {type: why not} of the others)."""
    fitted, runs_of = {}, {}
    for name in instance_types:
        runs, _ = usable_runs(rows, target, name, engine)
        runs_of[name] = runs
        try:
            fitted[name] = TypeModel(name, fit_run_model([observation(row) for row in runs], target=target),
                                     "fitted", len(runs))
        except NotEnoughHistory:
            pass
    if not fitted:
        return {}, {name: "no instance type has enough runs for a model of its own (4 runs on two node "
                          "counts): plan one type first" for name in instance_types}
    reference = max(fitted.values(), key=lambda type_model: type_model.runs)
    models, unplanned = dict(fitted), {}
    for name in instance_types:
        if name in fitted:
            continue
        if not runs_of[name]:
            unplanned[name] = (f"no run on {name} yet: run it once (a small sample_fraction will do) to "
                               f"calibrate its speed against {reference.instance_type}")
            continue
        models[name] = scaled_model(reference, name, runs_of[name])
    return models, unplanned


def scaled_model(reference, name, runs):
    """reference's model scaled to the runs of type `name`: every coefficient times the median ratio of their
    working seconds to the reference's prediction, provisioning their own median."""
    ratios = [observation(row).work_seconds
              / reference.model.work_seconds(int(row["node_count"]), run_work(row)) for row in runs]
    factor = statistics.median(ratios)
    model = dataclasses.replace(
        reference.model, coefficients=tuple(value * factor for value in reference.model.coefficients),
        provisioning_seconds=statistics.median(observation(row).provisioning_seconds for row in runs))
    how = SCALED_NOTE.format(reference=reference.instance_type, factor=factor, runs=len(runs), name=name)
    return TypeModel(name, model, how, len(runs), reference.instance_type)



@dataclasses.dataclass(frozen=True)
class Option:
    """One way to buy a run: an instance type, a node count's prediction (its cost at this option's prices),
    and how many of the nodes are Spot task nodes (0: all on-demand)."""

    instance_type: str
    prediction: object
    spot_nodes: int = 0
    spot_usd_per_node_hour: float | None = None
    if_spot_lost_seconds: float | None = None

    @property
    def seconds(self):
        return self.prediction.cluster_seconds

    @property
    def cost(self):
        """Its cost, unknown (unpriced) as the most expensive: never chosen for being cheap."""
        return self.prediction.cost_usd if self.prediction.cost_usd is not None else float("inf")

    @property
    def label(self):
        """"5 x c5.2xlarge, 3 of them Spot task nodes" or "5 x c5.2xlarge on-demand"."""
        nodes = f"{self.prediction.node_count} x {self.instance_type}"
        if self.spot_nodes:
            return f"{nodes}, {self.spot_nodes} of them Spot task nodes"
        return f"{nodes} on-demand"

    def notes(self):
        """What a Spot option's figures rest on: its assumed price and its interruption risk."""
        if not self.spot_nodes:
            return []
        return [SPOT_PRICE_NOTE.format(usd=self.spot_usd_per_node_hour),
                SPOT_RISK_NOTE.format(worst=duration(self.if_spot_lost_seconds))]

    def as_dict(self):
        return {"instance_type": self.instance_type, "market": SPOT if self.spot_nodes else ON_DEMAND,
                "spot_task_nodes": self.spot_nodes, **self.prediction.as_dict(),
                "spot_usd_per_node_hour": self.spot_usd_per_node_hour,
                "if_spot_lost_seconds": None if self.if_spot_lost_seconds is None
                else round(self.if_spot_lost_seconds, 1), "spot_notes": self.notes()}


def catalogue_spot_price(name):
    """The instance catalogue's assumed Spot USD per node-hour of a type; None for a type it lacks."""
    return catalogue()[name].spot_usd_per_hour if name in catalogue() else None


def spot_option(type_model, prediction, on_demand_usd, spot_usd, pair_work):
    """The Spot option of an on-demand prediction of 3 or more nodes: the same time, the task nodes at
    spot_usd; None where there is no Spot option (too few nodes, or a price unknown)."""
    spot_nodes = prediction.node_count - ON_DEMAND_NODES_WITH_SPOT
    if spot_nodes < 1 or on_demand_usd is None or spot_usd is None:
        return None
    node_hours = prediction.cluster_seconds / 3600
    cost = node_hours * (ON_DEMAND_NODES_WITH_SPOT * on_demand_usd + spot_nodes * spot_usd)
    # Every Spot node lost just before the end: their work is done again on what stays, the master and
    # one core node, which the model predicts as a run of ON_DEMAND_NODES_WITH_SPOT nodes.
    worst = prediction.cluster_seconds + max(
        type_model.model.work_seconds(ON_DEMAND_NODES_WITH_SPOT, pair_work), 0.0)
    return Option(type_model.instance_type, dataclasses.replace(prediction, cost_usd=cost), spot_nodes,
                  spot_usd, worst)


def type_options(type_model, node_counts, pair_work, on_demand_usd, spot_usd):
    """A type's options: every node count on-demand and, where spot_usd is given, its Spot options."""
    options = []
    for prediction in predictions(type_model.model, list(node_counts), pair_work, on_demand_usd):
        if type_model.scaled_from:
            prediction = dataclasses.replace(prediction, confidence="low",
                                             extrapolation=(*prediction.extrapolation, type_model.how))
        options.append(Option(type_model.instance_type, prediction))
        spot = spot_option(type_model, prediction, on_demand_usd, spot_usd, pair_work)
        if spot is not None:
            options.append(spot)
    return options


def task_memory_need(dataset, target, engine, instance_type, node_count):
    """MB the engine's largest task needs on a run of dataset over node_count nodes of instance_type (the
    engine's own task_memory_mb, which validate_config checks before any cluster exists); None when the
    engine states none or such a run cannot be described (a dataset outside the catalogue, say)."""
    try:
        need = getattr(engine_named(engine), "task_memory_mb", None)
        if need is None:
            return None
        config = validate_run_config(
            {"dataset": dataset, "target": target, "node_count": node_count, "instance_type": instance_type,
             "engine": engine}, max_node_count=node_count, default_target=target, engines=(engine,))
    except (InvalidParam, UnknownEngine):
        return None
    return need(config)


def node_counts_that_fit(name, node_counts, memory_need_of):
    """(the node counts whose largest task a node of type `name` holds, why the others do not): the need
    may fall with more nodes (more movie blocks, smaller ones)."""
    instance, fitting, error = catalogue().get(name), [], None
    for count in node_counts:
        need = memory_need_of(name, count) if memory_need_of and instance else None
        problem = need and memory_fit_error(need, instance, "the engine's largest task")
        if problem:
            error = error or problem
        else:
            fitting.append(count)
    return fitting, error


def spot_market(target, spot_price_of):
    """spot_price_of where there is a Spot market to plan on (a priced cluster target), else no Spot price."""
    planned = target_named(target)
    if planned.cluster and planned.priced and spot_price_of is not None:
        return spot_price_of
    return lambda name: None


def run_work(row):
    """A measured run's work as a PlannedWork (W and the sizes it recorded), as the model reads a plan's."""
    run = observation(row)
    return PlannedWork(run.pair_work, run.dataset or None, run.ratings, run.output_pairs,
                       f"measured by run {run.run_id}")


def plan_instance_types(rows, dataset, target, instance_types=None, price_of=None, sample_fraction=1.0,
                        node_counts=range(1, 21), deadline_minutes=None, budget_usd=None,
                        engine=DEFAULT_ENGINE, spot_price_of=catalogue_spot_price, memory_need_of=None):
    """Predictions for every (instance type, node count, market), the Pareto front of time and cost across
    them, each type's best for a deadline or budget, the choice with its reason, and this machine's time
    beside them. price_of(type) is the on-demand USD per node-hour (None: unpriced); spot_price_of(type)
    the assumed Spot one (None: no Spot option), and spot_price_of=None plans on-demand only. Spot options
    exist on a priced cluster target only. memory_need_of(type, node count) is the MB the engine's largest
    task needs (default: task_memory_need for this dataset, target and engine): a type whose containers
    cannot hold it is not planned at that count, and not at all, with the reason, when no count fits."""
    instance_types = list(instance_types or catalogue())
    price_of = price_of or (lambda name: catalogue()[name].usd_per_hour if name in catalogue() else None)
    spot_price_of = spot_market(target, spot_price_of)
    if memory_need_of is None:
        def memory_need_of(name, count):
            return task_memory_need(dataset, target, engine, name, count)
    models, unplanned = type_models(rows, target, instance_types, engine)
    if not models:
        raise NotEnoughHistory(next(iter(unplanned.values())))
    engine_rows = [row for row in rows if (row.get("engine") or DEFAULT_ENGINE) == engine]
    pair_work = planned_pair_work(engine_rows, dataset, sample_fraction)
    fitting = {}
    for name in list(models):
        fitting[name], error = node_counts_that_fit(name, node_counts, memory_need_of)
        if not fitting[name]:
            unplanned[name] = error
            del models[name]
    if not models:
        raise NoNodeCountFits("; ".join(unplanned[name] for name in instance_types if name in unplanned))
    options = [option for name, type_model in models.items() for option in
               type_options(type_model, fitting[name], pair_work, price_of(name), spot_price_of(name))]
    goal = Goal(deadline_minutes, budget_usd)
    chosen = choose(options, goal) if goal.given else None
    front = pareto(options)
    cluster = target_named(target).cluster
    baseline = single_machine(rows, dataset, sample_fraction, engine) if cluster else None
    return {
        "dataset": dataset, "engine": engine, "target": target, "sample_fraction": sample_fraction,
        "pair_work": pair_work, "pair_work_source": pair_work.source,
        "types": {name: {"how": type_model.how, "runs": type_model.runs, "usd_per_node_hour": price_of(name),
                         "spot_usd_per_node_hour": spot_price_of(name)}
                  for name, type_model in models.items()},
        "unplanned": unplanned,
        "options": [option.as_dict() for option in options],
        "pareto": [option.as_dict() for option in front],
        "deadline_minutes": deadline_minutes, "budget_usd": budget_usd,
        "best_by_type": [{**option.as_dict(), "meets_goal": goal.met_by(option)}
                         for option in best_by_type(options, goal)] if goal.given else [],
        "recommendation": None if chosen is None else {
            **chosen.as_dict(), "reason": reason(chosen, options, goal)},
        "single_machine": against_single_machine_across(front, baseline, price_of, list(models)),
    }


@dataclasses.dataclass(frozen=True)
class Goal:
    """A deadline (minutes) or a budget (USD) or both; the choice is the cheapest within a deadline, else the
    fastest within the budget."""

    deadline_minutes: float | None = None
    budget_usd: float | None = None

    @property
    def given(self):
        return self.deadline_minutes is not None or self.budget_usd is not None

    def met_by(self, option):
        return ((self.deadline_minutes is None or option.seconds <= self.deadline_minutes * 60)
                and (self.budget_usd is None or option.cost <= self.budget_usd))

    def best(self, options):
        """The best of the options that meet the goal; None when none does."""
        meeting = [option for option in options if self.met_by(option)]
        if not meeting:
            return None
        if self.deadline_minutes is not None:
            return min(meeting, key=lambda option: (option.cost, option.seconds))
        return min(meeting, key=lambda option: (option.seconds, option.cost))

    @property
    def text(self):
        if self.deadline_minutes is not None:
            within = f" and ${self.budget_usd:g}" if self.budget_usd is not None else ""
            return f"the cheapest within {self.deadline_minutes:g} min{within}"
        return f"the fastest within ${self.budget_usd:g}"


def pareto(options):
    """The options no other beats on both time and cost, fastest first."""
    front, cheapest = [], float("inf")
    for option in sorted(options, key=lambda option: (option.seconds, option.cost)):
        if option.cost < cheapest:
            front.append(option)
            cheapest = option.cost
    return front


def choose(options, goal):
    """goal.best of the options; NoNodeCountFits naming the fastest when none meets the goal."""
    chosen = goal.best(options)
    if chosen is None:
        fastest = min(options, key=lambda option: option.seconds)
        raise NoNodeCountFits(f"no instance type and node count fits: the fastest, {fastest.label}, takes "
                              f"{duration(fastest.seconds)}")
    return chosen


def best_by_type(options, goal):
    """Each type's best option for the goal on each market, or, where none meets it, its fastest there."""
    best = []
    for name in dict.fromkeys(option.instance_type for option in options):
        for spot in (False, True):
            group = [option for option in options
                     if option.instance_type == name and bool(option.spot_nodes) == spot]
            if group:
                best.append(goal.best(group) or min(group, key=lambda option: option.seconds))
    return best


def summary(option):
    """"5 x c5.2xlarge on-demand: 9.4 min, $0.83"."""
    # Rounded as as_dict rounds it first, so that the reason and the tables print the same cents.
    usd = option.prediction.cost_usd
    cost = "unpriced" if usd is None else f"${round(usd, 4):.2f}"
    return f"{option.label}: {duration(option.seconds)}, {cost}"


def reason(chosen, options, goal):
    """Why the choice: what it was chosen for, its market against the other, and every other type's best."""
    parts = [f"{summary(chosen)}, {goal.text} ({chosen.prediction.confidence} confidence)",
             market_reason(chosen, options, goal)]
    others = [option for option in best_by_type(options, goal)
              if option.instance_type != chosen.instance_type]
    if others:
        parts.append("beside it, each other type's best: " + "; ".join(
            summary(option) + ("" if goal.met_by(option) else " (misses the goal)") for option in others))
    return "; ".join(parts)


def market_reason(chosen, options, goal):
    """Why Spot, and at what risk, or why not Spot: the best option of the other market for the goal."""
    other_market = goal.best([option for option in options
                              if bool(option.spot_nodes) != bool(chosen.spot_nodes)])
    if chosen.spot_nodes:
        risk = (f"its {chosen.spot_nodes} Spot task node(s) are at an assumed Spot price, and if they are "
                "reclaimed Hadoop reruns their tasks: at worst about "
                f"{duration(chosen.if_spot_lost_seconds)}")
        if goal.deadline_minutes is not None:
            late = chosen.if_spot_lost_seconds > goal.deadline_minutes * 60
            risk += ", beyond the deadline" if late else ", still within the deadline"
        alternative = ("no all-on-demand option meets the goal" if other_market is None
                       else f"all on-demand, the best is {summary(other_market)}")
        return f"{risk}; {alternative}"
    if not any(option.spot_nodes for option in options):
        return ("no Spot option in this plan (on-demand only was asked, or there is no count of 3 nodes or "
                "more on a priced cluster)")
    if other_market is None:
        return "no Spot option meets the goal"
    return f"on-demand, since no Spot option does better for the goal (its best: {summary(other_market)})"


def against_single_machine_across(front, baseline, price_of, names):
    """This machine's time (single_machine.single_machine) beside the front: the options predicted faster,
    those cheaper than one on-demand node of the cheapest planned type for as long, and a sentence; None
    without a baseline."""
    if baseline is None or not front:
        return None
    prices = {name: price_of(name) for name in names if price_of(name) is not None}
    cheapest_type = min(prices, key=prices.get, default=None)
    cost = None if cheapest_type is None else baseline["seconds"] / 3600 * prices[cheapest_type]
    faster = [option for option in front if option.seconds < baseline["seconds"]]
    cheaper = [option for option in front if cost is not None and option.cost < cost]
    line = f"{baseline_phrase(baseline)}; "
    line += (f"front options predicted faster: {', '.join(option.label for option in faster)}" if faster else
             f"no option beats it on time (the fastest, {summary(front[0])}, provisioning included)")
    if cost is not None:
        line += (f"; priced as one {cheapest_type} node for as long, ${cost:.4g}: "
                 + (f"{len(cheaper)} front option(s) cost less" if cheaper else "no option costs less"))
    return {**baseline, "cost_usd": None if cost is None else round(cost, 4), "priced_as": cheapest_type,
            "faster": [option.as_dict() for option in faster],
            "cheaper": [option.as_dict() for option in cheaper],
            "summary": line}


def format_type_plan(plan):
    """The plan across instance types as text: how each type is modelled, its Pareto front, each type's best
    for the goal, the choice and its reason, and this machine beside them."""
    lines = [f"{plan['dataset']} at sample fraction {plan['sample_fraction']:g} on {plan['target']}, "
             f"pair work {plan['pair_work']:.4g}, across instance types",
             f"  work: {plan['pair_work_source']}"]
    for name, facts in plan["types"].items():
        lines.append(f"  {name}: {facts['how']}, {facts['runs']} run(s), {price_text(facts)}")
    lines += [f"  {name}: not planned: {why}" for name, why in plan["unplanned"].items()]
    lines += ["", "Pareto front (no option both faster and cheaper):", *option_table(plan["pareto"])]
    if plan["best_by_type"]:
        lines += ["", f"Each type's best for the goal, on-demand and Spot ({goal_text(plan)}):",
                  *option_table(plan["best_by_type"], meets=True)]
    if any(option["spot_task_nodes"] for option in plan["options"]):
        lines += ["", "Spot: the master and one core node on-demand, the other nodes Spot task nodes at an "
                      "ASSUMED Spot price (the instance catalogue's spot_price_fraction); a reclaimed task "
                      "node's tasks are rerun, so the time may grow: 'if lost' is the model's time at worst"]
    if plan["single_machine"]:
        lines.append(plan["single_machine"]["summary"])
    elif target_named(plan["target"]).cluster:
        lines.append(f"single machine: no local run of {plan['dataset']} at this sample fraction, and too "
                     "few local runs to predict one: run it once with target local to see what a cluster "
                     "gains")
    if plan["recommendation"]:
        chosen = plan["recommendation"]
        lines += [f"recommended: {chosen['reason']}",
                  f"  to run it: instance_type {chosen['instance_type']}, node_count {chosen['node_count']}, "
                  f"spot_task_nodes {chosen['spot_task_nodes']}"]
    return "\n".join(lines)


def price_text(facts):
    if facts["usd_per_node_hour"] is None:
        return "unpriced"
    spot = facts.get("spot_usd_per_node_hour")
    on_demand = f"${facts['usd_per_node_hour']:.4g}/node-hour"
    return on_demand if spot is None else f"{on_demand}, Spot ${spot:.4g} (assumed)"


def goal_text(plan):
    return Goal(plan["deadline_minutes"], plan["budget_usd"]).text.removeprefix("the ")


def option_table(options, meets=False):
    """Options (as_dict) as a table, times in seconds when they are short."""
    unit, in_unit = time_column([option["cluster_seconds"] for option in options])
    lines = [f"type          market     nodes  {unit}  cost USD  if lost  confidence"
             + ("  meets" if meets else "")]
    for option in options:
        cost = "-" if option["cost_usd"] is None else f"{option['cost_usd']:.2f}"
        lost = "-" if option["if_spot_lost_seconds"] is None else in_unit(option["if_spot_lost_seconds"])
        meets_goal = f"  {'yes' if option['meets_goal'] else 'no'}" if meets else ""
        lines.append(f"{option['instance_type']:<13} {option['market']:<10} {option['node_count']:>5} "
                     f"{in_unit(option['cluster_seconds']):>8} {cost:>9} {lost:>8}  "
                     f"{option['confidence']:<10}{meets_goal}".rstrip())
    return lines

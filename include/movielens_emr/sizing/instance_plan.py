"""Plan over instance types and node counts: which machines, and how many.

A type with enough history of its own has its own fitted model (advise.plan_run's). A type with only a
run or two is planned from the best-fitted type's model scaled by a speed factor, the median ratio of
its measured working time to what that model predicts for the same nodes and work (one sample run
calibrates it: a small sample_fraction will do); its predictions are always low confidence, and say
so. A type that never ran is not planned: the plan names the run that would calibrate it.
"""
import dataclasses
import statistics

from movielens_emr.config.instances import catalogue
from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.sizing.history_rows import observation, planned_pair_work, usable_runs
from movielens_emr.sizing.model import NoNodeCountFits, NotEnoughHistory, fit_time_model, predictions

SCALED_NOTE = "scaled from {reference} by a speed factor of {factor:.2f} ({runs} run(s) of {name})"


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
            fitted[name] = TypeModel(name, fit_time_model([observation(row) for row in runs], target=target),
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
    ratios = [observation(row).work_seconds / reference.model.work_seconds(int(row["node_count"]),
                                                                            float(row["pair_work"]))
              for row in runs]
    factor = statistics.median(ratios)
    model = dataclasses.replace(
        reference.model, coefficients=tuple(value * factor for value in reference.model.coefficients),
        provisioning_seconds=statistics.median(observation(row).provisioning_seconds for row in runs))
    how = SCALED_NOTE.format(reference=reference.instance_type, factor=factor, runs=len(runs), name=name)
    return TypeModel(name, model, how, len(runs), reference.instance_type)


def plan_instance_types(rows, dataset, target, instance_types=None, price_of=None, sample_fraction=1.0,
                        node_counts=range(1, 21), deadline_minutes=None, budget_usd=None,
                        engine=DEFAULT_ENGINE):
    """Predictions for every (instance type, node count), the Pareto front of time and cost across them, and
    for a deadline or budget the choice with its reason. price_of(type) is USD per node-hour (None: unpriced).
    """
    instance_types = list(instance_types or catalogue())
    price_of = price_of or (lambda name: catalogue()[name].usd_per_hour if name in catalogue() else None)
    models, unplanned = type_models(rows, target, instance_types, engine)
    if not models:
        raise NotEnoughHistory(next(iter(unplanned.values())))
    pair_work = planned_pair_work([row for row in rows if (row.get("engine") or DEFAULT_ENGINE) == engine],
                                  dataset, sample_fraction)
    options = []
    for name, type_model in models.items():
        for prediction in predictions(type_model.model, list(node_counts), pair_work, price_of(name)):
            if type_model.scaled_from:
                prediction = dataclasses.replace(prediction, confidence="low",
                                                 extrapolation=(*prediction.extrapolation, type_model.how))
            options.append((name, prediction))
    front = pareto(options)
    chosen = None
    if deadline_minutes is not None or budget_usd is not None:
        chosen = choose(options, deadline_minutes, budget_usd)
    return {
        "dataset": dataset, "engine": engine, "target": target, "sample_fraction": sample_fraction,
        "pair_work": pair_work,
        "types": {name: {"how": type_model.how, "runs": type_model.runs, "usd_per_node_hour": price_of(name)}
                  for name, type_model in models.items()},
        "unplanned": unplanned,
        "options": [option_dict(name, prediction) for name, prediction in options],
        "pareto": [option_dict(name, prediction) for name, prediction in front],
        "deadline_minutes": deadline_minutes, "budget_usd": budget_usd,
        "recommendation": None if chosen is None else {
            **option_dict(*chosen), "reason": reason(chosen, options, deadline_minutes, budget_usd)},
    }


def option_dict(name, prediction):
    return {"instance_type": name, **prediction.as_dict()}


def _cost(prediction):
    return prediction.cost_usd if prediction.cost_usd is not None else float("inf")


def pareto(options):
    """The (type, prediction) options no other beats on both time and cost, fastest first."""
    front, cheapest = [], float("inf")
    for name, prediction in sorted(options, key=lambda option: (option[1].cluster_seconds, _cost(option[1]))):
        if _cost(prediction) < cheapest:
            front.append((name, prediction))
            cheapest = _cost(prediction)
    return front


def choose(options, deadline_minutes, budget_usd):
    """The cheapest option within the deadline, or the fastest within the budget (both: the cheapest)."""
    fitting = [(name, p) for name, p in options
               if (deadline_minutes is None or p.cluster_seconds <= deadline_minutes * 60)
               and (budget_usd is None or (p.cost_usd is not None and p.cost_usd <= budget_usd))]
    if not fitting:
        name, fastest = min(options, key=lambda option: option[1].cluster_seconds)
        raise NoNodeCountFits(f"no instance type and node count fits: the fastest, {fastest.node_count} x "
                              f"{name}, takes {fastest.cluster_seconds / 60:.1f} min")
    if deadline_minutes is not None:
        return min(fitting, key=lambda option: (_cost(option[1]), option[1].cluster_seconds))
    return min(fitting, key=lambda option: (option[1].cluster_seconds, _cost(option[1])))


def reason(chosen, options, deadline_minutes, budget_usd):
    """Why the choice: what it was chosen for, and the best option of every other type beside it."""
    name, prediction = chosen
    goal = (f"the cheapest within {deadline_minutes:g} min" if deadline_minutes is not None
            else f"the fastest within ${budget_usd:g}")
    others = []
    for other in sorted({option_name for option_name, _ in options} - {name}):
        best = [p for option_name, p in options if option_name == other]
        pick = (min(best, key=lambda p: (_cost(p), p.cluster_seconds)) if deadline_minutes is not None
                and any(p.cluster_seconds <= deadline_minutes * 60 for p in best) else
                min(best, key=lambda p: p.cluster_seconds))
        others.append(f"{other}: {pick.node_count} nodes, {pick.cluster_seconds / 60:.1f} min, "
                      + ("-" if pick.cost_usd is None else f"${pick.cost_usd:.2f}"))
    cost = "-" if prediction.cost_usd is None else f"${prediction.cost_usd:.2f}"
    return (f"{prediction.node_count} x {name}: {prediction.cluster_seconds / 60:.1f} min, {cost}, "
            f"{goal} ({prediction.confidence} confidence); beside it, " + "; ".join(others))


def format_type_plan(plan):
    """The plan across instance types as text: how each type is modelled, its Pareto front, the choice."""
    lines = [f"{plan['dataset']} at sample fraction {plan['sample_fraction']:g} on {plan['target']}, "
             f"pair work {plan['pair_work']:.4g}, across instance types"]
    for name, facts in plan["types"].items():
        price = "-" if facts["usd_per_node_hour"] is None else f"${facts['usd_per_node_hour']:.4g}/node-hour"
        lines.append(f"  {name}: {facts['how']}, {facts['runs']} run(s), {price}")
    lines += [f"  {name}: not planned: {why}" for name, why in plan["unplanned"].items()]
    lines += ["", "Pareto front (no option both faster and cheaper):",
              "type          nodes  minutes  cost USD  confidence"]
    for option in plan["pareto"]:
        cost = "-" if option["cost_usd"] is None else f"{option['cost_usd']:.2f}"
        minutes = option["cluster_seconds"] / 60
        lines.append(f"{option['instance_type']:<13} {option['node_count']:>5} {minutes:>8.1f} {cost:>9}  "
                     f"{option['confidence']}")
    if plan["recommendation"]:
        lines.append(f"recommended: {plan['recommendation']['reason']}")
    return "\n".join(lines)

"""The benchmark report's sizing section: the time model fitted to the member runs, and its plot."""
import statistics

from movielens_emr.config.targets import LOCAL, target_named
from movielens_emr.reporting.plots import new_figure, png_bytes
from movielens_emr.sizing.advise import against_single_machine
from movielens_emr.sizing.model import (
    NotEnoughHistory,
    Observation,
    fit_time_model,
    pareto_front,
    predictions,
)

# The report's own recommendation needs no deadline: the fewest nodes within this much of the fastest.
BALANCED_SLOWDOWN = 0.10
MAX_PLANNED_NODES = 64


def members_target(records):
    """The target the member runs ran on (one benchmark runs all its members on one target)."""
    return next(((record.get("metrics") or {}).get("target") for record in records
                 if (record.get("metrics") or {}).get("target")), LOCAL.name)


def member_observations(records):
    """Observations of the measured member runs that counted their pair work."""
    observed = []
    for record in records:
        metrics = record.get("metrics") or {}
        measured = metrics.get("pair_work") and metrics.get("cluster_seconds")
        if record.get("state") != "success" or not measured:
            continue
        provisioning = metrics.get("provisioning_seconds") or 0.0
        observed.append(Observation(int(metrics["node_count"]), float(metrics["pair_work"]),
                                    metrics["cluster_seconds"] - provisioning, provisioning,
                                    record["run_id"]))
    return observed


def member_price(records):
    """USD per node-hour the member runs were priced at (their median); None when none was."""
    prices = [(record.get("metrics") or {}).get("price_per_node_hour_usd") for record in records]
    prices = [price for price in prices if price is not None]
    return statistics.median(prices) if prices else None


def full_input_work(records):
    """The pair work of the whole input, from the member runs' own counts and sample fractions."""
    works = [record["metrics"]["pair_work"] / (record["metrics"].get("sample_fraction") or 1.0)
             for record in records if (record.get("metrics") or {}).get("pair_work")]
    return statistics.median(works)


def balanced_choice(front):
    """The fewest nodes whose predicted time is within BALANCED_SLOWDOWN of the fastest on the front."""
    fastest = min(option.cluster_seconds for option in front)
    return min((option for option in front if option.cluster_seconds <= fastest * (1 + BALANCED_SLOWDOWN)),
               key=lambda option: option.node_count)


def one_run_curve(records, work, measured):
    """The one-run prediction of the full-input member run on the most nodes, and its error against the
    measured medians of the other node counts; None when no such member has one.

    The run on the most nodes, because its task list has the most reduce tasks: replayed on fewer
    slots they fill every wave, while a run on fewer nodes has too few tasks for more slots.
    """
    candidates = [record for record in records if record.get("state") == "success"
                  and (record.get("metrics") or {}).get("pair_work") == work
                  and (record["metrics"].get("one_run_prediction") or {}).get("predictions")]
    if not candidates:
        return None
    source = max(candidates, key=lambda record: record["metrics"]["node_count"])
    prediction = source["metrics"]["one_run_prediction"]
    predicted = {option["node_count"]: option["cluster_seconds"] for option in prediction["predictions"]}
    errors = [abs(predicted[int(nodes)] - seconds) / seconds for nodes, seconds in measured.items()
              if int(nodes) != prediction["from_node_count"] and int(nodes) in predicted]
    return {"run_id": source["run_id"], "from_node_count": prediction["from_node_count"],
            "from_task_slots": prediction["from_task_slots"],
            "predictions": [{"node_count": nodes, "cluster_seconds": seconds}
                            for nodes, seconds in sorted(predicted.items())],
            "median_error": statistics.median(errors) if errors else None,
            "compared_node_counts": len(errors)}


def sizing_section(records, price_per_node_hour, single_machine=None):
    """The model, predictions, Pareto front, balanced choice and measured medians; or {"error": why not}.
    single_machine: this machine's time for the whole input (sizing.advise.single_machine), set beside
    the cluster's predictions when the members ran on a cluster."""
    try:
        model = fit_time_model(member_observations(records), target=members_target(records))
    except NotEnoughHistory as error:
        return {"error": str(error)}
    work = full_input_work(records)
    top = min(MAX_PLANNED_NODES, max(2 * model.node_range[1], 8))
    options = predictions(model, range(1, top + 1), work, price_per_node_hour)
    front = pareto_front(options)
    measured = {}
    for observation in member_observations(records):
        if observation.pair_work == work:  # runs of the whole input, compared with the curve
            measured.setdefault(observation.node_count, []).append(
                observation.work_seconds + observation.provisioning_seconds)
    measured = {str(nodes): statistics.median(seconds) for nodes, seconds in sorted(measured.items())}
    section = {
        "model": {"coefficients": list(model.coefficients), "runs": model.runs,
                  "node_range": list(model.node_range), "provisioning_seconds": model.provisioning_seconds,
                  "loo_median_error": model.loo_median_error, "loo_p90_error": model.loo_p90_error},
        "pair_work": work,
        "predictions": [option.as_dict() for option in options],
        "pareto_node_counts": [option.node_count for option in front],
        "recommendation": balanced_choice(front).as_dict(),
        "measured": measured,
        "one_run": one_run_curve(records, work, measured),
    }
    if target_named(members_target(records)).cluster:
        section["single_machine"] = against_single_machine(options, single_machine, price_per_node_hour)
    return section


def sizing_lines(section):
    """The report.md lines of the sizing section."""
    if "error" in section:
        return [f"No sizing model: {section['error']}."]
    model, chosen = section["model"], section["recommendation"]
    a, b, c, d = model["coefficients"]
    error = model["loo_median_error"]
    return [
        f"Ernest's model fitted by non-negative least squares to {model['runs']} member runs: "
        f"t(m) = {a:.1f} + {b:.3g} W/m + {c:.1f} log m + {d:.2f} m seconds of cluster time beyond "
        f"provisioning ({model['provisioning_seconds']:.0f} s, the median, modelled apart); W = "
        f"{section['pair_work']:.4g} (pair work, sum over users of n_u^2). Leave-one-out error: "
        + ("unknown (too few runs)" if error is None
           else f"median {error:.0%}, 90th percentile {model['loo_p90_error']:.0%}") + ". "
        f"Predictions outside the measured {model['node_range'][0]}-{model['node_range'][1]} nodes "
        "are extrapolations (low confidence).",
        "",
        f"Balanced choice (the fewest nodes within {BALANCED_SLOWDOWN:.0%} of the fastest predicted time): "
        f"**{chosen['node_count']} nodes**, {chosen['cluster_seconds'] / 60:.1f} min, "
        + ("no price" if chosen["cost_usd"] is None else f"${chosen['cost_usd']:.2f}")
        + f" ({chosen['confidence']} confidence). For a deadline or budget: "
        "`python -m movielens_emr.sizing.advise`.",
        "",
        one_run_line(section.get("one_run")),
        *(["", single_machine_line(section["single_machine"])] if "single_machine" in section else []),
    ]


def single_machine_line(single_machine):
    """The report's sentence on this machine's time beside the cluster's (advise.against_single_machine)."""
    if single_machine:
        return f"Against a single machine: {single_machine['summary']}."
    return ("No single-machine line: the run history has no local run of this input and too few to predict "
            "one (a run with target local gives it).")


def one_run_line(one_run):
    """The report's sentence on the one-run prediction beside the fitted model."""
    if not one_run:
        return "No one-run prediction: no full-input member run has its task times."
    error = one_run["median_error"]
    compared = ("no other node count measured to compare with." if error is None else
                f"off the measured medians of {one_run['compared_node_counts']} other node counts by "
                f"{error:.0%} (median).")
    return (f"One-run prediction (dashed): the task waves of {one_run['run_id']} "
            f"({one_run['from_node_count']} nodes, {one_run['from_task_slots']} task slots) replayed on each "
            f"node count's slots, its other figures kept; {compared}")


def plot_sizing(document):
    """Predicted cluster time against nodes with the measured medians; cost against time with the front."""
    section = document["sizing"]
    figure, axes = new_figure(12, 5)
    figure.delaxes(axes)
    left, right = figure.subplots(1, 2)
    options = section["predictions"]
    left.plot([o["node_count"] for o in options], [o["cluster_seconds"] / 60 for o in options], "-",
              color="#3182bd", label="predicted (Ernest fit)")
    measured = section["measured"]
    left.plot([int(n) for n in measured], [s / 60 for s in measured.values()], "o", color="#e6550d",
              label="measured median")
    one_run = section.get("one_run")
    if one_run:
        shown = [o for o in one_run["predictions"] if o["node_count"] <= options[-1]["node_count"]]
        left.plot([o["node_count"] for o in shown], [o["cluster_seconds"] / 60 for o in shown], "--",
                  color="#756bb1", label=f"one-run (task waves of {one_run['from_node_count']} nodes)")
    left.set(title="Cluster time vs nodes", xlabel="nodes", ylabel="minutes")
    front = [o for o in options if o["node_count"] in section["pareto_node_counts"]]
    cost = "cost_usd" if all(o["cost_usd"] is not None for o in options) else "node_minutes"
    right.plot([o["cluster_seconds"] / 60 for o in front], [o[cost] for o in front], "o-", color="#31a354",
               label="Pareto front")
    chosen = section["recommendation"]
    right.plot([chosen["cluster_seconds"] / 60], [chosen[cost]], "*", markersize=16, color="#e6550d",
               label=f"balanced choice: {chosen['node_count']} nodes")
    right.set(title="Cost vs time (predicted)", xlabel="minutes",
              ylabel="USD" if cost == "cost_usd" else cost)
    for axes_ in (left, right):
        axes_.grid(alpha=0.3)
        axes_.legend(fontsize="small")
    return png_bytes(figure)

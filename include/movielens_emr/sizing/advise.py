"""Plan a run before triggering it: predicted time and cost for every node count, and the count to buy.

    python -m movielens_emr.sizing.advise --dataset ml-1m --deadline-minutes 20
    python -m movielens_emr.sizing.advise --dataset ml-1m --budget-usd 0.50 --json
    python -m movielens_emr.sizing.advise --dataset ml-25m --instance-types all --deadline-minutes 60

The model is fitted to the run history (`movielens_run_history`) of one engine, target and instance type,
and costs are at the pipeline's own prices (movielens_emr.sizing.prices); see movielens_emr.sizing.model
for the model and docs/planning.md for the rules. Beside it, the one-run prediction of the newest run
of the same input that has one (its metrics.json): that run's task waves replayed on each node
count's task slots. With --instance-types, the plan is across instance types, node counts and Spot task
nodes instead (movielens_emr.sizing.instance_plan).
"""
import argparse
import json
import math
import sys

from movielens_emr.config.instances import catalogue
from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.targets import EMR, TARGET_NAMES, target_named
from movielens_emr.sizing.counted_work import counted_pair_work
from movielens_emr.sizing.durations import duration, time_column
from movielens_emr.sizing.history_rows import (
    observation,
    planned_pair_work,
    same_engine,
    same_machines,
    usable_runs,
)
from movielens_emr.sizing.instance_plan import catalogue_spot_price, format_type_plan, plan_instance_types
from movielens_emr.sizing.model import (
    fit_run_model,
    pareto_front,
    predictions,
    recommend,
)
from movielens_emr.sizing.prices import NOT_PRICED, configured_overrides, price_in_force
from movielens_emr.sizing.single_machine import against_single_machine, single_machine

DEFAULT_NODE_COUNTS = range(1, 21)
# metrics.json files read at most, newest run first, in search of a one-run prediction.
ONE_RUN_READS = 5


def one_run_candidates(rows, dataset, target, instance_type, sample_fraction, engine=DEFAULT_ENGINE):
    """The run ids, newest first, of the successful runs whose one-run prediction fits a plan: the same
    dataset, sample fraction, target and (on EMR) instance type, so the same input and the same tasks."""
    return [row["run_id"] for row in rows
            if row.get("outcome") == "success" and row.get("dataset") == dataset
            and row.get("target") == target and same_machines(row, target, instance_type)
            and same_engine(row, engine)
            and math.isclose(row.get("sample_fraction") or 1.0, sample_fraction)]


def latest_one_run(run_ids, metrics_of, reads=ONE_RUN_READS):
    """{"run_id", **its one_run_prediction} of the newest of the runs that has one; None if none of the
    first `reads` has. metrics_of(run_id) is the run's metrics.json, or None."""
    for run_id in run_ids[:reads]:
        prediction = (metrics_of(run_id) or {}).get("one_run_prediction")
        if prediction and prediction.get("predictions"):
            return {"run_id": run_id, **prediction}
    return None


def plan_run(rows, dataset, target=EMR.name, instance_type="m5.xlarge", price_per_node_hour=None,
             sample_fraction=1.0, node_counts=DEFAULT_NODE_COUNTS, deadline_minutes=None, budget_usd=None,
             one_run=None, engine=DEFAULT_ENGINE, pair_work=None, count_work=None):
    """Predictions for every node count, the Pareto front and, for a deadline or budget, the choice.

    one_run (latest_one_run's) puts a measured run's one-run prediction beside each fitted one.
    pair_work: the planned run's W counted on its own ratings (the engine's planned_work); without it,
    W is scaled from the dataset's measured runs by the sample fraction, and the plan says so.
    count_work(dataset, sample_fraction, engine): counts W on the files here when no run measured it.
    """
    runs, skipped = usable_runs(rows, target, instance_type, engine)
    model = fit_run_model([observation(row) for row in runs], target=target)
    pair_work = planned_pair_work(runs, dataset, sample_fraction, counted=pair_work, count=count_work and (
        lambda: count_work(dataset, sample_fraction, engine)))
    work_source = pair_work.source
    options = predictions(model, list(node_counts), pair_work, price_per_node_hour)
    one_run_seconds = {option["node_count"]: option["cluster_seconds"]
                       for option in (one_run or {}).get("predictions", [])}
    chosen = None
    if deadline_minutes is not None or budget_usd is not None:
        chosen = recommend(options, deadline_minutes, budget_usd)
    baseline = None
    if target_named(target).cluster:
        baseline = against_single_machine(options, single_machine(rows, dataset, sample_fraction, engine),
                                          price_per_node_hour)
    return {
        "dataset": dataset, "engine": engine, "target": target, "instance_type": instance_type,
        "sample_fraction": sample_fraction, "pair_work": pair_work, "pair_work_source": work_source,
        "model": {"coefficients": model.coefficient_dict(), "formula": model.formula(),
                  "datasets": list(model.datasets),
                  "runs": model.runs, "runs_skipped": skipped, "node_range": list(model.node_range),
                  "work_range": list(model.work_range), "provisioning_seconds": model.provisioning_seconds,
                  "loo_median_error": model.loo_median_error, "loo_p90_error": model.loo_p90_error},
        "predictions": [
            {**option.as_dict(), "one_run_cluster_seconds": one_run_seconds.get(option.node_count)}
            for option in options],
        "pareto_node_counts": [option.node_count for option in pareto_front(options)],
        "deadline_minutes": deadline_minutes, "budget_usd": budget_usd,
        "recommendation": chosen.as_dict() if chosen else None,
        "single_machine": baseline,
        "one_run": None if one_run is None else {
            name: one_run[name] for name in ("run_id", "from_node_count", "from_task_slots")},
    }


def run_advice(rows, dataset, target, instance_type, price_per_node_hour, sample_fraction, node_count,
               max_node_count, deadline_minutes=None, budget_usd=None, engine=DEFAULT_ENGINE, pair_work=None):
    """What the advisor says about a triggered run; None when the run asks it nothing.

    node_count None: the count is the advisor's recommendation for the deadline or budget (an error
    when the history cannot answer). A given node_count with a deadline or budget: its prediction is
    recorded, and whether it meets them. The result goes into metrics.json as "advice".
    """
    if deadline_minutes is None and budget_usd is None:
        return None
    if node_count is None:
        plan = plan_run(rows, dataset, target, instance_type, price_per_node_hour, sample_fraction,
                        range(1, max_node_count + 1), deadline_minutes, budget_usd, engine=engine,
                        pair_work=pair_work)
        chosen = plan["recommendation"]
    else:
        plan = plan_run(rows, dataset, target, instance_type, price_per_node_hour, sample_fraction,
                        [node_count], engine=engine, pair_work=pair_work)
        chosen = plan["predictions"][0]
    deadline_seconds = None if deadline_minutes is None else deadline_minutes * 60
    return {
        "chosen_by": "advisor" if node_count is None else "user", "node_count": chosen["node_count"],
        "deadline_minutes": deadline_minutes, "budget_usd": budget_usd,
        "predicted_cluster_seconds": chosen["cluster_seconds"], "predicted_cost_usd": chosen["cost_usd"],
        "confidence": chosen["confidence"], "extrapolation": chosen["extrapolation"],
        "meets_deadline": None if deadline_seconds is None else chosen["cluster_seconds"] <= deadline_seconds,
        "within_budget": None if budget_usd is None or chosen["cost_usd"] is None
        else chosen["cost_usd"] <= budget_usd,
        "model_runs": plan["model"]["runs"], "loo_median_error": plan["model"]["loo_median_error"],
    }


def format_plan(plan):
    """The plan as text: the model, a table of node counts and the recommendation; times in seconds when the
    runs are short (single_machine.time_column), else in minutes."""
    model = plan["model"]
    error = model["loo_median_error"]
    unit, in_unit = time_column([option["cluster_seconds"] for option in plan["predictions"]])
    lines = [
        f"{plan['dataset']} at sample fraction {plan['sample_fraction']:g} on {plan['target']} "
        f"({plan['instance_type']}): pair work {plan['pair_work']:.4g}, "
        f"{plan.get('pair_work_source', 'scaled from the measured runs')}",
        f"model {model['formula']}",
        f"fitted on {model['runs']} runs ({model['runs_skipped']} without a pair work count skipped), "
        f"nodes {model['node_range'][0]}-{model['node_range'][1]}; leave-one-out error "
        + ("unknown" if error is None
           else f"median {error:.0%}, 90th percentile {model['loo_p90_error']:.0%}"),
        *one_run_lines(plan["one_run"]),
        *([price_line(plan["price"])] if plan.get("price") else []),
        "",
        f"nodes  {unit}" + ("  one-run" if plan["one_run"] else "")
        + "  node-min  cost USD  confidence  note",
    ]
    for option in plan["predictions"]:
        mark = "*" if option["node_count"] in plan["pareto_node_counts"] else " "
        cost = "-" if option["cost_usd"] is None else f"{option['cost_usd']:.2f}"
        one_run = option["one_run_cluster_seconds"]
        beside = f" {'-' if one_run is None else in_unit(one_run):>8}" if plan["one_run"] else ""
        lines.append(f"{option['node_count']:>4}{mark} {in_unit(option['cluster_seconds']):>8}{beside} "
                     f"{option['node_minutes']:>9.1f} {cost:>9} {option['confidence']:>11}  "
                     + "; ".join(option["extrapolation"]))
    lines.append("* on the cost-time Pareto front")
    lines += single_machine_lines(plan)
    if plan["recommendation"]:
        chosen = plan["recommendation"]
        lines.append(f"recommended: {chosen['node_count']} nodes, {duration(chosen['cluster_seconds'])}, "
                     f"{'-' if chosen['cost_usd'] is None else '$%.2f' % chosen['cost_usd']} "
                     f"({chosen['confidence']} confidence)")
    return "\n".join(lines)


def single_machine_lines(plan):
    """The plan's line on this machine beside the cluster, or on the local run that would give one."""
    if plan.get("single_machine"):
        return [plan["single_machine"]["summary"]]
    if target_named(plan["target"]).cluster:
        return [f"single machine: no local run of {plan['dataset']} at this sample fraction, and too few "
                "local runs to predict one: run it once with target local to see what a cluster gains"]
    return []


def one_run_lines(one_run):
    """The plan's lines about its one-run column."""
    if not one_run:
        return ["no one-run prediction: no recent run of this input (dataset, sample fraction, target, "
                "instance type) has its task times"]
    return [f"one-run: run {one_run['run_id']} ({one_run['from_node_count']} nodes, "
            f"{one_run['from_task_slots']} task slots), its task waves replayed on each count's task slots"]


def price_line(price):
    """Which prices a plan's costs are in (prices.Price.as_dict()), in one line."""
    if price["usd_per_node_hour"] is None or price["source"] == NOT_PRICED:
        return f"prices: {price['description']}"
    return (f"prices: ${price['usd_per_node_hour']:.4g} per node-hour of {price['instance_type']}, "
            f"{price['description']}")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m movielens_emr.sizing.advise",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, help="the MovieLens release to plan for")
    parser.add_argument("--target", default=EMR.name, choices=TARGET_NAMES)
    parser.add_argument("--engine", default=DEFAULT_ENGINE, help="the engine whose runs the model fits")
    parser.add_argument("--instance-type", default="m5.xlarge")
    parser.add_argument("--instance-types", help="plan across these instance types (comma-separated, or "
                                                 "'all': the instance catalogue's) instead of one")
    parser.add_argument("--no-spot", action="store_true",
                        help="with --instance-types: plan every node on-demand, no Spot task nodes")
    parser.add_argument("--sample-fraction", type=float, default=1.0)
    parser.add_argument("--deadline-minutes", type=float, help="recommend the cheapest count that meets it")
    parser.add_argument("--budget-usd", type=float, help="recommend the fastest count within it")
    parser.add_argument("--max-nodes", type=int, default=20, help="largest node count considered")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    return parser.parse_args(argv)


def main(argv=None, rows=None, metrics_of=None, price_overrides=None, count_work=None):
    """The command line. rows (history rows) are read from the run history database, metrics_of(run_id)
    (a run's metrics.json) from the storage root, and price_overrides from the Variable
    movielens_hourly_prices, when not given: the prices the pipeline's runs use. With the stored history, the
    planned run's W is counted on its ratings files here when no run measured it (count_work)."""
    args = parse_args(argv)
    if rows is None:
        rows, metrics_of = stored_history()
        count_work = count_work or counted_pair_work
    if args.instance_types:
        return main_across_types(args, rows, price_overrides)
    one_run = None
    if metrics_of is not None:
        one_run = latest_one_run(one_run_candidates(rows, args.dataset, args.target, args.instance_type,
                                                    args.sample_fraction, args.engine), metrics_of)
    try:
        if price_overrides is None and target_named(args.target).priced:
            price_overrides = configured_overrides()
        price = price_in_force(args.instance_type, price_overrides or {}, args.target)
        plan = plan_run(rows, args.dataset, args.target, args.instance_type, price.usd_per_node_hour,
                        args.sample_fraction, range(1, args.max_nodes + 1), args.deadline_minutes,
                        args.budget_usd, one_run, engine=args.engine, count_work=count_work)
    except ValueError as error:  # NotEnoughHistory, NoNodeCountFits, BadPriceVariable: a plain answer
        print(f"advise: {error}", file=sys.stderr)
        return 2
    plan["price"] = price.as_dict()
    print(json.dumps(plan, indent=1) if args.json else format_plan(plan))
    return 0


def main_across_types(args, rows, price_overrides):
    """The command line's plan across instance types (instance_plan.plan_instance_types)."""
    names = list(catalogue()) if args.instance_types == "all" else args.instance_types.split(",")
    try:
        if price_overrides is None and target_named(args.target).priced:
            price_overrides = configured_overrides()
        plan = plan_instance_types(
            rows, args.dataset, args.target, names,
            lambda name: price_in_force(name, price_overrides or {}, args.target).usd_per_node_hour,
            args.sample_fraction, range(1, args.max_nodes + 1), args.deadline_minutes, args.budget_usd,
            args.engine, spot_price_of=None if args.no_spot else catalogue_spot_price)
    except ValueError as error:
        print(f"advise: {error}", file=sys.stderr)
        return 2
    print(json.dumps(plan, indent=1) if args.json else format_type_plan(plan))
    return 0


def stored_history():
    """(the successful history rows, a reader of a run's metrics.json) from this deployment."""
    from movielens_emr.config.settings import settings_from_env
    from movielens_emr.data.storage import open_storage
    from movielens_emr.reporting.history import fetch_runs, history_engine, read_metrics

    settings = settings_from_env()
    # Every target's: the plan sets the target's runs beside this machine's (the single-machine line).
    rows = fetch_runs(history_engine(settings), outcome="success", limit=10_000)
    storage = open_storage(settings.storage_root, settings.aws_conn_id)

    def metrics_of(run_id):
        try:
            return read_metrics(storage, run_id)
        except Exception:  # an unreadable metrics.json costs the plan its one-run column, nothing more
            return None

    return rows, metrics_of


if __name__ == "__main__":
    sys.exit(main())

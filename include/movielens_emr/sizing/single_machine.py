"""This machine beside a cluster (the COST baseline): its time for the same input, and what a cluster gains
on it."""
import math

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.targets import LOCAL
from movielens_emr.sizing.durations import duration
from movielens_emr.sizing.history_rows import observation, planned_pair_work, same_engine, usable_runs
from movielens_emr.sizing.model import NotEnoughHistory, fit_run_model, predictions


def single_machine(rows, dataset, sample_fraction, engine=DEFAULT_ENGINE):
    """This machine's time for the same input (the COST baseline: McSherry, Isard and Murray, "Scalability!
    But at what COST?", HotOS 2015): its fastest measured local run of the dataset, sample fraction and
    engine, else the local time model's best prediction; None when the history has neither.

    {"seconds", "source": "measured" | "predicted", "run_id", "node_count" (its parallel tasks)}.
    """
    measured = [row for row in rows if row.get("outcome") == "success" and row.get("target") == LOCAL.name
                and row.get("dataset") == dataset and same_engine(row, engine) and row.get("cluster_seconds")
                and math.isclose(row.get("sample_fraction") or 1.0, sample_fraction)]
    if measured:
        fastest = min(measured, key=lambda row: row["cluster_seconds"])
        return {"seconds": float(fastest["cluster_seconds"]), "source": "measured",
                "run_id": fastest["run_id"], "node_count": int(fastest["node_count"])}
    local_runs, _ = usable_runs(rows, LOCAL.name, None, engine)
    try:
        model = fit_run_model([observation(row) for row in local_runs], target=LOCAL.name)
        pair_work = planned_pair_work([row for row in rows if same_engine(row, engine)], dataset,
                                      sample_fraction)
    except NotEnoughHistory:
        return None
    node_counts = range(model.node_range[0], model.node_range[1] + 1)
    best = min(predictions(model, list(node_counts), pair_work), key=lambda option: option.cluster_seconds)
    return {"seconds": round(best.cluster_seconds, 1), "source": "predicted", "run_id": None,
            "node_count": best.node_count}


def against_single_machine(options, baseline, price_per_node_hour):
    """What the cluster's node counts gain over this machine: the counts predicted faster, the counts
    predicted cheaper than one node of the instance type for the single machine's time, and a sentence."""
    if baseline is None:
        return None
    cost = None if price_per_node_hour is None else baseline["seconds"] / 3600 * price_per_node_hour
    faster = [option.node_count for option in options if option.cluster_seconds < baseline["seconds"]]
    cheaper = [option.node_count for option in options
               if cost is not None and option.cost_usd is not None and option.cost_usd < cost]
    line = f"{baseline_phrase(baseline)}; "
    if not faster:
        fastest = min(options, key=lambda option: option.cluster_seconds)
        line += (f"no node count beats it on time (the fastest, {fastest.node_count} nodes, is predicted at "
                 f"{duration(fastest.cluster_seconds)}, provisioning included)")
    else:
        line += f"node counts predicted faster: {node_counts_text(faster)}"
    if cost is not None:
        line += ("; none beats it on cost" if not cheaper else f"; cheaper than one such node for as long: "
                 f"{node_counts_text(cheaper)}")
    return {**baseline, "cost_usd": None if cost is None else round(cost, 4), "faster_node_counts": faster,
            "cheaper_node_counts": cheaper, "summary": line}


def baseline_phrase(baseline):
    """"a single machine (this one, 2 parallel tasks) takes 42 s, measured by run ..." of single_machine's."""
    how = (f"measured by run {baseline['run_id']}" if baseline["source"] == "measured"
           else "predicted by its time model")
    return (f"a single machine (this one, {baseline['node_count']} parallel tasks) takes "
            f"{duration(baseline['seconds'])}, {how}")


def node_counts_text(counts):
    """Node counts as a reader takes them in: a run of three or more as "3-8"."""
    if len(counts) > 2 and counts == list(range(counts[0], counts[-1] + 1)):
        return f"{counts[0]}-{counts[-1]}"
    return ", ".join(map(str, counts))

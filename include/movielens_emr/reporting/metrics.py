"""Timing and cost figures of a run, from EMR's timestamps (or the local run's clock), as one flat record."""
import re

from movielens_emr.config.instances import UnknownInstanceType, instance_type
from movielens_emr.config.targets import target_named
from movielens_emr.sizing.prices import spot_price_charged
from movielens_emr.sizing.task_times import one_run_prediction_lines, task_times_lines

INPUT_RATINGS = "input: ratings read"
# The key of a failed run's diagnosis in its metrics.json; a success's metrics.json never has it.
FAILURE_KEY = "failure"
BAD_LINES = "input: bad lines skipped"


def flatten_counters(step_counters):
    """{"group: counter": total} over mrjob's per-step [{group: {counter: amount}}]."""
    totals = {}
    for step in step_counters:
        for group, counters in step.items():
            for name, amount in counters.items():
                totals[f"{group}: {name}"] = totals.get(f"{group}: {name}", 0) + amount
    return totals


# Hadoop's job client logs its counters as one block: "Counters: N", then each group indented
# once and each counter twice (group names may end in a space: "\tJob Counters ").
COUNTERS_HEADER = re.compile(r"(?:^|\s)Counters: \d+\s*$")
INDENTED_COUNTER = re.compile(r"(\s+)(.+)=(-?\d+)\s*")
INDENTED_GROUP = re.compile(r"(\s+)(\S.*?)\s*")


def parse_hadoop_counters(log_text):
    """{"group: counter": amount} from the last counter block of a Hadoop job client's log; {} if none.

    Only the lines of the block are read: a Java stack trace's indented lines elsewhere are not counters.
    """
    counters, group, group_indent, in_block = {}, None, 0, False
    for line in log_text.splitlines():
        counter = INDENTED_COUNTER.fullmatch(line) if in_block else None
        group_line = INDENTED_GROUP.fullmatch(line) if in_block else None
        if COUNTERS_HEADER.search(line):
            counters, group, in_block = {}, None, True  # a later block (a retried job's) wins
        elif counter and group and len(counter.group(1)) > group_indent:
            counters[f"{group}: {counter.group(2).strip()}"] = int(counter.group(3))
        elif group_line and not counter:
            group, group_indent = group_line.group(2), len(group_line.group(1))
        else:
            in_block = False
    return counters


def run_started_at(start_date, run_after):
    """When a run began: the later of its start date and its run_after. `airflow dags test -e DATE`
    starts a run at its logical date, months back for a past one, while run_after is when it was made;
    a backfill's run_after is in the past, and its start date right."""
    return max(start_date, run_after) if run_after else start_date


def seconds_between(start, end):
    return round((end - start).total_seconds(), 3)


def emr_timings(cluster_timeline, step_timelines):
    """Cluster, provisioning and per-stage seconds from describe_cluster / describe_step timelines."""
    created, ready, ended = (cluster_timeline.get(key)
                             for key in ("CreationDateTime", "ReadyDateTime", "EndDateTime"))
    return {
        "cluster_seconds": seconds_between(created, ended) if created and ended else None,
        "provisioning_seconds": seconds_between(created, ready) if created and ready else None,
        "stage_seconds": [
            seconds_between(step["StartDateTime"], step["EndDateTime"])
            if step.get("StartDateTime") and step.get("EndDateTime") else None
            for step in step_timelines
        ],
    }


def run_metrics(config, timings, wall_seconds, counters, price_per_node_hour, counter_sources=None,
                engine_figures=None, spot_market=None, task_times=None):
    """The flat metrics record: timings plus overhead, node-minutes, cost and the job's input counts, what
    the Spot task nodes were charged and lost (spot_metrics), then the engine's own figures
    (protocol.Engine.figures: its output, its work).

    counter_sources: per stage, the log its counters were read from, None for a stage whose
    counters were found nowhere (EMR); None when the runner returned them itself (local).
    spot_market: the target's figures of the cluster's Spot task nodes (emr.target.spot_market_figures);
    task_times: the run's task_times (its killed attempts).
    """
    cluster_seconds = timings["cluster_seconds"]
    spot = spot_metrics(config, cluster_seconds, price_per_node_hour, spot_market, task_times)
    return {
        "wall_seconds": round(wall_seconds, 3),
        **timings,
        "overhead_seconds": round(wall_seconds - cluster_seconds, 3) if cluster_seconds is not None else None,
        "node_minutes": spot.pop("node_minutes"),
        "price_per_node_hour_usd": price_per_node_hour,
        "estimated_cost_usd": spot.pop("estimated_cost_usd"),
        **spot,
        **input_counts(counters),
        "counters_read_from": counter_sources,
        "counters_missing_stages": [number for number, source in enumerate(counter_sources or [], start=1)
                                    if source is None],
        **(engine_figures or {}),
    }


def spot_metrics(config, cluster_seconds, on_demand_price, spot_market=None, task_times=None):
    """Node-minutes and cost of a run, its on-demand nodes at on_demand_price and its Spot task nodes at the
    Spot price charged (prices.spot_price_charged: from EC2's Spot price history when it was read, else
    assumed, and saying which), how many Spot nodes EC2 took back and how many task attempts were killed.

    The on-demand nodes are billed for the cluster's span; the Spot nodes for the time each ran
    (spot_market's spot_node_seconds), or for the cluster's span when that is unknown, and say so.
    """
    spot = getattr(config, "spot_task_nodes", 0) or 0
    market = spot_market or {}
    on_demand_minutes = (round((config.node_count - spot) * cluster_seconds / 60, 3)
                         if cluster_seconds is not None else None)
    record = {"spot_task_nodes": spot, "on_demand_nodes": config.node_count - spot,
              "killed_task_attempts": killed_task_attempts(task_times)}
    if not spot:
        return {"node_minutes": _round(on_demand_minutes, 3), "estimated_cost_usd": _cost(
                    [(on_demand_minutes, on_demand_price)]), **record}
    spot_minutes, minutes_from = _spot_minutes(spot, cluster_seconds, market)
    spot_minutes = _round(spot_minutes, 3)
    price = _spot_price(config.instance_type, on_demand_price, market)
    lost = market.get("lost_instances")
    record.update({
        "on_demand_node_minutes": _round(on_demand_minutes, 3), "spot_node_minutes": _round(spot_minutes, 3),
        "spot_node_minutes_from": minutes_from,
        "spot_usd_per_node_hour": price and price.usd_per_node_hour,
        "spot_ec2_usd_per_hour": price and price.ec2_usd_per_hour,
        "spot_price_source": price.source if price else "none",
        "spot_price_description": price.why if price else f"{config.instance_type} is not in the catalogue",
        "spot_interruptions": len(lost) if lost is not None else None,
        "spot_lost_instances": lost})
    node_minutes = (on_demand_minutes + spot_minutes
                    if on_demand_minutes is not None and spot_minutes is not None else None)
    return {"node_minutes": _round(node_minutes, 3), "estimated_cost_usd": _cost(
        [(on_demand_minutes, on_demand_price), (spot_minutes, price and price.usd_per_node_hour)]), **record}


def _spot_minutes(spot, cluster_seconds, market):
    """(the Spot nodes' minutes, where they came from)."""
    if market.get("spot_node_seconds") is not None:
        return market["spot_node_seconds"] / 60, "ListInstances: each Spot task instance's own span"
    why = market.get("why") or "the cluster's task instances are unknown"
    if cluster_seconds is None:
        return None, f"unknown: {why}"
    return spot * cluster_seconds / 60, f"the cluster's span x {spot} Spot task nodes ({why})"


def _spot_price(name, on_demand_price, market):
    try:
        instance = instance_type(name)
    except UnknownInstanceType:
        return None
    return spot_price_charged(instance, on_demand_price, market.get("history_ec2_usd_per_hour"),
                              market.get("why") or "no figures of the cluster's Spot market")


def killed_task_attempts(task_times):
    """Task attempts the job history records as killed, over the run's stages; None when any stage's history
    is unknown or the source records none (the local runner)."""
    killed = (task_times or {}).get("killed_attempts")
    if not killed or any(count is None for count in killed):
        return None
    return sum(killed)


def _cost(parts):
    """USD of [(node-minutes, USD per node-hour)]; None when any part is unknown."""
    if any(minutes is None or price is None for minutes, price in parts):
        return None
    return round(sum(minutes / 60 * price for minutes, price in parts), 4)


def _round(value, digits):
    return None if value is None else round(value, digits)


def failed_run_metrics(run_id, config, cluster_id, failure):
    """metrics.json of a run whose stages failed: the run, its config (validate_config's dict), its
    cluster and the failure (diagnosis.failure_record) under FAILURE_KEY, and none of a success's figures."""
    return {"run_id": run_id, **(config or {}), "cluster_id": cluster_id, FAILURE_KEY: failure}


def records_failure(metrics):
    """Whether a metrics.json is a failed run's (failed_run_metrics'), never to be read as a success's."""
    return FAILURE_KEY in (metrics or {})


def input_counts(counters):
    """Ratings read and bad lines skipped, both None unless the first stage's input counters are there.

    The job counts bad lines only when there are some: the counter's absence means 0 only next
    to the ratings read of the same stage, never when that stage's counters are missing.
    """
    if INPUT_RATINGS not in counters:
        return {"input_ratings": None, "bad_lines": None}
    return {"input_ratings": counters[INPUT_RATINGS], "bad_lines": counters.get(BAD_LINES, 0)}


def evaluation_lines(evaluation):
    """A recommender evaluation (evaluation.ranking's metrics per recommender) as a row per recommender."""
    rows = []
    for name, scores in (evaluation.get("recommenders") or {}).items():
        figures = ", ".join(f"{label} {scores[key]:.4f}" for label, key in (
            ("P@k", "precision_at_k"), ("R@k", "recall_at_k"), ("NDCG@k", "ndcg_at_k"), ("MAP@k", "map_at_k"),
            ("coverage", "coverage")) if scores.get(key) is not None)
        rows.append((f"evaluation[{name}]", f"k = {scores.get('k')}: {figures}"))
    return rows or [("evaluation", "-")]


def spark_task_times_lines(times):
    """A Spark application's task times (reporting.spark_events) as a row per task type."""
    if not times.get("source"):
        return [("spark_task_times", f"unknown: {times.get('missing')}")]
    rows = [("spark_task_times", f"{times['jobs']} jobs, {times['stages']} stages, {times['executors']} "
                                 f"executors, {times['failed_tasks']} failed tasks")]
    for task_type, summary in (times.get("task_types") or {}).items():
        rows.append((f"spark_task_times[{task_type}]",
                     f"{summary['tasks']} tasks, {summary['total_seconds']:,.1f} s in all, the longest "
                     f"{summary['max_seconds']:,.1f} s"))
    return rows


def per_iteration_lines(iterations):
    """The als engine's loss and fit seconds after each iteration (als_per_iteration) as a row each."""
    return [(f"als_per_iteration[{step.get('iteration')}]",
             f"training loss {step['training_loss']:,.1f} after a fit of {step['fit_seconds']:,.1f} s")
            for step in iterations]


# Records too large for a row each of their figures (dictionaries, or a list of them): summarised in rows.
SUMMARISED = {"task_times": task_times_lines, "one_run_prediction": one_run_prediction_lines,
              "evaluation": evaluation_lines, "spark_task_times": spark_task_times_lines,
              "als_per_iteration": per_iteration_lines}


def is_summarised(name, value):
    """Whether metrics.json's `name` is one of SUMMARISED's records: a dictionary, or a list not empty (not
    its null)."""
    return name in SUMMARISED and (isinstance(value, dict) or (isinstance(value, list) and bool(value)))


# Figures of a cluster: a run on this machine has none of them (metrics.json keeps them, as null or 0).
CLUSTER_FIELDS = frozenset({
    "cluster_id", "cluster_security_configuration", "security_configuration", "instance_type",
    "release_label", "provisioning_seconds", "node_minutes", "price_per_node_hour_usd", "estimated_cost_usd",
    "counters_read_from", "counters_missing_stages", "spot_task_nodes", "on_demand_nodes",
    "killed_task_attempts", "on_demand_node_minutes", "spot_node_minutes", "spot_node_minutes_from",
    "spot_usd_per_node_hour", "spot_ec2_usd_per_hour", "spot_price_source", "spot_price_description",
    "spot_interruptions", "spot_lost_instances"})


def metrics_table(metrics):
    """A readable two-column table of a metrics record, for the task log; a run on this machine's without
    the figures only a cluster has."""
    rows = []
    on_a_cluster = target_named(metrics["target"]).cluster if metrics.get("target") else True
    for name, value in metrics.items():
        if name in CLUSTER_FIELDS and not on_a_cluster:
            continue
        if is_summarised(name, value):
            rows += SUMMARISED[name](value)
        elif isinstance(value, list) and value:
            rows += [(f"{name}[{number}]", item) for number, item in enumerate(value, start=1)]
        else:
            rows.append((name, value))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {_format(value)}" for name, value in rows)


def _format(value):
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if value == []:
        return "none"
    return "-" if value is None else str(value)

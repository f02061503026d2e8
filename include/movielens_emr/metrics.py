"""Timing and cost figures of a run, from EMR's own timestamps (or the local run's clock), as one flat record."""
import re

from movielens_emr.job import work_metrics

PRICE_REGION = "us-east-1"
# On-demand USD per node-hour in us-east-1: the EC2 price plus the EMR charge, from the AWS price
# lists of 2025. Override per instance type with the Variable movielens_hourly_prices (JSON).
HOURLY_PRICES_USD = {
    "m5.large": 0.096 + 0.024, "m5.xlarge": 0.192 + 0.048, "m5.2xlarge": 0.384 + 0.096,
    "m5.4xlarge": 0.768 + 0.192, "m6i.xlarge": 0.192 + 0.048, "m6g.xlarge": 0.154 + 0.039,
    "m7g.xlarge": 0.1632 + 0.041, "c5.xlarge": 0.17 + 0.043, "c5.2xlarge": 0.34 + 0.085,
    "r5.xlarge": 0.252 + 0.063, "r5.2xlarge": 0.504 + 0.126,
}


def flatten_counters(step_counters):
    """{"group: counter": total} over mrjob's per-step [{group: {counter: amount}}]."""
    totals = {}
    for step in step_counters:
        for group, counters in step.items():
            for name, amount in counters.items():
                totals[f"{group}: {name}"] = totals.get(f"{group}: {name}", 0) + amount
    return totals


def parse_hadoop_counters(syslog):
    """{"group: counter": amount} from the indented counter block a Hadoop streaming step logs."""
    counters, group = {}, None
    for line in syslog.splitlines():
        group_match = re.fullmatch(r"\t(\S.*)", line)
        counter_match = re.fullmatch(r"\t\t(.+)=(\d+)", line)
        if counter_match and group:
            counters[f"{group}: {counter_match.group(1)}"] = int(counter_match.group(2))
        elif group_match:
            group = group_match.group(1)
    return counters


def seconds_between(start, end):
    return round((end - start).total_seconds(), 3)


def hourly_price(instance_type, overrides=None):
    """USD per node-hour of an instance type, overrides first; None when unknown."""
    return {**HOURLY_PRICES_USD, **(overrides or {})}.get(instance_type)


def emr_timings(cluster_timeline, step_timelines):
    """Cluster, provisioning and per-stage seconds from describe_cluster / describe_step timelines."""
    created, ready, ended = (cluster_timeline.get(key) for key in ("CreationDateTime", "ReadyDateTime", "EndDateTime"))
    return {
        "cluster_seconds": seconds_between(created, ended) if created and ended else None,
        "provisioning_seconds": seconds_between(created, ready) if created and ready else None,
        "stage_seconds": [
            seconds_between(step["StartDateTime"], step["EndDateTime"])
            if step.get("StartDateTime") and step.get("EndDateTime") else None
            for step in step_timelines
        ],
    }


def run_metrics(config, timings, wall_seconds, counters, output_pairs, price_per_node_hour):
    """The flat metrics record: timings plus overhead, node-minutes, cost and the job's counts."""
    cluster_seconds = timings["cluster_seconds"]
    node_minutes = round(config.node_count * cluster_seconds / 60, 3) if cluster_seconds is not None else None
    return {
        "wall_seconds": round(wall_seconds, 3),
        **timings,
        "overhead_seconds": round(wall_seconds - cluster_seconds, 3) if cluster_seconds is not None else None,
        "node_minutes": node_minutes,
        "price_per_node_hour_usd": price_per_node_hour,
        "estimated_cost_usd": (round(node_minutes / 60 * price_per_node_hour, 4)
                               if node_minutes is not None and price_per_node_hour is not None else None),
        "input_ratings": counters.get("input: ratings read"),
        "bad_lines": counters.get("input: bad lines skipped", 0) if counters else None,
        "output_pairs": output_pairs,
        # W = sum over users of n_u^2, and stage 2's reduce task work, max / mean.
        **work_metrics(counters),
    }


def metrics_table(metrics):
    """A readable two-column table of a metrics record, for the task log."""
    rows = []
    for name, value in metrics.items():
        if isinstance(value, list):
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
    return "-" if value is None else str(value)

"""Which history rows a model is fitted to, and what each says: the runs of one engine, target and instance
type, each as an Observation, and the pair work of a planned input."""
import statistics

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.targets import target_named
from movielens_emr.sizing.model import NotEnoughHistory, Observation


def usable_runs(rows, target, instance_type, engine=DEFAULT_ENGINE):
    """Successful runs of one engine, target and instance type that have the figures a fit needs;
    (runs, skipped). Each engine has its own model: their work does not take the same time."""
    chosen, skipped = [], 0
    for row in rows:
        if row.get("outcome") != "success" or row.get("target") != target or not same_engine(row, engine):
            continue
        if not same_machines(row, target, instance_type):
            continue
        if not (row.get("pair_work") and row.get("cluster_seconds")):
            skipped += 1  # an older run without the pair work count, or without timings
            continue
        chosen.append(row)
    return chosen, skipped


def same_engine(row, engine):
    """Whether a history row was computed by engine (a row from before engines were named: the default)."""
    return (row.get("engine") or DEFAULT_ENGINE) == engine


def same_machines(row, target, instance_type):
    """Whether a history row ran on the machines planned: on a cluster, of the same instance type."""
    planned = target_named(target).instance_type_of(instance_type)
    return planned is None or row.get("instance_type") == planned


def observation(row):
    provisioning = row.get("provisioning_seconds") or 0.0
    return Observation(int(row["node_count"]), float(row["pair_work"]),
                       float(row["cluster_seconds"]) - provisioning, provisioning, row.get("run_id", ""))


def planned_pair_work(rows, dataset, sample_fraction):
    """The pair work of a run of `dataset` at `sample_fraction`, scaled from that dataset's measured runs."""
    full = [row["pair_work"] / (row.get("sample_fraction") or 1.0)
            for row in rows if row.get("dataset") == dataset]
    if not full:
        raise NotEnoughHistory(f"no successful run of {dataset} with a pair work count: run it once (a small "
                               "sample_fraction will do) so that its work is known")
    return statistics.median(full) * sample_fraction

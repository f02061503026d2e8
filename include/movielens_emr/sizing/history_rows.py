"""Which history rows a model is fitted to, and what each says: the runs of one engine, target and instance
type, each as an Observation (with its stages' seconds and sizes where it recorded them), and the work of a
planned input, exact wherever the history or the ratings files allow."""
import math
import statistics

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.targets import target_named
from movielens_emr.data.datasets import CATALOGUE
from movielens_emr.sizing.model import STAGE_SIZES, NotEnoughHistory, Observation, PlannedWork

SAME_INPUT = "measured by a run of the same input"


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
    """The row as the model reads it: its stages' seconds only when every stage recorded them."""
    provisioning = row.get("provisioning_seconds") or 0.0
    stages = tuple(row.get(f"stage_{number}_seconds") for number in range(1, len(STAGE_SIZES) + 1))
    return Observation(int(row["node_count"]), float(row["pair_work"]),
                       float(row["cluster_seconds"]) - provisioning, provisioning, row.get("run_id", ""),
                       row.get("dataset") or "", _number(row.get("input_ratings")),
                       _number(row.get("output_pairs")),
                       stages if all(seconds is not None for seconds in stages) else ())


def _number(value):
    return None if value is None else float(value)


def same_input(row, dataset, sample_fraction):
    """Whether a row ran the planned input: the same dataset and sample fraction (the job keeps the same
    users at a fraction every run, so its W and output are those of the planned run)."""
    return row.get("dataset") == dataset and math.isclose(row.get("sample_fraction") or 1.0, sample_fraction)


def planned_pair_work(rows, dataset, sample_fraction, counted=None, count=None):
    """The planned run's work, a PlannedWork: W, ratings read and output pairs, and where each came from.

    W, exact wherever it can be: `counted` (counted on the run's own ratings files), else measured by a run
    of the same input, else count() (a callable counting it on the files here, called only then; None when
    it cannot), else scaled from the dataset's measured runs by the fraction, which the source says is
    approximate (a sample's W is not linear in the fraction: heavy users dominate it). Ratings read (the job
    reads every rating whatever the fraction): the dataset's runs', else the catalogue's count. Output pairs:
    a run of the same input's; else a run of the dataset at another fraction's, scaled by W; else None,
    which the model estimates. Raises NotEnoughHistory when W can be neither counted nor scaled.
    """
    if isinstance(counted, PlannedWork):
        return counted
    of_dataset = [row for row in rows if row.get("dataset") == dataset and row.get("pair_work")]
    same = [row for row in of_dataset if same_input(row, dataset, sample_fraction)]
    work, source = _exact_work(counted, same, count)
    if work is None:
        if not of_dataset:
            raise NotEnoughHistory(f"no successful run of {dataset} with a pair work count, and its ratings "
                                   "files are not on this machine to count it: run it once (a small "
                                   "sample_fraction will do) so that its work is known")
        work = statistics.median(row["pair_work"] / (row.get("sample_fraction") or 1.0)
                                 for row in of_dataset) * sample_fraction
        source = ("scaled from the dataset's measured runs by the sample fraction (a sample's W is not "
                  "linear in it: heavy users dominate it)")
    ratings, ratings_source = planned_ratings(of_dataset, dataset)
    output, output_source = planned_output(of_dataset, same, work)
    return PlannedWork(work, dataset, ratings, output, f"W {source}; ratings read {ratings_source}; "
                                                       f"output pairs {output_source}")


def _exact_work(counted, same, count):
    """(W, its source) when it is known exactly, else (None, None)."""
    if counted:
        return float(counted), "counted on the ratings files"
    if same:
        return float(statistics.median(row["pair_work"] for row in same)), SAME_INPUT
    counted = count() if count else None
    if counted:
        return float(counted), "counted on the ratings files"
    return None, None


def planned_ratings(of_dataset, dataset):
    """(ratings read, their source): measured by the dataset's runs, else the catalogue's; (None, ...) if
    neither knows the dataset."""
    measured = [row["input_ratings"] for row in of_dataset if row.get("input_ratings")]
    if measured:
        return float(statistics.median(measured)), "measured by the dataset's runs"
    if dataset in CATALOGUE:
        return float(CATALOGUE[dataset].ratings), "from the dataset catalogue"
    return None, "unknown (estimated by the model)"


def planned_output(of_dataset, same, work):
    """(output pairs, their source) of the planned input: a run of the same input's; else the run of the
    dataset nearest in W, its output scaled by the W ratio; (None, ...) without a run of the dataset."""
    measured = [row["output_pairs"] for row in same if row.get("output_pairs") is not None]
    if measured:
        return float(statistics.median(measured)), SAME_INPUT
    others = [row for row in of_dataset if row.get("output_pairs") is not None]
    if not others:
        return None, "unknown (estimated by the model)"
    nearest = min(others, key=lambda row: abs(math.log(row["pair_work"] / work)))
    return (float(nearest["output_pairs"]) * work / nearest["pair_work"],
            f"scaled by W from run {nearest.get('run_id', '?')} of the dataset at another sample fraction")

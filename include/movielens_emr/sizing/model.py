"""Cluster sizing: Ernest's time model fitted to the run history, task waves, and a node count to buy.

Ernest (Venkataraman et al., NSDI 2016) models a job's time on m machines as
    t(m) = a + b * W / m + c * log(m) + d * m
(a fixed cost, the parallel work W spread over m machines, a tree-shaped aggregation, per-machine
overhead), each coefficient non-negative, fitted by non-negative least squares. W is the run's pair
work, sum over users of n_u^2 (stage 1 counts it), so that runs on samples of users inform full runs.
Provisioning does not depend on the work and is modelled apart, as its median per instance type.
m counts the machines that run tasks: on EMR the core nodes (node count - 1; the master alone on 1
node), so that 1 and 2 nodes, which run tasks on one machine each, are predicted alike; locally
(target "local") the node count, which is the local runner's task slots.

Where the runs recorded their stages' seconds and sizes, each stage gets Ernest's terms of its own
(StagedTimeModel): stage s takes a_s + sum_k b_sk * size_k / m + c_s * log m + d_s * m, its sizes those its
work follows (STAGE_SIZES: stage 1 the ratings read, stage 2 W and the output pairs, stage 3 the output
pairs), plus the seconds outside the stages, so that a dataset whose ratings, W and output stand in other
proportions than the fitted ones' is still predicted stage by stage. Its confidence comes from held-out
error: each run predicted without it, and each dataset's runs predicted by a model fitted on the others.
"""
import dataclasses
import math
import statistics
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from movielens_emr.config.targets import LOCAL, target_named

TERMS = ("fixed", "work_per_node", "log_nodes", "nodes")
MIN_RUNS = 4
# How far outside the measured node counts and work a prediction may go before it is flagged.
WORK_MARGIN = 1.1
CONFIDENCE_BOUNDS = {"high": 0.10, "medium": 0.25}
# The sizes of a run each stage's work follows (the similarity job's three stages): stage 1 reads and groups
# every rating; stage 2 sums each user's co-rated pairs (W) and scores and writes the kept pairs; stage 3
# ranks and writes the kept pairs.
STAGE_SIZES = (("ratings",), ("pair_work", "output_pairs"), ("output_pairs",))
SIZE_LABELS = {"ratings": "ratings read", "pair_work": "pair work", "output_pairs": "output pairs"}
# The fewest held-out predictions an error bound is quoted from.
MIN_HELD_OUT = 1


def task_machines(node_count, target):
    """The machines of a run that run tasks (targets.Target.task_machines)."""
    return target_named(target).task_machines(node_count)


class NotEnoughHistory(ValueError):
    """Too few usable runs to fit a model: say which runs are needed."""


@dataclass(frozen=True)
class Observation:
    """One measured run: nodes, pair work, working seconds (cluster time less provisioning), provisioning;
    for the per-stage model also its dataset, ratings read, output pairs and each stage's seconds."""

    node_count: int
    pair_work: float
    work_seconds: float
    provisioning_seconds: float = 0.0
    run_id: str = ""
    dataset: str = ""
    ratings: float | None = None
    output_pairs: float | None = None
    stage_seconds: tuple = ()


class HeldOutErrors:
    """What both models say of their own error: each run predicted by a model fitted without it
    (loo_errors), and each fitted dataset's runs by a model fitted on the others (dataset_errors; none for a
    model fitted whole)."""

    dataset_errors = ()

    def error_basis(self, dataset):
        """(held-out errors, what they are) that bound a prediction of `dataset`: for a dataset the model was
        not fitted on, its error across datasets (unmeasured, empty, for a model without it); else its
        leave-one-out error."""
        if dataset and self.datasets and dataset not in self.datasets:
            return self.dataset_errors, "held-out error across datasets"
        return self.loo_errors, "leave-one-out error"

    @property
    def loo_median_error(self):
        """Median |error| / measured of each run predicted by a model fitted without it; None if unknown."""
        return statistics.median(self.loo_errors) if self.loo_errors else None

    @property
    def loo_p90_error(self):
        return _quantile(self.loo_errors, 0.9) if self.loo_errors else None

    @property
    def dataset_median_error(self):
        return statistics.median(self.dataset_errors) if self.dataset_errors else None

    @property
    def dataset_p90_error(self):
        return _quantile(self.dataset_errors, 0.9) if self.dataset_errors else None


@dataclass(frozen=True)
class TimeModel(HeldOutErrors):
    """A fitted Ernest model with what it was fitted on and its leave-one-out error."""

    coefficients: tuple
    node_range: tuple
    work_range: tuple
    provisioning_seconds: float
    runs: int
    loo_errors: tuple = field(default=())
    target: str = LOCAL.name
    datasets: tuple = ()

    def work_seconds(self, node_count, pair_work):
        return float(np.dot(self.coefficients, features(task_machines(node_count, self.target), pair_work)))

    def stage_seconds(self, node_count, pair_work):
        return ()  # one term set for the whole run: no stages of its own

    def coefficient_dict(self):
        return dict(zip(("a", "b", "c", "d"), self.coefficients, strict=True))

    def formula(self):
        return ("t(m) = {a:.1f} + {b:.3g} * W/m + {c:.1f} * log m + {d:.2f} * m seconds".format(
            **self.coefficient_dict()) + f", provisioning {self.provisioning_seconds:.0f} s apart")


class PlannedWork(float):
    """A planned run's pair work W, as a number (so that code planning on W alone still does), carrying the
    run's other figures the per-stage model reads: its dataset, ratings read and output pairs (None when
    unknown: the model estimates them from its fitted runs and says so), and where they came from."""

    def __new__(cls, pair_work, dataset=None, ratings=None, output_pairs=None, source=""):
        if not pair_work or pair_work < 0 or not math.isfinite(pair_work):
            raise ValueError(f"a planned run's pair work must be a positive number; got {pair_work!r}")
        work = super().__new__(cls, pair_work)
        work.dataset, work.ratings, work.output_pairs, work.source = dataset, ratings, output_pairs, source
        return work

    def __reduce__(self):
        return PlannedWork, (float(self), self.dataset, self.ratings, self.output_pairs, self.source)


def has_stage_figures(observation, stage_sizes=STAGE_SIZES):
    """Whether a run recorded what the per-stage model is fitted on: each stage's seconds and every size."""
    return (len(observation.stage_seconds) == len(stage_sizes)
            and all(seconds is not None and seconds >= 0 for seconds in observation.stage_seconds)
            and bool(observation.ratings) and observation.output_pairs is not None)


def observed_sizes(observation):
    return {"pair_work": float(observation.pair_work), "ratings": float(observation.ratings),
            "output_pairs": float(observation.output_pairs)}


def stage_features(machines, sizes, size_names):
    """A stage's Ernest terms on m machines: 1, each of its sizes / m, log m, m."""
    return np.array([1.0, *(sizes[name] / machines for name in size_names), math.log(machines),
                     float(machines)])


def stage_term_names(size_names):
    return ("fixed", *(f"{SIZE_LABELS[name]}/m" for name in size_names), "log m", "m")


@dataclass(frozen=True)
class StagedTimeModel(HeldOutErrors):
    """Ernest's terms fitted stage by stage (STAGE_SIZES), plus the seconds outside the stages.

    coefficients is flat, each stage's terms (stage_term_names) in turn and the seconds outside the stages
    last, so that scaling every coefficient scales the prediction. size_ratios holds, per fitted dataset,
    the median ratio of each size to W, from which a size a plan lacks is estimated.
    """

    coefficients: tuple
    node_range: tuple
    work_range: tuple
    provisioning_seconds: float
    runs: int
    size_ranges: tuple = ()
    datasets: tuple = ()
    size_ratios: tuple = ()
    loo_errors: tuple = ()
    dataset_errors: tuple = ()
    target: str = LOCAL.name
    stage_sizes: tuple = STAGE_SIZES

    def stage_coefficients(self):
        """Each stage's coefficients, in stage_term_names' order."""
        stages, start = [], 0
        for size_names in self.stage_sizes:
            width = len(size_names) + 3
            stages.append(self.coefficients[start:start + width])
            start += width
        return stages

    @property
    def outside_stages_seconds(self):
        return self.coefficients[-1]

    def stage_seconds(self, node_count, pair_work):
        """Each stage's predicted seconds of a run of node_count nodes and pair_work (a PlannedWork or W)."""
        sizes, _ = self.sizes_of(pair_work)
        machines = task_machines(node_count, self.target)
        return tuple(max(float(np.dot(coefficients, stage_features(machines, sizes, names))), 0.0)
                     for coefficients, names in zip(self.stage_coefficients(), self.stage_sizes, strict=True))

    def work_seconds(self, node_count, pair_work):
        return sum(self.stage_seconds(node_count, pair_work)) + self.outside_stages_seconds

    def sizes_of(self, pair_work):
        """({size: value}, notes) of a planned run: its own figures, and each one it lacks estimated as W
        times the ratio measured on its dataset (else the fitted datasets' median ratio), with a note."""
        sizes, notes = {"pair_work": float(pair_work)}, []
        dataset = getattr(pair_work, "dataset", None)
        for name in ("ratings", "output_pairs"):
            value = getattr(pair_work, name, None)
            if value is None:
                ratio, whose = self.size_ratio(name, dataset)
                value = ratio * float(pair_work)
                label = SIZE_LABELS[name]
                notes.append(f"{label} estimated at {value:.3g} (W times {whose} {label} per unit of W)")
            sizes[name] = float(value)
        return sizes, notes

    def size_ratio(self, name, dataset=None):
        """(median size / W, whose) on `dataset`'s fitted runs, else the median over the fitted datasets."""
        ratios = {ratio_dataset: ratio for ratio_dataset, ratio_name, ratio in self.size_ratios
                  if ratio_name == name}
        if dataset in ratios:
            return ratios[dataset], f"{dataset}'s measured"
        return statistics.median(ratios.values()), "the fitted datasets' median"

    def coefficient_dict(self):
        named = {f"stage {number} {term}": value
                 for number, (names, coefficients) in enumerate(
                     zip(self.stage_sizes, self.stage_coefficients(), strict=True), start=1)
                 for term, value in zip(stage_term_names(names), coefficients, strict=True)}
        return {**named, "outside the stages": self.outside_stages_seconds}

    def formula(self):
        stages = []
        for number, (names, coefficients) in enumerate(
                zip(self.stage_sizes, self.stage_coefficients(), strict=True), start=1):
            terms = [f"{coefficients[0]:.3g}"] + [
                f"{value:.3g} * {term}" for term, value in zip(stage_term_names(names)[1:], coefficients[1:],
                                                                 strict=True)]
            stages.append(f"stage {number} = " + " + ".join(terms))
        return (f"per stage, seconds on m machines: {'; '.join(stages)}; {self.outside_stages_seconds:.1f} s "
                f"outside the stages; provisioning {self.provisioning_seconds:.0f} s apart; fitted on "
                f"{', '.join(self.datasets) or 'unnamed datasets'}")


def fit_stage_model(observations, target=LOCAL.name, stage_sizes=STAGE_SIZES, min_runs=MIN_RUNS):
    """The per-stage model of the observations that recorded their stages and sizes, with its held-out
    errors: each run predicted by the model fitted without it, and (with two datasets or more) each
    dataset's runs predicted by the model fitted on the other datasets' runs, their output pairs not given
    but estimated, as for a dataset never run. Raises NotEnoughHistory as fit_time_model."""
    observations = [o for o in observations if has_stage_figures(o, stage_sizes) and o.work_seconds > 0]
    machines = {task_machines(o.node_count, target) for o in observations}
    if len(observations) < min_runs or len(machines) < 2:
        raise NotEnoughHistory(
            f"{len(observations)} runs with their stages' seconds, ratings and output pairs on "
            f"{len(machines)} count(s) of machines that run tasks: the per-stage model needs at least "
            f"{min_runs} on two counts or more")
    model = _stage_model(observations, target, stage_sizes)
    return dataclasses.replace(
        model, loo_errors=tuple(_held_out_run_errors(observations, target, stage_sizes)),
        dataset_errors=tuple(_held_out_dataset_errors(observations, target, stage_sizes)))


def _stage_model(observations, target, stage_sizes):
    """The per-stage model of the observations, without its held-out errors."""
    coefficients = []
    for index, names in enumerate(stage_sizes):
        matrix = np.array([stage_features(task_machines(o.node_count, target), observed_sizes(o), names)
                           for o in observations])
        coefficients += _scaled_nnls(matrix, np.array([o.stage_seconds[index] for o in observations]))
    outside = statistics.median(max(o.work_seconds - sum(o.stage_seconds), 0.0) for o in observations)
    node_counts = sorted({o.node_count for o in observations})
    datasets = sorted({o.dataset for o in observations})
    ratios = tuple((dataset, name, statistics.median(observed_sizes(o)[name] / o.pair_work
                                                      for o in observations if o.dataset == dataset))
                   for dataset in datasets for name in ("ratings", "output_pairs"))
    return StagedTimeModel(
        coefficients=(*coefficients, outside), node_range=(node_counts[0], node_counts[-1]),
        work_range=(min(o.pair_work for o in observations), max(o.pair_work for o in observations)),
        provisioning_seconds=statistics.median(o.provisioning_seconds or 0.0 for o in observations),
        runs=len(observations),
        size_ranges=tuple((name, min(observed_sizes(o)[name] for o in observations),
                           max(observed_sizes(o)[name] for o in observations))
                          for name in ("ratings", "output_pairs")),
        datasets=tuple(dataset for dataset in datasets if dataset), size_ratios=ratios, target=target,
        stage_sizes=stage_sizes)


def _held_out_run_errors(observations, target, stage_sizes):
    """|predicted - measured| / measured of each run, by the per-stage model fitted on all the others."""
    errors = []
    for index, held_out in enumerate(observations):
        others = observations[:index] + observations[index + 1:]
        if len({task_machines(o.node_count, target) for o in others}) < 2:
            continue  # the others cannot separate the terms: no honest prediction of this run
        work = PlannedWork(held_out.pair_work, held_out.dataset, held_out.ratings, held_out.output_pairs)
        predicted = _stage_model(others, target, stage_sizes).work_seconds(held_out.node_count, work)
        errors.append(abs(predicted - held_out.work_seconds) / held_out.work_seconds)
    return errors


def _held_out_dataset_errors(observations, target, stage_sizes):
    """|predicted - measured| / measured of each run of each dataset, by the model fitted on the other
    datasets' runs, the run's output pairs estimated as for a dataset never run (its ratings are known
    beforehand, from the dataset's files)."""
    errors = []
    for dataset in sorted({o.dataset for o in observations}):
        others = [o for o in observations if o.dataset != dataset]
        if len({task_machines(o.node_count, target) for o in others}) < 2:
            continue
        model = _stage_model(others, target, stage_sizes)
        for held_out in (o for o in observations if o.dataset == dataset):
            work = PlannedWork(held_out.pair_work, dataset or None, held_out.ratings)
            predicted = model.work_seconds(held_out.node_count, work)
            errors.append(abs(predicted - held_out.work_seconds) / held_out.work_seconds)
    return errors


def _scaled_nnls(matrix, times):
    """Non-negative least squares of times on the matrix's columns, each scaled to its largest value first
    (the columns differ by orders of magnitude: W/m ~ 1e9, log m ~ 1), and scaled back."""
    scale = np.abs(matrix).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(matrix / scale, times)
    return [float(value) for value in solution / scale]


def features(machines, pair_work):
    """Ernest's terms for m machines running tasks and work W: 1, W/m, log m, m."""
    return np.array([1.0, pair_work / machines, math.log(machines), float(machines)])


def _solve(observations, target):
    matrix = np.array([features(task_machines(o.node_count, target), o.pair_work) for o in observations])
    return tuple(_scaled_nnls(matrix, np.array([o.work_seconds for o in observations])))


def fit_time_model(observations, min_runs=MIN_RUNS, target=LOCAL.name):
    """The Ernest model of observations (one instance type and target), with leave-one-out errors.

    Raises NotEnoughHistory with fewer than min_runs runs or fewer than two counts of machines that
    run tasks (on EMR, 1 and 2 nodes are one): with those the fit would be a guess presented as a
    measurement.
    """
    observations = [o for o in observations if o.pair_work and o.work_seconds and o.work_seconds > 0]
    node_counts = sorted({o.node_count for o in observations})
    machines = {task_machines(count, target) for count in node_counts}
    if len(observations) < min_runs or len(machines) < 2:
        on_emr = ""
        if target_named(target).cluster:
            on_emr = " (on a cluster, core nodes: 1 and 2 nodes both run tasks on one machine)"
        raise NotEnoughHistory(
            f"{len(observations)} usable runs on node counts {node_counts}: the model needs at least "
            f"{min_runs} successful runs with a pair work count, on at least two counts of machines that "
            f"run tasks{on_emr}")
    return TimeModel(
        coefficients=_solve(observations, target),
        node_range=(node_counts[0], node_counts[-1]),
        work_range=(min(o.pair_work for o in observations), max(o.pair_work for o in observations)),
        provisioning_seconds=statistics.median(o.provisioning_seconds or 0.0 for o in observations),
        runs=len(observations),
        loo_errors=tuple(leave_one_out_errors(observations, target)),
        target=target,
        datasets=tuple(sorted({o.dataset for o in observations if o.dataset})),
    )


def fit_run_model(observations, min_runs=MIN_RUNS, target=LOCAL.name):
    """The model a plan uses (one engine, instance type and target): the per-stage model (fit_stage_model)
    when at least min_runs observations recorded their stages and sizes on two counts of machines or more,
    else Ernest's model of the whole run on W (fit_time_model), whose NotEnoughHistory it raises."""
    staged = [o for o in observations if has_stage_figures(o) and o.work_seconds > 0]
    if len(staged) >= min_runs and len({task_machines(o.node_count, target) for o in staged}) >= 2:
        return fit_stage_model(staged, target, min_runs=min_runs)
    return fit_time_model(observations, min_runs, target)


def leave_one_out_errors(observations, target=LOCAL.name):
    """|predicted - measured| / measured of each run, predicted by the model fitted on all the others."""
    errors = []
    for index, held_out in enumerate(observations):
        others = observations[:index] + observations[index + 1:]
        if len({task_machines(o.node_count, target) for o in others}) < 2:
            continue  # the others cannot separate the terms: no honest prediction of this run
        held_out_machines = task_machines(held_out.node_count, target)
        predicted = float(np.dot(_solve(others, target), features(held_out_machines, held_out.pair_work)))
        errors.append(abs(predicted - held_out.work_seconds) / held_out.work_seconds)
    return errors


def extrapolation_notes(model, node_count, pair_work):
    """Why a prediction lies outside what the model was fitted on (node counts, sizes, datasets); empty when
    it does not. pair_work may be a PlannedWork, whose dataset and sizes are checked too."""
    return range_notes(model, node_count, pair_work) + dataset_notes(model, pair_work)


def range_notes(model, node_count, pair_work):
    """The node count and sizes of a planned run that lie beyond the measured ones (WORK_MARGIN allowed)."""
    notes = []
    low, high = model.node_range
    if not low <= node_count <= high:
        notes.append(f"{node_count} nodes is outside the measured {low}-{high}")
    low_work, high_work = model.work_range
    if not low_work / WORK_MARGIN <= pair_work <= high_work * WORK_MARGIN:
        notes.append(f"pair work {pair_work:.3g} is outside the measured {low_work:.3g}-{high_work:.3g}")
    for name, low_size, high_size in getattr(model, "size_ranges", ()):
        size = getattr(pair_work, name, None)
        if size is not None and not low_size / WORK_MARGIN <= size <= high_size * WORK_MARGIN:
            notes.append(f"{SIZE_LABELS[name]} {size:.3g} is outside the measured "
                         f"{low_size:.3g}-{high_size:.3g}")
    return notes


def dataset_notes(model, pair_work):
    """A note when the planned run's dataset (a PlannedWork's) is not one the model was fitted on."""
    dataset = getattr(pair_work, "dataset", None)
    if not dataset or not model.datasets or dataset in model.datasets:
        return []
    errors, basis = model.error_basis(dataset)
    if len(errors) >= MIN_HELD_OUT:
        measured = (f"{basis}: median {statistics.median(errors):.0%}, "
                    f"90th percentile {_quantile(errors, 0.9):.0%}")
    else:
        measured = "its error on a dataset not fitted on is unmeasured (fit runs of two datasets or more)"
    return [f"{dataset} is not among the fitted datasets ({', '.join(model.datasets)}): predicted across "
            f"datasets; {measured}"]


def error_bound(model, dataset=None):
    """(the 90th percentile of the held-out errors that bound a prediction of `dataset`, or None when fewer
    than MIN_HELD_OUT were measured; a sentence saying which errors)."""
    errors, basis = model.error_basis(dataset)
    if len(errors) < MIN_HELD_OUT:
        return None, f"{basis}: {len(errors)} held-out prediction(s), too few to bound the error"
    bound = _quantile(errors, 0.9)
    return bound, f"{basis}: 90th percentile {bound:.0%} over {len(errors)} held-out predictions"


def confidence(model, notes, dataset=None):
    """high / medium / low, from the held-out error that applies to `dataset` (model.error_basis: across
    datasets for a dataset the model was not fitted on); low whenever the prediction extrapolates beyond the
    measured node counts or sizes (notes: range_notes'), or when that error is unmeasured."""
    error, _ = error_bound(model, dataset)
    if notes or error is None:
        return "low"
    return next((label for label, bound in CONFIDENCE_BOUNDS.items() if error <= bound), "low")


@dataclass(frozen=True)
class Prediction:
    node_count: int
    work_seconds: float
    provisioning_seconds: float
    cost_usd: float | None
    confidence: str
    error_bound: float | None
    extrapolation: tuple
    stage_seconds: tuple = ()
    confidence_basis: str = ""

    @property
    def cluster_seconds(self):
        return self.work_seconds + self.provisioning_seconds

    @property
    def node_minutes(self):
        return self.node_count * self.cluster_seconds / 60

    def as_dict(self):
        return {"node_count": self.node_count, "work_seconds": round(self.work_seconds, 1),
                "provisioning_seconds": round(self.provisioning_seconds, 1),
                "cluster_seconds": round(self.cluster_seconds, 1),
                "node_minutes": round(self.node_minutes, 2),
                "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 4),
                "confidence": self.confidence, "error_bound": self.error_bound,
                "extrapolation": list(self.extrapolation),
                "stage_seconds": [round(seconds, 1) for seconds in self.stage_seconds],
                "confidence_basis": self.confidence_basis}


def predict(model, node_count, pair_work, price_per_node_hour=None):
    """Predicted cluster time (working plus provisioning) and cost of one run, with its confidence.

    pair_work: the run's W, or a PlannedWork that carries its dataset and other sizes too (the per-stage
    model needs them; what it lacks is estimated from the fitted runs, and the prediction says so).
    """
    outside = range_notes(model, node_count, pair_work)
    estimated = model.sizes_of(pair_work)[1] if hasattr(model, "sizes_of") else []
    notes = tuple(outside + dataset_notes(model, pair_work) + estimated)
    stages = model.stage_seconds(node_count, pair_work)
    work = max(model.work_seconds(node_count, pair_work), 0.0)
    cluster_seconds = work + model.provisioning_seconds
    cost = None if price_per_node_hour is None else node_count * cluster_seconds / 3600 * price_per_node_hour
    dataset = getattr(pair_work, "dataset", None)
    error, basis = error_bound(model, dataset)
    return Prediction(node_count, work, model.provisioning_seconds, cost, confidence(model, outside, dataset),
                      None if error is None else round(error, 3), notes, stages, basis)


def predictions(model, node_counts, pair_work, price_per_node_hour=None):
    return [predict(model, count, pair_work, price_per_node_hour) for count in node_counts]


def pareto_front(candidates):
    """The predictions no other beats on both time and cost, fastest first."""
    ranked = sorted(candidates, key=lambda p: (p.cluster_seconds, _cost(p)))
    front, cheapest = [], math.inf
    for prediction in ranked:
        cost = _cost(prediction)
        if cost < cheapest:
            front.append(prediction)
            cheapest = cost
    return front


class NoNodeCountFits(ValueError):
    """No node count meets the deadline or stays within the budget."""


def recommend(candidates, deadline_minutes=None, budget_usd=None):
    """The cheapest prediction within the deadline, or the fastest within the budget (both: the cheapest).

    Raises NoNodeCountFits naming the closest candidate when none qualifies.
    """
    if deadline_minutes is None and budget_usd is None:
        raise ValueError("give a deadline (minutes) or a budget (USD)")
    fitting = [p for p in candidates
               if (deadline_minutes is None or p.cluster_seconds <= deadline_minutes * 60)
               and (budget_usd is None or (p.cost_usd is not None and p.cost_usd <= budget_usd))]
    if not fitting:
        fastest = min(candidates, key=lambda p: p.cluster_seconds)
        cheapest = min(candidates, key=lambda p: p.cost_usd if p.cost_usd is not None else math.inf)
        raise NoNodeCountFits(
            f"no node count fits: the fastest, {fastest.node_count} nodes, takes "
            f"{fastest.cluster_seconds / 60:.1f} min; the cheapest, {cheapest.node_count} nodes, costs "
            f"{_usd(cheapest.cost_usd)}")
    if deadline_minutes is not None:
        # Where no price applies (the local target) every cost is 0: the fewest node-minutes then.
        return min(fitting, key=lambda p: (_cost(p), p.node_minutes, p.cluster_seconds))
    return min(fitting, key=lambda p: (p.cluster_seconds, p.cost_usd))


def _cost(prediction):
    return prediction.cost_usd if prediction.cost_usd is not None else 0.0


def _usd(value):
    return "an unknown amount" if value is None else f"${value:.2f}"


def _quantile(values, fraction):
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def wave_makespan(task_seconds, slots):
    """Seconds to run tasks in order on `slots` slots, each task starting on the first slot to free up.

    This is how Hadoop hands out a phase's tasks: waves of at most `slots` tasks, the next task
    starting as soon as any slot is free.
    """
    if not task_seconds:
        return 0.0
    free_at = [0.0] * max(1, slots)
    for seconds in task_seconds:
        earliest = min(range(len(free_at)), key=free_at.__getitem__)
        free_at[earliest] += seconds
    return max(free_at)


def resplit_tasks(task_seconds, measured_slots, slots):
    """A phase's tasks on `slots` slots when its task count follows the slots, as reduce tasks do
    (the pipeline gives EMR one reduce task per slot; mrjob's local runner cuts map and reduce input
    by --num-cores): as many tasks per slot as measured, each new task taking its share of the
    measured tasks in its place. The measured tasks are laid end to end, each 1/n of the phase's
    input; new task j covers the span j/count to (j+1)/count and takes the seconds of the measured
    tasks it overlaps, in proportion. The total stays as measured, and so does an uneven task's
    share when tasks are split.
    """
    measured = len(task_seconds)
    if not measured or slots == measured_slots:
        return list(task_seconds)
    count = max(1, round(measured * slots / measured_slots))
    resplit, index = [], 0
    for new in range(count):
        start, end = new / count, (new + 1) / count
        seconds = 0.0
        while index < measured:
            overlap = min((index + 1) / measured, end) - max(index / measured, start)
            seconds += task_seconds[index] * measured * max(overlap, 0.0)
            if (index + 1) / measured > end:
                break
            index += 1
        resplit.append(seconds)
    return resplit


def predict_stage_seconds(stage_seconds, phase_task_seconds, measured_slots, slots, split_phases=()):
    """A stage's seconds on `slots` slots, from one run's stage time and its phases' task durations.

    The stage's time beyond the simulated waves at the measured slot count (start-up, the shuffle
    between phases) is kept as a fixed part; the waves are simulated again on the new slot count,
    as Sparklens does for Spark's executors. The phases numbered in split_phases (0 the map tasks,
    1 the reduce tasks) get as many tasks as the new slots would (resplit_tasks); the others keep
    the measured tasks (EMR's map tasks follow the input's splits, not the slots).
    """
    measured_waves = sum(wave_makespan(tasks, measured_slots) for tasks in phase_task_seconds)
    fixed = max(stage_seconds - measured_waves, 0.0)
    return fixed + sum(
        wave_makespan(resplit_tasks(tasks, measured_slots, slots) if phase in split_phases else tasks, slots)
        for phase, tasks in enumerate(phase_task_seconds))


def predict_run_seconds(cluster_seconds, stage_seconds, stage_phases, measured_slots, slots, split_phases=()):
    """(cluster seconds, [stage seconds]) of the same run on `slots` slots, from one measured run.

    stage_phases: per stage, its phases' task durations in start order ([map tasks, reduce tasks]).
    Each stage is predicted by predict_stage_seconds; the cluster's time outside the stages
    (provisioning, bootstrap, the gaps between steps) is kept as measured.
    """
    stages = [predict_stage_seconds(seconds, phases, measured_slots, slots, split_phases)
              for seconds, phases in zip(stage_seconds, stage_phases, strict=True)]
    return cluster_seconds - sum(stage_seconds) + sum(stages), stages


def one_run_predictions(cluster_seconds, stage_seconds, stage_phases, measured_slots, slots_by_node_count,
                        price_per_node_hour=None, split_phases=()):
    """The one-run prediction of every node count in slots_by_node_count ({node count: task slots}).

    split_phases: the phases whose task count follows the slots (predict_stage_seconds); the
    others keep the measured run's tasks, and on more slots than they have tasks do not get faster.
    """
    predicted = []
    for node_count, slots in sorted(slots_by_node_count.items()):
        cluster, stages = predict_run_seconds(cluster_seconds, stage_seconds, stage_phases, measured_slots,
                                              slots, split_phases)
        cost = None if price_per_node_hour is None else node_count * cluster / 3600 * price_per_node_hour
        predicted.append({"node_count": node_count, "task_slots": slots, "cluster_seconds": round(cluster, 1),
                          "stage_seconds": [round(seconds, 1) for seconds in stages],
                          "cost_usd": None if cost is None else round(cost, 4)})
    return predicted

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
"""
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


def task_machines(node_count, target):
    """The machines of a run that run tasks (targets.Target.task_machines)."""
    return target_named(target).task_machines(node_count)


class NotEnoughHistory(ValueError):
    """Too few usable runs to fit a model: say which runs are needed."""


@dataclass(frozen=True)
class Observation:
    """One measured run: nodes, pair work, working seconds (cluster time less provisioning), provisioning."""

    node_count: int
    pair_work: float
    work_seconds: float
    provisioning_seconds: float = 0.0
    run_id: str = ""


@dataclass(frozen=True)
class TimeModel:
    """A fitted Ernest model with what it was fitted on and its leave-one-out error."""

    coefficients: tuple
    node_range: tuple
    work_range: tuple
    provisioning_seconds: float
    runs: int
    loo_errors: tuple = field(default=())
    target: str = LOCAL.name

    def work_seconds(self, node_count, pair_work):
        return float(np.dot(self.coefficients, features(task_machines(node_count, self.target), pair_work)))

    @property
    def loo_median_error(self):
        """Median |error| / measured of each run predicted by a model fitted without it; None if unknown."""
        return statistics.median(self.loo_errors) if self.loo_errors else None

    @property
    def loo_p90_error(self):
        return _quantile(self.loo_errors, 0.9) if self.loo_errors else None


def features(machines, pair_work):
    """Ernest's terms for m machines running tasks and work W: 1, W/m, log m, m."""
    return np.array([1.0, pair_work / machines, math.log(machines), float(machines)])


def _solve(observations, target):
    matrix = np.array([features(task_machines(o.node_count, target), o.pair_work) for o in observations])
    times = np.array([o.work_seconds for o in observations])
    # Columns differ by orders of magnitude (W/m ~ 1e9, log m ~ 1): scale them, solve, scale back.
    scale = np.abs(matrix).max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(matrix / scale, times)
    return tuple(float(value) for value in solution / scale)


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
    )


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
    """Why a prediction lies outside what the model was fitted on; empty when it does not."""
    notes = []
    low, high = model.node_range
    if not low <= node_count <= high:
        notes.append(f"{node_count} nodes is outside the measured {low}-{high}")
    low_work, high_work = model.work_range
    if not low_work / WORK_MARGIN <= pair_work <= high_work * WORK_MARGIN:
        notes.append(f"pair work {pair_work:.3g} is outside the measured {low_work:.3g}-{high_work:.3g}")
    return notes


def confidence(model, notes):
    """high / medium / low, from the leave-one-out error; low whenever the prediction extrapolates."""
    error = model.loo_p90_error
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
                "extrapolation": list(self.extrapolation)}


def predict(model, node_count, pair_work, price_per_node_hour=None):
    """Predicted cluster time (working plus provisioning) and cost of one run, with its confidence."""
    notes = tuple(extrapolation_notes(model, node_count, pair_work))
    work = max(model.work_seconds(node_count, pair_work), 0.0)
    cluster_seconds = work + model.provisioning_seconds
    cost = None if price_per_node_hour is None else node_count * cluster_seconds / 3600 * price_per_node_hour
    error = model.loo_p90_error
    return Prediction(node_count, work, model.provisioning_seconds, cost, confidence(model, notes),
                      None if error is None else round(error, 3), notes)


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

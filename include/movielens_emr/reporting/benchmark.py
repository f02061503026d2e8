"""The benchmark sweep as pure data: its parameters, its member runs, and the statistics of their metrics."""
import dataclasses
import datetime
import json
import math
import os
import statistics

from movielens_emr.config.instances import catalogue
from movielens_emr.config.params import DEFAULT_ENGINE, DEFAULT_INSTANCE_TYPE, validated_values
from movielens_emr.config.targets import LOCAL, TARGET_NAMES
from movielens_emr.data.datasets import CATALOGUE

SIMILARITY_DAG_ID = "movielens_similarity"
MEMBER_RUNS = ("trigger", "cli")
STUDY_NODE_COUNTS = (4, 8)
STUDY_DATASET = "ml-1m"
MAX_REPETITIONS = 10
SCHEDULE_VARIABLE = "MOVIELENS_BENCHMARK_SCHEDULE"
DEFAULT_SCHEDULE = "@weekly"
MEDIAN_FIELDS = ("wall_seconds", "cluster_seconds", "provisioning_seconds", "overhead_seconds",
                 "node_minutes", "estimated_cost_usd")
# The figures of a member run's evaluation (evaluation.ranking.evaluate) whose medians the report shows.
QUALITY_FIELDS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage")


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """The validated parameters of one benchmark run."""

    node_counts: tuple
    dataset: str
    target: str
    repetitions: int
    sample_fractions: tuple
    parallel: bool
    member_runs: str
    # Defaults, so that a configuration saved before these fields existed (an older run's XCom) still loads.
    engine: str = DEFAULT_ENGINE
    instance_type: str = DEFAULT_INSTANCE_TYPE


def params_with_defaults(params):
    """A benchmark's params with every BenchmarkConfig field it lacks at its default: a sweep recorded before
    a field existed (engine, instance_type) ran as that default."""
    defaults = {field.name: field.default for field in dataclasses.fields(BenchmarkConfig)
                if field.default is not dataclasses.MISSING}
    return {**defaults, **params}


def schedule_from_env(environ=None):
    """MOVIELENS_BENCHMARK_SCHEDULE (a cron expression or preset, "none" for trigger-only), else weekly."""
    value = (os.environ if environ is None else environ).get(SCHEDULE_VARIABLE, "").strip()
    if value.lower() == "none":
        return None
    return value or DEFAULT_SCHEDULE


def benchmark_param_schemas(max_node_count, default_target, engines=(DEFAULT_ENGINE,)):
    """JSON schema, title and description of every field of the benchmark's trigger form, keyed by name;
    engines: the names of the registered engines (engine.registry.engine_names), the form's choices."""
    # The study's 4 and 8 nodes, kept inside the node limit: a scheduled DAG's defaults must validate.
    default_nodes = sorted({min(count, max_node_count) for count in STUDY_NODE_COUNTS})
    return {
        "node_counts": dict(
            default=default_nodes, type="array", minItems=1, uniqueItems=True,
            items={"type": "integer", "minimum": 1, "maximum": max_node_count}, title="Node counts",
            description="One member run per node count (and sample fraction and repetition), 1 to "
                        f"{max_node_count}; speedups are against the smallest. Locally: parallel tasks, "
                        "e.g. [1, 2] on a 2-core machine."),
        "engine": dict(
            default=DEFAULT_ENGINE, type="string", enum=list(engines), title="Engine",
            description=f"What every member run computes with, as movielens_similarity's engine field: "
                        f"{DEFAULT_ENGINE}, the exact item-item similarity MapReduce job; als, implicit-"
                        "feedback matrix factorisation on Spark, whose runs also score their "
                        "recommendations (the report's recommendation quality); or another registered "
                        "engine. The als fields take movielens_similarity's defaults."),
        "dataset": dict(
            default=STUDY_DATASET, type="string", enum=list(CATALOGUE), title="Dataset",
            description="MovieLens release every member run uses; ml-1m, the study's, comes from "
                        "MOVIELENS_SOURCE_DIR when that is set, else from GroupLens."),
        "target": dict(
            default=default_target, type="string", enum=list(TARGET_NAMES), title="Target",
            description="emr: one new cluster per member run; local: this machine."),
        "instance_type": dict(
            default=DEFAULT_INSTANCE_TYPE, type="string", enum=list(catalogue()), title="Instance type",
            description="EC2 instance type of every member run's nodes, from the instance catalogue "
                        "(include/movielens_emr/config/instances.toml), as movielens_similarity's "
                        "instance_type; it prices the runs. Ignored on the local target."),
        "repetitions": dict(
            default=1, type="integer", minimum=1, maximum=MAX_REPETITIONS, title="Repetitions",
            description="Member runs per configuration; the report shows medians."),
        "sample_fractions": dict(
            default=[1.0], type="array", minItems=1, uniqueItems=True,
            items={"type": "number", "exclusiveMinimum": 0, "maximum": 1}, title="Sample fractions",
            description="Input sizes to sweep (0 < f <= 1 of the users); more than one shows how "
                        "cluster time grows with the input."),
        "parallel": dict(
            default=False, type="boolean", title="Parallel member runs",
            description="Off: one member run at a time, so clusters do not compete for account limits "
                        "(and local runs for cores)."),
        "member_runs": dict(
            default="trigger", type="string", enum=list(MEMBER_RUNS), title="Member runs",
            description="trigger: TriggerDagRunOperator, needs a scheduler; cli: `airflow dags test` "
                        "subprocesses, for `airflow dags test movielens_benchmark`."),
    }


def validate_benchmark_config(params, max_node_count, default_target=LOCAL.name, engines=(DEFAULT_ENGINE,)):
    """The BenchmarkConfig of checked params; InvalidParam naming the first field out of its schema."""
    values = validated_values(params, benchmark_param_schemas(max_node_count, default_target, engines))
    values["node_counts"] = tuple(sorted(values["node_counts"]))
    values["sample_fractions"] = tuple(sorted(float(fraction) for fraction in values["sample_fractions"]))
    return BenchmarkConfig(**values)


def member_run_id(benchmark_run_id, engine, node_count, sample_fraction, repetition):
    """benchmark__<benchmark run id>__<engine>_n<nodes>_f<fraction>_r<repetition>: unique within the sweep,
    and it names the engine in the run history, where both engines' runs sit side by side."""
    return f"benchmark__{benchmark_run_id}__{engine}_n{node_count}_f{sample_fraction:g}_r{repetition}"


def plan_members(config, benchmark_run_id):
    """One member per (repetition, sample fraction, node count): index, run id, movielens_similarity conf
    (the sweep's engine and instance type in every one)."""
    # Repetitions are the outer loop, so a drift in the machine's or the account's speed over the
    # sweep spreads over every configuration instead of biasing the last ones.
    members = []
    for repetition in range(1, config.repetitions + 1):
        for fraction in config.sample_fractions:
            for node_count in config.node_counts:
                conf = {"target": config.target, "engine": config.engine, "dataset": config.dataset,
                        "node_count": node_count, "sample_fraction": fraction,
                        "instance_type": config.instance_type}
                run_id = member_run_id(benchmark_run_id, config.engine, node_count, fraction, repetition)
                members.append({"index": len(members), "conf": conf, "run_id": run_id})
    return members


def trigger_arguments(member):
    """The TriggerDagRunOperator arguments of a member, for expand_kwargs."""
    return {"trigger_run_id": member["run_id"], "conf": member["conf"]}


def is_measured(member):
    """A member run that succeeded and left its metrics."""
    return member["state"] == "success" and bool(member.get("metrics"))


def median_or_none(values):
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def ratio_or_none(numerator, denominator):
    # Unrounded: rounded here and again for display, 1.7855 would become 1.785 and then 1.78.
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def stage_medians(stage_lists):
    """The median of each stage's seconds over runs; None for a stage no run timed."""
    width = max((len(stages) for stages in stage_lists), default=0)
    return [median_or_none([stages[number] for stages in stage_lists if number < len(stages)])
            for number in range(width)]


def stages_total(stage_seconds):
    if not stage_seconds or any(seconds is None for seconds in stage_seconds):
        return None
    return round(sum(stage_seconds), 3)


def configuration_summary(node_count, sample_fraction, members):
    """Medians over one configuration's measured member runs; failed runs are listed, never averaged in."""
    measured = [member["metrics"] for member in members if is_measured(member)]
    failed = [{"run_id": member["run_id"], "state": member["state"], "error": member.get("error")}
              for member in members if not is_measured(member)]
    summary = {"node_count": node_count, "sample_fraction": sample_fraction, "runs": len(members),
               "measured": len(measured), "failed_runs": failed,
               "state": "success" if not failed else "partial" if measured else "failed"}
    for field in MEDIAN_FIELDS:
        summary[field] = median_or_none([metrics.get(field) for metrics in measured])
    summary["stage_seconds"] = stage_medians([metrics.get("stage_seconds") or [] for metrics in measured])
    summary["stages_seconds"] = stages_total(summary["stage_seconds"])
    wall, stages = summary["wall_seconds"], summary["stages_seconds"]
    summary["fixed_seconds"] = round(wall - stages, 3) if wall is not None and stages is not None else None
    return summary


def configurations(members):
    """A summary per (sample fraction, node count), in that order, with speedups against the fewest nodes."""
    groups = {}
    for member in members:
        key = (member["conf"]["sample_fraction"], member["conf"]["node_count"])
        groups.setdefault(key, []).append(member)
    summaries = [configuration_summary(nodes, fraction, group)
                 for (fraction, nodes), group in sorted(groups.items())]
    for fraction in sorted({summary["sample_fraction"] for summary in summaries}):
        add_speedups([summary for summary in summaries if summary["sample_fraction"] == fraction])
    return summaries


def add_speedups(summaries):
    """Wall, cluster and stage speedups and parallel efficiency against the smallest measured node count."""
    measured = [summary for summary in summaries if summary["measured"]]
    baseline = min(measured, key=lambda summary: summary["node_count"]) if measured else None
    for summary in summaries:
        for field in ("wall", "cluster", "stages"):
            base = baseline[f"{field}_seconds"] if baseline else None
            summary[f"{field}_speedup"] = ratio_or_none(base, summary[f"{field}_seconds"])
        summary["baseline_node_count"] = baseline["node_count"] if baseline else None
        node_ratio = summary["node_count"] / baseline["node_count"] if baseline else None
        summary["efficiency"] = ratio_or_none(summary["cluster_speedup"], node_ratio)


def fit_line(xs, ys):
    """Least squares y = intercept + slope * x: (intercept, slope, RMS residual); exact through two points."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("fit_line needs at least two distinct x values")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    intercept = mean_y - slope * mean_x
    rms = math.sqrt(statistics.fmean((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True)))
    return intercept, slope, rms


def amdahl_fraction_relative(speedup, node_ratio):
    """p in S = 1 / ((1 - p) + p / r), r = n / n0: the parallel share of the smallest configuration's time."""
    return (1 - 1 / speedup) / (1 - 1 / node_ratio)


def amdahl_fit(seconds_by_nodes):
    """Amdahl's law T(n) = a + b / n fitted to {node count: seconds}; least squares beyond two points.

    a is the serial part, b the parallel part of one node's time T(1) = a + b. The parallel fraction is
    given in both conventions: absolute, p = b / (a + b), relative to one node; and relative to the
    smallest node count n0, p0 = (b / n0) / (a + b / n0), the share of T(n0) that more nodes divide.
    """
    nodes = sorted(seconds_by_nodes)
    if len(nodes) < 2:
        return None
    serial, parallel, rms = fit_line([1 / count for count in nodes], [seconds_by_nodes[n] for n in nodes])
    smallest = nodes[0]
    return {"node_counts": nodes, "serial_seconds": round(serial, 3), "parallel_seconds": round(parallel, 3),
            "parallel_fraction_absolute": round(parallel / (serial + parallel), 4),
            "parallel_fraction_relative": round(parallel / smallest / (serial + parallel / smallest), 4),
            "baseline_node_count": smallest, "residual_rms_seconds": round(rms, 3)}


def amdahl_fits(summaries):
    """Per sample fraction: Amdahl's law fitted to the median stage seconds, and the fixed overhead."""
    fits = []
    for fraction in sorted({summary["sample_fraction"] for summary in summaries}):
        rows = [summary for summary in summaries
                if summary["sample_fraction"] == fraction and summary["stages_seconds"] is not None]
        fit = amdahl_fit({row["node_count"]: row["stages_seconds"] for row in rows})
        fits.append({"sample_fraction": fraction, "fit": fit,
                     "fixed_seconds": median_or_none([row["fixed_seconds"] for row in rows])})
    return fits


def input_growth(summaries):
    """Per node count measured at several sample fractions: cluster seconds ~ fixed + per_input * fraction."""
    growth = []
    for node_count in sorted({summary["node_count"] for summary in summaries}):
        rows = sorted((summary["sample_fraction"], summary["cluster_seconds"]) for summary in summaries
                      if summary["node_count"] == node_count and summary["cluster_seconds"] is not None)
        if len(rows) < 2:
            continue
        fixed, per_input, rms = fit_line([fraction for fraction, _ in rows], [seconds for _, seconds in rows])
        growth.append({"node_count": node_count, "points": [list(row) for row in rows],
                       "fixed_seconds": round(fixed, 3), "seconds_per_full_input": round(per_input, 3),
                       "residual_rms_seconds": round(rms, 3), "input_ratio": rows[-1][0] / rows[0][0],
                       "time_ratio": ratio_or_none(rows[-1][1], rows[0][1])})
    return growth


def member_recommenders(member):
    """{recommender: its figures} of a measured member run's evaluation; {} for a run that scored none."""
    if not is_measured(member):
        return {}
    return (member["metrics"].get("evaluation") or {}).get("recommenders") or {}


def recommendation_quality(members):
    """Per configuration (sample fraction, node count) and recommender, in the runs' own order of
    recommenders: the median of each QUALITY_FIELDS figure over the measured member runs that scored it.
    [] when no member run has an evaluation. Runs scored at another k are a group of their own: a median
    over P@5 and P@10 would be neither."""
    groups, measured = {}, {}
    for member in members:
        configuration = (member["conf"]["sample_fraction"], member["conf"]["node_count"])
        measured[configuration] = measured.get(configuration, 0) + is_measured(member)
        for name, scores in member_recommenders(member).items():
            groups.setdefault((*configuration, name, scores.get("k")), []).append(scores)
    rows = [{"sample_fraction": fraction, "node_count": nodes, "recommender": name, "k": k,
             "runs": len(scores), "measured": measured[(fraction, nodes)],
             **{field: median_or_none([score.get(field) for score in scores]) for field in QUALITY_FIELDS}}
            for (fraction, nodes, name, k), scores in groups.items()]
    # sorted is stable: within a configuration, the recommenders keep the runs' order.
    return sorted(rows, key=lambda row: (row["sample_fraction"], row["node_count"]))


def summarize(members):
    """Configurations, Amdahl fits, input growth and recommendation quality of a sweep's member runs, and
    how many were measured."""
    summaries, measured = configurations(members), sum(is_measured(member) for member in members)
    return {"members": len(members), "measured_members": measured, "failed_members": len(members) - measured,
            "configurations": summaries, "amdahl": amdahl_fits(summaries),
            "input_growth": input_growth(summaries),
            "recommendation_quality": recommendation_quality(members)}


def parse_listed_runs(stdout):
    """The runs `airflow dags list-runs -o json` printed: its last line holding a JSON list."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("["):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise ValueError("no JSON list of runs in the output of `airflow dags list-runs`")


def cli_member_record(member, launched, listed_runs):
    """A member run by `airflow dags test` as a record: found among the listed runs by its own logical date.

    `launched` is {"logical_date": ISO string, "exit_status": int, "error": str or None}.
    """
    logical_date = datetime.datetime.fromisoformat(launched["logical_date"])
    run = next((run for run in listed_runs if run.get("logical_date")
                and datetime.datetime.fromisoformat(run["logical_date"]) == logical_date), None)
    succeeded = launched["exit_status"] == 0 and run is not None and run["state"] == "success"
    error = None
    if not succeeded:
        missing = f"no {SIMILARITY_DAG_ID} run with logical date {launched['logical_date']}"
        error = launched["error"] or (missing if run is None else f"run ended {run['state']}")
    return {**member, "run_id": run["run_id"] if run else None, "logical_date": launched["logical_date"],
            "state": "success" if succeeded else "failed", "error": error}

"""How well the sizing advisor's model predicts runs of datasets it was never fitted on, measured here.

Fits the advisor's model (movielens_emr.sizing.model.fit_run_model: each stage's own terms, from each run's
stage seconds, ratings read, W and output pairs) to local runs of the similarity job (mrjob's local runner,
`--num-cores` = the node count, as the local target runs it) on ml-latest-small at several sample fractions
and node counts and on a small synthetic dataset, then predicts runs of datasets the fit never saw:
ml-100k and a MovieLens-1M-shaped synthetic set. Each is planned as the advisor plans a run: W counted
exactly on its files for its sample fraction (block_plan.pair_work_of_files, never scaled), ratings read
counted, output pairs unknown (the model estimates them). Every case runs `--repeats` times, the cases
interleaved, and its median is the measurement (identical local runs here vary by up to 1.43x). Prints each
prediction beside its measurement, stage by stage, the median absolute error (target <= 20 %), Ernest's
whole-run model on W beside it, and the held-out error across datasets the model itself reports.

    .venv/bin/python benchmarks/sizing_accuracy.py            # about 12 minutes on 2 cores
    .venv/bin/python benchmarks/sizing_accuracy.py --quick    # one repeat, fewer cases: about 2 minutes
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "include"), str(REPO_ROOT)]  # the package, and benchmarks/

from benchmarks.synthetic import SyntheticShape, write_ml1m_ratings  # noqa: E402
from movielens_emr.engine.similarity.block_plan import pair_work_of_files, read_rating_keys  # noqa: E402
from movielens_emr.sizing.history_rows import planned_pair_work  # noqa: E402
from movielens_emr.sizing.model import (  # noqa: E402
    Observation,
    PlannedWork,
    fit_run_model,
    fit_time_model,
    predict,
)

JOB_SCRIPT = REPO_ROOT / "jobs" / "movie_similarities.py"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "movielens"
TARGET = "local"
SMALL_SYNTHETIC = "synthetic-250k"
ML1M_SYNTHETIC = "synthetic-1m"
# The MovieLens releases read from --data-dir, and the synthetic shapes generated here.
RELEASE_FILES = {"ml-latest-small": "ml-latest-small/ratings.csv", "ml-100k": "ml-100k/u.data"}
SYNTHETIC_SHAPES = {SMALL_SYNTHETIC: SyntheticShape(users=1510, movies=1850, ratings=250_000),
                    ML1M_SYNTHETIC: SyntheticShape()}
TARGET_ERROR = 0.20
QUIET_POLL_S = 5


@dataclass(frozen=True)
class Case:
    """One planned run: a dataset at a sample fraction on a node count."""

    dataset: str
    fraction: float
    nodes: int


FIT = ([Case("ml-latest-small", fraction, nodes) for fraction in (0.3, 0.6, 1.0) for nodes in (1, 2, 3)]
       + [Case(SMALL_SYNTHETIC, fraction, nodes) for fraction in (0.5, 1.0) for nodes in (1, 2)])
HELD_OUT = ([Case("ml-100k", fraction, nodes) for fraction in (0.5, 1.0) for nodes in (1, 2, 3)]
            + [Case(ML1M_SYNTHETIC, 0.5, 2), Case(ML1M_SYNTHETIC, 1.0, 1), Case(ML1M_SYNTHETIC, 1.0, 2)])
QUICK_FIT = [Case("ml-latest-small", fraction, nodes) for fraction in (0.3, 1.0) for nodes in (1, 2)] + [
    Case(SMALL_SYNTHETIC, 1.0, 1), Case(SMALL_SYNTHETIC, 1.0, 2)]
QUICK_HELD_OUT = [Case("ml-100k", 0.5, 2), Case("ml-100k", 1.0, 1), Case("ml-100k", 1.0, 2)]


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Measured:
    """One run of the job: its wall seconds, each stage's seconds and its output pairs."""

    seconds: float
    stage_seconds: tuple
    output_pairs: int


def stage_spans(step_starts, started, ended):
    """Each stage's seconds from the times its steps started: up to the next step, the last one to the end."""
    ends = [*step_starts[1:], ended]
    return tuple(end - start for start, end in zip(step_starts, ends, strict=True))


def count_output_pairs(output_dir):
    """The job's kept ordered pairs: one line each in its part files."""
    return sum(sum(1 for _ in path.open("rb")) for path in sorted(Path(output_dir).glob("part-*")))


def run_job(ratings_path, case, folder):
    """Measured of one local run of the job on case's sample fraction and node count (its --num-cores)."""
    folder.mkdir(parents=True)
    command = [sys.executable, str(JOB_SCRIPT), "-r", "local", "--no-conf", "--no-bootstrap-mrjob",
               "--num-cores", str(case.nodes), "--sample-fraction", repr(case.fraction),
               "--local-tmp-dir", str(folder / "tmp"), "--output-dir", str(folder / "out"), str(ratings_path)]
    step_starts = []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("Running step "):
            step_starts.append(time.perf_counter())
    process.wait()
    ended = time.perf_counter()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed with code {process.returncode}")
    return Measured(ended - started, stage_spans(step_starts, started, ended),
                    count_output_pairs(folder / "out"))


@dataclass(frozen=True)
class Sizes:
    """What the advisor knows of a planned run before it runs: W counted exactly, ratings read counted."""

    pair_work: int
    ratings: int


def dataset_sizes(paths, cases):
    """{(dataset, fraction): Sizes} of every case's input, counted as the advisor counts them."""
    ratings = {dataset: int(read_rating_keys([path]).size) for dataset, path in paths.items()}
    return {(case.dataset, case.fraction): Sizes(pair_work_of_files([paths[case.dataset]], case.fraction),
                                                 ratings[case.dataset]) for case in cases}


def wait_for_quiet(threshold, max_wait_s, sleep=time.sleep, load=os.getloadavg):
    """Poll the 1-minute load average until it is below threshold, for at most max_wait_s (other work on
    this shared machine lands in the runs' times); returns the 1-minute load then."""
    waited = 0
    while load()[0] >= threshold and waited < max_wait_s:
        sleep(QUIET_POLL_S)
        waited += QUIET_POLL_S
    return load()[0]


def measure(cases, paths, repeats, work_dir, quiet=(float("inf"), 0)):
    """({case: [Measured, ...]}, [the 1-minute load as each run started]): every case `repeats` times, the
    cases interleaved so that a change in the machine's load falls on all of them alike, each run after
    waiting for a quiet machine (quiet: the load threshold and the longest wait)."""
    runs, loads = {case: [] for case in cases}, []
    for repeat in range(repeats):
        for index, case in enumerate(cases):
            loads.append(wait_for_quiet(*quiet))
            log(f"repeat {repeat + 1}/{repeats}, run {index + 1}/{len(cases)}: {case.dataset} at "
                f"{case.fraction:g} on {case.nodes} node(s), load {loads[-1]:.2f}")
            runs[case].append(run_job(paths[case.dataset], case, work_dir / f"{repeat}-{index}"))
    return runs, loads


def observations(runs, sizes):
    """Every training run as the run history would hold it."""
    return [Observation(case.nodes, sizes[case.dataset, case.fraction].pair_work, measured.seconds, 0.0,
                        f"{case.dataset}-{case.fraction}-{case.nodes}-{number}", case.dataset,
                        sizes[case.dataset, case.fraction].ratings, measured.output_pairs,
                        measured.stage_seconds)
            for case, repeats in runs.items() for number, measured in enumerate(repeats)]


def median_run(repeats):
    """The median of a case's repeats: its seconds, each stage's seconds, its output pairs."""
    return Measured(statistics.median(run.seconds for run in repeats),
                    tuple(statistics.median(stages) for stages in zip(*(run.stage_seconds for run in repeats),
                                                                       strict=True)),
                    repeats[0].output_pairs)


def relative_error(predicted, measured):
    return abs(predicted - measured) / measured


def report_rows(held_out, sizes, model, ernest):
    """Per held-out case: its measurement (median), the model's and Ernest's predictions and their errors."""
    rows = []
    for case, repeats in held_out.items():
        size = sizes[case.dataset, case.fraction]
        measured = median_run(repeats)
        prediction = predict(model, case.nodes, PlannedWork(size.pair_work, case.dataset, size.ratings))
        whole = predict(ernest, case.nodes, size.pair_work)
        rows.append({"case": case, "sizes": size, "measured": measured,
                     "spread": max(run.seconds for run in repeats) / min(run.seconds for run in repeats),
                     "prediction": prediction,
                     "error": relative_error(prediction.work_seconds, measured.seconds),
                     "ernest": whole.work_seconds,
                     "ernest_error": relative_error(whole.work_seconds, measured.seconds),
                     "scaled_work": case.fraction * sizes[case.dataset, 1.0].pair_work})
    return rows


def print_report(rows, model, training_runs, loads, minutes):
    print(f"{time.strftime('%Y-%m-%d')}: {training_runs} training runs, {len(rows)} held-out cases; 1-minute "
          f"load as each run started: median {statistics.median(loads):.2f}, largest {max(loads):.2f}; "
          f"{minutes:.1f} minutes")
    print(f"Model: {model.formula()}")
    if getattr(model, "dataset_errors", None):
        print(f"Its own held-out error across the fitted datasets: median {model.dataset_median_error:.1%}, "
              f"90th percentile {model.dataset_p90_error:.1%}; leave-one-out median "
              f"{model.loo_median_error:.1%}")
    print("\n| dataset | fraction | nodes | W counted | W if scaled | measured s (spread) | predicted s "
          "| error | stages measured s | stages predicted s | output pairs measured / estimated | Ernest s "
          "| error | confidence |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(table_row(row, model))
    print_summary(rows)


def print_summary(rows):
    errors = [row["error"] for row in rows]
    median = statistics.median(errors)
    print(f"\nPer-stage model on datasets it never saw: median absolute error {median:.1%} (target <= "
          f"{TARGET_ERROR:.0%}: {'met' if median <= TARGET_ERROR else 'missed'}), largest {max(errors):.1%}")
    for dataset in sorted({row["case"].dataset for row in rows}):
        of_dataset = [row["error"] for row in rows if row["case"].dataset == dataset]
        print(f"  {dataset}: median {statistics.median(of_dataset):.1%} over {len(of_dataset)} cases")
    print(f"Ernest's whole-run model on W, same runs: median absolute error "
          f"{statistics.median(row['ernest_error'] for row in rows):.1%}")
    print("Largest spread of a case's repeats (slowest / fastest): "
          f"{max(row['spread'] for row in rows):.2f}x")
    print(f"Notes on the first held-out prediction: {'; '.join(rows[0]['prediction'].extrapolation)}")


def table_row(row, model):
    """One held-out case as a row of the report's table."""
    case, measured, prediction, sizes = row["case"], row["measured"], row["prediction"], row["sizes"]
    estimated = model.sizes_of(PlannedWork(sizes.pair_work, case.dataset, sizes.ratings))[0]["output_pairs"]
    scaled = "-" if case.fraction == 1 else f"{row['scaled_work']:.3g}"
    return (f"| {case.dataset} | {case.fraction:g} | {case.nodes} | {sizes.pair_work:.3g} | {scaled} | "
            f"{measured.seconds:.1f} ({row['spread']:.2f}x) | {prediction.work_seconds:.1f} | "
            f"{row['error']:.0%} | {_seconds(measured.stage_seconds)} | {_seconds(prediction.stage_seconds)} "
            f"| {measured.output_pairs:,} / {estimated:,.0f} | {row['ernest']:.1f} "
            f"| {row['ernest_error']:.0%} | {prediction.confidence} |")


def history_rows(runs, sizes):
    """The runs as the run history's rows hold them (the figures planned_pair_work reads)."""
    return [{"run_id": f"{case.dataset}-{case.fraction}-{case.nodes}-{number}", "dataset": case.dataset,
             "sample_fraction": case.fraction, "pair_work": sizes[case.dataset, case.fraction].pair_work,
             "input_ratings": sizes[case.dataset, case.fraction].ratings,
             "output_pairs": measured.output_pairs}
            for case, repeats in runs.items() for number, measured in enumerate(repeats)]


def after_one_run(training, held_out, sizes):
    """(case, predicted, measured) of each held-out dataset's other cases once its first case's runs joined
    the history and the fit, each planned as the advisor plans it (history_rows.planned_pair_work: W
    counted, its output scaled by W from the dataset's nearest run)."""
    results = []
    for dataset in dict.fromkeys(case.dataset for case in held_out):
        first, *others = [case for case in held_out if case.dataset == dataset]
        history = {**training, first: held_out[first]}
        model = fit_run_model(observations(history, sizes), target=TARGET)
        rows = history_rows(history, sizes)
        for case in others:
            counted = sizes[dataset, case.fraction].pair_work
            work = planned_pair_work(rows, dataset, case.fraction, counted=counted)
            results.append((case, predict(model, case.nodes, work).work_seconds,
                            median_run(held_out[case]).seconds))
    return results


def print_after_one_run(results):
    print("\nAfter one run of each held-out dataset (its first case above joined the fit), its other cases:")
    for case, predicted, measured in results:
        print(f"  {case.dataset} at {case.fraction:g} on {case.nodes} node(s): predicted {predicted:.1f} s, "
              f"measured {measured:.1f} s, error {relative_error(predicted, measured):.0%}")
    errors = [relative_error(predicted, measured) for _, predicted, measured in results]
    print(f"  median absolute error {statistics.median(errors):.1%}, largest {max(errors):.1%}")


def _seconds(stages):
    return " / ".join(f"{seconds:.1f}" for seconds in stages)


def dataset_paths(data_dir, work_dir, datasets):
    """{dataset: ratings file}: the releases from data_dir, the synthetic shapes generated into work_dir."""
    paths = {}
    for dataset in datasets:
        if dataset in RELEASE_FILES:
            paths[dataset] = Path(data_dir) / RELEASE_FILES[dataset]
            if not paths[dataset].is_file():
                raise SystemExit(f"{paths[dataset]} not found: give --data-dir, the folder holding "
                                 f"{', '.join(RELEASE_FILES.values())}")
        else:
            paths[dataset] = work_dir / f"{dataset}.dat"
            log(f"generating {dataset} ({SYNTHETIC_SHAPES[dataset].ratings:,} ratings)")
            write_ml1m_ratings(paths[dataset], SYNTHETIC_SHAPES[dataset])
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                        help="the folder holding ml-latest-small/ and ml-100k/")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each case; its median is measured")
    parser.add_argument("--quick", action="store_true", help="one repeat and fewer cases")
    parser.add_argument("--quiet-load", type=float, default=1.0,
                        help="before each run, wait for a 1-minute load below this (default 1.0)")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="wait at most this many seconds for it, then run anyway (default 60)")
    args = parser.parse_args(argv)
    fit_cases, held_cases = (QUICK_FIT, QUICK_HELD_OUT) if args.quick else (FIT, HELD_OUT)
    repeats = 1 if args.quick else args.repeats
    started, quiet = time.monotonic(), (args.quiet_load, args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix="sizing-accuracy-") as scratch:
        work_dir = Path(scratch)
        cases = fit_cases + held_cases
        paths = dataset_paths(args.data_dir, work_dir, sorted({case.dataset for case in cases}))
        log("counting each input's W and ratings")
        sizes = dataset_sizes(paths, cases + [Case(case.dataset, 1.0, 1) for case in cases])
        # Training and held-out cases interleaved in one loop: a change in the machine's load falls on both.
        runs, loads = measure(fit_cases + held_cases, paths, repeats, work_dir, quiet)
    training = {case: runs[case] for case in fit_cases}
    held_out = {case: runs[case] for case in held_cases}
    fitted = observations(training, sizes)
    model = fit_run_model(fitted, target=TARGET)
    ernest = fit_time_model(fitted, target=TARGET)
    rows = report_rows(held_out, sizes, model, ernest)
    print_report(rows, model, len(fitted), loads, (time.monotonic() - started) / 60)
    if len(held_out) > len({case.dataset for case in held_out}):
        print_after_one_run(after_one_run(training, held_out, sizes))


if __name__ == "__main__":
    main()

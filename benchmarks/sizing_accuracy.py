"""How well the sizing model predicts runs it has not seen, measured on the local target here.

Runs the job (mrjob's local runner, `--num-cores` = the node count of the local target) on
MovieLens-1M-shaped synthetic data at a few sample fractions and slot counts, fits Ernest's model
(movielens_emr.sizing.model) to those runs, then predicts held-out runs: other slot counts and the full
input. It also predicts each held-out run from ONE training run's task durations (the task-wave
simulation). Prints every prediction beside its measurement and the median absolute error.

    .venv/bin/python benchmarks/sizing_accuracy.py             # about 10 minutes on 2 cores
    .venv/bin/python benchmarks/sizing_accuracy.py --quick     # smaller input, fewer runs
"""
import argparse
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "include"), str(REPO_ROOT)]  # the package, and benchmarks/

from benchmarks import reference  # noqa: E402
from benchmarks.synthetic import SyntheticShape, write_ml1m_ratings  # noqa: E402
from movielens_emr.sizing.model import Observation, fit_time_model, predict, predict_run_seconds  # noqa: E402
from movielens_emr.sizing.task_times import LOCAL_SOURCE, SPLIT_PHASES  # noqa: E402

JOB_SCRIPT = REPO_ROOT / "jobs" / "movie_similarities.py"
TRAINING = ((0.25, 1), (0.25, 2), (0.25, 4), (0.5, 1), (0.5, 2), (0.5, 4))
HELD_OUT = ((0.5, 3), (1.0, 1), (1.0, 2), (1.0, 3), (1.0, 4))
QUICK_TRAINING = ((0.25, 1), (0.25, 2), (0.5, 1), (0.5, 4))
QUICK_HELD_OUT = ((0.5, 2), (1.0, 2))
# The one-run prediction starts from this training run (the largest input, the most slots).
TASK_RECORD = re.compile(r"^(\S+) (\S+) (.*)$")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pair_work(ratings, fraction):
    """sum over the sampled users of n_u^2, n_u the movies user u rated: the job's stage 2 work."""
    users = reference.sample_users(ratings, fraction).users
    return float(sum(count * count for count in Counter(users.tolist()).values()))


def write_task_wrapper(folder):
    """A python wrapper that records each task's start, end and command line (mrjob's --task-python-bin)."""
    records = folder / "tasks"
    records.mkdir(parents=True)
    wrapper = folder / "timed-python.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        "started=$(date +%s.%N)\n"
        f"{shlex.quote(sys.executable)} \"$@\"\n"
        "status=$?\n"
        f"echo \"$started $(date +%s.%N) $*\" > \"$(mktemp {shlex.quote(str(records))}/task-XXXXXX)\"\n"
        "exit $status\n")
    wrapper.chmod(0o755)
    return wrapper, records


def task_phases(records):
    """{stage: [mapper task seconds in start order, reducer task seconds in start order]}."""
    tasks = []
    for path in records.iterdir():
        match = TASK_RECORD.match(path.read_text().strip())
        if match and JOB_SCRIPT.name in match.group(3):
            stage = int(re.search(r"--step-num=(\d+)", match.group(3)).group(1)) + 1
            phase = "reducer" if "--reducer" in match.group(3) else "mapper"
            tasks.append((stage, phase, float(match.group(1)), float(match.group(2)) - float(match.group(1))))
    phases = {}
    for stage, phase, _, seconds in sorted(tasks, key=lambda task: task[2]):
        phases.setdefault(stage, {"mapper": [], "reducer": []})[phase].append(seconds)
    return {stage: [lists["mapper"], lists["reducer"]] for stage, lists in phases.items()}


def run_job(ratings_path, fraction, slots, folder):
    """(wall seconds, {stage: seconds}, {stage: task phases}) of one local run."""
    folder.mkdir(parents=True)
    wrapper, records = write_task_wrapper(folder)
    command = [sys.executable, str(JOB_SCRIPT), "-r", "local", "--no-conf", "--no-bootstrap-mrjob",
               "--num-cores", str(slots), "--sample-fraction", repr(fraction), "--task-python-bin",
               str(wrapper), "--local-tmp-dir", str(folder / "tmp"), "--output-dir", str(folder / "out"),
               str(ratings_path)]
    step_starts = []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if line.startswith("Running step "):
            step_starts.append(time.perf_counter())
    process.wait()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed with code {process.returncode}")
    ends = step_starts[1:] + [started + seconds]
    spans = zip(step_starts, ends, strict=True)
    stages = {number: end - start for number, (start, end) in enumerate(spans, start=1)}
    return seconds, stages, task_phases(records)


def one_run_prediction(source, slots):
    """Seconds of a run on `slots` slots from one measured run's stages and task durations."""
    numbers = sorted(source["stages"])
    return predict_run_seconds(source["seconds"], [source["stages"][number] for number in numbers],
                               [source["phases"].get(number, []) for number in numbers], source["slots"],
                               slots, SPLIT_PHASES[LOCAL_SOURCE])[0]


def measure(plan, ratings_path, ratings, work_dir):
    runs = []
    for index, (fraction, slots) in enumerate(plan):
        log(f"run {index + 1}/{len(plan)}: sample fraction {fraction}, {slots} slots")
        seconds, stages, phases = run_job(ratings_path, fraction, slots, work_dir / f"run-{fraction}-{slots}")
        runs.append({"fraction": fraction, "slots": slots, "seconds": seconds, "stages": stages,
                     "phases": phases, "work": pair_work(ratings, fraction)})
    return runs


def report(training, held_out, model):
    source = max(training, key=lambda run: (run["fraction"], run["slots"]))
    a, b, c, d = model.coefficients
    print(f"Fitted on {len(training)} runs: t(m) = {a:.2f} + {b:.3g} W/m + {c:.2f} log m + {d:.3f} m s; "
          f"leave-one-out median error {model.loo_median_error:.1%}")
    print(f"One-run prediction from the {source['fraction']:g} input on {source['slots']} slots, "
          "its stages' task waves simulated on the other slot counts (same input only).\n")
    print("| input | slots | measured s | Ernest s | error | one-run s | error | note |")
    print("|---|---|---|---|---|---|---|---|")
    ernest_errors, wave_errors = [], []
    for run in held_out:
        prediction = predict(model, run["slots"], run["work"])
        error = abs(prediction.work_seconds - run["seconds"]) / run["seconds"]
        ernest_errors.append(error)
        wave = one_run_prediction(source, run["slots"]) if run["fraction"] == source["fraction"] else None
        wave_error = None if wave is None else abs(wave - run["seconds"]) / run["seconds"]
        if wave_error is not None:
            wave_errors.append(wave_error)
        print(f"| {run['fraction']:g} | {run['slots']} | {run['seconds']:.1f} | "
              f"{prediction.work_seconds:.1f} | {error:.1%} | {'-' if wave is None else f'{wave:.1f}'} | "
              f"{'-' if wave_error is None else f'{wave_error:.1%}'} | "
              f"{'; '.join(prediction.extrapolation)} |")
    print(f"\nErnest fit, held-out runs: median absolute error {statistics.median(ernest_errors):.1%} "
          f"(target <= 20%), largest {max(ernest_errors):.1%}")
    if wave_errors:
        print(f"One-run prediction: median absolute error {statistics.median(wave_errors):.1%}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter-size input and fewer runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sizing-accuracy-") as scratch:
        work_dir = Path(scratch)
        shape = SyntheticShape(users=1510, movies=1850, ratings=250_000) if args.quick else SyntheticShape()
        ratings_path = work_dir / "ratings.dat"
        log(f"generating {shape.ratings:,} synthetic ratings")
        write_ml1m_ratings(ratings_path, shape)
        ratings = reference.read_ratings([ratings_path])
        training = measure(QUICK_TRAINING if args.quick else TRAINING, ratings_path, ratings,
                           work_dir / "fit")
        held_out = measure(QUICK_HELD_OUT if args.quick else HELD_OUT, ratings_path, ratings,
                           work_dir / "held")
    model = fit_time_model([Observation(run["slots"], run["work"], run["seconds"]) for run in training])
    report(training, held_out, model)


if __name__ == "__main__":
    main()

"""Time, shuffle and task memory of the similarity job against the pairs baseline and scipy, here."""
import argparse
import ast
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "include"), str(REPO_ROOT)]  # the package, and benchmarks/

import mrjob  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402

from benchmarks import reference  # noqa: E402
from benchmarks.synthetic import SyntheticShape, write_ml1m_ratings, write_movies_dat  # noqa: E402

JOB_SCRIPT = REPO_ROOT / "jobs" / "movie_similarities.py"
DEFAULT_SHARED = REPO_ROOT.parent / "shared"
# Identical for both jobs. --cleanup NONE keeps each run's files, so the timed run itself shows
# the shuffle and the phase timings; deleting them is then no part of either job's time.
RUNNER_ARGS = ["-r", "local", "--no-bootstrap-mrjob", "--cleanup", "NONE"]
# The job's defaults that its memory bound is stated in: --movie-blocks, --user-chunk, cosine sums.
MOVIE_BLOCKS, USER_CHUNK, COSINE_STATS = 4, 1024, 4
# The stage 2 reducer bound is read from the job's docstring (parsed, not imported), so the
# figure printed beside the measured peak is always the formula the job currently states.
BOUND_LINE = re.compile(r"stage 2 reducer:\s*(.+?)\s+bytes", re.S)
BOUND_NODES = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load,
               ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub)
MB = 1e6
TASK_RECORD = re.compile(r"^(\d+) ([\d.]+) (.*)$")
STAGE_PHASES = ("mapper", "combiner", "reducer")
# Spans of a step between the local runner's milestones, in order (see phase_seconds).
STEP_PHASES = ("split input", "map", "sort", "split reducer input", "reduce", "after")


@dataclass
class JobRun:
    """One job run: wall time, its stdout, mrjob's kept temp dir, and when each step began."""

    seconds: float
    output: Path
    job_dir: Path
    launched: float
    step_starts: list = field(default_factory=list)
    ended: float = 0.0
    other_cpu_s: float = 0.0


# Interference: on a shared 2-core machine another process's CPU time lands in our wall times,
# so every timed run also reports the CPU seconds used by everything but this benchmark.
def cpu_snapshot():
    """(busy CPU seconds of the whole machine since boot, CPU seconds of this process and its children)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    usages = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    return busy, sum(usage.ru_utime + usage.ru_stime for usage in usages)


def other_cpu_since(snapshot):
    busy, own = cpu_snapshot()
    return max(0.0, (busy - snapshot[0]) - (own - snapshot[1]))


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_job(script, job_args, inputs, work_dir, runner_args=()):
    """Run an mrjob script on the local runner; the step starts are stamped as its log announces them."""
    work_dir.mkdir(parents=True)
    output = work_dir / "stdout.txt"
    command = [sys.executable, str(script), *RUNNER_ARGS, "--local-tmp-dir", str(work_dir / "tmp"),
               *runner_args, *job_args, *map(str, inputs)]
    step_starts, stderr_lines = [], []
    launched, started, cpu = time.time(), time.perf_counter(), cpu_snapshot()
    with open(output, "wb") as stdout:
        process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
        for line in process.stderr:
            if line.startswith("Running step "):
                step_starts.append(time.time())
            stderr_lines.append(line)
        process.wait()
    seconds = time.perf_counter() - started
    if process.returncode:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{''.join(stderr_lines[-30:])}")
    job_dir = next((work_dir / "tmp").iterdir())
    return JobRun(seconds, output, job_dir, launched, step_starts, time.time(), other_cpu_since(cpu))


def timed_runs(script, job_args, inputs, work_dir, repeat):
    """The job run `repeat` times; returns the run with the median wall time, and all the runs."""
    runs = [run_job(script, job_args, inputs, work_dir / f"run-{index}") for index in range(repeat)]
    median_run = sorted(runs, key=lambda run: run.seconds)[(repeat - 1) // 2]
    return median_run, runs


# Shuffle: the local runner sorts each step's map-side outputs (the combiner's if the step has
# one, see mrjob.sim._sort_reducer_input) into step/NNN/reducer/sorted-input for the reducers.
def shuffle_by_stage(job_dir):
    """Per stage with a reducer: bytes and records of the map-side output files sorted for it."""
    stages = []
    for step_dir in sorted((job_dir / "step").iterdir()):
        if not (step_dir / "reducer").is_dir():
            continue
        side = "combiner" if (step_dir / "combiner").is_dir() else "mapper"
        files = sorted(step_dir.glob(f"{side}/[0-9]*/output"))
        stages.append({"stage": int(step_dir.name) + 1, "sorted_side": side,
                       "bytes": sum(path.stat().st_size for path in files),
                       "records": sum(count_lines(path) for path in files)})
    return stages


def count_lines(path):
    lines = 0
    with open(path, "rb") as data:
        while chunk := data.read(1 << 24):
            lines += chunk.count(b"\n")
    return lines


# Phases of each step, from the times the local runner's files were last written.
def phase_seconds(run):
    """Seconds of start-up, then per stage of each STEP_PHASES span and the whole stage."""
    stages = [{"stage": "start-up", "total": run.step_starts[0] - run.launched}]
    ends = run.step_starts[1:] + [run.ended]
    for step_num, (start, end) in enumerate(zip(run.step_starts, ends, strict=False)):
        step_dir = run.job_dir / "step" / f"{step_num:03d}"
        marks = [start,
                 latest_mtime(step_dir.glob("mapper/[0-9]*/input")),
                 latest_mtime(step_dir.glob("mapper/[0-9]*/output")),
                 latest_mtime([step_dir / "reducer" / "sorted-input"]),
                 latest_mtime(step_dir.glob("reducer/[0-9]*/input")),
                 latest_mtime(reducer_outputs(run.job_dir, step_num, len(run.step_starts))),
                 end]
        spans = {name: later - earlier
                 for name, earlier, later in zip(STEP_PHASES, marks, marks[1:], strict=False)}
        stages.append({"stage": step_num + 1, "total": end - start, **spans})
    return stages


def latest_mtime(paths):
    return max(path.stat().st_mtime for path in paths)


def reducer_outputs(job_dir, step_num, num_steps):
    if step_num == num_steps - 1:
        return list((job_dir / "output").glob("part-*"))
    return list((job_dir / "step-output" / f"{step_num:04d}").glob("part-*"))


# Memory: mrjob's local runner starts every task as task_python_bin + [script, --step-num=N,
# --mapper|--reducer, ...] (mrjob.bin._script_args_for_step, run by mrjob.local's check_call),
# so a task_python_bin wrapper sees each task process and nothing else.
def write_task_wrapper(work_dir):
    """A shell script that runs the real python under GNU time, one record file per task."""
    records = work_dir / "task-records"
    records.mkdir(parents=True)
    wrapper = work_dir / "timed-python.sh"
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Peak RSS (KB), elapsed seconds and command line of this task, in a file of its own.\n"
        f"record=$(mktemp {shlex.quote(str(records))}/task-XXXXXX)\n"
        f"exec /usr/bin/time -f '%M %e %C' -o \"$record\" {shlex.quote(sys.executable)} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper, records


def read_task_records(records):
    """[(stage, phase, peak RSS bytes, seconds, command)] from the wrapper's record files."""
    tasks = []
    for path in sorted(records.iterdir()):
        for line in path.read_text().splitlines():
            match = TASK_RECORD.match(line)
            if match:
                command = match.group(3)
                stage = int(re.search(r"--step-num=(\d+)", command).group(1)) + 1
                phase = re.search(r"--(mapper|combiner|reducer)\b", command).group(1)
                tasks.append((stage, phase, int(match.group(1)) * 1024, float(match.group(2)), command))
    return tasks


def count_task_dirs(job_dir):
    """Tasks the local runner started: one directory each under step/NNN/<phase>/."""
    return sum(1 for phase in STAGE_PHASES for _ in job_dir.glob(f"step/*/{phase}/[0-9]*"))


def memory_by_stage(tasks):
    """Per (stage, phase): tasks, peak RSS, longest and summed task seconds."""
    groups = {}
    for stage, phase, rss, seconds, _ in tasks:
        group = groups.setdefault((stage, phase), {"stage": stage, "phase": phase, "tasks": 0,
                                                   "peak_rss_bytes": 0, "max_task_s": 0.0, "sum_task_s": 0.0})
        group["tasks"] += 1
        group["peak_rss_bytes"] = max(group["peak_rss_bytes"], rss)
        group["max_task_s"] = max(group["max_task_s"], seconds)
        group["sum_task_s"] += seconds
    return [groups[key] for key in sorted(groups)]


def measure_task_memory(job_args, inputs, work_dir):
    """Run the job once more with every task under the wrapper; per stage peaks and the wrap check."""
    wrapper, records = write_task_wrapper(work_dir)
    run = run_job(JOB_SCRIPT, job_args, inputs, work_dir / "run", ["--task-python-bin", str(wrapper)])
    tasks = read_task_records(records)
    job_tasks = [task for task in tasks if JOB_SCRIPT.name in task[4]]
    return {"wrapped_tasks": len(job_tasks), "tasks_started": count_task_dirs(run.job_dir),
            "peak_rss_bytes": max(task[2] for task in job_tasks), "seconds": run.seconds,
            "other_cpu_s": run.other_cpu_s,
            "by_stage": memory_by_stage(job_tasks)}


def idle_interpreter_rss():
    """Peak RSS of a python that only imports numpy and mrjob, with the tasks' one BLAS thread."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               SETUPTOOLS_USE_DISTUTILS="stdlib")
    with tempfile.NamedTemporaryFile("r", suffix=".time") as record:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", record.name, sys.executable, "-c",
                        "import numpy, mrjob.job"], check=True, env=env)
        return int(record.read().split()[-1]) * 1024


def stage2_bound_formula(job_script=JOB_SCRIPT):
    """The job docstring's stage 2 reducer bound, e.g. '12.5*(S+2)*B^2 + 20*C*B', or None."""
    match = BOUND_LINE.search(ast.get_docstring(ast.parse(job_script.read_text())) or "")
    return " ".join(match.group(1).split()) if match else None


def evaluate_bound(formula, sizes):
    """Bytes an arithmetic formula ('^' is a power) gives for the named sizes; anything else is refused."""
    tree = ast.parse(formula.replace("^", "**"), mode="eval")
    for node in ast.walk(tree):
        if (not isinstance(node, BOUND_NODES) or (isinstance(node, ast.Name) and node.id not in sizes)
                or (isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)))):
            raise ValueError(f"not arithmetic over {', '.join(sizes)}: {formula!r}")
    return eval(compile(tree, "<bound>", "eval"), {"__builtins__": {}}, dict(sizes))


def stage2_bound(shape, formula):
    """The formula at the job's defaults for this input, or None when it is not plain arithmetic."""
    sizes = {"M": shape["distinct_movies"], "m": shape["max_movies_per_user"], "G": MOVIE_BLOCKS,
             "C": USER_CHUNK, "S": COSINE_STATS, "B": shape["largest_block"],
             "r": min(shape["max_movies_per_user"], 2 * shape["largest_block"])}
    try:
        return evaluate_bound(formula, sizes) if formula else None
    except (SyntaxError, ValueError):
        return None


def input_shape(ratings):
    """M (distinct movies), m (most movies one user rated), B (largest movie block), users, ratings."""
    _, per_user = np.unique(ratings.users, return_counts=True)
    movies = np.unique(ratings.movies).tolist()
    # The job puts a movie in block crc32(id) % --movie-blocks.
    blocks = Counter(zlib.crc32(movie.encode()) % MOVIE_BLOCKS for movie in movies)
    return {"ratings": len(ratings.users), "users": len(per_user), "distinct_movies": len(movies),
            "max_movies_per_user": int(per_user.max()), "largest_block": max(blocks.values())}


# Answers: both jobs' output lines, and the reference's dict, as {(movie, similar): (score, n)}.
def read_baseline_pairs(path):
    """'"m1"\\t["m2", score, n]' lines."""
    pairs = {}
    with open(path) as lines:
        for line in lines:
            key, value = line.split("\t", 1)
            similar, score, co_raters = json.loads(value)
            pairs[(json.loads(key), similar)] = (score, co_raters)
    return pairs


def read_job_pairs(path):
    """'["m1", title]\\t["m2", title, score, n]' lines."""
    pairs = {}
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            key, value = line.split("\t", 1)
            similar, _, score, co_raters = json.loads(value)
            pairs[(json.loads(key)[0], similar)] = (score, co_raters)
    return pairs


def compare_pairs(yardstick, job):
    """Whether two answers hold the same ordered pairs, and how far their scores and counts differ."""
    common = yardstick.keys() & job.keys()
    return {"yardstick_pairs": len(yardstick), "job_pairs": len(job),
            "same_set": yardstick.keys() == job.keys(),
            "only_yardstick": len(yardstick.keys() - common), "only_job": len(job.keys() - common),
            "max_score_diff": max((abs(yardstick[k][0] - job[k][0]) for k in common), default=0.0),
            "co_raters_mismatches": sum(yardstick[k][1] != job[k][1] for k in common)}


def time_reference(ratings_path, repeat):
    """Median parse and compute seconds of reference.read_ratings + similar_pairs, and the answer."""
    parse, compute, other_cpu = [], [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), cpu_snapshot()
        ratings = reference.read_ratings([ratings_path])
        parsed = time.perf_counter()
        pairs = reference.similar_pairs(ratings, "cosine", 0.95, 10)
        compute.append(time.perf_counter() - parsed)
        parse.append(parsed - started)
        other_cpu.append(other_cpu_since(cpu))
    totals = [a + b for a, b in zip(parse, compute, strict=False)]
    return {"parse_s": statistics.median(parse), "compute_s": statistics.median(compute),
            "total_s": statistics.median(totals), "runs_s": totals, "other_cpu_s": other_cpu}, ratings, pairs


def machine_facts():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "mrjob": mrjob.__version__,
            "platform": platform.platform(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def job_version():
    """Which job was measured: other work may change it between runs of this benchmark."""
    text = JOB_SCRIPT.read_bytes()
    modified = datetime.fromtimestamp(JOB_SCRIPT.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {"sha256": hashlib.sha256(text).hexdigest()[:12], "modified": modified}


def job_figures(job_args, ratings_path, work_dir, repeat):
    """Our job's median run (for its output) and its figures: wall times, shuffle, phases."""
    job_run, runs = timed_runs(JOB_SCRIPT, job_args, [ratings_path], work_dir, repeat)
    seconds = [run.seconds for run in runs]
    return job_run, {"job_runs_s": seconds, "job_s": statistics.median(seconds),
                     "job_other_cpu_s": [run.other_cpu_s for run in runs],
                     "job_shuffle": shuffle_by_stage(job_run.job_dir), "job_phases": phase_seconds(job_run)}


def benchmark_ml100k(shared, work_dir, args):
    """Baseline and job wall time, shuffle, answers and task memory on the real ml-100k."""
    data = shared / "data" / "movielens" / "ml-100k"
    job_args = ["--items", str(data / "u.item")]
    log(f"ml-100k: our job x{args.repeat}")
    job_run, result = job_figures(job_args, data / "u.data", work_dir / "job", args.repeat)
    result["shape"] = input_shape(reference.read_ratings([data / "u.data"]))
    if not args.skip_baseline:
        log("ml-100k: pairs baseline (a few minutes)")
        result.update(run_baseline(shared, data / "u.data", work_dir / "baseline", job_run.output))
    log("ml-100k: our job with every task under the memory wrapper")
    result["memory"] = measure_task_memory(job_args, [data / "u.data"], work_dir / "memory")
    return result


def run_baseline(shared, ratings_path, work_dir, job_output):
    """Wall time, shuffle and answer agreement of the pairs baseline, against our job's output."""
    baseline = run_job(shared / "bench" / "pairs_baseline.py", [], [ratings_path], work_dir)
    agreement = compare_pairs(read_baseline_pairs(baseline.output), read_job_pairs(job_output))
    return {"baseline_s": baseline.seconds, "baseline_other_cpu_s": baseline.other_cpu_s,
            "baseline_shuffle": shuffle_by_stage(baseline.job_dir),
            "baseline_phases": phase_seconds(baseline), "baseline_agreement": agreement}


def write_synthetic_input(data_dir):
    """ratings.dat and movies.dat of the default (MovieLens-1M-sized) SyntheticShape."""
    data_dir.mkdir(parents=True)
    write_ml1m_ratings(data_dir / "ratings.dat", SyntheticShape())
    write_movies_dat(data_dir / "movies.dat", SyntheticShape())
    return data_dir / "ratings.dat", data_dir / "movies.dat"


def benchmark_ml1m_shaped(shared, work_dir, args):
    """Job vs scipy wall time, answers and task memory on the synthetic MovieLens-1M-shaped input."""
    log("1M-shaped: generating the synthetic input")
    ratings_path, movies_path = write_synthetic_input(work_dir / "data")
    log(f"1M-shaped: scipy reference x{args.repeat}")
    scipy_times, ratings, scipy_pairs = time_reference(ratings_path, args.repeat)
    log(f"1M-shaped: our job x{args.repeat}")
    job_args = ["--items", str(movies_path)]
    job_run, result = job_figures(job_args, ratings_path, work_dir / "job", args.repeat)
    result.update(shape=input_shape(ratings), scipy=scipy_times,
                  scipy_agreement=compare_pairs(scipy_pairs, read_job_pairs(job_run.output)))
    if args.with_baseline_1m:
        log("1M-shaped: pairs baseline (about an hour)")
        result.update(run_baseline(shared, ratings_path, work_dir / "baseline", job_run.output))
    log("1M-shaped: our job with every task under the memory wrapper")
    result["memory"] = measure_task_memory(job_args, [ratings_path], work_dir / "memory")
    return result


# Report: Markdown tables, so the figures can be pasted into the README as they are.
def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def agreement_text(agreement):
    verdict = "same set" if agreement["same_set"] else (
        f"DIFFER: {agreement['only_yardstick']} only in yardstick, {agreement['only_job']} only in job")
    return (f"{verdict}; max score diff {agreement['max_score_diff']:.1e}; "
            f"co-rater mismatches {agreement['co_raters_mismatches']}")


def shuffle_total(stages):
    return sum(stage["bytes"] for stage in stages)


def headline_rows(results):
    """The targets: ml-100k speed and shuffle against the baseline, 1M-shaped speed against scipy."""
    small, large = results["ml100k"], results["ml1m_shaped"]
    rows = []
    if "baseline_s" in small:
        rows += baseline_rows(small, "ml-100k", (">= 20x faster", ">= 10x fewer"))
    scipy_times, agreement = large["scipy"], large["scipy_agreement"]
    scipy_text = (f"scipy {scipy_times['total_s']:.1f} s (parse {scipy_times['parse_s']:.1f} "
                  f"+ compute {scipy_times['compute_s']:.1f})")
    rows.append(("wall time", "1M-shaped", scipy_text, f"{large['job_s']:.1f} s",
                 f"{large['job_s'] / scipy_times['total_s']:.2f}x scipy's time", "<= 1.25x"))
    rows.append(("kept ordered pairs", "1M-shaped", f"scipy {agreement['yardstick_pairs']:,}",
                 f"{agreement['job_pairs']:,}", agreement_text(agreement), "same set"))
    if "baseline_s" in large:
        rows += baseline_rows(large, "1M-shaped", ("", ""))
    return rows


def baseline_rows(result, label, targets):
    """Wall time, shuffle and answers of our job against the pairs baseline on one input."""
    baseline_bytes = shuffle_total(result["baseline_shuffle"])
    job_bytes = shuffle_total(result["job_shuffle"])
    agreement = result["baseline_agreement"]
    return [
        ("wall time", label, f"pairs baseline {result['baseline_s']:.1f} s", f"{result['job_s']:.2f} s",
         f"{result['baseline_s'] / result['job_s']:.1f}x faster", targets[0]),
        ("bytes shuffled", label, f"pairs baseline {baseline_bytes / MB:,.1f} MB",
         f"{job_bytes / MB:,.2f} MB",
         f"{baseline_bytes / job_bytes:.0f}x fewer", targets[1]),
        ("kept ordered pairs", label, f"pairs baseline {agreement['yardstick_pairs']:,}",
         f"{agreement['job_pairs']:,}", agreement_text(agreement), "same set"),
    ]


def memory_rows(results):
    """Peak task RSS per input next to the docstring's stage 2 reducer bound plus an idle interpreter."""
    idle = results["idle_interpreter_rss_bytes"]
    rows = []
    for name, label in (("ml100k", "ml-100k"), ("ml1m_shaped", "1M-shaped")):
        result = results[name]
        shape, memory = result["shape"], result["memory"]
        bound = result["stage2_bound_bytes"]
        stage2 = next(group for group in memory["by_stage"]
                      if (group["stage"], group["phase"]) == (2, "reducer"))
        rows.append((label, f"{shape['distinct_movies']:,} / {shape['max_movies_per_user']:,} / "
                     f"{shape['largest_block']:,}",
                     f"{bound / MB:.1f} MB + idle {idle / MB:.1f} = {(bound + idle) / MB:.1f} MB"
                     if bound is not None else "formula not evaluable",
                     f"{stage2['peak_rss_bytes'] / MB:.1f} MB", f"{memory['peak_rss_bytes'] / MB:.1f} MB",
                     f"{memory['wrapped_tasks']} of {memory['tasks_started']}"))
    return rows


def stage_memory_rows(results):
    rows = []
    for name, label in (("ml100k", "ml-100k"), ("ml1m_shaped", "1M-shaped")):
        for group in results[name]["memory"]["by_stage"]:
            rows.append((label, f"{group['stage']} {group['phase']}", group["tasks"],
                         f"{group['peak_rss_bytes'] / MB:.1f}", f"{group['max_task_s']:.2f}",
                         f"{group['sum_task_s']:.2f}"))
    return rows


def shuffle_rows(results):
    """Bytes and records sorted for each stage's reducers, per job and input."""
    rows = []
    for name, label in (("ml100k", "ml-100k"), ("ml1m_shaped", "1M-shaped")):
        for job, key in (("pairs baseline", "baseline_shuffle"), ("this job", "job_shuffle")):
            stages = results[name].get(key)
            if stages:
                cells = [f"{stage['bytes'] / MB:,.2f} MB / {stage['records']:,}" for stage in stages]
                rows.append((label, job, *cells, f"{shuffle_total(stages) / MB:,.2f} MB"))
    return rows


def phase_rows(results):
    """Where our job's median 1M-shaped run spent its wall time, per stage and phase."""
    return [(stage["stage"], *(f"{stage[name]:.2f}" if name in stage else "" for name in STEP_PHASES),
             f"{stage['total']:.2f}") for stage in results["ml1m_shaped"]["job_phases"]]


def header_lines(results):
    facts = results["machine"]
    return [f"# Job speed benchmark, {facts['date']}",
            f"CPU: {facts['cpu']}, {facts['cores']} cores; {facts['platform']}",
            f"Python {facts['python']}, numpy {facts['numpy']}, scipy {facts['scipy']}, "
            f"mrjob {facts['mrjob']}",
            f"Job: {JOB_SCRIPT.relative_to(REPO_ROOT)} sha256 {results['job']['sha256']}..., "
            f"modified {results['job']['modified']}",
            f"Runner (both jobs): {shlex.join(RUNNER_ARGS)} --local-tmp-dir TMP, default --num-cores "
            f"({facts['cores']}); this job's times are medians of {results['repeat']} run(s): "
            f"ml-100k {fmt_runs(results['ml100k']['job_runs_s'])}, "
            f"1M-shaped {fmt_runs(results['ml1m_shaped']['job_runs_s'])}",
            f"Idle interpreter (python -c 'import numpy, mrjob.job'): peak RSS "
            f"{results['idle_interpreter_rss_bytes'] / MB:.1f} MB",
            "CPU seconds used by other processes during each timed run (noise): " + interference(results)]


def interference(results):
    """Other processes' CPU seconds per timed run, and their share of the machine over all of them."""
    small, large = results["ml100k"], results["ml1m_shaped"]
    timed = [("ml-100k job", small["job_other_cpu_s"], small["job_runs_s"]),
             ("ml-100k baseline", [small.get("baseline_other_cpu_s")], [small.get("baseline_s")]),
             ("1M-shaped job", large["job_other_cpu_s"], large["job_runs_s"]),
             ("scipy", large["scipy"]["other_cpu_s"], large["scipy"]["runs_s"]),
             ("1M-shaped baseline", [large.get("baseline_other_cpu_s")], [large.get("baseline_s")])]
    timed = [(name, other, wall) for name, other, wall in timed if wall[0] is not None]
    share = sum(sum(other) for _, other, _ in timed) / (
        sum(sum(wall) for _, _, wall in timed) * results["machine"]["cores"])
    runs = ", ".join(f"{name} {fmt_runs(other)}" for name, other, _ in timed)
    verdict = "quiet" if share < 0.05 else "NOISY: rerun on a quiet machine for figures to quote"
    return f"{runs}; {share:.0%} of the machine's CPU time during them ({verdict})"


def report(results):
    """Everything as Markdown: the headline figures, then shuffle, memory and time in detail."""
    return "\n\n".join([
        "\n".join(header_lines(results)),
        table(("figure", "input", "yardstick", "this job", "result", "target"), headline_rows(results)),
        "Shuffle: MB / records of the map output sorted for each stage's reducers\n\n"
        + table(("input", "job", "stage 1", "stage 2", "stage 3", "total"), shuffle_rows(results)),
        "Peak RSS of any one task of this job, from GNU time around every task "
        "(M / m / B = distinct movies / most movies of one user / movies of the largest block; "
        "bound = the job docstring's stage 2 reducer formula,"
        f" {results['stage2_bound_formula']} bytes, at G=4, C=1024, S=4)\n\n"
        + table(("input", "M / m / B", "stage 2 reducer bound", "stage 2 reducer peak", "any task peak",
                 "tasks wrapped"), memory_rows(results)),
        "Tasks of the memory runs, per stage and phase\n\n"
        + table(("input", "stage phase", "tasks", "peak RSS MB", "longest task s", "task seconds"),
                stage_memory_rows(results)),
        "This job's wall time on the 1M-shaped input, seconds per stage and phase (median run; after = "
        "counters, and for stage 3 streaming the output to stdout)\n\n"
        + table(("stage", *STEP_PHASES, "total"), phase_rows(results)),
    ])


def fmt_runs(seconds):
    return "/".join(f"{value:.2f}" for value in seconds) + " s"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                        help=f"the shared directory with data/ and bench/ (default {DEFAULT_SHARED})")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON to this path")
    parser.add_argument("--skip-baseline", action="store_true",
                        help="skip the pairs baseline on ml-100k (3-4 minutes), for quick checks")
    parser.add_argument("--with-baseline-1m", action="store_true",
                        help="also run the pairs baseline on the 1M-shaped input (about an hour)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of our job and of the scipy reference per input; "
                             "medians reported (default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    results = {"machine": machine_facts(), "job": job_version(), "repeat": args.repeat,
               "runner_args": RUNNER_ARGS, "idle_interpreter_rss_bytes": idle_interpreter_rss(),
               "stage2_bound_formula": stage2_bound_formula()}
    with tempfile.TemporaryDirectory(prefix="job-speed-") as work_dir:
        results["ml100k"] = benchmark_ml100k(args.shared, Path(work_dir) / "ml-100k", args)
        results["ml1m_shaped"] = benchmark_ml1m_shaped(args.shared, Path(work_dir) / "ml-1m-shaped", args)
    for name in ("ml100k", "ml1m_shaped"):
        formula = results["stage2_bound_formula"]
        results[name]["stage2_bound_bytes"] = stage2_bound(results[name]["shape"], formula)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

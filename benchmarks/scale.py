"""Wall time, time per stage, every task's peak memory and W of the similarity job on 1M- to 25M-shaped data,
here, each answer checked against the scipy reference (blocked by movie ranges where it cannot be whole)."""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

import job_speed  # noqa: E402  (also puts include/ on sys.path)

from benchmarks import reference  # noqa: E402
from benchmarks.synthetic import (  # noqa: E402,E501
    PRESETS,
    SyntheticShape,
    generate_ratings,
    write_ml1m_ratings,
    write_movies_dat,
)
from movielens_emr.engine.similarity.block_plan import (  # noqa: E402
    balanced_routes,
    block_pair_work,
    dealt_routes_for,
    mass_blocks,
    movie_blocks_for,
    routed_skew,
    write_block_plan,
)

# 5M-shaped: between ml-1m and ml-10m (half of ml-10m's users and ratings, most of its movies).
SHAPES = {
    "1M": PRESETS["ml-1m"],
    "5M": SyntheticShape(users=35_784, movies=8_000, ratings=5_000_027, max_ratings_per_user=5_000,
                         max_raters_per_movie=17_432, activity_sigma=1.2, half_stars=True),
    "10M": PRESETS["ml-10m"],
    "25M": PRESETS["ml-25m"],
}
TASK_SLOTS = (8, 16, 32, 64)
# The targets on this 2-core machine: wall seconds of a size's whole run, any task's peak RSS, and the
# 1M-shaped run against the scipy reference's time (benchmarks/job_speed.py measures it in medians of 3).
WALL_TARGETS = {"10M": 180, "25M": 1200}
MEMORY_LIMIT = 1.5e9
SCIPY_RATIO_TARGET = 1.25
# The scipy reference holds its movie x movie sums whole up to this many movies (ml-10m's 10,681 fit);
# above, it is computed a pair of ranges of REFERENCE_BLOCK_MOVIES movies at a time.
WHOLE_REFERENCE_MOVIES = 20_000
REFERENCE_BLOCK_MOVIES = 4096
QUIET_POLL_S = 60
# The job's answer is read a million lines at a time into arrays: 69 million lines for 25M-shaped data.
READ_LINES = 1_000_000
COUNTER_LINE = re.compile(r"reporter:counter:([^,]*),([^,]*),(\d+)")
MB = 1e6


def log(message):
    job_speed.log(message)


def dataset(name, data_root):
    """The size's ratings.dat and movies.dat, generated once under data_root, and its ratings array."""
    shape, folder = SHAPES[name], data_root / name
    started = time.perf_counter()
    ratings = generate_ratings(shape)
    if not (folder / "ratings.dat").exists():
        folder.mkdir(parents=True, exist_ok=True)
        write_ml1m_ratings(folder / "ratings.tmp", shape, ratings)
        write_movies_dat(folder / "movies.dat", shape)
        (folder / "ratings.tmp").rename(folder / "ratings.dat")
    log(f"{name}: data ready in {time.perf_counter() - started:.0f} s")
    return folder / "ratings.dat", folder / "movies.dat", ratings


def in_sample(ratings, fraction):
    """The rows of the users the job's --sample-fraction keeps (crc32 of the user id)."""
    if fraction >= 1:
        return ratings
    users = np.unique(ratings["user_id"])
    kept = users[np.array([zlib.crc32(str(user).encode()) < fraction * 2**32 for user in users.tolist()])]
    return ratings[np.isin(ratings["user_id"], kept)]


def shape_figures(ratings):
    """Users, movies, the heaviest user and the pair work W = sum over users of n_u^2."""
    per_user = np.unique(ratings["user_id"], return_counts=True)[1].astype(np.int64)
    return {"ratings": int(ratings.size), "users": int(per_user.size),
            "movies": int(np.unique(ratings["movie_id"]).size), "max_user": int(per_user.max()),
            "pair_work": int((per_user ** 2).sum())}


def planned_skews(users, movies, movie_count):
    """Per task slot count: blocks, and stage 2's skew with hashed blocks dealt in turn (no plan)
    and with mass-balanced blocks routed by measured work (a --block-plan)."""
    rows = []
    for slots in TASK_SLOTS:
        blocks = movie_blocks_for(slots, movie_count)
        hashed = block_pair_work(users, movies, hashed_blocks(movies, blocks), blocks)
        massed = block_pair_work(users, movies, mass_blocks(movies, blocks), blocks)
        rows.append({"slots": slots, "blocks": blocks,
                     "hash_dealt": routed_skew(hashed, dealt_routes_for(blocks, slots), slots),
                     "mass_routed": routed_skew(massed, balanced_routes(massed, slots), slots)})
    return rows


def hashed_blocks(movie_ids, movie_blocks):
    """{movie: block} as the job hashes integer movie ids: crc32 of the id's text."""
    return {movie: zlib.crc32(str(movie).encode()) % movie_blocks for movie in np.unique(movie_ids).tolist()}


def task_counters(job_dir, stage):
    """{(group, counter): [amount per task]} from the stage's reducer tasks' stderr."""
    found = {}
    for stderr in sorted((job_dir / "step" / f"{stage - 1:03d}" / "reducer").glob("[0-9]*/stderr")):
        for group, name, amount in COUNTER_LINE.findall(stderr.read_text(errors="replace")):
            found.setdefault((group, name), []).append(int(amount))
    return found


# Other engineers' work on this shared machine lands in our wall times: each timed run waits for a quiet
# machine first, and its figures carry the load it started at and the CPU others used during it.
def wait_for_quiet(threshold, max_wait_s, sleep=time.sleep, load=os.getloadavg):
    """Poll the 1-minute load average each QUIET_POLL_S until it is below threshold, for at most
    max_wait_s; returns (the 1-, 5- and 15-minute load averages then, seconds waited)."""
    waited = 0
    while True:
        now = load()
        if now[0] < threshold or waited >= max_wait_s:
            return list(now), waited
        log(f"1-minute load {now[0]:.2f} >= {threshold}: waiting for a quiet machine ({waited:.0f} s)")
        sleep(QUIET_POLL_S)
        waited += QUIET_POLL_S


def run_size(name, args, work_dir, data_root):
    """One size: the job with every task under GNU time, its figures, and its answer checked if asked."""
    ratings_path, movies_path, ratings = dataset(name, data_root)
    fraction = args.sample_fraction if name == "25M" else 1.0
    sampled = in_sample(ratings, fraction)
    figures = {"size": name, "sample_fraction": fraction, "full": shape_figures(ratings),
               "run": shape_figures(sampled)}
    log(f"{name}: stage 2 skews planned for {', '.join(map(str, TASK_SLOTS))} task slots")
    figures["planned"] = planned_skews(ratings["user_id"], ratings["movie_id"], figures["full"]["movies"])
    del ratings
    figures.update(run_job(name, args, work_dir, (ratings_path, movies_path), sampled, figures))
    if name in args.check_exact:
        figures.update(check_exact(name, args, sampled, figures["output"]))
    if name == "1M":
        log("1M: scipy reference, side by side")
        figures["scipy"] = job_speed.time_reference(ratings_path, 1)[0]
    return figures


def run_job(name, args, work_dir, paths, sampled, figures):
    """The job on its own ratings' block plan, after waiting for a quiet machine: its figures."""
    ratings_path, movies_path = paths
    blocks = movie_blocks_for(args.num_cores, figures["full"]["movies"])
    work_dir.mkdir(parents=True)
    # Integer ids: the plan's JSON keys are their text, as the job reads them.
    write_block_plan(work_dir / "plan.json", sampled["user_id"], sampled["movie_id"], blocks, args.num_cores)
    job_args = ["--items", str(movies_path), "--movie-blocks", str(blocks), "--block-plan",
                str(work_dir / "plan.json"), "--sample-fraction", repr(figures["sample_fraction"])]
    load, waited = wait_for_quiet(args.quiet_load, args.quiet_wait_s)
    log(f"{name}: job (G={blocks}, {sampled.size:,} ratings), each task under GNU time; load {load[0]:.2f}")
    wrapper, records = job_speed.write_task_wrapper(work_dir)
    run = job_speed.run_job(job_speed.JOB_SCRIPT, job_args, [ratings_path], work_dir / "run",
                            ["--task-python-bin", str(wrapper), "--num-cores", str(args.num_cores)])
    tasks = [task for task in job_speed.read_task_records(records) if job_speed.JOB_SCRIPT.name in task[4]]
    stage2 = [amount for (group, _), amounts in task_counters(run.job_dir, 2).items()
              if group == "stage 2 work" for amount in amounts]
    stage1 = [amount for (group, _), amounts in task_counters(run.job_dir, 1).items()
              if group == "work" for amount in amounts]
    return {"blocks": blocks, "seconds": run.seconds, "other_cpu_s": run.other_cpu_s, "load_before": load,
            "waited_s": waited, "load_after": list(os.getloadavg()), "phases": job_speed.phase_seconds(run),
            "memory": job_speed.memory_by_stage(tasks), "tasks": task_peaks(tasks),
            "shuffle": job_speed.shuffle_by_stage(run.job_dir), "output": str(run.output),
            "counted_pair_work": sum(stage1),
            "local_skew": max(stage2) / (sum(stage2) / len(stage2)) if sum(stage2) else None,
            "stage2_work": sum(stage2)}


def task_peaks(tasks):
    """Every task's (stage, phase, peak RSS bytes, seconds), in the order GNU time recorded them."""
    return [{"stage": stage, "phase": phase, "peak_rss_bytes": rss, "seconds": seconds}
            for stage, phase, rss, seconds, _ in sorted(tasks, key=lambda task: (task[0], task[1]))]


# Exactness: the job's whole answer against the scipy reference's, as arrays of ordered pairs.
def check_exact(name, args, sampled, job_output):
    """The reference's answer on the same ratings (its computation timed, after waiting for a quiet
    machine; whole where its sums fit, else by movie ranges) against the job's."""
    movies = int(np.unique(sampled["movie_id"]).size)
    whole = movies <= WHOLE_REFERENCE_MOVIES
    ratings = reference.Ratings(sampled["user_id"].astype(str), sampled["movie_id"].astype(str),
                                sampled["rating"].astype(np.float64), sampled["timestamp"])
    load, _ = wait_for_quiet(args.quiet_load, args.quiet_wait_s)
    log(f"{name}: scipy reference ({'whole' if whole else 'blocked by movie ranges'}); load {load[0]:.2f}")
    started, cpu = time.perf_counter(), job_speed.cpu_snapshot()
    expected = reference_pairs(ratings, movies if whole else REFERENCE_BLOCK_MOVIES)
    timing = {"whole": whole, "compute_s": time.perf_counter() - started, "load_before": load,
              "other_cpu_s": job_speed.other_cpu_since(cpu)}
    log(f"{name}: reading the job's answer")
    return {"exact": compare_pair_arrays(expected, read_job_pair_arrays(job_output)), "reference": timing}


def reference_pairs(ratings, block_movies):
    """The reference's kept ordered pairs as arrays (movies, similar movies, scores, co-raters)."""
    parts = list(reference.similar_pairs_blocked(ratings, "cosine", 0.95, 10, block_movies))
    if not parts:
        return tuple(np.zeros(0, dtype) for dtype in (np.int64, np.int64, np.float64, np.int64))
    movies, similar, scores, co_raters = (np.concatenate(column) for column in zip(*parts, strict=True))
    movies, similar = movies.astype(np.int64), similar.astype(np.int64)
    return (np.concatenate([movies, similar]), np.concatenate([similar, movies]),
            np.concatenate([scores, scores]), np.concatenate([co_raters, co_raters]).astype(np.int64))


def read_job_pair_arrays(path):
    """The job's output lines '["m1", title]\\t["m2", title, score, n]' as arrays (m1, m2, score, n)."""
    parts, columns = [], ([], [], [], [])
    with open(path, "rb") as lines:
        for line in lines:
            key, value = line.split(b"\t", 1)
            _, score, co_raters = value.rsplit(b", ", 2)
            columns[0].append(int(key[2:key.index(b'"', 2)]))
            columns[1].append(int(value[2:value.index(b'"', 2)]))
            columns[2].append(float(score))
            columns[3].append(int(co_raters.rstrip()[:-1]))
            if len(columns[0]) == READ_LINES:
                parts.append(pair_arrays(columns))
                columns = ([], [], [], [])
    parts.append(pair_arrays(columns))
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def pair_arrays(columns):
    return tuple(np.array(column, dtype=dtype)
                 for column, dtype in zip(columns, (np.int64, np.int64, np.float64, np.int64), strict=True))


def compare_pair_arrays(yardstick, job):
    """job_speed.compare_pairs' figures for two answers given as arrays of ordered pairs."""
    keys = [pair_keys(answer[0], answer[1]) for answer in (yardstick, job)]
    common, in_yardstick, in_job = np.intersect1d(keys[0], keys[1], assume_unique=True, return_indices=True)
    return {"yardstick_pairs": len(keys[0]), "job_pairs": len(keys[1]),
            "same_set": len(common) == len(keys[0]) == len(keys[1]),
            "only_yardstick": len(keys[0]) - len(common), "only_job": len(keys[1]) - len(common),
            "max_score_diff": float(np.abs(yardstick[2][in_yardstick] - job[2][in_job]).max(initial=0.0)),
            "co_raters_mismatches": int((yardstick[3][in_yardstick] != job[3][in_job]).sum())}


def pair_keys(movies, similar):
    """One int64 per ordered pair of movie ids (each below 2**31, as every MovieLens id is)."""
    if len(movies) and max(movies.max(), similar.max()) >= 2**31:
        raise ValueError("movie ids of 2**31 or more do not fit the pair keys")
    return movies << 31 | similar


def growth_exponent(points):
    """Least-squares slope of log(seconds) against log(W) over (W, seconds) points."""
    x, y = np.log([w for w, _ in points]), np.log([s for _, s in points])
    return float(np.polyfit(x, y, 1)[0]) if len(points) >= 2 else None


# Report: Markdown tables, pasted into docs/job-performance.md as they are.
def report(results, args):
    sizes = results["sizes"]
    machine = results["machine"]
    lines = [f"# Scale benchmark, {machine['date']}",
             f"CPU: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}, numpy "
             f"{machine['numpy']}, scipy {machine['scipy']}, mrjob {machine['mrjob']}; local runner, "
             f"--num-cores {args.num_cores}; blocks from movie_blocks_for(slots, movies) with a "
             f"--block-plan; each run waits for a 1-minute load below {args.quiet_load}",
             "", summary_table(sizes),
             "", "Where the time goes: seconds per stage and phase (after = counters, and for stage 3 "
                 "streaming the answer to stdout)", "", phase_table(sizes),
             "", "Every task's peak RSS, MB (GNU time around each task)", "", task_table(sizes),
             "", "Stage 2 work skew (max / mean over reduce tasks) if run on N task slots: hashed blocks "
                 "dealt in turn (no plan) / mass blocks routed by measured work (--block-plan)", "",
             job_speed.table(("size", *(f"{slots} slots (G)" for slots in TASK_SLOTS)),
                             [skew_row(size) for size in sizes]),
             "", *target_lines(sizes), *answer_lines(sizes), *speed_lines(sizes), *growth_lines(sizes)]
    return "\n".join(lines)


def summary_table(sizes):
    return job_speed.table(
        ("size", "ratings", "users / movies / heaviest user", "W = sum n_u^2", "blocks", "ordered pairs kept",
         "wall s", "1-min load at start", "other CPU s", "peak task RSS MB", "scipy compute s", "exact"),
        [summary_row(size) for size in sizes])


def summary_row(size):
    run = size["run"]
    exact = size.get("exact")
    return (size_label(size), f"{run['ratings']:,}",
            f"{run['users']:,} / {run['movies']:,} / {run['max_user']:,}", f"{run['pair_work']:.3g}",
            size["blocks"], f"{exact['job_pairs']:,}" if exact else "-",
            f"{size['seconds']:.1f}", f"{size['load_before'][0]:.2f}", f"{size['other_cpu_s']:.0f}",
            f"{peak_rss(size) / MB:,.0f}", scipy_cell(size),
            ("yes" if exact["same_set"] and not exact["max_score_diff"] and not exact["co_raters_mismatches"]
             else "NO") if exact else "not checked")


def size_label(size):
    return size["size"] + (f" (sample {size['sample_fraction']})" if size["sample_fraction"] < 1 else "")


def peak_rss(size):
    return max(task["peak_rss_bytes"] for task in size["tasks"])


def scipy_cell(size):
    timing = size.get("reference")
    if not timing:
        return "-"
    return f"{timing['compute_s']:.1f}" + ("" if timing["whole"] else " (by movie ranges)")


def phase_table(sizes):
    rows = []
    for size in sizes:
        for phase in size["phases"]:
            rows.append((size["size"], phase["stage"], *(f"{phase[name]:.1f}" if name in phase else ""
                                                         for name in job_speed.STEP_PHASES),
                         f"{phase['total']:.1f}"))
    return job_speed.table(("size", "stage", *job_speed.STEP_PHASES, "total"), rows)


def task_table(sizes):
    rows = []
    for size in sizes:
        groups = {}
        for task in size["tasks"]:
            groups.setdefault((task["stage"], task["phase"]), []).append(task)
        for (stage, phase), tasks in groups.items():
            rows.append((size["size"], f"{stage} {phase}", len(tasks),
                         ", ".join(f"{task['peak_rss_bytes'] / MB:,.0f}" for task in tasks),
                         f"{max(task['seconds'] for task in tasks):.1f}"))
    return job_speed.table(("size", "stage phase", "tasks", "peak RSS MB of each task", "longest task s"),
                           rows)


def skew_row(size):
    return (size["size"], *(f"{row['hash_dealt']:.2f} / {row['mass_routed']:.2f} ({row['blocks']})"
                            for row in size["planned"]))


def target_lines(sizes):
    """Each target with its figure and whether it is met; a missed time target points at its profile."""
    lines = []
    for size in sizes:
        target = WALL_TARGETS.get(size["size"]) if size["sample_fraction"] == 1 else None
        if target:
            met = size["seconds"] <= target
            lines.append(f"- target {size['size']}-shaped <= {target / 60:.0f} min: {size['seconds']:.0f} s "
                         f"({size['seconds'] / 60:.1f} min): {'met' if met else 'MISSED'}"
                         + ("" if met else "; where the time goes: the phase table above"))
        peak = peak_rss(size)
        lines.append(f"- target every task <= {MEMORY_LIMIT / 1e9:.1f} GB, {size['size']}: largest "
                     f"{peak / MB:,.0f} MB: {'met' if peak <= MEMORY_LIMIT else 'MISSED'}")
    return lines


def answer_lines(sizes):
    lines = []
    for size in sizes:
        if "exact" in size:
            agreement = job_speed.agreement_text(size["exact"])
            lines.append(f"- {size['size']}: job vs scipy reference: {agreement}; "
                         f"{size['exact']['job_pairs']:,} ordered pairs")
        lines.append(f"- {size['size']}: W counted by stage 1 {size['counted_pair_work']:,} "
                     f"(from the data {size['run']['pair_work']:,})")
    return lines


def speed_lines(sizes):
    one = next((size for size in sizes if "scipy" in size), None)
    if not one:
        return []
    scipy_s = one["scipy"]["total_s"]
    ratio = one["seconds"] / scipy_s
    return [f"- 1M-shaped, side by side: job {one['seconds']:.1f} s, scipy {scipy_s:.1f} s (parse "
            f"{one['scipy']['parse_s']:.1f} + compute {one['scipy']['compute_s']:.1f}): {ratio:.2f}x scipy's "
            f"time, one run each (target <= {SCIPY_RATIO_TARGET}x, measured in medians of 3 by "
            "benchmarks/job_speed.py)"]


def growth_lines(sizes):
    full_runs = [(size["run"]["pair_work"], size["seconds"])
                 for size in sizes if size["sample_fraction"] == 1]
    exponent = growth_exponent(full_runs)
    if exponent is None:
        return []
    lines = [f"- Growth: wall time ~ W^{exponent:.2f} (least squares over the full-size runs)"]
    fitted_blocks = sorted({size["blocks"] for size in sizes if size["sample_fraction"] == 1})
    for size in sizes:
        if size["sample_fraction"] < 1:
            lines.append(extrapolation_line(size, exponent, fitted_blocks))
    return lines


def extrapolation_line(size, exponent, fitted_blocks):
    """A user sample's time scaled to the full data: stage 1 as measured (its mappers read every line
    of the input, the sample is drawn there), the rest of the run x (W full / W sample)^exponent."""
    factor = size["full"]["pair_work"] / size["run"]["pair_work"]
    phases = {phase["stage"]: phase["total"] for phase in size["phases"]}
    rest = size["seconds"] - phases[1]
    full = phases[1] + rest * factor ** exponent
    return (f"- {size['size']} extrapolated: stage 1 {phases[1]:.0f} s as measured (it reads the whole input)"
            " "
            f"+ the rest {rest:.0f} s x (W full {size['full']['pair_work']:.3g} / W sample "
            f"{size['run']['pair_work']:.3g})^{exponent:.2f} = {full / 3600:.1f} h on this machine "
            f"(the exponent is from runs on {'/'.join(map(str, fitted_blocks))} movie blocks, this size's "
            f"on {size['blocks']})")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1M,10M,25M", help="comma-separated of 1M, 5M, 10M, 25M")
    parser.add_argument("--sample-fraction", type=float, default=1.0,
                        help="share of users of the 25M-shaped data the job runs on (default 1: all)")
    parser.add_argument("--check-exact", default="1M,5M,10M,25M",
                        help="sizes whose whole answer is checked against the scipy reference (default all)")
    parser.add_argument("--num-cores", type=int, default=2, help="local runner's task slots (default 2)")
    parser.add_argument("--quiet-load", type=float, default=0.7,
                        help="before each timed run, wait for a 1-minute load below this (default 0.7)")
    parser.add_argument("--quiet-wait-minutes", type=float, default=20,
                        help="wait at most this long for it, then run anyway (default 20)")
    parser.add_argument("--data-dir", type=Path, help="keep the generated data here between runs")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON to this path")
    parser.add_argument("--report-from", type=Path, help="print the report of an earlier --json, run nothing")
    args = parser.parse_args(argv)
    args.sizes, args.check_exact = args.sizes.split(","), args.check_exact.split(",")
    args.quiet_wait_s = args.quiet_wait_minutes * 60
    unknown = set(args.sizes) - set(SHAPES)
    if unknown or not 0 < args.sample_fraction <= 1:
        parser.error(f"unknown sizes {sorted(unknown)} or --sample-fraction outside (0, 1]")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.report_from:
        print(report(json.loads(args.report_from.read_text()), args))
        return 0
    results = {"machine": job_speed.machine_facts(), "job": job_speed.job_version(), "sizes": []}
    with tempfile.TemporaryDirectory(prefix="scale-") as work_dir:
        data_root = args.data_dir or Path(work_dir) / "data"
        for name in args.sizes:
            results["sizes"].append(run_size(name, args, Path(work_dir) / name, data_root))
            if args.json:
                args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
            # The job's answer and its temporary files (7 GB and 14 GB for 25M-shaped data) are not kept.
            shutil.rmtree(Path(work_dir) / name)
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

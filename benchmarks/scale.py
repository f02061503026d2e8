"""Time, task memory, stage 2 skew and shuffle of the similarity job on 1M- to 25M-shaped data, here."""
import argparse
import json
import re
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
MEMORY_LIMIT = 1.5e9
COUNTER_LINE = re.compile(r"reporter:counter:([^,]*),([^,]*),(\d+)")


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


def run_size(name, args, work_dir, data_root):
    """One size: the job under the memory wrapper, its figures, and the answer checked if asked."""
    ratings_path, movies_path, ratings = dataset(name, data_root)
    fraction = args.sample_fraction if name == "25M" else 1.0
    sampled = in_sample(ratings, fraction)
    figures = {"size": name, "sample_fraction": fraction, "full": shape_figures(ratings),
               "run": shape_figures(sampled)}
    # Integer ids: the plan's JSON keys are their text, as the job reads them.
    users, movies = sampled["user_id"], sampled["movie_id"]
    log(f"{name}: stage 2 skews planned for {', '.join(map(str, TASK_SLOTS))} task slots")
    figures["planned"] = planned_skews(ratings["user_id"], ratings["movie_id"], figures["full"]["movies"])
    del ratings
    blocks = movie_blocks_for(args.num_cores, figures["full"]["movies"])
    work_dir.mkdir(parents=True)
    write_block_plan(work_dir / "plan.json", users, movies, blocks, args.num_cores)
    job_args = ["--items", str(movies_path), "--movie-blocks", str(blocks), "--block-plan",
                str(work_dir / "plan.json"), "--sample-fraction", repr(fraction)]
    log(f"{name}: job (G={blocks}, {figures['run']['ratings']:,} ratings) with every task under the wrapper")
    wrapper, records = job_speed.write_task_wrapper(work_dir)
    run = job_speed.run_job(job_speed.JOB_SCRIPT, job_args, [ratings_path], work_dir / "run",
                            ["--task-python-bin", str(wrapper), "--num-cores", str(args.num_cores)])
    tasks = [task for task in job_speed.read_task_records(records) if job_speed.JOB_SCRIPT.name in task[4]]
    stage2 = [amount for (group, _), amounts in task_counters(run.job_dir, 2).items()
              if group == "stage 2 work" for amount in amounts]
    figures.update(
        blocks=blocks, seconds=run.seconds, other_cpu_s=run.other_cpu_s, phases=job_speed.phase_seconds(run),
        memory=job_speed.memory_by_stage(tasks), shuffle=job_speed.shuffle_by_stage(run.job_dir),
        counted_pair_work=sum(sum(amounts) for (group, _), amounts in task_counters(run.job_dir, 1).items()
                              if group == "work"),
        local_skew=max(stage2) / (sum(stage2) / len(stage2)) if sum(stage2) else None,
        stage2_work=sum(stage2))
    if name in args.check_exact:
        figures["exact"] = check_exact(sampled, run.output, name)
    if name == "1M":
        log("1M: scipy reference, side by side")
        figures["scipy"] = job_speed.time_reference(ratings_path, 1)[0]
    return figures


def check_exact(ratings, job_output, name):
    """The job's kept pairs and co-rater counts against the scipy reference on the same ratings."""
    log(f"{name}: scipy reference answer for the exactness check")
    stars = ratings["rating"].astype(np.float64)
    as_reference = reference.Ratings(ratings["user_id"].astype(str), ratings["movie_id"].astype(str), stars,
                                     ratings["timestamp"])
    agreement = job_speed.compare_pairs(reference.similar_pairs(as_reference, "cosine", 0.95, 10),
                                        job_speed.read_job_pairs(job_output))
    return agreement


def growth_exponent(points):
    """Least-squares slope of log(seconds) against log(W) over (W, seconds) points."""
    x, y = np.log([w for w, _ in points]), np.log([s for _, s in points])
    return float(np.polyfit(x, y, 1)[0]) if len(points) >= 2 else None


# Report: Markdown tables, pasted into the README as they are.
def report(results, args):
    sizes = results["sizes"]
    full_runs = [(size["run"]["pair_work"], size["seconds"]) for size in sizes
                 if size["sample_fraction"] == 1]
    exponent = growth_exponent(full_runs)
    lines = [f"# Scale benchmark, {results['machine']['date']}",
             f"CPU: {results['machine']['cpu']}, {results['machine']['cores']} cores; local runner, "
             f"--num-cores {args.num_cores}; blocks from movie_blocks_for(slots, movies) with a --block-plan",
             "", job_speed.table(
                 ("size", "ratings run", "users / movies / heaviest user", "W = sum n_u^2", "blocks",
                  "wall s", "other CPU s", "shuffle MB", "peak task RSS MB", "stage 2 skew (local)"),
                 [size_row(size) for size in sizes]),
             "", "Share of each stage in the wall time", "",
             job_speed.table(("size", "start-up", "stage 1", "stage 2", "stage 3"),
                             [share_row(size) for size in sizes]),
             "", "Peak RSS per stage and phase, MB (every task wrapped by GNU time)", "",
             memory_table(sizes),
             "", "Stage 2 work skew (max / mean over reduce tasks) if run on N task slots: hashed blocks "
                 "dealt in turn (no plan) / mass blocks routed by measured work (--block-plan)", "",
             job_speed.table(("size", *(f"{slots} slots (G)" for slots in TASK_SLOTS)),
                             [skew_row(size) for size in sizes])]
    lines += ["", *answer_lines(sizes), *speed_lines(sizes), *growth_lines(sizes, exponent)]
    return "\n".join(lines)


def size_row(size):
    run, stage2 = size["run"], size["stage2_work"]
    peak = max(group["peak_rss_bytes"] for group in size["memory"])
    return (size["size"] + (f" (sample {size['sample_fraction']})" if size["sample_fraction"] < 1 else ""),
            f"{run['ratings']:,}", f"{run['users']:,} / {run['movies']:,} / {run['max_user']:,}",
            f"{run['pair_work']:.3g}", size["blocks"], f"{size['seconds']:.1f}", f"{size['other_cpu_s']:.0f}",
            f"{job_speed.shuffle_total(size['shuffle']) / 1e6:,.0f}", f"{peak / 1e6:,.0f}",
            f"{size['local_skew']:.2f} ({stage2:.3g} work)" if size["local_skew"] else "-")


def share_row(size):
    phases = {phase["stage"]: phase["total"] for phase in size["phases"]}
    total = sum(phases.values())
    return (size["size"], *(f"{phases[stage] / total:.0%} ({phases[stage]:.1f} s)"
                            for stage in ("start-up", 1, 2, 3)))


def memory_table(sizes):
    columns = memory_columns(sizes)
    return job_speed.table(("size", *(f"{stage} {phase}" for stage, phase in columns)),
                           [memory_row(size, columns) for size in sizes])


def memory_columns(sizes):
    return sorted({(group["stage"], group["phase"]) for size in sizes for group in size["memory"]})


def memory_row(size, columns):
    peaks = {(group["stage"], group["phase"]): group["peak_rss_bytes"] for group in size["memory"]}
    return (size["size"], *(f"{peaks[column] / 1e6:,.0f}" if column in peaks else "-" for column in columns))


def skew_row(size):
    return (size["size"], *(f"{row['hash_dealt']:.2f} / {row['mass_routed']:.2f} ({row['blocks']})"
                            for row in size["planned"]))


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
    return [f"- 1M-shaped, side by side: job {one['seconds']:.1f} s, scipy {scipy_s:.1f} s (parse "
            f"{one['scipy']['parse_s']:.1f} + compute {one['scipy']['compute_s']:.1f}): "
            f"{one['seconds'] / scipy_s:.2f}x scipy's time"]


def growth_lines(sizes, exponent):
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
    parser.add_argument("--sizes", default="1M,5M,10M,25M", help="comma-separated of 1M, 5M, 10M, 25M")
    parser.add_argument("--sample-fraction", type=float, default=0.05,
                        help="share of users of the 25M-shaped data the job runs on (default 0.05)")
    parser.add_argument("--check-exact", default="1M,10M",
                        help="sizes whose answer is checked against the scipy reference (default 1M,10M)")
    parser.add_argument("--num-cores", type=int, default=2, help="local runner's task slots (default 2)")
    parser.add_argument("--data-dir", type=Path, help="keep the generated data here between runs")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON to this path")
    parser.add_argument("--report-from", type=Path, help="print the report of an earlier --json, run nothing")
    args = parser.parse_args(argv)
    args.sizes, args.check_exact = args.sizes.split(","), args.check_exact.split(",")
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
    print(report(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

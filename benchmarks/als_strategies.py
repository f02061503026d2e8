"""Seconds per iteration of the als engine's ALS (Spark's, pyspark.ml) on ml-1m-shaped data, here, for several
user and item block counts, with Kryo serialisation on and off, and the training loss of each fit.

The seed study compared three ways of distributing ALS: full broadcast (every worker gets every item
factor), full gridify (the ratings cut into a grid of user x item blocks, each block's partial sums reduced
per user) and half gridify (each block holds all the ratings of a set of users and gets only the item
factors they rated). What Spark's settings can stand for, and what they cannot:

* U x I blocks with U, I > 1: Spark's blocked ALS, half gridify, the engine's solver as it runs;
* U x 1: one item block. Spark still ships each user block only the item factors its users rated (the
  "movie factors shipped" column: their share of a full broadcast's U x movies), but from one task that
  also solves every movie alone. Nearest to full broadcast, not the same: no setting of Spark's ALS sends
  every factor everywhere (that is a broadcast variable, outside its solver);
* 1 x 1: no distribution at all, every factor solved in one task;
* full gridify has no setting: Spark's solver always gathers a user's ratings in one block.

Each (blocks, serialiser) is fitted --repeats times, after one untimed warm-up fit (2 iterations) in each
Spark session; the table gives the medians, and every fit's seconds and the 1-minute load before it are
logged and kept in --json. Seconds per iteration are ALS.fit's seconds over its iterations, the ratings'
blocking included (as the engine's als_seconds_per_iteration). The ratings are read by the engine's own
script (jobs/als_recommender.py: its parsing rules and its estimator with the engine's settings, seed 42).
"""
import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
JOBS = REPO_ROOT / "jobs"
sys.path[:0] = [str(REPO_ROOT / "include"), str(REPO_ROOT)]  # the package, and benchmarks/ and jobs/

from benchmarks.synthetic import PRESETS, generate_ratings, write_ml1m_ratings  # noqa: E402
from jobs import als_recommender as als  # noqa: E402
from movielens_emr.engine.als.job import KRYO_SERIALIZER, SEED  # noqa: E402
from movielens_emr.local.spark_runner import java_runtime  # noqa: E402

SERIALIZERS = {"kryo": KRYO_SERIALIZER, "java": als.JAVA_SERIALIZER}
DEFAULT_LAYOUTS = "1,2,4,8,16,8x1"
# A fresh JVM's first fit is slower (classes loading, code not yet compiled): one short fit first, untimed.
WARM_UP_ITERATIONS = 2
SHAPE_FIELDS = ("users", "movies", "ratings")
NO_SETTING = ("full gridify (the ratings in a user x item grid, partial sums reduced per user): no "
              "setting of Spark's ALS does it, which gathers each user's ratings in one block; not measured")


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- what each setting stands for, and what it ships ---------------------------------------------------
def parse_layouts(text):
    """[(user blocks, item blocks)] from "N" (N x N) or "UxI" items, comma-separated; ValueError if bad."""
    layouts = []
    for item in text.split(","):
        parts = item.strip().lower().split("x")
        if len(parts) not in (1, 2) or not all(part.isdigit() and int(part) >= 1 for part in parts):
            raise ValueError(f"{item!r} is not a block count N or UxI of whole numbers >= 1")
        user_blocks, item_blocks = int(parts[0]), int(parts[-1])
        layouts.append((user_blocks, item_blocks))
    if len(set(layouts)) != len(layouts):
        raise ValueError(f"block counts repeated in {text!r}")
    return layouts


def strategy(user_blocks, item_blocks):
    """Which of the seed study's strategies the block counts stand for, in Spark's ALS."""
    if user_blocks == 1 and item_blocks == 1:
        return "one block: no distribution"
    if item_blocks == 1:
        return "one item block (nearest to full broadcast)"
    if user_blocks == 1:
        return "one user block"
    return "blocked: half gridify"


def shipped_factors(users, movies, blocks):
    """(factors shipped, a full broadcast's): the movie factors Spark's ALS sends to `blocks` user blocks
    each iteration, one per movie rated in a block (its partitioner puts user u in block u mod blocks,
    whatever the item blocks), and blocks x movies, what sending every factor to every block would."""
    block = np.asarray(users, dtype=np.int64) % blocks
    movie = np.asarray(movies, dtype=np.int64)
    pairs = np.unique(block * (int(movie.max()) + 1) + movie).size
    return int(pairs), int(blocks * np.unique(movie).size)


# --- the fits -------------------------------------------------------------------------------------------
def als_options(args, user_blocks, item_blocks):
    """The script's own options: the engine's estimator with these hyperparameters and blocks."""
    return als.argument_parser().parse_args([
        "--ratings", "unused", "--output", "unused", "--rank", str(args.rank),
        "--max-iter", str(args.max_iter), "--reg-param", repr(args.reg_param), "--alpha", repr(args.alpha),
        "--user-blocks", str(user_blocks), "--item-blocks", str(item_blocks), "--seed", str(SEED)])


def spark_session(serializer, cores, work_dir):
    """A new local Spark session with this serializer (the JVM's serializer checked: a session left over
    in this process would keep its own), Python workers able to import the script and its kernel."""
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master(f"local[{cores}]").appName(f"als-strategies-{serializer}")
               .config("spark.serializer", SERIALIZERS[serializer]).config("spark.driver.memory", "2g")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", str(cores))
               .config("spark.local.dir", str(work_dir / "spark-tmp"))
               .config("spark.pyspark.python", sys.executable)
               .config("spark.executorEnv.PYTHONPATH", os.pathsep.join([str(REPO_ROOT), str(JOBS)]))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    in_use = session.sparkContext._jvm.org.apache.spark.SparkEnv.get().serializer().getClass().getName()
    if in_use != SERIALIZERS[serializer]:
        session.stop()
        raise RuntimeError(f"the Spark session runs {in_use}, not {SERIALIZERS[serializer]}")
    # as the script: ALS checkpoints its factors every 10 iterations where a checkpoint folder is set
    session.sparkContext.setCheckpointDir(str(work_dir / "checkpoints"))
    return session


def timed_fits(ratings, options, repeats, label):
    """[{"seconds", "seconds_per_iteration", "load_before"}] of `repeats` fits, and the last fit's model."""
    fits, model = [], None
    for repeat in range(1, repeats + 1):
        load = os.getloadavg()[0]
        if model is not None:
            model.userFactors.unpersist()
            model.itemFactors.unpersist()
        model, seconds = als.fit(ratings, options)
        per_iteration = seconds / options.max_iter
        fits.append({"seconds": round(seconds, 3), "seconds_per_iteration": round(per_iteration, 4),
                     "load_before": round(load, 2)})
        log(f"{label}: fit {repeat}/{repeats} {seconds:.2f} s ({per_iteration:.3f} s/iteration); "
            f"1-minute load before it {load:.2f}")
    return fits, model


def measure_serializer(serializer, args, ratings_path, layouts, work_dir):
    """{(user blocks, item blocks): figures} of every layout in one Spark session with this serializer."""
    spark = spark_session(serializer, args.cores, work_dir)
    try:
        ratings, figures = als.read_ratings(spark, [str(ratings_path)], 1.0, 0.0)
        log(f"{serializer}: read {figures['ratings_read']:,} ratings; warm-up fit (untimed)")
        als.fit(ratings, als_options(args, *layouts[0]), max_iter=WARM_UP_ITERATIONS)
        results = {}
        for layout in layouts:
            options = als_options(args, *layout)
            fits, model = timed_fits(ratings, options, args.repeats, f"{serializer} {layout[0]}x{layout[1]}")
            seconds = [fit["seconds_per_iteration"] for fit in fits]
            results[layout] = {"fits": fits, "median_seconds_per_iteration": statistics.median(seconds),
                               "training_loss": als.training_loss(model, ratings, args.alpha, args.reg_param)}
        return results, {"spark_version": spark.version, "ratings": figures["ratings_read"]}
    finally:
        spark.stop()


# --- the report -------------------------------------------------------------------------------------------
def rows(layouts, by_serializer, shipped):
    """One row per layout: its strategy, each serializer's median seconds per iteration and training loss,
    and the item factors it ships."""
    table = []
    for layout in layouts:
        row = {"user_blocks": layout[0], "item_blocks": layout[1], "strategy": strategy(*layout),
               "shipped": shipped[layout[0]][0], "broadcast": shipped[layout[0]][1]}
        for serializer, results in by_serializer.items():
            row[serializer] = {key: results[layout][key]
                               for key in ("median_seconds_per_iteration", "training_loss", "fits")}
        table.append(row)
    return table


def markdown_table(table, serializers):
    """The rows as Markdown: seconds per iteration side by side, the Kryo/Java ratio when both ran."""
    both = set(serializers) == set(SERIALIZERS)
    header = ["blocks (users x movies)", "stands for",
              *(f"s/iteration, {name.capitalize()}" for name in serializers),
              *(["Kryo / Java"] if both else []),
              *(f"training loss, {name.capitalize()}" for name in serializers), "movie factors shipped"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in table:
        cells = [f"{row['user_blocks']} x {row['item_blocks']}", row["strategy"],
                 *(f"{row[name]['median_seconds_per_iteration']:.3f}" for name in serializers)]
        if both:
            ratio = row["kryo"]["median_seconds_per_iteration"] / row["java"]["median_seconds_per_iteration"]
            cells.append(f"{ratio:.2f}")
        cells += [f"{row[name]['training_loss']:,.1f}" for name in serializers]
        cells.append(f"{row['shipped']:,} ({row['shipped'] / row['broadcast']:.0%} of a broadcast)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loss_spread(table, serializers):
    """The largest relative difference between any two fits' training losses."""
    losses = [row[name]["training_loss"] for row in table for name in serializers]
    return (max(losses) - min(losses)) / min(losses)


def report(result):
    setup, table, serializers = result["setup"], result["rows"], result["serializers"]
    lines = [
        f"ALS on {setup['ratings']:,} ml-1m-shaped ratings ({setup['users']:,} users, {setup['movies']:,} "
        f"movies; benchmarks/synthetic.py, seed {setup['data_seed']}): rank {setup['rank']}, "
        f"{setup['max_iter']} iterations, reg_param {setup['reg_param']}, alpha {setup['alpha']}, "
        f"Spark {setup['spark_version']} local[{setup['cores']}], Java {setup['java']}; median of "
        f"{setup['repeats']} fits each, after an untimed warm-up fit per session",
        f"machine: {setup['cpu']}, {setup['cpu_count']} CPUs, {setup['platform']}; {setup['date']}", "",
        markdown_table(table, serializers), "",
        f"training losses differ by at most {loss_spread(table, serializers):.2e} (relative) across every "
        "block count and serialiser",
        f"not measurable with Spark's ALS: {NO_SETTING}",
        "1-minute load before each fit (in order of the repeats):"]
    for row in table:
        for name in serializers:
            loads = ", ".join(f"{fit['load_before']:.2f}" for fit in row[name]["fits"])
            fits = ", ".join(f"{fit['seconds']:.1f}" for fit in row[name]["fits"])
            layout = f"{row['user_blocks']} x {row['item_blocks']}"
            lines.append(f"  {layout} {name}: fits {fits} s; loads {loads}")
    return "\n".join(lines) + "\n"


def machine_facts():
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "java": java_runtime()[1], "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


# --- the run ----------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", default=DEFAULT_LAYOUTS,
                        help=f"block counts, N (N x N) or UxI, comma-separated (default {DEFAULT_LAYOUTS})")
    parser.add_argument("--serializers", default="kryo,java",
                        help="kryo, java or both, comma-separated (default both)")
    parser.add_argument("--repeats", type=als.positive_int, default=3, help="timed fits of each (default 3)")
    parser.add_argument("--cores", type=als.positive_int, default=2, help="Spark's local cores (default 2)")
    parser.add_argument("--rank", type=als.positive_int, default=10, help="as the engine (default 10)")
    parser.add_argument("--max-iter", type=als.positive_int, default=5,
                        help="iterations of each fit (default 5, to keep the whole run near 10 minutes; the "
                             "engine's default is 10)")
    parser.add_argument("--reg-param", type=als.finite_float(0, 1e6), default=0.1, help="(default 0.1)")
    parser.add_argument("--alpha", type=als.finite_float(0, 1e6), default=1.0, help="(default 1)")
    for field in SHAPE_FIELDS:
        parser.add_argument(f"--{field}", type=als.positive_int,
                            help=f"synthetic {field} (default ml-1m's, {getattr(PRESETS['ml-1m'], field):,})")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON to this path")
    args = parser.parse_args(argv)
    try:
        args.layouts = parse_layouts(args.blocks)
        args.shape = dataclasses.replace(PRESETS["ml-1m"], **{
            field: getattr(args, field) for field in SHAPE_FIELDS if getattr(args, field)})
    except ValueError as error:
        parser.error(str(error))
    args.serializer_names = [name.strip() for name in args.serializers.split(",")]
    unknown = sorted(set(args.serializer_names) - set(SERIALIZERS))
    if unknown or len(set(args.serializer_names)) != len(args.serializer_names):
        parser.error(f"--serializers: each of {', '.join(SERIALIZERS)} at most once, "
                     f"got {args.serializers!r}")
    return args


def run(args, work_dir):
    """Every figure: the setup, the rows of the table, and the serializers run."""
    ratings = generate_ratings(args.shape)
    ratings_path = work_dir / "ratings.dat"
    write_ml1m_ratings(ratings_path, args.shape, ratings)
    shipped = {user_blocks: shipped_factors(ratings["user_id"], ratings["movie_id"], user_blocks)
               for user_blocks in {layout[0] for layout in args.layouts}}
    by_serializer, spark_facts = {}, {}
    for serializer in args.serializer_names:
        by_serializer[serializer], spark_facts = measure_serializer(
            serializer, args, ratings_path, args.layouts, work_dir / serializer)
    setup = {**machine_facts(), **spark_facts, "users": args.shape.users, "movies": args.shape.movies,
             "data_seed": args.shape.seed, "rank": args.rank, "max_iter": args.max_iter,
             "reg_param": args.reg_param, "alpha": args.alpha, "cores": args.cores, "repeats": args.repeats}
    return {"setup": setup, "serializers": args.serializer_names,
            "rows": rows(args.layouts, by_serializer, shipped)}


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="als-strategies-") as work_dir:
        result = run(args, Path(work_dir))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(report(result), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of one stage 2 reduce task at the largest block the pipeline allows, here.

Stage 2's reducer memory grows with B, the movies of a block pair's larger block, not with the
number of ratings: its sums are B x B per statistic. The pipeline caps B at MAX_BLOCK_MOVIES
(movielens_emr.engine.similarity.job), so a task at the cap is the worst any dataset can give it,
ml-25m included,
whose full run this machine cannot finish. This runs the job's own stage 2 reducer, as Hadoop
streaming runs it (one process, the block pair's user rows on stdin), on one off-diagonal block
pair of B movies on each side, under GNU time, for each metric asked: users rate movies spread
over both blocks, so every movie of both blocks is seen and the sums reach B x B, and one user has
rated every movie of both blocks (r = 2B, the bound's largest user row). Each user gives all their
movies one rating, so every pair with enough co-raters scores 1 and is kept, for cosine and pearson
alike: the most neighbours a block pair can hold waiting to be written.
"""
import argparse
import random
import subprocess
import sys
import tempfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))

import job_speed  # noqa: E402  (also puts include/ on sys.path)

from movielens_emr.engine.similarity.job import MAX_BLOCK_MOVIES  # noqa: E402

STATS = {"cosine": 4, "pearson": 6, "jaccard": 1}
USER_CHUNK = 1024
TASK_LIMIT_BYTES = 1.5e9
RATING_LETTERS = "abcdefghij"  # the job's doubled half stars 1..10


def block_pair_rows(movies_per_block, users, ratings_per_block, seed=11):
    """The user rows of block pair (0, 1), in the form stage 2's mapper writes them:
    'movies_a|letters_a|movies_b|letters_b'.

    Block 0 holds movies 1..B and block 1 movies B+1..2B; user 0 rated all of them. Each user rates
    all their movies alike.
    """
    chooser = random.Random(seed)
    block_a = [str(movie) for movie in range(1, movies_per_block + 1)]
    block_b = [str(movie) for movie in range(movies_per_block + 1, 2 * movies_per_block + 1)]
    for user in range(users):
        side_a = block_a if user == 0 else chooser.sample(block_a, ratings_per_block)
        side_b = block_b if user == 0 else chooser.sample(block_b, ratings_per_block)
        letter = chooser.choice(RATING_LETTERS)  # one rating for all the user's movies
        letters_a, letters_b = letter * len(side_a), letter * len(side_b)
        yield f"{' '.join(side_a)}|{letters_a}|{' '.join(side_b)}|{letters_b}"


def run_reducer(metric, input_path, work_dir):
    """(peak RSS bytes, seconds, kept ordered pairs) of the job's stage 2 reducer on input_path."""
    record = work_dir / f"{metric}.time"
    command = ["/usr/bin/time", "-f", "%M %e", "-o", str(record), sys.executable, str(job_speed.JOB_SCRIPT),
               "--step-num=1", "--reducer", "--metric", metric, "--movie-blocks", "2",
               "--user-chunk", str(USER_CHUNK)]
    output = work_dir / f"{metric}.out"
    with open(input_path, "rb") as stdin, open(output, "wb") as stdout:
        finished = subprocess.run(command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
    if finished.returncode:
        raise RuntimeError(f"the stage 2 reducer failed:\n{finished.stderr.decode(errors='replace')[-2000:]}")
    kilobytes, seconds = record.read_text().split()
    with open(output, "rb") as lines:  # one line per movie and batch: count the entries, the kept pairs
        kept = sum(line.count(b";") + 1 for line in lines)
    output.unlink()
    return int(kilobytes) * 1024, float(seconds), kept


def bound_bytes(formula, movies_per_block, metric):
    sizes = {"B": movies_per_block, "C": USER_CHUNK, "S": STATS[metric], "r": 2 * movies_per_block}
    return job_speed.evaluate_bound(formula, sizes)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--movies-per-block", type=int, default=MAX_BLOCK_MOVIES,
                        help=f"B (default the pipeline's cap, {MAX_BLOCK_MOVIES})")
    parser.add_argument("--users", type=int, default=4 * USER_CHUNK, help="user rows of the block pair")
    parser.add_argument("--ratings-per-block", type=int, default=300,
                        help="each user's movies in each block (default 300: about 47 co-raters a pair)")
    parser.add_argument("--metrics", default="cosine,pearson",
                        help="comma-separated of cosine, pearson, jaccard")
    args = parser.parse_args(argv)
    args.metrics = args.metrics.split(",")
    if set(args.metrics) - set(STATS):
        parser.error(f"unknown metrics {sorted(set(args.metrics) - set(STATS))}")
    return args


def main(argv=None):
    args = parse_args(argv)
    formula = job_speed.stage2_bound_formula()
    idle = job_speed.idle_interpreter_rss()
    rows = []
    with tempfile.TemporaryDirectory(prefix="block-cap-") as folder:
        work_dir = Path(folder)
        input_path = work_dir / "stage2-reducer-input"
        with open(input_path, "w") as stream:
            for row in block_pair_rows(args.movies_per_block, args.users, args.ratings_per_block):
                stream.write(f"0,1\t{row}\n")
        for metric in args.metrics:
            job_speed.log(f"stage 2 reducer, {metric}, B={args.movies_per_block}, {args.users} users")
            peak, seconds, pairs = run_reducer(metric, input_path, work_dir)
            bound = bound_bytes(formula, args.movies_per_block, metric)
            rows.append((metric, f"{bound / 1e6:,.0f} + idle {idle / 1e6:.0f} = {(bound + idle) / 1e6:,.0f}",
                         f"{peak / 1e6:,.0f}", "yes" if peak <= TASK_LIMIT_BYTES else "NO", f"{seconds:.1f}",
                         f"{pairs:,}"))
    print(f"# Stage 2 reduce task at B = {args.movies_per_block} movies per block "
          f"({args.users:,} users, {args.ratings_per_block} ratings per block each, one user rating all "
          f"{2 * args.movies_per_block:,}; C = {USER_CHUNK})")
    print(f"Bound from the job's docstring: {formula} bytes beyond the interpreter\n")
    print(job_speed.table(("metric", "bound MB", "peak RSS MB", "<= 1.5 GB", "seconds", "ordered pairs kept"),
                          rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

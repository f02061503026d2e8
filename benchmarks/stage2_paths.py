"""Seconds of the stage 2 reducer's two paths, and of its choice between them, on users of each density."""
import argparse
import os
import sys
import time
from pathlib import Path

# One BLAS thread, as the job's tasks have (set before numpy starts its thread pool).
for _blas_threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_threads, "1")

import numpy as np  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCHMARKS), str(BENCHMARKS.parent / "jobs")]

import job_speed  # noqa: E402
import similarity_kernel as kernel  # noqa: E402  (the kernel as the job imports it, from jobs/)

# (name, movies a block, ratings a user rates in a block on average): a block pair of the scale
# benchmark's shapes, ml-1m's 4 blocks of 927 movies to ml-25m's 22 blocks of 2,684.
SHAPES = (("1M-shaped", 927, 41.0), ("10M-shaped", 2670, 35.0), ("25M-shaped", 2684, 4.5))
# Users' activity is log-normal (sigma 1.2, as the synthetic data's), so a few heavy raters hold most pairs.
ACTIVITY_SIGMA = 1.2


def chunk_rows(rng, users, movies, mean_ratings):
    """User rows of an off-diagonal block pair: each side a log-normal number of movies, ratings 1..10."""
    spread = rng.lognormal(np.log(mean_ratings) - ACTIVITY_SIGMA**2 / 2, ACTIVITY_SIGMA, (users, 2))
    counts = np.minimum(movies, spread.astype(int) + 1)
    rows = []
    for count_a, count_b in counts.tolist():
        sides = []
        for offset, count in ((0, count_a), (movies, count_b)):
            rated = rng.choice(movies, count, replace=False) + offset
            ratings = rng.integers(1, 11, count)
            letters = "".join(chr(kernel.RATING_LETTER_BASE + rating) for rating in ratings)
            sides.append(" ".join(map(str, rated.tolist())) + "|" + letters)
        rows.append("|".join(sides))
    return rows


def timed(rows, path, chunk_users):
    """Best of two: seconds to sum the rows by `path` (None: each row by its density)."""
    best = float("inf")
    for _ in range(2):
        accumulator = kernel.BlockAccumulator(kernel.METRIC_STATS["cosine"], diagonal=False, path=path)
        started = time.perf_counter()
        accumulator.add_user_rows(iter(rows), chunk_users)
        best = min(best, time.perf_counter() - started)
    return best, accumulator


def measure(name, movies, mean_ratings, args, seed):
    users = args.chunks * args.user_chunk
    rows = chunk_rows(np.random.default_rng(seed), users, movies, mean_ratings)
    seconds = {path: timed(rows, path, args.user_chunk) for path in ("dense", "sparse", None)}
    sums = {path: accumulator.unpacked_sums() for path, (_, accumulator) in seconds.items()}
    same = all(np.array_equal(sums[path][stat], sums["dense"][stat])
               for path in ("sparse", None) for stat in sums["dense"])
    pairs = sum(len(a.split(" ")) * len(b.split(" ")) for a, _, b, _ in (row.split("|") for row in rows))
    return (name, f"{users:,}", f"{movies:,}", f"{mean_ratings:g}", f"{pairs:,}",
            f"{pairs / (users * movies * movies):.2e}",
            *(f"{seconds[path][0]:.3f}" for path in ("dense", "sparse", None)), "yes" if same else "NO")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user-chunk", type=int, default=1024, help="users a chunk (default 1024)")
    parser.add_argument("--chunks", type=int, default=8, help="chunks of users a block pair (default 8)")
    args = parser.parse_args(argv)
    rows = [measure(name, movies, mean, args, seed) for seed, (name, movies, mean) in enumerate(SHAPES)]
    print(f"# Stage 2 paths on {args.chunks} chunks of {args.user_chunk:,} users of one block pair, cosine, "
          f"best of 2 (numpy {np.__version__}, one BLAS thread; DENSE_ROW_SHARE {kernel.DENSE_ROW_SHARE})")
    print(job_speed.table(("block pair like", "users", "movies a block", "mean ratings a block",
                           "co-rated pairs", "pairs / (users x cells)", "dense s", "sparse s", "by density s",
                           "same sums"), rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

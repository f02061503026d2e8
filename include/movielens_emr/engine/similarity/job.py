"""The similarity engine's job: the MRJob of jobs/ and its kernel, its options for one run, its counters.

Its stage 2 block plan (blocks, routes, their measured work) is block_plan.py's."""
import math
import sys
from pathlib import Path

from movielens_emr.engine.mrjob_jobs import load_job_class

JOB_FILE = Path(__file__).resolve().parents[4] / "jobs" / "movie_similarities.py"
JOB_CLASS = "MRMovieSimilarities"
# The module the job file imports from its own folder (its rules and math): shipped beside it.
KERNEL_FILE = JOB_FILE.parent / "similarity_kernel.py"
STAGE_NAMES = (
    "group ratings by user", "pair statistics and similarity", "both directions, titles and ranking")
# The stage whose tasks read a --block-plan (each user's ratings split into the plan's blocks).
PLAN_STAGE = 2
# A stage 2 reducer holds 12.5*(S+2)*B^2 bytes of sums for B movies a block (the job's docstring):
# 2,800 movies keep Pearson's (S=6) under 0.8 GB, a whole task under 1.5 GB with its chunk.
MAX_BLOCK_MOVIES = 2_800
# The job's counters (flattened "group: name") of W = sum over users of n_u^2, and of each
# stage 2 reduce task's work (sum over its block pairs and users of n_a * n_b).
PAIR_WORK_COUNTER = "work: pair work sum n_u^2"
TASK_WORK_PREFIX = "stage 2 work: reduce task "


def job_class():
    """The MRJob class, imported from its file (mrjob_jobs.load_job_class)."""
    return load_job_class(JOB_FILE, JOB_CLASS)


def job_args(config, movie_blocks):
    """The job's own options for a run's parameters (no runner options, no inputs, no files).

    movie_blocks is raised, if need be, to the fewest that keep the dataset's blocks within
    MAX_BLOCK_MOVIES, so no stage 2 task outgrows its memory bound.
    """
    movie_blocks = run_movie_blocks(config, movie_blocks)
    return [
        "--metric", config.metric,
        "--min-score", repr(config.min_score),
        "--min-co-ratings", str(config.min_co_ratings),
        "--sample-fraction", repr(config.sample_fraction),
        "--movie-blocks", str(movie_blocks),
    ]


# The job's sums per movie pair by metric (S in its docstring's memory bound), its default --user-chunk,
# and what the interpreter with numpy takes before the bound's first byte.
SUMS_PER_PAIR = {"cosine": 4, "pearson": 6, "jaccard": 1}
USER_CHUNK = 1024
INTERPRETER_MB = 100


def run_movie_blocks(config, movie_blocks):
    """The blocks a run's job uses: movie_blocks, raised to keep each within MAX_BLOCK_MOVIES movies."""
    from movielens_emr.data.datasets import get_dataset
    return max(movie_blocks, math.ceil(get_dataset(config.dataset).movies / MAX_BLOCK_MOVIES))


def stage2_reducer_bytes(metric, block_movies, user_chunk=USER_CHUNK):
    """The job's documented peak of a stage 2 reduce task beyond the interpreter (jobs/movie_similarities.py):
    sums, a chunk's dense matrices, a slice being scored, a chunk of users' ratings (at most 2B a user),
    the kept neighbours waiting to be written."""
    sums, b, c = SUMS_PER_PAIR[metric], block_movies, user_chunk
    return (12.5 * (sums + 2) * b * b + 20 * c * b + 8 * (sums + 5) * 256 * b + 64 * c * 2 * b
            + 100 * (256 * b + 200_000))


def work_metrics(counters):
    """W and stage 2's work skew (max / mean over its reduce tasks, idle ones included) from the
    flattened counters; None where the run did not report them."""
    task_work = [amount for name, amount in counters.items() if name.startswith(TASK_WORK_PREFIX)]
    mean = sum(task_work) / len(task_work) if task_work else 0
    return {"pair_work": counters.get(PAIR_WORK_COUNTER),
            "stage2_reduce_tasks": len(task_work) or None,
            "stage2_work_skew": round(max(task_work) / mean, 3) if mean else None}


def job_kernel():
    """The job's kernel module, the one the job file imported (by its name, from the job's folder, which
    load_job_class puts on sys.path): its parsing rules and routes, for the pipeline to apply alike."""
    job_class()
    return sys.modules[KERNEL_FILE.stem]

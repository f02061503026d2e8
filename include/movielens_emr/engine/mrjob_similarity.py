"""The similarity job of jobs/, loaded as a class, its arguments for one run, and its stage 2 plan."""
import functools
import heapq
import importlib.util
import json
import math
import sys
import zlib
from pathlib import Path

JOB_FILE = Path(__file__).resolve().parents[3] / "jobs" / "movie_similarities.py"
JOB_CLASS = "MRMovieSimilarities"
# A stage 2 reducer holds 12.5*(S+2)*B^2 bytes of sums for B movies a block (the job's docstring):
# 2,800 movies keep Pearson's (S=6) under 0.8 GB, a whole task under 1.5 GB with its chunk.
MAX_BLOCK_MOVIES = 2_800
# Equal-weight block pairs dealt onto task slots: the most any task gets over the mean, at most.
TARGET_DEALT_SKEW = 1.15
# The job's counters (flattened "group: name") of W = sum over users of n_u^2, and of each
# stage 2 reduce task's work (sum over its block pairs and users of n_a * n_b).
PAIR_WORK_COUNTER = "work: pair work sum n_u^2"
TASK_WORK_PREFIX = "stage 2 work: reduce task "


@functools.cache
def job_class():
    """The MRJob class, imported from its file: jobs/ stands alone and is not a package."""
    spec = importlib.util.spec_from_file_location("movie_similarities", JOB_FILE)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it: mrjob finds the script to run tasks from through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, JOB_CLASS)


def job_args(config, movie_blocks, items_path):
    """The job's own options for a run's parameters (no runner options, no inputs).

    movie_blocks is raised, if need be, to the fewest that keep the dataset's blocks within
    MAX_BLOCK_MOVIES, so no stage 2 task outgrows its memory bound.
    """
    from movielens_emr.data.datasets import get_dataset
    movie_blocks = max(movie_blocks, math.ceil(get_dataset(config.dataset).movies / MAX_BLOCK_MOVIES))
    return [
        "--metric", config.metric,
        "--min-score", repr(config.min_score),
        "--min-co-ratings", str(config.min_co_ratings),
        "--sample-fraction", repr(config.sample_fraction),
        "--movie-blocks", str(movie_blocks),
        "--items", str(items_path),
    ]


def movie_blocks_for(task_slots, movies=0, minimum=4):
    """The fewest blocks G >= minimum with at most MAX_BLOCK_MOVIES movies a block, whose G*(G+1)/2
    block pairs deal onto task_slots with a skew of at most TARGET_DEALT_SKEW."""
    blocks = max(minimum, math.ceil(movies / MAX_BLOCK_MOVIES))
    while dealt_skew(blocks * (blocks + 1) // 2, task_slots) > TARGET_DEALT_SKEW:
        blocks += 1
    return blocks


def dealt_skew(pairs, task_slots):
    """Max over mean work of `pairs` equal-weight block pairs dealt in turn onto task_slots tasks."""
    return math.ceil(pairs / task_slots) / (pairs / task_slots)


def work_metrics(counters):
    """W and stage 2's work skew (max / mean over its reduce tasks, idle ones included) from the
    flattened counters; None where the run did not report them."""
    task_work = [amount for name, amount in counters.items() if name.startswith(TASK_WORK_PREFIX)]
    mean = sum(task_work) / len(task_work) if task_work else 0
    return {"pair_work": counters.get(PAIR_WORK_COUNTER),
            "stage2_reduce_tasks": len(task_work) or None,
            "stage2_work_skew": round(max(task_work) / mean, 3) if mean else None}


# The plan: with every user's ratings at hand (numpy arrays of ids), blocks of equal movie
# counts and near-equal rating mass, and block pairs routed onto reduce tasks by their work.
def mass_blocks(movie_ids, movie_blocks):
    """{movie: block}: movies by rating count, most rated first, dealt in a snake (0..G-1, G-1..0)."""
    import numpy as np
    movies, counts = np.unique(movie_ids, return_counts=True)
    return dict(zip(movies.tolist(), snake_blocks(counts, movie_blocks).tolist(), strict=True))


def snake_blocks(counts, movie_blocks):
    """The block of each movie (counts: its ratings, movies in id order): mass_blocks' deal, as an array."""
    import numpy as np
    order = np.argsort(-counts, kind="stable")
    lap, place = np.divmod(np.arange(order.size), movie_blocks)
    blocks = np.empty(order.size, dtype=np.int64)
    blocks[order] = np.where(lap % 2 == 0, place, movie_blocks - 1 - place)
    return blocks


def job_module():
    """The job file's module: its parsing rules and routes, for the pipeline to apply the same ones."""
    return sys.modules[job_class().__module__]


def dealt_routes_for(movie_blocks, reduce_tasks):
    """The job's routes without a plan: its block pairs dealt onto the reduce tasks in turn."""
    return job_module().dealt_routes(movie_blocks, reduce_tasks)


def hash_blocks(movie_ids, movie_blocks):
    """{movie: block} as the job assigns movies a plan lacks: crc32 of the id."""
    import numpy as np
    return {movie: zlib.crc32(movie.encode()) % movie_blocks for movie in np.unique(movie_ids).tolist()}


def block_pair_work(user_ids, movie_ids, block_of, movie_blocks):
    """{"a,b": sum over users of n_a * n_b} for a <= b: the work stage 2 counts per block pair
    (a diagonal pair only counts users with two or more movies in its block)."""
    import numpy as np
    _, users = np.unique(user_ids, return_inverse=True)
    movies, movie_index = np.unique(movie_ids, return_inverse=True)
    blocks = np.array([block_of[movie] for movie in movies.tolist()], dtype=np.int64)[movie_index]
    return pair_work_of(user_block_work(users, blocks, movie_blocks))


def user_block_work(users, blocks, movie_blocks):
    """The G x G matrix of sum over users of n_a * n_b, from each rating's user index (0..U-1) and block."""
    import numpy as np
    cells = (users.max(initial=-1) + 1) * movie_blocks
    per_user = np.bincount(users * movie_blocks + blocks, minlength=cells).reshape(-1, movie_blocks)
    per_user = per_user.astype(np.float64)
    work = per_user.T @ per_user
    # A user with one movie in a block sends no row to that block's diagonal pair.
    work[np.diag_indices(movie_blocks)] -= (per_user == 1).sum(axis=0)
    return work


def pair_work_of(work):
    """{"a,b": work} for a <= b of a G x G work matrix."""
    blocks = len(work)
    return {f"{a},{b}": int(work[a, b]) for a in range(blocks) for b in range(a, blocks)}


def balanced_routes(pair_work, reduce_tasks):
    """{"a,b": task}: heaviest block pair first onto the least loaded task (LPT)."""
    loads = [(0, task) for task in range(reduce_tasks)]
    routes = {}
    for pair, work in sorted(pair_work.items(), key=lambda item: (-item[1], item[0])):
        load, task = heapq.heappop(loads)
        routes[pair] = task
        heapq.heappush(loads, (load + work, task))
    return routes


def routed_skew(pair_work, routes, reduce_tasks):
    """Max over mean of the work the routes give each of reduce_tasks tasks."""
    loads = [0] * reduce_tasks
    for pair, work in pair_work.items():
        loads[routes[pair]] += work
    return max(loads) / (sum(loads) / reduce_tasks) if sum(loads) else 1.0


def block_plan(user_ids, movie_ids, movie_blocks, reduce_tasks):
    """The job's --block-plan for these ratings: mass-balanced blocks, work-balanced routes."""
    block_of = mass_blocks(movie_ids, movie_blocks)
    pair_work = block_pair_work(user_ids, movie_ids, block_of, movie_blocks)
    return plan_of(block_of, pair_work, movie_blocks, reduce_tasks)


def plan_of(block_of, pair_work, movie_blocks, reduce_tasks):
    """The plan as the job reads it, its block pairs routed by their work."""
    return {"movie_blocks": movie_blocks, "reduce_tasks": reduce_tasks, "blocks": block_of,
            "routes": balanced_routes(pair_work, reduce_tasks), "pair_work": pair_work}


def planned_skew(plan):
    """The work skew (max / mean over reduce tasks) the plan's routes give its measured block pairs."""
    return routed_skew(plan["pair_work"], plan["routes"], plan["reduce_tasks"])


def write_block_plan(path, user_ids, movie_ids, movie_blocks, reduce_tasks):
    """block_plan written as the job reads it; returns the plan."""
    plan = block_plan(user_ids, movie_ids, movie_blocks, reduce_tasks)
    Path(path).write_text(json.dumps(plan), encoding="utf-8")
    return plan

"""A run's stage 2 block plan, measured on its own ratings files in bounded memory.

Memory: the kept (user, movie) pairs as one sorted int64 array, 8 bytes a rating (200 MB for
ml-25m's 25M ratings), plus the temporaries of one chunk of text being parsed (CHUNK_BYTES of
lines) or of one slice of ratings being counted (SLICE_RATINGS), and tables of the distinct
movies and of the G x G block pair work: under 100 MB together. Measured on ml-25m-shaped data
(25,000,095 ratings, 59,047 movies): 290 MB beyond the interpreter, 130 MB for a 10% sample.
"""
import heapq
import json
import logging
import math
import re
import time
import zlib
from pathlib import Path

import numpy as np

from movielens_emr.config.targets import target_named
from movielens_emr.data.datasets import get_dataset
from movielens_emr.engine.similarity.job import MAX_BLOCK_MOVIES, job_kernel

log = logging.getLogger(__name__)
BLOCK_PLAN_FILE = "block_plan.json"
# Equal-weight block pairs dealt onto task slots: the most any task gets over the mean, at most.
TARGET_DEALT_SKEW = 1.15
# The local target's blocks (mrjob's local runner cuts its reducers' input into byte ranges, so
# the blocks' count need not follow the task slots), raised for large datasets as job_args does.
LOCAL_MOVIE_BLOCKS = 4
CHUNK_BYTES = 1 << 22
SLICE_RATINGS = 1 << 20
# A key is user << 32 | movie: ids of up to 9 digits (below 2**31) fit, as every MovieLens id does.
ID_DIGITS = 9
MOVIE_BITS = 32
MOVIE_MASK = (1 << MOVIE_BITS) - 1
# A ratings line as MovieLens writes it, which the job reads as these ids: no header, no space,
# a rating in half stars (3, 3.5, 3.0), one of the job's separators. Any other line is read by
# the job's own parse_rating_line.
PLAIN_LINE = re.compile(
    rb"^\d{1,%d}(::|\t|,)\d{1,%d}\1(?:0\.5|[1-4](?:\.[05])?|5(?:\.0)?)\1\d+\r?$" % (ID_DIGITS, ID_DIGITS),
    re.MULTILINE)
# A plain line is four runs of these bytes (ids, rating, timestamp) between separators.
FIELD_BYTES = np.zeros(256, dtype=bool)
FIELD_BYTES[list(b"0123456789.")] = True


class BlockPlanUnavailable(ValueError):
    """Ratings from which no plan can be made (ids too long for the plan's keys)."""


def stage2_layout(config):
    """(movie blocks, stage 2 reduce tasks) of a run: where the reducers get the keys the job routes to
    them (Hadoop, on EMR), the blocks that deal evenly onto the task slots and one reduce task a slot;
    else (mrjob's local runner, one reducer a core) LOCAL_MOVIE_BLOCKS. Either way at most
    MAX_BLOCK_MOVIES movies a block."""
    movies = get_dataset(config.dataset).movies
    target = target_named(config.target)
    slots = target.task_slots(config.node_count, config.instance_type)
    if target.routes_keys_to_reducers:
        return movie_blocks_for(slots, movies), slots
    return max(LOCAL_MOVIE_BLOCKS, math.ceil(movies / MAX_BLOCK_MOVIES)), slots


def run_block_plan(ratings_paths, config):
    """The plan of a run (stage2_layout, its sample of users) from its ratings files, and the
    number of distinct ratings it was measured on."""
    movie_blocks, reduce_tasks = stage2_layout(config)
    keys = read_rating_keys(ratings_paths, config.sample_fraction)
    return plan_from_keys(keys, movie_blocks, reduce_tasks), int(keys.size)


def pair_work_of_files(ratings_paths, sample_fraction=1.0):
    """W = the sum over the kept users of n_u^2 (n_u: the distinct movies each rated), exactly as the job's
    stage 1 counts it, from the ratings files themselves: a sample's W is not the full W times the
    fraction, since the heavy users dominate it."""
    keys = read_rating_keys(ratings_paths, sample_fraction)
    _, per_user = np.unique(keys >> MOVIE_BITS, return_counts=True)
    return int(np.sum(per_user.astype(np.int64) ** 2))


def plan_from_keys(keys, movie_blocks, reduce_tasks):
    """job.block_plan of the ratings read_rating_keys gave, counted a slice of users at a time."""
    movies, counts = movie_counts(keys)
    blocks = snake_blocks(counts, movie_blocks)
    work = np.zeros((movie_blocks, movie_blocks))
    for part in user_slices(keys):
        _, users = np.unique(part >> MOVIE_BITS, return_inverse=True)
        work += user_block_work(users, blocks[np.searchsorted(movies, part & MOVIE_MASK)], movie_blocks)
    block_of = dict(zip(movies.tolist(), blocks.tolist(), strict=True))
    return plan_of(block_of, pair_work_of(work), movie_blocks, reduce_tasks)


def movie_counts(keys):
    """The distinct movies of the keys, in id order, and the users who rated each."""
    parts = [np.unique(part & MOVIE_MASK, return_counts=True) for part in user_slices(keys)]
    movies = np.unique(np.concatenate([part_movies for part_movies, _ in parts] or [keys[:0]]))
    counts = np.zeros(movies.size, dtype=np.int64)
    for part_movies, part_counts in parts:
        counts[np.searchsorted(movies, part_movies)] += part_counts  # each movie once a part
    return movies, counts


def user_slices(keys):
    """Consecutive views of the sorted keys of about SLICE_RATINGS ratings, each holding whole users."""
    size, start = SLICE_RATINGS, 0
    while start < keys.size:
        end = min(start + size, keys.size)
        if end < keys.size:  # on to the last rating of the user the slice would cut
            end = int(np.searchsorted(keys, ((int(keys[end - 1]) >> MOVIE_BITS) + 1) << MOVIE_BITS))
        yield keys[start:end]
        start = end


def read_rating_keys(paths, sample_fraction=1.0):
    """Every distinct (user, movie) pair of the ratings files that the job keeps (its sample of
    users, its parsing rules; a pair rated twice counts once, as the job keeps one rating), as
    sorted int64 keys user << 32 | movie.

    The array is reserved at 8 bytes a line of the files and sorted in place; only the pages of
    the kept ratings are ever written, so a sample's untouched remainder takes no memory.
    """
    keys = np.empty(sum(line_count(chunk) for path in paths for chunk in line_chunks(path)), dtype=np.int64)
    filled = 0
    for path in paths:
        for users, movies in _sampled_ratings(path, sample_fraction):
            keys[filled:filled + users.size] = _keys(users, movies)
            filled += users.size
    keys = keys[:filled]
    keys.sort()
    return _without_repeats(keys)


def _keys(users, movies):
    return (users.astype(np.int64) << MOVIE_BITS) | movies.astype(np.int64)


def _without_repeats(keys):
    """The sorted keys with repeats removed, compacted in place a slice at a time."""
    kept = 0
    for start in range(0, keys.size, SLICE_RATINGS):
        part = keys[start:start + SLICE_RATINGS]
        new = np.ones(part.size, dtype=bool)
        new[1:] = part[1:] != part[:-1]
        new[0] = start == 0 or part[0] != keys[kept - 1]
        part = part[new]  # a copy: the writes below never overtake the reads
        keys[kept:kept + part.size] = part
        kept += part.size
    return keys[:kept]


def _sampled_ratings(path, sample_fraction):
    """(users, movies) int32 arrays of one file, a chunk at a time, of the users the job's
    --sample-fraction keeps (crc32 of the id's text, the same users every run)."""
    in_sample = job_kernel().in_sample
    for chunk in line_chunks(path):
        users, movies = parse_ratings(chunk)
        if sample_fraction < 1:
            distinct, index = np.unique(users, return_inverse=True)
            kept = np.array([in_sample(str(user), sample_fraction) for user in distinct.tolist()], dtype=bool)
            users, movies = users[kept[index]], movies[kept[index]]
        yield users, movies


def line_chunks(path):
    """The file's bytes in pieces of about CHUNK_BYTES, each cut at a line end (the last one may
    lack its newline)."""
    rest = b""
    with open(path, "rb") as source:
        while block := source.read(CHUNK_BYTES):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut:
                yield block[:cut]
            rest = block[cut:]
    if rest:
        yield rest


def line_count(chunk):
    """The lines of a chunk of whole lines, the last one with or without its newline."""
    return chunk.count(b"\n") + (not chunk.endswith(b"\n"))


def parse_ratings(chunk):
    """(users, movies) int32 arrays of the ratings in a chunk of whole lines, read by the job's rules:
    bad lines, headers and blank lines skipped, ids as integers (0001 is 1)."""
    lines = line_count(chunk)
    if len(PLAIN_LINE.findall(chunk)) == lines:
        return _plain_ids(chunk, lines)
    return _parse_line_by_line(chunk)


def _plain_ids(chunk, lines):
    """(users, movies) of a chunk of plain lines only: the first two fields of each, parsed with numpy."""
    data = np.frombuffer(chunk, dtype=np.uint8)
    edges = np.flatnonzero(np.diff(FIELD_BYTES[data].view(np.int8), prepend=0, append=0))
    starts, ends = edges[0::2].reshape(lines, 4), edges[1::2].reshape(lines, 4)
    return tuple(_digits_value(data, starts[:, field], ends[:, field]) for field in (0, 1))


def _digits_value(data, starts, ends):
    """The integers written in data[starts:ends] (at most ID_DIGITS digits each)."""
    value = np.zeros(starts.size, dtype=np.int32)
    for place in range(int((ends - starts).max(initial=0))):
        at = ends - 1 - place
        digit = data[np.maximum(at, 0)].astype(np.int32) - ord("0")
        value += np.where(at >= starts, digit, 0) * 10**place
    return value


def _parse_line_by_line(chunk):
    kernel = job_kernel()
    users, movies = [], []
    for line in chunk.split(b"\n"):
        try:
            rating = kernel.parse_rating_line(line)
        except kernel.BadRatingLine:
            continue
        if rating is not None:
            users.append(_id(rating[0]))
            movies.append(_id(rating[1]))
    return np.array(users, dtype=np.int32), np.array(movies, dtype=np.int32)


def _id(digits):
    """A canonical id's integer, when it fits the plan's keys."""
    if len(digits) > ID_DIGITS:
        raise BlockPlanUnavailable(f"id {digits} has more than {ID_DIGITS} digits: the plan's keys "
                                   f"hold ids below 10**{ID_DIGITS}")
    return int(digits)


def stage_block_plan(storage, run_prefix, config, ratings_paths):
    """The run's stage 2 block plan, from its ratings files (block_plan.run_block_plan), written to
    the run's job/ folder; {"uri", "movie_blocks", "reduce_tasks", "planned_skew", "ratings", "seconds"}.

    A plan only balances stage 2's reduce tasks: the answer is the same without one. So a plan that
    cannot be made (ids too long for its keys, a file it cannot read, too little memory on this
    worker) does not fail the run: stage 2 deals its block pairs in turn, as the job does without a
    plan, the log warns, and the summary says why: {"uri": None, "skipped": reason}.
    """
    key = f"{run_prefix}/job/{BLOCK_PLAN_FILE}"
    started = time.monotonic()
    try:
        plan, ratings = run_block_plan(ratings_paths, config)
    except (BlockPlanUnavailable, OSError, MemoryError) as error:
        storage.delete_key(key)  # an earlier try's plan is not this one's
        reason = f"{type(error).__name__}: {error}"
        log.warning("no stage 2 block plan (%s): stage 2 deals its block pairs onto its reduce tasks in turn",
                    reason)
        return {"uri": None, "skipped": reason}
    storage.put_bytes(json.dumps(plan).encode(), key)
    summary = {"uri": storage.uri(key), "movie_blocks": plan["movie_blocks"],
               "reduce_tasks": plan["reduce_tasks"], "planned_skew": round(planned_skew(plan), 3),
               "ratings": ratings, "seconds": round(time.monotonic() - started, 3)}
    log.info("stage 2 block plan %s: measured on %d ratings in %.1f s; %d blocks, %d reduce tasks, "
             "planned work skew %.3f", summary["uri"], ratings, summary["seconds"], summary["movie_blocks"],
             summary["reduce_tasks"], summary["planned_skew"])
    return summary


# The plan's math: with every user's ratings at hand (numpy arrays of ids), blocks of equal movie
# counts and near-equal rating mass, and block pairs routed onto reduce tasks by their work.
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


def mass_blocks(movie_ids, movie_blocks):
    """{movie: block}: movies by rating count, most rated first, dealt in a snake (0..G-1, G-1..0)."""
    movies, counts = np.unique(movie_ids, return_counts=True)
    return dict(zip(movies.tolist(), snake_blocks(counts, movie_blocks).tolist(), strict=True))


def snake_blocks(counts, movie_blocks):
    """The block of each movie (counts: its ratings, movies in id order): mass_blocks' deal, as an array."""
    order = np.argsort(-counts, kind="stable")
    lap, place = np.divmod(np.arange(order.size), movie_blocks)
    blocks = np.empty(order.size, dtype=np.int64)
    blocks[order] = np.where(lap % 2 == 0, place, movie_blocks - 1 - place)
    return blocks


def dealt_routes_for(movie_blocks, reduce_tasks):
    """The job's routes without a plan: its block pairs dealt onto the reduce tasks in turn."""
    return job_kernel().dealt_routes(movie_blocks, reduce_tasks)


def hash_blocks(movie_ids, movie_blocks):
    """{movie: block} as the job assigns movies a plan lacks: crc32 of the id."""
    return {movie: zlib.crc32(movie.encode()) % movie_blocks for movie in np.unique(movie_ids).tolist()}


def block_pair_work(user_ids, movie_ids, block_of, movie_blocks):
    """{"a,b": sum over users of n_a * n_b} for a <= b: the work stage 2 counts per block pair
    (a diagonal pair only counts users with two or more movies in its block)."""
    _, users = np.unique(user_ids, return_inverse=True)
    movies, movie_index = np.unique(movie_ids, return_inverse=True)
    blocks = np.array([block_of[movie] for movie in movies.tolist()], dtype=np.int64)[movie_index]
    return pair_work_of(user_block_work(users, blocks, movie_blocks))


def user_block_work(users, blocks, movie_blocks):
    """The G x G matrix of sum over users of n_a * n_b, from each rating's user index (0..U-1) and block."""
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

"""Stage 2's plan: block counts, mass-balanced blocks, work-balanced routes and the work figures of a run."""
import json
import math

import numpy as np
import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.engine.block_plan import (
    TARGET_DEALT_SKEW,
    balanced_routes,
    block_pair_work,
    block_plan,
    dealt_skew,
    mass_blocks,
    movie_blocks_for,
    routed_skew,
    write_block_plan,
)
from movielens_emr.engine.mrjob_similarity import MAX_BLOCK_MOVIES, job_args, work_metrics


@pytest.mark.parametrize("slots, movies, blocks", [(1, 0, 4), (8, 3_706, 5), (12, 0, 6), (64, 0, 15),
                                                   (16, 59_047, 22)])
def test_movie_blocks_bound_block_size_and_deal_evenly(slots, movies, blocks):
    assert movie_blocks_for(slots, movies) == blocks
    assert math.ceil(movies / blocks) <= MAX_BLOCK_MOVIES
    assert dealt_skew(blocks * (blocks + 1) // 2, slots) <= TARGET_DEALT_SKEW


@pytest.mark.parametrize("dataset, given, blocks", [("ml-1m", 4, 4), ("ml-25m", 4, 23), ("ml-25m", 30, 30)])
def test_job_args_raise_the_blocks_to_the_memory_bound_of_the_dataset(dataset, given, blocks):
    config = validate_run_config({"dataset": dataset}, max_node_count=20)
    args = job_args(config, given, "movies.csv")
    assert args[args.index("--movie-blocks") + 1] == str(blocks)


def test_mass_blocks_have_equal_movie_counts_and_close_mass():
    rng = np.random.default_rng(3)
    popularity = rng.gamma(0.6, size=997) ** 1.4  # heavy-tailed, as synthetic.py draws it
    movie_ids = rng.choice(997, size=50_000, p=popularity / popularity.sum()).astype(str)
    block_of = mass_blocks(movie_ids, 4)
    sizes = np.bincount(list(block_of.values()))
    movies, counts = np.unique(movie_ids, return_counts=True)
    mass = np.bincount([block_of[movie] for movie in movies.tolist()], weights=counts)
    assert sizes.max() - sizes.min() <= 1
    assert mass.max() / mass.mean() < 1.25


def test_block_pair_work_is_the_sum_over_users_of_n_a_times_n_b():
    users = np.array(["1", "1", "1", "2", "2"])
    movies = np.array(["10", "11", "12", "10", "12"])
    block_of = {"10": 0, "11": 1, "12": 1}
    # user 1: n_0 = 1, n_1 = 2; user 2: n_0 = 1, n_1 = 1; one movie in a block reaches no diagonal.
    assert block_pair_work(users, movies, block_of, 2) == {"0,0": 0, "0,1": 3, "1,1": 4}


def test_balanced_routes_put_the_heaviest_pairs_apart():
    work = {"0,0": 10, "0,1": 9, "1,1": 2, "0,2": 2}
    routes = balanced_routes(work, 2)
    assert routes["0,0"] != routes["0,1"] and routes["1,1"] != routes["0,2"]
    assert routed_skew(work, routes, 2) == pytest.approx(12 / 11.5)


def test_plan_is_written_as_the_job_reads_it(tmp_path):
    users = np.repeat(np.arange(50).astype(str), 20)
    movies = np.array([str(movie) for movie in np.random.default_rng(1).integers(0, 300, 1000)])
    plan = write_block_plan(tmp_path / "plan.json", users, movies, 3, 4)
    assert json.loads((tmp_path / "plan.json").read_text()) == plan == block_plan(users, movies, 3, 4)
    assert set(plan["routes"]) == {"0,0", "0,1", "0,2", "1,1", "1,2", "2,2"}
    assert set(plan["routes"].values()) <= set(range(4))


def test_work_metrics_count_idle_reduce_tasks_in_the_mean():
    counters = {"work: pair work sum n_u^2": 500, "stage 2 work: reduce task 000": 300,
                "stage 2 work: reduce task 001": 100, "stage 2 work: reduce task 002": 0}
    assert work_metrics(counters) == {"pair_work": 500, "stage2_reduce_tasks": 3, "stage2_work_skew": 2.25}


def test_work_metrics_of_a_run_without_the_counters_are_empty():
    assert work_metrics({}) == {"pair_work": None, "stage2_reduce_tasks": None, "stage2_work_skew": None}

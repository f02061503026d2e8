"""The similarity job's options for a run and the work figures of its counters."""

import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.engine.similarity.job import job_args, work_metrics


@pytest.mark.parametrize("dataset, given, blocks", [("ml-1m", 4, 4), ("ml-25m", 4, 23), ("ml-25m", 30, 30)])
def test_job_args_raise_the_blocks_to_the_memory_bound_of_the_dataset(dataset, given, blocks):
    config = validate_run_config({"dataset": dataset}, max_node_count=20)
    args = job_args(config, given)
    assert args[args.index("--movie-blocks") + 1] == str(blocks)


def test_work_metrics_count_idle_reduce_tasks_in_the_mean():
    counters = {"work: pair work sum n_u^2": 500, "stage 2 work: reduce task 000": 300,
                "stage 2 work: reduce task 001": 100, "stage 2 work: reduce task 002": 0}
    assert work_metrics(counters) == {"pair_work": 500, "stage2_reduce_tasks": 3, "stage2_work_skew": 2.25}


def test_work_metrics_of_a_run_without_the_counters_are_empty():
    assert work_metrics({}) == {"pair_work": None, "stage2_reduce_tasks": None, "stage2_work_skew": None}

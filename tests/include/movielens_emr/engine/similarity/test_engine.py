"""The similarity engine behind the seam: the job it hands the targets and the figures it reports."""
import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.engine.protocol import TaskFile, final_output_folder
from movielens_emr.engine.registry import engine_named
from movielens_emr.engine.similarity.engine import ENGINE, block_plan_metrics
from movielens_emr.engine.similarity.job import JOB_FILE, KERNEL_FILE, STAGE_NAMES

STAGED = {"movies_uri": "s3://b/datasets/ml-100k/c/u.item",
          "block_plan": {"uri": "s3://b/runs/r/job/block_plan.json", "planned_skew": 1.04}}


def test_the_default_engine_is_the_similarity_job():
    assert engine_named("similarity") is ENGINE
    assert ENGINE.stage_names == STAGE_NAMES


def test_the_kernel_the_job_file_imports_is_shipped_beside_it():
    assert ENGINE.shipped_files() == (JOB_FILE, KERNEL_FILE) and KERNEL_FILE.parent == JOB_FILE.parent
    job = ENGINE.job(validate_run_config({}, max_node_count=20), STAGED)
    assert job.shipped_files == ENGINE.shipped_files()


def test_the_job_reads_the_movies_in_every_stage_and_the_block_plan_in_stage_2():
    config = validate_run_config({"dataset": "ml-100k", "node_count": 3, "target": "emr"}, max_node_count=20)
    job = ENGINE.job(config, STAGED)
    assert job.task_files == (TaskFile("--items", STAGED["movies_uri"]),
                              TaskFile("--block-plan", STAGED["block_plan"]["uri"], stages=(2,)))
    assert job.reduce_tasks == 8  # 2 core nodes of 4 vCPUs

    def local_name(task_file):
        return task_file.uri.rsplit("/", 1)[-1]

    assert job.task_options(1, local_name)[-2:] == ["--items", "u.item"]
    assert job.task_options(2, local_name)[-4:] == ["--items", "u.item", "--block-plan", "block_plan.json"]
    assert job.task_options(3, local_name)[-2:] == ["--items", "u.item"]


def test_a_run_without_a_block_plan_runs_without_one():
    config = validate_run_config({}, max_node_count=20)
    job = ENGINE.job(config, {**STAGED, "block_plan": {"uri": None, "skipped": "no plan"}})
    assert [task_file.option for task_file in job.task_files] == ["--items"]


def test_the_final_output_is_the_last_stages():
    assert final_output_folder("runs/r1", ENGINE) == "runs/r1/output/stage-3"


def test_the_planned_stage_2_skew_sits_beside_the_measured_one():
    counters = {"stage 2 work: reduce task 000": 300, "stage 2 work: reduce task 001": 100}
    figures = ENGINE.figures(counters, {"output_pairs": 5}, STAGED)
    names = list(figures)
    assert names.index("stage2_planned_skew") == names.index("stage2_work_skew") + 1
    assert (figures["stage2_work_skew"], figures["stage2_planned_skew"]) == (1.5, 1.04)
    assert (figures["block_plan"], figures["block_plan_skipped"]) == (STAGED["block_plan"]["uri"], None)
    assert figures["output_pairs"] == 5


@pytest.mark.parametrize("plan, reason", [
    ({"uri": None, "skipped": "BlockPlanUnavailable: id 12345678901 has more than 9 digits"},
     "BlockPlanUnavailable: id 12345678901 has more than 9 digits"),
    (None, "no block plan was computed for this run"),
])
def test_a_run_without_a_block_plan_says_why(plan, reason):
    assert block_plan_metrics(plan) == {
        "stage2_planned_skew": None, "block_plan": None, "block_plan_skipped": reason}


@pytest.mark.parametrize("dataset, metric, low, high", [
    ("ml-1m", "cosine", 250, 320), ("ml-25m", "cosine", 1100, 1350), ("ml-25m", "pearson", 1300, 1500)])
def test_the_largest_task_is_a_stage_2_reducer_by_the_jobs_documented_bound(dataset, metric, low, high):
    # the job's docstring: ml-1m cosine at most 277 MB beyond the interpreter; pearson at B = 2,800 under
    # 1.4 GB
    config = validate_run_config({"dataset": dataset, "metric": metric, "target": "emr", "node_count": 4}, 20)
    assert low <= ENGINE.task_memory_mb(config) <= high


def test_every_catalogue_type_holds_the_similarity_jobs_largest_task():
    from movielens_emr.config.instances import catalogue, memory_fit_error

    config = validate_run_config({"dataset": "ml-25m", "metric": "pearson", "target": "emr"}, 20)
    assert [name for name, instance in catalogue().items()
            if memory_fit_error(ENGINE.task_memory_mb(config), instance, "it")] == []

"""The als engine behind the seam: its job for a run, what a cluster needs, its figures."""
import ast

from movielens_emr.airflow.similarity_tasks import input_error
from movielens_emr.config.params import validate_run_config
from movielens_emr.engine.als.engine import ENGINE
from movielens_emr.engine.als.job import KERNEL_FILE, SCRIPT_FILE
from movielens_emr.engine.protocol import SparkJob, TaskFile, needs_spark
from movielens_emr.engine.registry import engine_named
from movielens_emr.engine.similarity.engine import ENGINE as SIMILARITY

STAGED = {"movies_uri": "s3://b/datasets/ml/c/movies.csv",
          "ratings_uris": ["s3://b/datasets/ml/c/ratings.csv"],
          "evaluation_split": {"train_uri": "s3://b/runs/r/job/evaluation_train.tsv"}}


def test_it_is_registered_as_als_and_needs_spark_on_a_cluster():
    assert engine_named("als") is ENGINE
    assert needs_spark(ENGINE) and not needs_spark(SIMILARITY)


def test_its_job_is_the_script_with_its_kernel_the_movies_for_the_driver_and_the_split():
    config = validate_run_config({"engine": "als", "als_rank": 3}, max_node_count=20,
                                 engines=("similarity", "als"))
    job = ENGINE.job(config, STAGED)
    assert isinstance(job, SparkJob) and job.shipped_files == (SCRIPT_FILE, KERNEL_FILE)
    assert job.task_files == (TaskFile("--items", STAGED["movies_uri"]),)
    args = job.script_args(["in-1", "in-2"], "out", lambda task_file: "movies.csv")
    assert args[args.index("--rank") + 1] == "3" and args[args.index("--items") + 1] == "movies.csv"
    assert args[args.index("--evaluation-train") + 1] == STAGED["evaluation_split"]["train_uri"]
    assert args[-5:] == ["--ratings", "in-1", "in-2", "--output", "out"]


def test_its_figures_are_the_scripts_own_under_the_metrics_names():
    collected = {"output_pairs": 30, "recommendation_rows": 20, "evaluation": {"split": {}},
                 "job_figures": {"ratings_read": 100, "bad_lines": 2, "iterations": 5, "fit_seconds": 9.5,
                                 "seconds_per_iteration": 1.9, "training_loss": 12.5,
                                 "python_version": "3.9.18"}}
    figures = ENGINE.figures({}, collected, {})
    assert (figures["input_ratings"], figures["bad_lines"], figures["als_iterations"]) == (100, 2, 5)
    assert (figures["als_seconds_per_iteration"], figures["als_training_loss"]) == (1.9, 12.5)
    assert figures["spark_driver_python"] == "3.9.18" and figures["evaluation"] == {"split": {}}
    assert figures["output_pairs"] == 30 and figures["als_per_iteration"] is None


def test_its_input_errors_are_the_scripts_own_exceptions():
    script = ast.parse(SCRIPT_FILE.read_text())
    classes = {node.name for node in ast.walk(script) if isinstance(node, ast.ClassDef)}
    assert ENGINE.input_errors and set(ENGINE.input_errors) <= classes


def test_a_local_run_that_fails_on_its_input_is_not_retried():
    failed = ("Traceback (most recent call last):\n  File \"als_recommender.py\", line 423, in fit\n"
              "__main__.NoRatings: no rating to fit: every line was bad, or no user is in the sample")
    assert input_error(failed, ENGINE.input_errors) == "NoRatings"
    assert input_error("py4j.protocol.Py4JJavaError: An error occurred", ENGINE.input_errors) is None

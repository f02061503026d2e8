"""The seam's two kinds of job: what a SparkJob's script is given, and which engines need Spark."""
from pathlib import Path
from types import SimpleNamespace

from movielens_emr.engine.protocol import SparkJob, TaskFile, final_output_folder, needs_spark

JOB = SparkJob(script=Path("/jobs/app.py"), stage_names=("fit",), options=("--rank", "3"),
               task_files=(TaskFile("--items", "s3://b/d/movies.csv"),),
               support_files=(Path("/jobs/kernel.py"),))


def test_a_spark_jobs_script_gets_its_options_files_inputs_and_output():
    assert JOB.script_args(["s3://b/r1", "s3://b/r2"], "s3://b/out", lambda task_file: "movies.csv") == [
        "--rank", "3", "--items", "movies.csv", "--ratings", "s3://b/r1", "s3://b/r2", "--output", "s3://b/out"]


def test_a_spark_job_ships_its_script_then_its_support_files():
    assert JOB.shipped_files == (Path("/jobs/app.py"), Path("/jobs/kernel.py"))


def test_an_engine_needs_spark_only_when_it_names_it_among_its_applications():
    assert needs_spark(SimpleNamespace(applications=("Hadoop", "Spark")))
    assert not needs_spark(SimpleNamespace(applications=("Hadoop",))) and not needs_spark(SimpleNamespace())


def test_a_one_stage_engine_writes_its_output_in_stage_1():
    assert final_output_folder("runs/r", SimpleNamespace(stage_names=("fit",))) == "runs/r/output/stage-1"

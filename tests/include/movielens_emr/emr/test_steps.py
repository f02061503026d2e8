"""An engine's job as EMR steps: an mrjob job's stages as Hadoop streaming steps (and the job's arguments
for a run), a Spark job as one spark-submit step."""
import shlex
from pathlib import Path

import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.emr.steps import ACTION_ON_FAILURE, build_spark_step, build_stage_steps
from movielens_emr.emr.wheelhouse import NodePython
from movielens_emr.engine.protocol import MrjobJob, SparkJob, TaskFile
from movielens_emr.engine.similarity.job import JOB_CLASS, JOB_FILE, STAGE_NAMES, job_args

JOB_URI = "s3://b/runs/r/job/movie_similarities.py"


def similarity_job(config, movie_blocks, reduce_tasks, movies_uri, block_plan_uri=None):
    task_files = [TaskFile("--items", movies_uri)]
    if block_plan_uri:
        task_files.append(TaskFile("--block-plan", block_plan_uri, stages=(2,)))
    return MrjobJob(JOB_FILE, JOB_CLASS, STAGE_NAMES, tuple(job_args(config, movie_blocks)),
                    tuple(task_files), reduce_tasks)


@pytest.fixture
def steps():
    config = validate_run_config({"metric": "pearson", "min_score": 0.5, "sample_fraction": 0.25},
                                 max_node_count=20)
    job = similarity_job(config, 5, 12, "s3://b/datasets/ml/c/movies.csv")
    return build_stage_steps(job, [JOB_URI], ["s3://b/datasets/ml/c/ratings.csv"], "s3://b/runs/r/output",
                             "manual__1")


def arg_after(args, flag):
    return [args[i + 1] for i, arg in enumerate(args) if arg == flag]


def test_one_step_per_stage_through_command_runner(steps):
    assert len(steps) == 3 == len(STAGE_NAMES)
    for number, step in enumerate(steps, start=1):
        assert step["Name"].startswith(f"stage {number} of 3: {STAGE_NAMES[number - 1]}")
        assert "manual__1" in step["Name"]
        assert step["ActionOnFailure"] == ACTION_ON_FAILURE
        assert step["HadoopJarStep"]["Jar"] == "command-runner.jar"
        assert step["HadoopJarStep"]["Args"][0] == "hadoop-streaming"


def test_stages_chain_their_inputs_and_outputs(steps):
    args = [step["HadoopJarStep"]["Args"] for step in steps]
    assert arg_after(args[0], "-input") == ["s3://b/datasets/ml/c/ratings.csv"]
    assert arg_after(args[0], "-output") == ["s3://b/runs/r/output/stage-1"]
    assert arg_after(args[1], "-input") == ["s3://b/runs/r/output/stage-1"]
    assert arg_after(args[2], "-input") == ["s3://b/runs/r/output/stage-2"]
    assert arg_after(args[2], "-output") == ["s3://b/runs/r/output/stage-3"]


def test_generic_options_come_before_streaming_options(steps):
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        assert args.index("-files") < args.index("-input") and args.index("-D") < args.index("-input")
        assert arg_after(args, "-files") == [
            "s3://b/runs/r/job/movie_similarities.py#movie_similarities.py,"
            "s3://b/datasets/ml/c/movies.csv#movies.csv"]
        assert "mapreduce.job.reduces=12" in arg_after(args, "-D")


def test_task_commands_run_the_job_file_with_the_run_options(steps):
    for step_num, step in enumerate(steps):
        args = step["HadoopJarStep"]["Args"]
        for task_type in ("mapper", "reducer"):
            command = shlex.split(arg_after(args, f"-{task_type}")[0])
            if command == ["cat"]:  # stage 3 has no mapper: its input passes through
                assert (step_num, task_type) == (2, "mapper")
                continue
            assert command[:4] == [
                "python3.9", "movie_similarities.py", f"--step-num={step_num}", f"--{task_type}"]
            options = dict(zip(command[4::2], command[5::2], strict=False))
            assert options == {"--metric": "pearson", "--min-score": "0.5", "--min-co-ratings": "10",
                               "--sample-fraction": "0.25", "--movie-blocks": "5", "--items": "movies.csv"}
        assert "-combiner" not in args


def test_tasks_find_the_bootstrapped_packages_on_their_pythonpath(steps):
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        assert arg_after(args, "-cmdenv") == ["PYTHONPATH=/usr/local/lib/movielens-job/python3.9"]
        assert args.index("-cmdenv") < args.index("-input")


def test_the_tasks_run_under_the_nodes_python_it_was_given():
    config = validate_run_config({}, max_node_count=20)
    steps = build_stage_steps(similarity_job(config, 4, 4, "s3://b/movies.csv"), ["s3://b/job.py"],
                              ["s3://b/r.csv"], "s3://b/out", "manual__1", NodePython("3.11", "aarch64"))
    for step in steps:
        args = step["HadoopJarStep"]["Args"]
        assert shlex.split(arg_after(args, "-reducer")[0])[0] == "python3.11"
        assert arg_after(args, "-cmdenv") == ["PYTHONPATH=/usr/local/lib/movielens-job/python3.11"]


def test_a_block_plan_reaches_only_stage_2s_tasks_under_its_own_name():
    config = validate_run_config({}, max_node_count=20)
    job = similarity_job(config, 5, 8, "s3://b/ds/movies.csv", "s3://b/runs/r/job/block_plan.json")
    steps = build_stage_steps(job, [JOB_URI], ["s3://b/ds/ratings.csv"], "s3://b/runs/r/output", "manual__1")
    files = [arg_after(step["HadoopJarStep"]["Args"], "-files") for step in steps]
    shared = "s3://b/runs/r/job/movie_similarities.py#movie_similarities.py,s3://b/ds/movies.csv#movies.csv"
    assert files == [[shared], [f"{shared},s3://b/runs/r/job/block_plan.json#block_plan.json"], [shared]]
    for number, step in enumerate(steps, start=1):
        for task_type in ("mapper", "reducer"):
            command = shlex.split(arg_after(step["HadoopJarStep"]["Args"], f"-{task_type}")[0])
            if command == ["cat"]:
                continue
            assert (command[-2:] == ["--block-plan", "block_plan.json"]) == (number == 2), (number, command)


# A Spark job ---------------------------------------------------------------------------------------
SPARK_JOB = SparkJob(
    script=Path("/repo/jobs/als_recommender.py"), stage_names=("fit ALS",), options=("--rank", "4"),
    task_files=(TaskFile("--items", "s3://b/datasets/d/c/movies.csv"),),
    support_files=(Path("/repo/jobs/similarity_kernel.py"),),
    properties=(("spark.serializer", "org.apache.spark.serializer.KryoSerializer"),))
SPARK_SHIPPED = ["s3://b/runs/r/job/als_recommender.py", "s3://b/runs/r/job/similarity_kernel.py"]


@pytest.fixture
def spark_step():
    return build_spark_step(SPARK_JOB, SPARK_SHIPPED, ["s3://b/datasets/d/c/ratings.csv"],
                            "s3://b/runs/r/output", "manual__1", NodePython("3.11"), "s3://b/runs/r/spark-events")


def spark_conf(args):
    return dict(args[index + 1].split("=", 1) for index, arg in enumerate(args) if arg == "--conf")


def test_a_spark_job_is_one_cluster_mode_spark_submit_step_through_command_runner(spark_step):
    assert spark_step["Name"] == "stage 1 of 1: fit ALS [manual__1]"
    assert spark_step["ActionOnFailure"] == ACTION_ON_FAILURE
    assert spark_step["HadoopJarStep"]["Jar"] == "command-runner.jar"
    assert spark_step["HadoopJarStep"]["Args"][:5] == [
        "spark-submit", "--deploy-mode", "cluster", "--master", "yarn"]


def test_a_spark_steps_driver_and_workers_run_under_the_nodes_python_and_its_packages(spark_step):
    properties = spark_conf(spark_step["HadoopJarStep"]["Args"])
    assert properties["spark.pyspark.python"] == "python3.11"
    assert properties["spark.yarn.appMasterEnv.PYTHONPATH"] == "/usr/local/lib/movielens-job/python3.11"
    assert properties["spark.executorEnv.PYTHONPATH"] == "/usr/local/lib/movielens-job/python3.11"


def test_a_spark_step_has_its_jobs_properties_and_its_event_log_in_the_run_folder(spark_step):
    properties = spark_conf(spark_step["HadoopJarStep"]["Args"])
    assert properties["spark.serializer"] == "org.apache.spark.serializer.KryoSerializer"
    assert (properties["spark.eventLog.enabled"], properties["spark.eventLog.dir"]) == (
        "true", "s3://b/runs/r/spark-events")


def test_a_spark_steps_script_runs_from_s3_its_kernel_and_files_shipped_beside_the_driver(spark_step):
    args = spark_step["HadoopJarStep"]["Args"]
    assert args[args.index("--py-files") + 1] == SPARK_SHIPPED[1]
    assert args[args.index("--files") + 1] == "s3://b/datasets/d/c/movies.csv#movies.csv"
    script = args.index(SPARK_SHIPPED[0])
    assert args[script + 1:] == ["--rank", "4", "--items", "movies.csv", "--ratings",
                                 "s3://b/datasets/d/c/ratings.csv", "--output", "s3://b/runs/r/output/stage-1"]

"""The als engine end to end through movielens_similarity: on this machine (Spark's local mode) and on the
EMR target (moto, and the EMR double running the spark-submit step for real under the node's Python 3.9,
after the cluster's real bootstrap). With the same seed and blocks ALS is deterministic, so the two
targets' results must be byte-identical; a failing Spark step is diagnosed from the driver's log."""
import csv
import io
import json
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.config.params import InvalidParam
from movielens_emr.data.storage import run_folder
from movielens_emr.emr import target as emr_target
from movielens_emr.engine.als.job import STAGE_NAMES
from movielens_emr.reporting.history import fetch_runs, history_engine

from tests.support.dag_runs import (
    EMR_TASK_STATES,
    REGION,
    S3_ROOT,
    full_conf,
    run_dag,
    run_state,
    s3_bytes,
    s3_key,
    step_log,
    task_states,
    xcom,
)
from tests.support.emr_double import emr_streaming_double

DATASET, RATINGS, USERS = "ml-100k", 100_000, 943
CONF = {"engine": "als", "dataset": DATASET, "als_rank": 8, "als_max_iter": 6}
LOCAL_CONF = {**CONF, "target": "local", "node_count": 2}
EMR_CONF = {**CONF, "target": "emr", "node_count": 3}
RESULTS = ("similarities.csv", "top_neighbours.json", "recommendations.csv", "evaluation.json")
FAILED_STEP = {**EMR_TASK_STATES, "wait_for_stages[0]": "failed", "collect_results": "upstream_failed",
               "record_metrics": "upstream_failed", "diagnose_failure": "success"}


@pytest.fixture(scope="module")
def local_run(dagbag, tmp_path_factory):
    root = tmp_path_factory.mktemp("als-local")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_STORAGE_ROOT", str(root))
        dag_run = run_dag(dagbag, LOCAL_CONF)
        assert run_state(dag_run) == "success", task_states(dag_run)
        results = root / run_folder(dag_run.run_id) / "results"
        rows = fetch_runs(history_engine(tasks.settings_from_env()), limit=10)
    return SimpleNamespace(dag_run=dag_run, metrics=xcom(dag_run, "record_metrics"), history=rows,
                           results={name: (results / name).read_bytes() for name in RESULTS})


@pytest.fixture(scope="module")
def emr_run(dagbag):
    with pytest.MonkeyPatch.context() as env, mock_aws(), emr_streaming_double() as double:
        env.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
        dag_run = run_dag(dagbag, EMR_CONF)
        assert run_state(dag_run) == "success", task_states(dag_run)
        s3, emr = boto3.client("s3", region_name=REGION), boto3.client("emr", region_name=REGION)
        cluster_id, step_ids = xcom(dag_run, "create_cluster"), xcom(dag_run, "submit_stages")
        return SimpleNamespace(
            dag_run=dag_run, double=double, states=task_states(dag_run),
            cluster=emr.describe_cluster(ClusterId=cluster_id)["Cluster"],
            steps=[emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"] for step_id in step_ids],
            metrics=json.loads(s3_bytes(s3, s3_key(dag_run, "metrics.json"))),
            results={name: s3_bytes(s3, s3_key(dag_run, f"results/{name}")) for name in RESULTS},
            step_stderr=step_log(s3, dag_run, cluster_id, step_ids[0], "stderr.gz"))


# the form and validate_config -----------------------------------------------------------------------
def test_als_and_its_hyperparameters_are_fields_of_the_trigger_form(dagbag):
    params = dagbag.get_dag("movielens_similarity").params
    assert "als" in params.get_param("engine").schema["enum"]
    rank = params.get_param("als_rank")
    assert (rank.value, rank.schema["minimum"], rank.schema["title"]) == (10, 1, "ALS: rank")
    assert params.get_param("als_alpha").schema["minimum"] == 0
    assert params.get_param("als_user_blocks").value is None


@pytest.mark.parametrize(("field", "value", "message"), [
    ("als_rank", 0, "als_rank: 0 is less than the minimum of 1"),
    ("als_alpha", -1.0, "als_alpha: -1.0 is less than the minimum of 0"),
    ("als_reg_param", float("nan"), "als_reg_param: must be a finite number, got NaN"),
    ("als_max_iter", 2.0, "als_max_iter: must be a whole number"),
    ("als_item_blocks", 0, "als_item_blocks: 0 is less than the minimum of 1"),
])
def test_bad_hyperparameters_are_refused_by_validate_config(airflow_db, storage_root, field, value, message):
    with pytest.raises(InvalidParam, match=message):
        tasks.validate_config(full_conf({**LOCAL_CONF, field: value}))


def test_without_java_an_als_run_is_refused_before_anything_is_staged(airflow_db, storage_root, monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InvalidParam, match=r"engine: Spark needs a Java runtime and this machine has none .*"
                                           r"openjdk-17-jre-headless"):
        tasks.validate_config(full_conf(LOCAL_CONF))
    assert not (storage_root / "datasets").exists()


# the local target ------------------------------------------------------------------------------------
def test_a_local_run_writes_the_similarity_engines_result_files_and_recommendations(local_run):
    similarities = list(csv.reader(io.StringIO(local_run.results["similarities.csv"].decode())))
    assert similarities[0] == ["movie_id", "movie_title", "similar_movie_id", "similar_movie_title", "score",
                               "co_raters"]
    assert similarities[1][:2] == ["1", "Toy Story (1995)"] and len(similarities) == 1 + 10 * 1682
    neighbours = json.loads(local_run.results["top_neighbours.json"])
    assert neighbours["1"]["title"] == "Toy Story (1995)" and len(neighbours["1"]["neighbours"]) == 10
    recommendations = list(csv.reader(io.StringIO(local_run.results["recommendations.csv"].decode())))
    assert recommendations[0] == ["user_id", "rank", "movie_id", "movie_title", "score"]
    assert len(recommendations) == 1 + 10 * USERS


def test_a_local_run_records_the_scripts_figures_and_the_evaluation(local_run):
    metrics = local_run.metrics
    assert (metrics["engine"], metrics["input_ratings"], metrics["bad_lines"]) == ("als", RATINGS, 0)
    assert (metrics["users"], metrics["movies"], metrics["als_iterations"]) == (USERS, 1682, 6)
    assert metrics["als_training_loss"] > 0 and metrics["als_seconds_per_iteration"] > 0
    assert metrics["spark_serializer"] == "org.apache.spark.serializer.KryoSerializer"
    assert metrics["spark_task_times"]["source"] == "spark event log"
    assert metrics["spark_task_times"]["task_types"]["ShuffleMapTask"]["tasks"] > 0
    evaluation = metrics["evaluation"]
    assert evaluation["split"]["train_ratings"] + evaluation["split"]["held_out_ratings"] == RATINGS
    for recommender in ("popularity", "als"):
        assert 0 < evaluation["recommenders"][recommender]["precision_at_k"] < 1
        assert 0 < evaluation["recommenders"][recommender]["ndcg_at_k"] < 1
    assert json.loads(local_run.results["evaluation.json"]) == evaluation


def test_a_local_run_is_in_the_history_as_an_als_run(local_run):
    row = next(row for row in local_run.history if row["run_id"] == local_run.dag_run.run_id)
    assert (row["engine"], row["outcome"]) == ("als", "success")


# the EMR target, through the double --------------------------------------------------------------------
def test_an_emr_run_has_spark_on_its_cluster_and_ends_it(emr_run):
    assert emr_run.states == EMR_TASK_STATES
    assert {application["Name"] for application in emr_run.cluster["Applications"]} == {"Hadoop", "Spark"}
    assert emr_run.cluster["Status"]["State"] == "TERMINATED"


def test_an_emr_run_is_one_cluster_mode_spark_submit_step_of_the_staged_script(emr_run):
    (step,) = emr_run.steps
    assert step["Name"].startswith(f"stage 1 of 1: {STAGE_NAMES[0]} [")
    args = step["Config"]["Args"]
    assert args[:5] == ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn"]
    assert "spark.pyspark.python=python3.9" in args
    assert "spark.serializer=org.apache.spark.serializer.KryoSerializer" in args
    script = next(arg for arg in args if arg.endswith("/job/als_recommender.py"))
    assert script.startswith(f"{S3_ROOT}/runs/") and args[args.index("--py-files") + 1].endswith(
        "/job/similarity_kernel.py")
    assert args[args.index("--files") + 1].endswith("/u.item#u.item")
    assert args[args.index("--items") + 1] == "u.item"


def test_the_step_ran_its_driver_and_workers_under_the_nodes_python_after_the_bootstrap(emr_run):
    (execution,) = emr_run.double.executions
    assert execution.state == "COMPLETED" and execution.spark.returncode == 0
    assert emr_run.metrics["spark_driver_python"].startswith("3.9.")
    assert [run.returncode for run in emr_run.double.bootstraps] == [0]
    assert "Submitted application application_" in emr_run.step_stderr


def test_emr_results_are_byte_identical_to_the_local_runs(emr_run, local_run):
    """The same seed, blocks and input: Spark's ALS gives the same factors whatever the cores or the shuffle
    partitions (2 here, 8 task slots on the cluster), so every result file is the same, byte for byte."""
    for name in RESULTS:
        assert emr_run.results[name] == local_run.results[name], name


def test_emr_metrics_come_from_emrs_timeline_the_scripts_figures_and_its_event_log(emr_run, local_run):
    metrics, (step,) = emr_run.metrics, emr_run.steps
    timeline = step["Status"]["Timeline"]
    assert metrics["stage_seconds"] == [round((timeline["EndDateTime"] - timeline["StartDateTime"])
                                              .total_seconds(), 3)]
    assert metrics["counters_read_from"] is None and metrics["task_times"]["source"] is None
    assert metrics["input_ratings"] == RATINGS and metrics["evaluation"] == local_run.metrics["evaluation"]
    assert metrics["als_training_loss"] == pytest.approx(local_run.metrics["als_training_loss"], rel=1e-12)
    events = metrics["spark_task_times"]
    assert events["source"] == "spark event log" and "/spark-events/" in events["read_from"]


def test_a_failing_spark_step_fails_the_run_ends_the_cluster_and_is_diagnosed_from_the_drivers_log(
        dagbag, monkeypatch, caplog):
    """The script is given an evaluation file that is not there: the driver fails. (The double runs Spark in
    local mode, one JVM: an executor's own container log, which the diagnosis also reads on EMR, is not
    made here.)"""
    build_spark_step = emr_target.build_spark_step

    def step_reading_a_missing_file(job, *args, **kwargs):
        step = build_spark_step(job, *args, **kwargs)
        step["HadoopJarStep"]["Args"] += ["--evaluation-train", f"{S3_ROOT}/no-such-file.tsv"]
        return step

    monkeypatch.setattr(emr_target, "build_spark_step", step_reading_a_missing_file)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
    monkeypatch.setenv("MOVIELENS_LOG_WAIT_SECONDS", "5")
    with mock_aws(), emr_streaming_double():
        dag_run = run_dag(dagbag, {**EMR_CONF, "dataset": "ml-latest-small-sample"})
        emr, s3 = boto3.client("emr", region_name=REGION), boto3.client("s3", region_name=REGION)
        cluster = emr.describe_cluster(ClusterId=xcom(dag_run, "create_cluster"))["Cluster"]
        failure = json.loads(s3_bytes(s3, s3_key(dag_run, "metrics.json")))["failure"]
    assert run_state(dag_run) == "failed" and task_states(dag_run) == FAILED_STEP
    assert cluster["Status"]["State"] == "TERMINATED"
    assert (failure["stage"], failure["state"]) == (1, "FAILED")
    report = failure["report"]
    assert "finished with failed status" in report
    assert "the failed task's own error, from its container's log:\nthe driver (container_" in report
    assert "Input path does not exist" in report and "no-such-file.tsv" in report

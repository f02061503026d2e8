"""The engine seam: an engine registered by a test (a one-stage mrjob job counting each movie's ratings,
tests/support/engines/) runs end to end through movielens_similarity on both targets, on the EMR
double through the real bootstrap and the node's own Python, with no pipeline module changed for it.
Both targets' results must equal the counts made here from the ratings file."""
import collections
import csv

import boto3
import pytest
from moto import mock_aws

from movielens_emr.data.storage import run_folder
from movielens_emr.engine.registry import ENGINES_ENV, engine_names

from conftest import REPO
from tests.support.dag_runs import (
    EMR_TASK_STATES,
    REGION,
    S3_ROOT,
    run_dag,
    run_state,
    s3_bytes,
    s3_key,
    task_states,
    xcom,
)
from tests.support.emr_double import emr_streaming_double

ENGINE_LOCATION = "tests.support.engines.rating_counts_engine:ENGINE"
SAMPLE_RATINGS = REPO / "include" / "sample_data" / "ml-latest-small-sample" / "ratings.csv"
CONF = {"engine": "rating-counts", "dataset": "ml-latest-small-sample", "node_count": 3}


@pytest.fixture(scope="module")
def dagbag_with_the_engine(airflow_db):
    """The DAG parsed with the engine registered, as a deployment's MOVIELENS_ENGINES would have it."""
    from airflow.dag_processing.dagbag import DagBag

    with pytest.MonkeyPatch.context() as env:
        env.setenv(ENGINES_ENV, ENGINE_LOCATION)
        yield DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture(scope="module")
def expected_csv():
    with open(SAMPLE_RATINGS, newline="") as ratings:
        counts = collections.Counter(int(row["movieId"]) for row in csv.DictReader(ratings))
    return "movie_id,ratings\n" + "".join(f"{movie},{count}\n" for movie, count in sorted(counts.items()))


def test_the_engine_is_a_choice_of_the_trigger_form(dagbag_with_the_engine, monkeypatch):
    monkeypatch.setenv(ENGINES_ENV, ENGINE_LOCATION)
    assert engine_names() == ("similarity", "als", "rating-counts")
    params = dagbag_with_the_engine.get_dag("movielens_similarity").params
    assert params.get_param("engine").schema["enum"] == ["similarity", "als", "rating-counts"]


def test_an_unregistered_engine_is_refused_before_anything_is_staged(dagbag_with_the_engine, storage_root,
                                                                     monkeypatch):
    monkeypatch.delenv(ENGINES_ENV, raising=False)  # a worker that does not have the engine
    dag_run = run_dag(dagbag_with_the_engine, {**CONF, "target": "local"})
    states = task_states(dag_run)
    assert (states["validate_config"], states["stage_dataset"]) == ("failed", "upstream_failed")
    assert not (storage_root / "datasets").exists()


def test_the_engine_runs_on_the_local_target(dagbag_with_the_engine, storage_root, monkeypatch, expected_csv):
    monkeypatch.setenv(ENGINES_ENV, ENGINE_LOCATION)
    dag_run = run_dag(dagbag_with_the_engine, {**CONF, "target": "local"})
    assert run_state(dag_run) == "success", task_states(dag_run)
    results = storage_root / run_folder(dag_run.run_id) / "results"
    assert (results / "rating_counts.csv").read_text() == expected_csv
    metrics = xcom(dag_run, "record_metrics")
    assert metrics["engine"] == "rating-counts" and len(metrics["stage_seconds"]) == 1
    assert metrics["movies_counted"] == expected_csv.count("\n") - 1
    assert metrics["input_ratings"] == sum(1 for _ in open(SAMPLE_RATINGS)) - 1
    assert "output_pairs" not in metrics and "block_plan" not in metrics


def test_the_engine_runs_on_the_emr_target_through_the_double(dagbag_with_the_engine, monkeypatch,
                                                             expected_csv):
    monkeypatch.setenv(ENGINES_ENV, ENGINE_LOCATION)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
    with mock_aws(), emr_streaming_double() as double:
        dag_run = run_dag(dagbag_with_the_engine, {**CONF, "target": "emr"})
        s3 = boto3.client("s3", region_name=REGION)
        emr = boto3.client("emr", region_name=REGION)
        assert run_state(dag_run) == "success", task_states(dag_run)
        assert task_states(dag_run) == EMR_TASK_STATES
        assert s3_bytes(s3, s3_key(dag_run, "results/rating_counts.csv")).decode() == expected_csv
        cluster_id = xcom(dag_run, "create_cluster")
        steps = emr.list_steps(ClusterId=cluster_id)["Steps"]
        assert [step["Name"].split(" [")[0] for step in steps] == ["stage 1 of 1: count each movie's ratings"]
        assert emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "TERMINATED"
        # the step ran the engine's own job file, shipped to the cluster, under the node's Python
        (execution,) = double.executions
        assert "movie_rating_counts.py" in execution.job.mapper
        assert execution.job.mapper.startswith("python3.9 ")
    metrics = xcom(dag_run, "record_metrics")
    assert metrics["engine"] == "rating-counts" and len(metrics["stage_seconds"]) == 1
    assert metrics["input_ratings"] == sum(1 for _ in open(SAMPLE_RATINGS)) - 1


def test_an_instance_type_too_small_for_the_engines_task_is_refused_before_any_cluster(
        dagbag_with_the_engine, monkeypatch):
    from tests.support.engines.rating_counts_engine import ENGINE

    monkeypatch.setenv(ENGINES_ENV, ENGINE_LOCATION)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
    monkeypatch.setattr(ENGINE, "memory_mb", 4000)
    with mock_aws(), emr_streaming_double():
        dag_run = run_dag(dagbag_with_the_engine, {**CONF, "target": "emr", "instance_type": "c5.xlarge"})
        assert boto3.client("emr", region_name=REGION).list_clusters()["Clusters"] == []
        buckets = boto3.client("s3", region_name=REGION).list_buckets()["Buckets"]
    states = task_states(dag_run)
    assert (states["validate_config"], states["stage_dataset"]) == ("failed", "upstream_failed")
    assert buckets == []  # nothing staged: not even the bucket was made


def test_the_refusal_names_the_need_and_the_types_limit(monkeypatch, storage_root):
    from movielens_emr.airflow import similarity_tasks as tasks
    from movielens_emr.config.params import InvalidParam, validate_run_config

    from tests.support.engines.rating_counts_engine import ENGINE

    monkeypatch.setenv(ENGINES_ENV, ENGINE_LOCATION)
    monkeypatch.setattr(ENGINE, "memory_mb", 4000)
    config = validate_run_config({**CONF, "target": "emr", "instance_type": "c5.xlarge"}, 20,
                                 engines=engine_names())
    refused = (r"c5.xlarge cannot hold the rating-counts engine's largest task on ml-latest-small-sample: it "
               r"needs about 4,000 MB.*3,072 MB")
    with pytest.raises(InvalidParam, match=refused):
        tasks.check_memory_fit(config)
    tasks.check_memory_fit(validate_run_config({**CONF, "target": "emr", "instance_type": "r5.xlarge"}, 20,
                                               engines=engine_names()))

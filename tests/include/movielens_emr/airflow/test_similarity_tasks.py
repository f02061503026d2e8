"""Task callables' checks that need no scheduler: the nodes' Python against the run's EMR release, the local
job's options, the diagnosis of failed stages."""
import json
import logging
from unittest import mock

import boto3
import pytest
from airflow.sdk.exceptions import AirflowSkipException
from moto import mock_aws

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.config.params import InvalidParam, validate_run_config
from movielens_emr.data.storage import run_folder

from tests.support.emr_double import emr_streaming_double


@pytest.fixture
def emr_deployment(monkeypatch):
    monkeypatch.setattr(tasks, "max_node_count", lambda: 20)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", "s3://bucket/movielens")


def test_python_3_11_on_a_release_without_it_fails_validation_naming_the_field(emr_deployment, monkeypatch):
    monkeypatch.setenv("MOVIELENS_EMR_PYTHON", "3.11")
    with pytest.raises(InvalidParam, match=r"^release_label: emr-7.0.0 has no Python 3.11"):
        tasks.validate_config({"target": "emr", "release_label": "emr-7.0.0"})
    config = tasks.validate_config({"target": "emr", "release_label": "emr-7.1.0"})
    assert config["release_label"] == "emr-7.1.0"


def test_an_unknown_node_python_fails_validation_naming_the_setting(emr_deployment, monkeypatch):
    monkeypatch.setenv("MOVIELENS_EMR_PYTHON", "3.10")
    with pytest.raises(InvalidParam, match="^MOVIELENS_EMR_PYTHON is '3.10'"):
        tasks.validate_config({"target": "emr"})


def test_the_local_target_does_not_care_about_the_nodes_python(monkeypatch, storage_root):
    monkeypatch.setattr(tasks, "max_node_count", lambda: 20)
    monkeypatch.setenv("MOVIELENS_EMR_PYTHON", "3.10")
    assert tasks.validate_config({"target": "local"})["target"] == "local"


@pytest.mark.parametrize("plan, extra", [
    ({"uri": "/root/runs/r/job/block_plan.json", "planned_skew": 1.02},
     ["--block-plan", "/root/runs/r/job/block_plan.json"]),
    ({"uri": None, "skipped": "MemoryError: "}, []),
])
def test_the_local_job_gets_the_runs_blocks_and_its_block_plan_if_any(plan, extra):
    config = validate_run_config({"target": "local", "dataset": "ml-25m", "node_count": 4}, 20)
    staged = {"movies_uri": "/root/datasets/ml-25m/c/movies.csv", "block_plan": plan}
    args = tasks.run_engine(config).job(config, staged).options_with_uris()
    assert args[args.index("--movie-blocks") + 1] == "23"  # stage2_layout's, as the plan was made for
    assert args[args.index("--items") + 1] == "/root/datasets/ml-25m/c/movies.csv"
    assert args[len(args) - len(extra):] == extra and args.count("--block-plan") == len(extra) // 2


BUCKET, REGION, RUN_ID = "tasks-test", "us-east-1", "manual__diagnosed"
CONFIG = {"target": "emr", "dataset": "ml-latest-small", "node_count": 2}


@pytest.fixture
def emr(monkeypatch):
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", f"s3://{BUCKET}/root")
    monkeypatch.setenv("MOVIELENS_LOG_WAIT_SECONDS", "5")
    with mock_aws():
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield boto3.client("emr", region_name=REGION)


def ended_cluster_with_stages(emr, args_of_stage):
    """A cluster whose stages (args_of_stage: each one's streaming args) ran on the EMR double, then ended."""
    cluster_id = emr.run_job_flow(
        Name="diagnosed", ReleaseLabel="emr-7.9.0", LogUri=f"s3://{BUCKET}/root/{run_folder(RUN_ID)}/logs/",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole")["JobFlowId"]
    steps = [{"Name": f"stage {number} of {len(args_of_stage)}", "ActionOnFailure": "CANCEL_AND_WAIT",
              "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args}}
             for number, args in enumerate(args_of_stage, start=1)]
    step_ids = emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=steps)["StepIds"]
    for _ in range(3 * len(steps)):
        emr.describe_step(ClusterId=cluster_id, StepId=step_ids[-1])
    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    return cluster_id, step_ids


def task_instance(cluster_id, step_ids):
    xcoms = {"create_cluster": cluster_id, "submit_stages": step_ids}
    return mock.Mock(xcom_pull=lambda task_ids: xcoms[task_ids])


def metrics_json():
    key = f"root/{run_folder(RUN_ID)}/metrics.json"
    s3 = boto3.client("s3", region_name=REGION)
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


@pytest.mark.parametrize("cluster_id, step_ids", [(None, None), ("j-1", None)])
def test_nothing_is_diagnosed_without_submitted_stages(emr, cluster_id, step_ids):
    with pytest.raises(AirflowSkipException, match="no stages were submitted to an EMR cluster"):
        tasks.diagnose_failure(CONFIG, RUN_ID, task_instance(cluster_id, step_ids))


def test_nothing_is_diagnosed_when_every_stage_completed(emr):
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="in/ratings.csv", Body=b"1,2,5\n")
    good = ["hadoop-streaming", "-input", f"s3://{BUCKET}/in/ratings.csv", "-output", f"s3://{BUCKET}/out",
            "-mapper", "cat", "-reducer", "cat"]
    with emr_streaming_double():
        cluster_id, step_ids = ended_cluster_with_stages(emr, [good])
        with pytest.raises(AirflowSkipException, match="every stage completed"):
            tasks.diagnose_failure(CONFIG, RUN_ID, task_instance(cluster_id, step_ids))


def test_a_failed_stage_is_diagnosed_into_the_log_and_a_metrics_json_of_its_own(emr, caplog):
    stale = {"run_id": RUN_ID, "output_pairs": 3, "wall_seconds": 9.0}  # an earlier try's success
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=BUCKET, Key=f"root/{run_folder(RUN_ID)}/metrics.json", Body=json.dumps(stale).encode())
    with emr_streaming_double(), caplog.at_level(logging.ERROR):
        cluster_id, step_ids = ended_cluster_with_stages(
            emr, [["hadoop-streaming", "-no-such-option"], ["hadoop-streaming"]])
        assert tasks.diagnose_failure(CONFIG, RUN_ID, task_instance(cluster_id, step_ids)) is None

    metrics = metrics_json()
    assert {name: metrics[name] for name in ("run_id", "target", "node_count", "cluster_id")} == {
        "run_id": RUN_ID, "target": "emr", "node_count": 2, "cluster_id": cluster_id}
    assert "output_pairs" not in metrics and "wall_seconds" not in metrics  # replaced, not merged
    failure = metrics["failure"]
    assert (failure["stage"], failure["step_id"], failure["stage_states"]) == (
        1, step_ids[0], ["FAILED", "CANCELLED"])
    assert failure["report"].startswith("stage 1 of 2 (stage 1 of 2) ended FAILED: ")
    assert failure["report"] in caplog.text


@pytest.mark.parametrize("message, cause", [
    ("the job's process exited with code 1; its last lines:\nmovie_similarities.TooManyBadLines: 30 of 50 "
     "ratings lines are bad", "TooManyBadLines"),
    ("exited with code 1; its last lines:\nItemsFileUnusable: --items movies.csv: No such file",
     "ItemsFileUnusable"),
    ("exited with code -9; its last lines:\nKilled", None),
    ("exited with code 1; its last lines:\nMemoryError: ", None),
])
def test_a_failure_of_the_input_is_told_from_one_a_retry_may_cure(message, cause):
    assert tasks.input_error(message, ("TooManyBadLines", "ItemsFileUnusable", "BadBlockPlan")) == cause

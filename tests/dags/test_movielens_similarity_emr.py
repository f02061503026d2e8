"""movielens_similarity's EMR target end to end, without AWS: moto plus a double that really runs the steps.

The EMR steps are run by tests/support/emr_double.py from their own HadoopJarStep.Args (the job
file and movies file fetched from moto's S3, the mapper/reducer commands run as processes), so a
wrong step definition, a wrong S3 layout or a wrong log location fails here.
"""
import collections
import csv
import io
import json
import os
import re
import statistics
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.airflow.operators import EmrClusterEndedSensor, EmrStagesSensor
from movielens_emr.config.params import InvalidParam
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import run_folder
from movielens_emr.emr.cluster import MANAGED_POLICY_TAG, PIPELINE_TAG
from movielens_emr.emr.steps import step_name
from movielens_emr.emr.wheelhouse import REQUIREMENTS_FILE, NodePython, locked_requirements, select_wheels
from movielens_emr.engine.similarity.job import STAGE_NAMES
from movielens_emr.reporting.history import (
    engine_for_url,
    ensure_schema,
    fetch_runs,
    history_engine,
    upsert_run,
)
from movielens_emr.reporting.metrics import parse_hadoop_counters
from movielens_emr.sizing.advise import main as advise_main
from movielens_emr.sizing.advise import plan_run, run_advice
from movielens_emr.sizing.history_rows import observation
from movielens_emr.sizing.model import CONFIDENCE_BOUNDS, NotEnoughHistory, fit_run_model
from movielens_emr.sizing.prices import hourly_price

from tests.support.credential_scan import files_under, find_leaks, make_canary, run_values, s3_objects
from tests.support.dag_runs import (
    BUCKET,
    DAG_ID,
    EMR_TASK_STATES,
    PREFIX,
    REGION,
    S3_ROOT,
    full_conf,
    run_dag,
    run_state,
    s3_bytes,
    s3_key,
    s3_keys,
    step_log,
    task_states,
    xcom,
)
from tests.support.dag_runs import (
    local_similarities_csv as local_results,
)
from tests.support.emr_double import emr_streaming_double

DATASET = "ml-latest-small"
RATINGS = 100_836
EMR_CONF = {"target": "emr", "dataset": DATASET, "node_count": 3}
# The deployment's setting: the runs' form leaves the field empty.
DEPLOYMENT_SECURITY_CONFIGURATION = "at-rest-sse"
# The same dataset again, on a fifth of the users: a cheaper second full run.
SECOND_CONF = {**EMR_CONF, "sample_fraction": 0.2}


def dataset_objects(s3, staged):
    """{key: (LastModified, ETag)} of a staged dataset's folder."""
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/{staged['folder']}/")["Contents"]
    return {item["Key"]: (item["LastModified"], item["ETag"]) for item in listed}


def csv_rows(data):
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def seconds(start, end):
    return round((end - start).total_seconds(), 3)


@pytest.fixture(scope="module")
def local_similarities_csv(dagbag, tmp_path_factory):
    """results/similarities.csv of the local target on the same data and parameters."""
    return local_results(dagbag, EMR_CONF, tmp_path_factory.mktemp("local-storage"))


@pytest.fixture(scope="module")
def emr_runs(dagbag):
    """Two EMR runs of the DAG on moto + the double; what the tests check, read before moto resets."""
    with pytest.MonkeyPatch.context() as env, mock_aws(), emr_streaming_double() as double:
        env.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
        env.setenv("MOVIELENS_EMR_SECURITY_CONFIGURATION", DEPLOYMENT_SECURITY_CONFIGURATION)
        s3, emr = boto3.client("s3", region_name=REGION), boto3.client("emr", region_name=REGION)
        first = run_dag(dagbag, EMR_CONF)
        assert run_state(first) == "success", task_states(first)
        staged = xcom(first, "stage_dataset")
        first_s3_keys, first_dataset_objects = s3_keys(s3, ""), dataset_objects(s3, staged)
        second = run_dag(dagbag, SECOND_CONF)
        assert run_state(second) == "success", task_states(second)
        cluster_id, step_ids = xcom(first, "create_cluster"), xcom(first, "submit_stages")
        return SimpleNamespace(
            first=first, second=second, double=double, cluster_id=cluster_id, step_ids=step_ids,
            first_states=task_states(first), second_states=task_states(second),
            staged=staged, staged_again=xcom(second, "stage_dataset"),
            cluster=emr.describe_cluster(ClusterId=cluster_id)["Cluster"],
            bootstrap_actions=emr.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"],
            second_bootstrap_actions=emr.list_bootstrap_actions(
                ClusterId=xcom(second, "create_cluster"))["BootstrapActions"],
            job_flow=emr.describe_job_flows(JobFlowIds=[cluster_id])["JobFlows"][0],
            instance_groups=emr.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"],
            listed_steps=emr.list_steps(ClusterId=cluster_id)["Steps"],
            steps=[emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"] for step_id in step_ids],
            csv=s3_bytes(s3, s3_key(first, "results/similarities.csv")),
            neighbours=json.loads(s3_bytes(s3, s3_key(first, "results/top_neighbours.json"))),
            metrics=json.loads(s3_bytes(s3, s3_key(first, "metrics.json"))),
            plan=json.loads(s3_bytes(s3, s3_key(first, "job/block_plan.json"))),
            second_metrics=json.loads(s3_bytes(s3, s3_key(second, "metrics.json"))),
            step_stderrs=[step_log(s3, first, cluster_id, step_id, "stderr.gz") for step_id in step_ids],
            first_s3_keys=first_s3_keys, s3_keys=s3_keys(s3, ""),
            first_dataset_objects=first_dataset_objects, dataset_objects=dataset_objects(s3, staged),
        )


# a. the EMR target under mock_aws + the double ------------------------------------------------------

def test_emr_run_succeeds_with_every_task_in_its_expected_state(emr_runs):
    assert run_state(emr_runs.first) == "success", emr_runs.first_states
    assert emr_runs.first_states == EMR_TASK_STATES
    assert run_state(emr_runs.second) == "success", emr_runs.second_states
    assert emr_runs.second_states == EMR_TASK_STATES


def test_emr_cluster_is_terminated_tagged_and_sized_as_requested(emr_runs):
    cluster, first = emr_runs.cluster, emr_runs.first
    assert cluster["Status"]["State"] == "TERMINATED"
    assert {"CreationDateTime", "ReadyDateTime", "EndDateTime"} <= set(cluster["Status"]["Timeline"])
    tags = {tag["Key"]: tag["Value"] for tag in cluster["Tags"]}
    assert tags == {PIPELINE_TAG[0]: PIPELINE_TAG[1], "movielens:dag_id": DAG_ID,
                    "movielens:run_id": first.run_id, MANAGED_POLICY_TAG[0]: MANAGED_POLICY_TAG[1]}
    assert cluster["ServiceRole"] == "EMR_DefaultRole_V2"
    assert cluster["LogUri"] == f"{S3_ROOT}/{run_folder(first.run_id)}/logs/"
    assert cluster["ReleaseLabel"] == "emr-7.9.0"
    assert cluster["AutoTerminate"] is False
    assert emr_runs.job_flow["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    groups = {group["InstanceGroupType"]: group for group in emr_runs.instance_groups}
    assert set(groups) == {"MASTER", "CORE"}
    assert groups["MASTER"]["RequestedInstanceCount"] == 1
    assert groups["CORE"]["RequestedInstanceCount"] == 2
    assert {group["InstanceType"] for group in groups.values()} == {"m5.xlarge"}


def test_emr_run_submits_exactly_three_streaming_stages_that_really_ran(emr_runs):
    assert len(emr_runs.listed_steps) == 3
    assert [step["Id"] for step in emr_runs.steps] == emr_runs.step_ids
    assert [step["Name"] for step in emr_runs.steps] == [
        step_name(number, STAGE_NAMES, emr_runs.first.run_id) for number in range(1, len(STAGE_NAMES) + 1)]
    assert all(step["Status"]["State"] == "COMPLETED" for step in emr_runs.steps)
    assert all(step["ActionOnFailure"] == "CANCEL_AND_WAIT" for step in emr_runs.steps)
    assert all(step["Config"]["Args"][0] == "hadoop-streaming" for step in emr_runs.steps)
    executions = [emr_runs.double.execution(step_id) for step_id in emr_runs.step_ids]
    assert [execution.state for execution in executions] == ["COMPLETED"] * 3
    # one map task per input object: the ratings file, then the 8 part files of the stage before
    assert [sum(task.kind == "map" for task in execution.tasks) for execution in executions] == [1, 8, 8]
    assert [sum(task.kind == "reduce" for task in execution.tasks) for execution in executions] == [8, 8, 8]
    stage_outputs = [key for key in emr_runs.first_s3_keys if "/output/stage-" in key]
    assert sorted({key.rsplit("/", 1)[-1] for key in stage_outputs}) == (
        ["_SUCCESS"] + [f"part-{number:05d}" for number in range(8)])


def test_emr_stage_2_gets_the_runs_block_plan_and_its_tasks_do_the_planned_work(emr_runs):
    staged, metrics, plan = emr_runs.staged["block_plan"], emr_runs.metrics, emr_runs.plan
    plan_uri = f"{S3_ROOT}/{run_folder(emr_runs.first.run_id)}/job/block_plan.json"
    assert staged["uri"] == metrics["block_plan"] == plan_uri and metrics["block_plan_skipped"] is None
    stage_args = [step["Config"]["Args"] for step in emr_runs.steps]
    stage_2 = emr_runs.double.execution(emr_runs.step_ids[1]).job
    assert (plan_uri, "block_plan.json") in stage_2.files
    for command in (stage_2.mapper, stage_2.reducer):
        assert command.endswith(f" --movie-blocks {plan['movie_blocks']} --items movies.csv "
                                "--block-plan block_plan.json")
    assert not any("block_plan" in arg for args in (stage_args[0], stage_args[2]) for arg in args)
    # made for the run's layout: 2 core nodes x 4 vCPUs, and stage2_layout's blocks
    assert (plan["movie_blocks"], plan["reduce_tasks"], stage_2.reduces) == (5, 8, 8)
    assert (staged["movie_blocks"], staged["reduce_tasks"]) == (5, 8)
    # Hadoop's partitioner followed the routes and each task did the work the plan measured, on the
    # second run's sample of users too: the skews planned from the data and counted by the tasks agree.
    assert staged["ratings"] == RATINGS
    for run_metrics in (metrics, emr_runs.second_metrics):
        assert 1 <= run_metrics["stage2_planned_skew"] == run_metrics["stage2_work_skew"] < 1.25
        assert run_metrics["stage2_reduce_tasks"] == 8
    assert emr_runs.staged_again["block_plan"]["ratings"] < RATINGS / 2


def test_emr_results_are_byte_identical_to_the_local_targets(emr_runs, local_similarities_csv):
    assert emr_runs.csv == local_similarities_csv
    rows = csv_rows(emr_runs.csv)
    assert rows[0] == ["movie_id", "movie_title", "similar_movie_id", "similar_movie_title", "score",
                       "co_raters"]
    assert len(rows) > 1000
    assert set(emr_runs.neighbours) == {row[0] for row in rows[1:]}


def test_emr_metrics_come_from_the_emr_timeline_and_the_step_counters(emr_runs):
    metrics, cluster_timeline = emr_runs.metrics, emr_runs.cluster["Status"]["Timeline"]
    assert metrics["target"] == "emr" and metrics["cluster_id"] == emr_runs.cluster_id
    assert metrics["node_count"] == 3 and metrics["run_id"] == emr_runs.first.run_id
    # the form's field as chosen, and what the cluster used
    assert metrics["security_configuration"] == ""
    assert metrics["cluster_security_configuration"] == DEPLOYMENT_SECURITY_CONFIGURATION
    assert emr_runs.cluster["SecurityConfiguration"] == DEPLOYMENT_SECURITY_CONFIGURATION
    assert metrics["stage_seconds"] == [
        seconds(step["Status"]["Timeline"]["StartDateTime"], step["Status"]["Timeline"]["EndDateTime"])
        for step in emr_runs.steps]
    assert all(stage > 0 for stage in metrics["stage_seconds"])
    assert metrics["cluster_seconds"] == seconds(
        cluster_timeline["CreationDateTime"], cluster_timeline["EndDateTime"])
    assert metrics["provisioning_seconds"] == seconds(
        cluster_timeline["CreationDateTime"], cluster_timeline["ReadyDateTime"])
    assert metrics["cluster_seconds"] >= sum(metrics["stage_seconds"])
    assert metrics["input_ratings"] == RATINGS
    assert metrics["bad_lines"] == 0
    assert metrics["output_pairs"] == len(csv_rows(emr_runs.csv)) - 1
    # the counters are the ones the hadoop client printed to the step's stderr, where EMR delivers it
    counters = parse_hadoop_counters(emr_runs.step_stderrs[0])
    assert counters["input: ratings read"] == RATINGS
    assert counters["Map-Reduce Framework: Map input records"] == RATINGS + 1  # and the CSV header
    assert parse_hadoop_counters(emr_runs.step_stderrs[2])["output: ordered pairs"] == metrics["output_pairs"]
    assert metrics["counters_read_from"] == [
        f"{S3_ROOT}/{run_folder(emr_runs.first.run_id)}/logs/{emr_runs.cluster_id}/steps/{step_id}/stderr.gz"
        for step_id in emr_runs.step_ids]
    assert metrics["counters_missing_stages"] == []
    # the second run sampled a fifth of the users: every rating read, fewer pairs
    assert emr_runs.second_metrics["input_ratings"] == RATINGS
    assert 0 < emr_runs.second_metrics["output_pairs"] < metrics["output_pairs"]


def test_emr_task_times_come_from_the_job_history_and_predict_other_node_counts(emr_runs):
    metrics = emr_runs.metrics
    times = metrics["task_times"]
    assert (times["source"], times["missing"]) == ("job history", None)
    logs = f"{S3_ROOT}/{run_folder(emr_runs.first.run_id)}/logs/{emr_runs.cluster_id}"
    histories = f"{logs}/hadoop-mapreduce/history/"
    assert all(uri.startswith(histories) and uri.endswith(".jhist.gz") for uri in times["read_from"])
    assert [(stage["mapper"]["tasks"], stage["reducer"]["tasks"]) for stage in times["stages"]] == [
        (1, 8), (8, 8), (8, 8)]
    # the durations are the tasks' own, as the double ran them (a map task's ends with its combiner)
    for stage, step_id in zip(times["task_seconds"], emr_runs.step_ids, strict=True):
        runs = emr_runs.double.execution(step_id).tasks
        reduces = sorted(run.finished - run.started for run in runs if run.kind == "reduce")
        assert sorted(stage["reducer"]) == pytest.approx(reduces, abs=0.002)
    prediction = metrics["one_run_prediction"]
    assert prediction["missing"] is None
    assert (prediction["from_node_count"], prediction["from_task_slots"]) == (3, 8)  # 2 core m5.xlarge
    by_nodes = {option["node_count"]: option for option in prediction["predictions"]}
    assert sorted(by_nodes) == list(range(1, 21)) and by_nodes[5]["task_slots"] == 16
    # its own node count predicts what was measured; fewer slots never run faster
    assert by_nodes[3]["cluster_seconds"] == pytest.approx(metrics["cluster_seconds"], abs=0.1)
    assert by_nodes[3]["cost_usd"] == pytest.approx(metrics["estimated_cost_usd"], abs=1e-3)
    assert by_nodes[1]["cluster_seconds"] >= by_nodes[3]["cluster_seconds"] >= by_nodes[20]["cluster_seconds"]
    assert emr_runs.second_metrics["one_run_prediction"]["missing"] is None


def test_emr_bootstrap_installs_the_staged_wheels_uploaded_once_for_both_runs(emr_runs):
    (action,) = emr_runs.bootstrap_actions
    wheelhouse, requirements, python, packages_dir = action["Args"]
    run_job = f"{S3_ROOT}/{run_folder(emr_runs.first.run_id)}/job"
    assert action["ScriptPath"] == f"{run_job}/install_job_requirements.sh"
    assert (requirements, python, packages_dir) == (
        f"{run_job}/emr_requirements.txt", "python3.9", "/usr/local/lib/movielens-job/python3.9")
    assert wheelhouse.startswith(f"{S3_ROOT}/wheelhouses/cp39-x86_64/")
    # the test deployment's wheelhouse (MOVIELENS_EMR_WHEELHOUSE): the 3.9 nodes' pinned wheels, the pins
    # staged with the job
    local = select_wheels(os.environ["MOVIELENS_EMR_WHEELHOUSE"], NodePython("3.9"),
                          locked_requirements(REQUIREMENTS_FILE))
    staged = sorted(key.rsplit("/", 1)[1] for key in emr_runs.first_s3_keys
                    if key.startswith(wheelhouse.removeprefix(f"s3://{BUCKET}/") + "/"))
    assert staged == sorted([*local, "_STAGED.json"])
    assert {name.split("-")[0] for name in local} == {"PyYAML", "mrjob", "numpy", "pip"}
    assert s3_key(emr_runs.first, "job/emr_requirements.txt") in emr_runs.first_s3_keys
    # the second run reuses the wheelhouse: one copy in the bucket
    assert emr_runs.second_bootstrap_actions[0]["Args"][0] == wheelhouse
    assert len({key.rsplit("/", 1)[0] for key in emr_runs.s3_keys if "/wheelhouses/" in key}) == 1


def test_emr_dataset_is_uploaded_once(emr_runs):
    assert emr_runs.staged["uploaded"] == ["movies.csv", "ratings.csv"]
    assert emr_runs.staged_again["uploaded"] == []
    assert emr_runs.staged_again["folder"] == emr_runs.staged["folder"]
    folder = f"{PREFIX}/{emr_runs.staged['folder']}/"
    staged_keys = [folder + name for name in ("_STAGED.json", "movies.csv", "ratings.csv")]
    assert sorted(emr_runs.first_dataset_objects) == staged_keys
    # the second run (more than a second later) rewrote none of them
    assert emr_runs.dataset_objects == emr_runs.first_dataset_objects
    assert sum(key.startswith(f"{PREFIX}/datasets/") for key in emr_runs.s3_keys) == 3


# b. the CLI against a moto server in this process, leaving no copy of its credentials ---------------

def test_cli_dags_test_runs_the_emr_target_against_a_moto_server(moto_server, airflow_db, tmp_path,
                                                                 local_similarities_csv):
    from conftest import TEST_ENV

    # Credentials shaped like a real key, in the connection and in the environment (moto takes any):
    # after the run, no copy of them may be anywhere it wrote.
    canary = make_canary()
    log_folder = tmp_path / "airflow-logs"
    # os.environ wins over TEST_ENV: tests may have changed a setting for this process.
    env = {**TEST_ENV, **os.environ,
           "MOVIELENS_STORAGE_ROOT": S3_ROOT,
           "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
               {"conn_type": "aws", "login": canary.access_key_id, "password": canary.secret_access_key,
                "extra": {"endpoint_url": moto_server, "region_name": REGION}}),
           "AWS_ACCESS_KEY_ID": canary.access_key_id, "AWS_SECRET_ACCESS_KEY": canary.secret_access_key,
           "AWS_DEFAULT_REGION": REGION,
           # A log folder of this run's own, so that every file in it was written by this run.
           "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(log_folder)}
    env.pop("AWS_ENDPOINT_URL", None)
    airflow = Path(sys.executable).parent / "airflow"
    log_file = tmp_path / "dags-test.log"
    with emr_streaming_double() as double, open(log_file, "wb") as log:
        done = subprocess.run([str(airflow), "dags", "test", DAG_ID, "-c", json.dumps(EMR_CONF)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, timeout=600, check=False)
    output = log_file.read_text(errors="replace")
    assert done.returncode == 0, output[-5000:]

    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_server,
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    emr = boto3.client("emr", region_name=REGION, endpoint_url=moto_server,
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = s3_keys(s3, f"{PREFIX}/runs/")
    runs = {key.split("/")[2] for key in keys}
    assert len(runs) == 1, runs
    (run,) = runs
    results = s3_bytes(s3, f"{PREFIX}/runs/{run}/results/similarities.csv")
    metrics = json.loads(s3_bytes(s3, f"{PREFIX}/runs/{run}/metrics.json"))
    assert results == local_similarities_csv
    assert f"{PREFIX}/runs/{run}/results/top_neighbours.json" in keys
    assert metrics["target"] == "emr" and metrics["input_ratings"] == RATINGS
    assert metrics["output_pairs"] == len(csv_rows(results)) - 1
    assert len(metrics["stage_seconds"]) == 3 and all(stage > 0 for stage in metrics["stage_seconds"])
    # the steps ran in the server's thread, in this process
    assert [execution.state for execution in double.executions] == ["COMPLETED"] * 3
    cluster = emr.describe_cluster(ClusterId=metrics["cluster_id"])["Cluster"]
    assert cluster["Status"]["State"] == "TERMINATED"

    # `airflow dags test` runs the tasks in its own process: their logs are in its output.
    assert "run configuration: RunConfig(" in output and f"metrics of {metrics['run_id']}" in output
    database = Path(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///"))
    stored = run_values(database, metrics["run_id"])
    assert "xcom task_id=plan_emr_run map_index=-1 key=job_flow" in stored
    written = s3_objects(s3, BUCKET, "")  # the server was reset before the run
    run_uri = f"{S3_ROOT}/runs/{run}"
    assert {f"{run_uri}/metrics.json", f"{run_uri}/results/similarities.csv"} <= set(written)
    assert any(uri.startswith(f"{run_uri}/logs/") and uri.endswith("/stderr.gz") for uri in written)
    places = {"the output of airflow dags test": output, **files_under(log_folder), **stored, **written}
    leaks = find_leaks(places, canary)
    assert not leaks, "the run copied its AWS credentials to:\n" + "\n".join(leaks)


# c. the EMR tasks' waiting, whatever [operators] default_deferrable says ----------------------------

def test_only_the_sensors_wait_and_the_stage_wait_explains_failures_itself(dagbag):
    dag = dagbag.get_dag(DAG_ID)
    submit, terminate = dag.get_task("submit_stages"), dag.get_task("terminate_cluster")
    assert (submit.wait_for_completion, submit.deferrable) == (False, False)
    assert terminate.deferrable is False
    wait_for_stages = dag.get_task("wait_for_stages")
    assert wait_for_stages.operator_class is EmrStagesSensor  # a mapped sensor: its class, not an instance
    assert not wait_for_stages.partial_kwargs.get("on_failure_callback")  # no callback: the sensor explains
    assert isinstance(dag.get_task("wait_for_termination"), EmrClusterEndedSensor)


# d. the sizing advisor fed by the history rows of these emulated runs -------------------------------
# The two runs of emr_runs (3 nodes) and two more on 2 nodes: runs on two node counts, as the advisor
# needs; then a run whose node count it chooses from those four rows. Small samples: cheap runs that
# still count their pair work. The emulated clusters' times are moto's timeline around steps that all
# run on this machine, whatever the node count: the fit is whatever those times make of it, so the
# checks are the advisor's rules applied to the rows' own figures, not a particular node count.
MORE_HISTORY_CONFS = [{**EMR_CONF, "node_count": 2, "sample_fraction": fraction} for fraction in (0.1, 0.05)]
ADVISED_CONF = {**EMR_CONF, "node_count": None, "deadline_minutes": 30, "sample_fraction": 0.05}
ADVISED_MAX_NODES = 3
# The Variable movielens_hourly_prices for the runs after emr_runs (which priced at the built-in table).
PRICES = {"m5.xlarge": 0.5}


def advisor_rows(engine):
    """The history rows the advisor is fed, as validate_config and the command line read them."""
    return fetch_runs(engine, target="emr", outcome="success", limit=10_000)


def history_database(path, rows):
    """A history database holding exactly `rows`; its SQLAlchemy URL."""
    url = f"sqlite:///{path}"
    engine = engine_for_url(url)
    ensure_schema(engine)
    for row in rows:
        upsert_run(engine, row)
    return url


def pair_work_of(dataset, sample_fraction):
    """Sum over the sampled users of (movies each rated)^2, counted here from the ratings file itself."""
    movies = collections.defaultdict(set)
    with open(Path(os.environ["MOVIELENS_SOURCE_DIR"]) / dataset / "ratings.csv") as lines:
        next(lines)
        for line in lines:
            user, movie = line.split(",", 2)[:2]
            if sample_fraction >= 1 or zlib.crc32(user.encode()) < sample_fraction * 2**32:
                movies[user].add(movie)
    return sum(len(rated) ** 2 for rated in movies.values())


@pytest.fixture(scope="module")
def advisor_runs(dagbag, emr_runs, tmp_path_factory):
    """emr_runs' history rows, two more runs', and a run left to the advisor; read before moto resets."""
    # emr_runs recorded its rows where the pipeline does by default, beside rows of other tests: those
    # two rows are copied into a database of this fixture's own, which the later runs use.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
        default_history = history_engine(settings_from_env())
    run_ids = {emr_runs.first.run_id, emr_runs.second.run_id}
    database = history_database(tmp_path_factory.mktemp("advisor-history") / "history.sqlite",
                                [row for row in advisor_rows(default_history) if row["run_id"] in run_ids])
    engine = engine_for_url(database)
    with pytest.MonkeyPatch.context() as env, mock_aws(), emr_streaming_double():
        env.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
        env.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY", database)
        env.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", json.dumps(PRICES))
        env.setenv("AIRFLOW_VAR_MOVIELENS_MAX_NODE_COUNT", str(ADVISED_MAX_NODES))
        emr_rows = advisor_rows(engine)
        for conf in MORE_HISTORY_CONFS:
            more = run_dag(dagbag, conf)
            assert run_state(more) == "success", task_states(more)
        rows = advisor_rows(engine)
        advised = run_dag(dagbag, ADVISED_CONF)
        assert run_state(advised) == "success", task_states(advised)
        s3, emr = boto3.client("s3", region_name=REGION), boto3.client("emr", region_name=REGION)
        groups = emr.list_instance_groups(ClusterId=xcom(advised, "create_cluster"))["InstanceGroups"]
        return SimpleNamespace(
            emr_rows=emr_rows, rows=rows, advised=advised, history=advisor_rows(engine),
            metrics=json.loads(s3_bytes(s3, s3_key(advised, "metrics.json"))),
            nodes={group["InstanceGroupType"]: group["RequestedInstanceCount"] for group in groups})


def test_emr_runs_record_the_figures_the_advisor_fits(emr_runs, advisor_runs):
    assert {row["run_id"] for row in advisor_runs.emr_rows} == {emr_runs.first.run_id, emr_runs.second.run_id}
    confs = [EMR_CONF, SECOND_CONF, *MORE_HISTORY_CONFS]
    by_fraction = {row["sample_fraction"]: row for row in advisor_runs.rows}
    assert len(advisor_runs.rows) == 4
    fractions = [conf.get("sample_fraction", 1.0) for conf in confs]
    assert sorted(by_fraction) == sorted(fractions)
    for conf, fraction in zip(confs, fractions, strict=True):
        row = by_fraction[fraction]
        assert (row["target"], row["instance_type"], row["dataset"], row["node_count"]) == (
            "emr", "m5.xlarge", DATASET, conf["node_count"])
        # the pair work counted by stage 1 on the emulated cluster, read from its step log
        assert row["pair_work"] == pair_work_of(DATASET, fraction)
        assert row["cluster_seconds"] > row["provisioning_seconds"] >= 0
        assert row["predicted_cluster_seconds"] is None and row["prediction_error"] is None
    # emr_runs priced at the built-in table, the later runs at the Variable
    assert {row["price_per_node_hour_usd"] for row in advisor_runs.emr_rows} == {hourly_price("m5.xlarge")}
    assert {row["price_per_node_hour_usd"] for row in advisor_runs.rows} - {hourly_price("m5.xlarge")} == {
        PRICES["m5.xlarge"]}
    assert by_fraction[1.0]["pair_work"] == emr_runs.metrics["pair_work"]


def test_too_few_node_counts_in_the_emr_history_are_refused_with_the_reason(advisor_runs, tmp_path,
                                                                            monkeypatch, capsys):
    """emr_runs alone: two runs, both on 3 nodes. No fit: the plan, the command line and the form say why."""
    reason = r"2 usable runs on node counts \[3\]: the model needs at least 4 successful runs"
    with pytest.raises(NotEnoughHistory, match=reason):
        plan_run(advisor_runs.emr_rows, DATASET, "emr", "m5.xlarge", 0.24, 0.05)
    arguments = ["--dataset", DATASET, "--sample-fraction", "0.05", "--deadline-minutes", "30"]
    assert advise_main(arguments, rows=advisor_runs.emr_rows, price_overrides={}) == 2
    assert re.search(f"^advise: {reason}", capsys.readouterr().err)
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
    monkeypatch.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY",
                       history_database(tmp_path / "history.sqlite", advisor_runs.emr_rows))
    with pytest.raises(InvalidParam, match=f"^node_count: the sizing advisor cannot choose it: {reason}"):
        tasks.validate_config(full_conf(ADVISED_CONF))


def test_the_advisor_plans_from_the_emr_rows_figures(advisor_runs):
    rows, price = advisor_runs.rows, PRICES["m5.xlarge"]
    plan = plan_run(rows, DATASET, "emr", "m5.xlarge", price, 0.05, range(1, ADVISED_MAX_NODES + 1),
                    deadline_minutes=30)
    model = plan["model"]
    assert (model["runs"], model["runs_skipped"], model["node_range"]) == (4, 0, [2, 3])
    # fitted stage by stage to the rows' own node counts (their core nodes run the tasks), stage seconds,
    # ratings read, pair work, output pairs and cluster seconds beyond provisioning
    assert model["formula"].startswith("per stage, seconds on m machines")
    assert model["coefficients"] == pytest.approx(
        fit_run_model([observation(row) for row in rows], target="emr").coefficient_dict())
    works = [row["pair_work"] for row in rows]
    assert model["work_range"] == [min(works), max(works)]
    assert model["provisioning_seconds"] == statistics.median(row["provisioning_seconds"] for row in rows)
    # the planned input (sample fraction 0.05) ran: its W as that run's stage 1 counted it, never scaled
    [same_input] = [row for row in rows if row["sample_fraction"] == 0.05]
    assert plan["pair_work"] == same_input["pair_work"]
    assert plan["pair_work_source"].startswith("W measured by a run of the same input")
    for option in plan["predictions"]:
        assert option["cost_usd"] == pytest.approx(
            option["node_count"] * option["cluster_seconds"] / 3600 * price, abs=1e-3)
        # whatever the emulated times make of the fit: outside the measured counts the advisor says so,
        # and its confidence follows from the leave-one-out error only within them
        outside = not 2 <= option["node_count"] <= 3
        assert any("nodes is outside the measured 2-3" in note for note in option["extrapolation"]) == outside
        expected = "low" if option["extrapolation"] else next(
            (label for label, bound in CONFIDENCE_BOUNDS.items() if model["loo_p90_error"] <= bound), "low")
        assert option["confidence"] == expected
    chosen = plan["recommendation"]
    within = [option for option in plan["predictions"] if option["cluster_seconds"] <= 30 * 60]
    assert chosen["cost_usd"] == min(option["cost_usd"] for option in within)


def test_the_command_line_plans_from_the_emr_history_at_the_pipelines_prices(advisor_runs, tmp_path):
    from conftest import TEST_ENV

    env = {**TEST_ENV, **os.environ, "AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES": json.dumps(PRICES),
           "AIRFLOW_CONN_MOVIELENS_HISTORY": history_database(tmp_path / "history.sqlite", advisor_runs.rows)}
    done = subprocess.run(
        [sys.executable, "-m", "movielens_emr.sizing.advise", "--dataset", DATASET,
         "--sample-fraction", "0.05", "--max-nodes", str(ADVISED_MAX_NODES), "--deadline-minutes", "30",
         "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    plan = plan_run(advisor_runs.rows, DATASET, "emr", "m5.xlarge", PRICES["m5.xlarge"], 0.05,
                    range(1, ADVISED_MAX_NODES + 1), deadline_minutes=30)
    printed = json.loads(done.stdout)
    assert printed.pop("price") == {"instance_type": "m5.xlarge", "usd_per_node_hour": PRICES["m5.xlarge"],
                                    "source": "variable",
                                    "description": "from the Airflow Variable movielens_hourly_prices"}
    assert printed == json.loads(json.dumps(plan))


def test_a_run_left_to_the_advisor_records_its_prediction_and_error(advisor_runs):
    from movielens_emr.engine.similarity.block_plan import pair_work_of_files

    from conftest import MOVIELENS

    counted = pair_work_of_files([MOVIELENS / DATASET / "ratings.csv"], 0.05)  # as validate_config counts it
    advice = run_advice(advisor_runs.rows, DATASET, "emr", "m5.xlarge", PRICES["m5.xlarge"], 0.05, None,
                        ADVISED_MAX_NODES, deadline_minutes=30, pair_work=counted)
    metrics = advisor_runs.metrics
    assert metrics["advice"] == advice and advice["chosen_by"] == "advisor"
    assert metrics["node_count"] == advice["node_count"] and advice["model_runs"] == 4
    assert advisor_runs.nodes["MASTER"] + advisor_runs.nodes.get("CORE", 0) == advice["node_count"]
    [row] = [row for row in advisor_runs.history if row["run_id"] == advisor_runs.advised.run_id]
    assert (row["node_count"], row["price_per_node_hour_usd"]) == (advice["node_count"], PRICES["m5.xlarge"])
    assert row["cluster_seconds"] == metrics["cluster_seconds"]
    assert row["predicted_cluster_seconds"] == advice["predicted_cluster_seconds"]
    predicted = advice["predicted_cluster_seconds"]
    assert row["prediction_error"] == round((row["cluster_seconds"] - predicted) / predicted, 4)
    # and the run itself now informs the next plan
    assert plan_run(advisor_runs.history, DATASET, "emr", "m5.xlarge", 0.5, 0.05)["model"]["runs"] == 5

"""movielens_similarity's EMR target on every node Python the pipeline supports, through the real bootstrap.

The EMR double (tests/support/emr_double.py) runs the cluster's bootstrap action as EMR does, the
pipeline's script with its own Args: the pinned wheels fetched from the emulated S3 with `aws s3 cp`,
checked against their hashes and installed into the node's packages folder. Then it runs each step's
tasks with the interpreter the step names, a bare CPython 3.9 or 3.11 as an EMR 7 node has, which finds
only what the bootstrap installed. A job that needs a newer Python than its nodes', or a wheel that does
not fit them, fails here as it would on EMR. Each run is checked exact against the local target's result.
"""
import gzip
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from movielens_emr.emr.wheelhouse import DEFAULT_NODE_PYTHON, PACKAGES_ROOT

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
from tests.support.dag_runs import (
    local_similarities_csv as local_results,
)
from tests.support.emr_double import emr_streaming_double

CONF = {"target": "emr", "dataset": "ml-100k", "node_count": 3}
NODE_PYTHONS = ("3.9", "3.11")
PINNED = ("numpy 2.0.2", "mrjob 0.7.4", "pyyaml 6.0.2")


@pytest.fixture(scope="module")
def local_similarities_csv(dagbag, tmp_path_factory):
    """results/similarities.csv of the local target on the same data and parameters."""
    return local_results(dagbag, CONF, tmp_path_factory.mktemp("local-storage"))


@pytest.fixture(scope="module", params=NODE_PYTHONS)
def emr_run(request, dagbag):
    """One EMR run with MOVIELENS_EMR_PYTHON at the version (3.9 left to the default); what it left."""
    version = request.param
    with pytest.MonkeyPatch.context() as env, mock_aws(), emr_streaming_double() as double:
        env.setenv("MOVIELENS_STORAGE_ROOT", S3_ROOT)
        if version == DEFAULT_NODE_PYTHON:
            env.delenv("MOVIELENS_EMR_PYTHON", raising=False)
        else:
            env.setenv("MOVIELENS_EMR_PYTHON", version)
        dag_run = run_dag(dagbag, CONF)
        s3, emr = boto3.client("s3", region_name=REGION), boto3.client("emr", region_name=REGION)
        cluster_id = xcom(dag_run, "create_cluster")
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"] if cluster_id else None
        (bootstrap,) = double.bootstraps or (None,)
        bootstrap_stdout = None
        if bootstrap is not None and cluster is not None:
            (instance,) = [item["Ec2InstanceId"] for item in emr.list_instances(
                ClusterId=cluster_id, InstanceGroupTypes=["MASTER"])["Instances"]]
            log_key = s3_key(dag_run, f"logs/{cluster_id}/node/{instance}/bootstrap-actions/1/stdout.gz")
            bootstrap_stdout = gzip.decompress(s3_bytes(s3, log_key)).decode()
        return SimpleNamespace(
            version=version, dag_run=dag_run, states=task_states(dag_run), cluster=cluster,
            bootstrap=bootstrap, bootstrap_stdout=bootstrap_stdout, executions=list(double.executions),
            csv=s3_bytes(s3, s3_key(dag_run, "results/similarities.csv"))
            if run_state(dag_run) == "success" else None)


def test_the_run_succeeds_and_its_cluster_ends_terminated(emr_run):
    assert run_state(emr_run.dag_run) == "success", emr_run.states
    assert emr_run.states == EMR_TASK_STATES
    assert emr_run.cluster["Status"]["State"] == "TERMINATED"


def test_the_bootstrap_installed_the_pinned_packages_for_the_nodes_python(emr_run):
    run = emr_run.bootstrap
    assert run is not None and run.returncode == 0, run and run.stderr.decode()[-3000:]
    packages = f"{PACKAGES_ROOT}/python{emr_run.version}"
    assert run.path.endswith("/job/install_job_requirements.sh")
    assert run.args[2] == f"python{emr_run.version}" and run.args[3].endswith(packages)
    # the script's own check, in its log on S3 where EMR delivers it: each package imports from the folder
    for package in PINNED:
        assert f"{package}: " in emr_run.bootstrap_stdout
    assert all(line.endswith(packages) for line in emr_run.bootstrap_stdout.splitlines() if " from " in line)


def test_every_task_ran_under_the_nodes_python(emr_run):
    assert [execution.state for execution in emr_run.executions] == ["COMPLETED"] * 3
    commands = [task.command for execution in emr_run.executions for task in execution.tasks
                if task.command != "cat"]
    assert commands and all(command.startswith(f"python{emr_run.version} movie_similarities.py ")
                            for command in commands)
    assert all(execution.job.cmdenv["PYTHONPATH"] == f"{PACKAGES_ROOT}/python{emr_run.version}"
               for execution in emr_run.executions)


def test_the_results_are_byte_identical_to_the_local_targets(emr_run, local_similarities_csv):
    assert emr_run.csv == local_similarities_csv

"""Running movielens_similarity with dag.test on moto, and reading what a run left behind."""
import copy
import gzip

import pytest

from movielens_emr.config.params import DEFAULT_MAX_NODE_COUNT, param_schemas
from movielens_emr.data.storage import run_folder

DAG_ID = "movielens_similarity"
REGION = "us-east-1"
BUCKET = "movielens-test"
PREFIX = "pipeline"
S3_ROOT = f"s3://{BUCKET}/{PREFIX}"
ENDED_CLUSTER_STATES = ("TERMINATED", "TERMINATED_WITH_ERRORS")
EMR_TASK_STATES = {  # of a run of the EMR target that succeeded
    "validate_config": "success", "stage_dataset": "success", "choose_target": "success",
    "plan_emr_run": "success", "create_cluster": "success", "submit_stages": "success",
    "prepare_stage_wait": "success", "wait_for_stages[0]": "success", "terminate_cluster": "success",
    "wait_for_termination": "success", "run_local_job": "skipped", "collect_results": "success",
    "record_metrics": "success", "diagnose_failure": "skipped", "record_run_history": "success",
}


def full_conf(conf):
    """Every parameter of the form, its default unless conf sets it."""
    schemas = param_schemas(DEFAULT_MAX_NODE_COUNT, "local")
    return {**{name: spec["default"] for name, spec in schemas.items()}, **conf}


def run_dag(dagbag, conf):
    """dag.test of a copy of the DAG, with every parameter given.

    dag.test runs the tasks in this process, where resolving a run's params writes the run's conf
    into the Param objects of the DAG's tasks: on the shared DAG object one run's conf would become
    the next run's defaults (here and in other test modules). A copy per run keeps runs apart.
    """
    return copy.deepcopy(dagbag.get_dag(DAG_ID)).test(run_conf=full_conf(conf))


def task_states(dag_run):
    return {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state)
            for ti in dag_run.get_task_instances()}


def run_state(dag_run):
    return str(dag_run.state)


def xcom(dag_run, task_id):
    return dag_run.get_task_instance(task_id).xcom_pull(task_ids=task_id)


def s3_key(dag_run, name):
    return f"{PREFIX}/{run_folder(dag_run.run_id)}/{name}"


def s3_bytes(s3, key):
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def s3_keys(s3, prefix):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def step_log(s3, dag_run, cluster_id, step_id, name):
    """A step log EMR delivers under the cluster's LogUri (the run's logs/ folder), unzipped."""
    key = s3_key(dag_run, f"logs/{cluster_id}/steps/{step_id}/{name}")
    return gzip.decompress(s3_bytes(s3, key)).decode()


def cluster_states(emr):
    """{cluster id: state} of every cluster the account has."""
    pages = emr.get_paginator("list_clusters").paginate()
    return {cluster["Id"]: cluster["Status"]["State"] for page in pages for cluster in page["Clusters"]}


def live_clusters(emr):
    """Clusters not ended: each one a leak once a run is over."""
    return {cluster_id: state for cluster_id, state in cluster_states(emr).items()
            if state not in ENDED_CLUSTER_STATES}


def local_similarities_csv(dagbag, conf, root):
    """results/similarities.csv of conf run on the local target (mrjob's local runner), stored under root:
    what an EMR run of the same data and parameters must match byte for byte."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOVIELENS_STORAGE_ROOT", str(root))
        dag_run = run_dag(dagbag, {**conf, "target": "local"})
    assert run_state(dag_run) == "success", task_states(dag_run)
    return (root / run_folder(dag_run.run_id) / "results" / "similarities.csv").read_bytes()

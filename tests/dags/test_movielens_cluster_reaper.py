"""movielens_cluster_reaper against moto: leaked pipeline clusters end, others are left alone."""
import boto3
import pytest
from moto import mock_aws


def run_cluster(emr, name, tags):
    return emr.run_job_flow(
        Name=name, ReleaseLabel="emr-7.9.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1,
                   "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole", ServiceRole="EMR_DefaultRole",
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()])["JobFlowId"]


@pytest.fixture
def dag(dagbag):
    return dagbag.get_dag("movielens_cluster_reaper")


def test_reaper_terminates_leaked_pipeline_clusters_only(dag):
    with mock_aws():
        emr = boto3.client("emr", region_name="us-east-1")
        leaked = run_cluster(emr, "leaked", {"movielens:pipeline": "movielens-similarity",
                                             "movielens:dag_id": "movielens_similarity",
                                             "movielens:run_id": "manual__worker-died"})
        foreign = run_cluster(emr, "foreign", {"team": "analytics"})
        run = dag.test()
        states = {cluster_id: emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"]
                  for cluster_id in (leaked, foreign)}
    assert run.state == "success"
    assert states == {leaked: "TERMINATED", foreign: "WAITING"}


def test_reaper_is_hourly_and_documented(dag):
    assert dag.timetable.expression == "0 * * * *"
    assert "idle\nauto-termination" in dag.doc_md


def test_reaper_stops_the_local_job_of_an_ended_run(dag, storage_root):
    """A local job whose run is not queued or running (its task died, say) is stopped by the reaper."""
    import subprocess

    from movielens_emr.data.storage import claim_run_folder, open_storage
    from movielens_emr.local import runner as local_run

    folder = storage_root / claim_run_folder(open_storage(str(storage_root)), "manual__worker-died")
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        local_run.record_job(folder / "local-job", leftover.pid)
        with mock_aws():
            run = dag.test()
        assert run.state == "success"
        assert local_run.group_members(leftover.pid) == []
    finally:
        leftover.kill()
        leftover.wait()

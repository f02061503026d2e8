"""The EMR job flow request built from a run's parameters."""
import pytest

from movielens_emr.config.capacity import task_slots
from movielens_emr.config.params import validate_run_config
from movielens_emr.config.settings import ClusterSettings
from movielens_emr.emr.cluster import build_job_flow, node_python_for
from movielens_emr.emr.wheelhouse import NodePython

JOB_FILES = {"job": "s3://b/runs/r/job/movie_similarities.py", "bootstrap": "s3://b/runs/r/job/install.sh",
             "requirements": "s3://b/runs/r/job/emr_requirements.txt", "wheelhouse": "s3://b/wheelhouses/cp39/c"}
DEFAULT_SETTINGS = ClusterSettings()


def job_flow(settings=DEFAULT_SETTINGS, **params):
    config = validate_run_config({"target": "emr", **params}, max_node_count=20)
    return build_job_flow(config, "movielens_similarity", "manual__1", "s3://b/runs/r/logs/", JOB_FILES,
                          settings)


def test_one_master_and_node_count_minus_one_core_nodes_as_integers():
    groups = job_flow(node_count=4, instance_type="m5.2xlarge")["Instances"]["InstanceGroups"]
    assert [(g["InstanceRole"], g["InstanceType"], g["InstanceCount"]) for g in groups] == [
        ("MASTER", "m5.2xlarge", 1), ("CORE", "m5.2xlarge", 3)]
    assert all(type(g["InstanceCount"]) is int for g in groups)


def test_a_single_node_cluster_has_only_a_master():
    groups = job_flow(node_count=1)["Instances"]["InstanceGroups"]
    assert [g["InstanceRole"] for g in groups] == ["MASTER"]


def test_release_hadoop_logs_bootstrap_and_backstops():
    request = job_flow(release_label="emr-7.2.0")
    assert request["ReleaseLabel"] == "emr-7.2.0"
    assert request["Applications"] == [{"Name": "Hadoop"}]
    assert request["LogUri"] == "s3://b/runs/r/logs/"
    assert request["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert request["Instances"]["TerminationProtected"] is False
    assert request["AutoTerminationPolicy"]["IdleTimeout"] == 3600


def test_tags_name_the_dag_and_the_run_and_carry_the_managed_policys_tag():
    tags = {tag["Key"]: tag["Value"] for tag in job_flow()["Tags"]}
    assert tags == {"movielens:pipeline": "movielens-similarity", "movielens:dag_id": "movielens_similarity",
                    "movielens:run_id": "manual__1", "for-use-with-amazon-emr-managed-policies": "true"}


def test_the_default_roles_are_emrs_current_ones():
    request = job_flow()
    assert (request["ServiceRole"], request["JobFlowRole"]) == ("EMR_DefaultRole_V2", "EMR_EC2_DefaultRole")


def test_the_bootstrap_installs_the_staged_wheels_for_the_nodes_python():
    action = job_flow()["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert action == {"Path": "s3://b/runs/r/job/install.sh", "Args": [
        "s3://b/wheelhouses/cp39/c", "s3://b/runs/r/job/emr_requirements.txt", "python3.9",
        "/usr/local/lib/movielens-job/python3.9"]}


def test_python_3_11_reaches_the_bootstrap_where_the_release_has_it():
    action = job_flow(ClusterSettings(node_python="3.11"), release_label="emr-7.1.0",
                      instance_type="m7g.xlarge")["BootstrapActions"][0]["ScriptBootstrapAction"]
    assert action["Args"][2:] == ["python3.11", "/usr/local/lib/movielens-job/python3.11"]


def test_python_3_11_on_a_release_without_it_is_refused():
    with pytest.raises(ValueError, match="release_label: emr-7.0.0 has no Python 3.11"):
        job_flow(ClusterSettings(node_python="3.11"), release_label="emr-7.0.0")


def test_node_python_for_gives_the_arm_wheels_to_graviton_clusters():
    config = validate_run_config({"target": "emr", "instance_type": "m6g.xlarge"}, max_node_count=20)
    assert node_python_for(config, ClusterSettings()) == NodePython("3.9", "aarch64")


def test_deployment_settings_reach_the_request():
    settings = ClusterSettings(job_flow_role="JobRole", service_role="ServiceRole", subnet_id="subnet-1",
                               security_configuration="secure")
    request = job_flow(settings)
    assert (request["JobFlowRole"], request["ServiceRole"]) == ("JobRole", "ServiceRole")
    assert request["Instances"]["Ec2SubnetId"] == "subnet-1"
    assert request["SecurityConfiguration"] == "secure"
    assert "Ec2SubnetId" not in job_flow()["Instances"] and "SecurityConfiguration" not in job_flow()


@pytest.mark.parametrize("form, environment, chosen", [
    ("from-the-form", "from-the-environment", "from-the-form"),
    ("", "from-the-environment", "from-the-environment"),
    ("from-the-form", "", "from-the-form"),
])
def test_the_forms_security_configuration_wins_over_the_environments(form, environment, chosen):
    request = job_flow(ClusterSettings(security_configuration=environment), security_configuration=form)
    assert request["SecurityConfiguration"] == chosen


def test_no_security_configuration_from_form_or_environment_leaves_the_key_out():
    request = job_flow(ClusterSettings(security_configuration=""), security_configuration="")
    assert "SecurityConfiguration" not in request


def test_build_job_flow_takes_the_settings_the_plan_task_passes():
    # tasks.plan_emr_run passes the ClusterSettings positionally, after the staged job files.
    config = validate_run_config({"target": "emr", "security_configuration": "from-the-form"},
                                 max_node_count=20)
    request = build_job_flow(config, "movielens_similarity", "manual__1", "s3://b/logs/", JOB_FILES,
                             ClusterSettings(security_configuration="from-the-environment"))
    assert request["SecurityConfiguration"] == "from-the-form"


@pytest.mark.parametrize("node_count, instance_type, slots", [
    (1, "m5.xlarge", 4), (4, "m5.xlarge", 12), (8, "m5.2xlarge", 56), (3, "x9.unknown", 8)])
def test_task_slots_count_core_vcpus(node_count, instance_type, slots):
    config = validate_run_config({"node_count": node_count}, max_node_count=20)
    assert task_slots(config.__class__(**{**config.__dict__, "instance_type": instance_type})) == slots


@pytest.mark.parametrize(("engine", "applications"), [("similarity", ["Hadoop"]),
                                                      ("als", ["Hadoop", "Spark"])])
def test_the_cluster_gets_the_applications_its_engine_needs(engine, applications):
    config = validate_run_config({"target": "emr", "engine": engine}, max_node_count=20,
                                 engines=("similarity", "als"))
    request = build_job_flow(config, "movielens_similarity", "manual__1", "s3://b/runs/r/logs/", JOB_FILES)
    assert request["Applications"] == [{"Name": name} for name in applications]


def test_spot_task_nodes_are_a_task_group_on_spot_of_the_run_and_master_and_core_stay_on_demand():
    request = job_flow(node_count=5, spot_task_nodes=3, instance_type="r5.xlarge")
    groups = request["Instances"]["InstanceGroups"]
    assert [(g["InstanceRole"], g["Market"], g["InstanceType"], g["InstanceCount"]) for g in groups] == [
        ("MASTER", "ON_DEMAND", "r5.xlarge", 1), ("CORE", "ON_DEMAND", "r5.xlarge", 1),
        ("TASK", "SPOT", "r5.xlarge", 3)]
    # the cap is the catalogue's on-demand EC2 price, without the EMR charge (billed whatever the market)
    [task] = [group for group in groups if group["InstanceRole"] == "TASK"]
    assert task["BidPrice"] == "0.252" and type(task["InstanceCount"]) is int
    assert all("BidPrice" not in group for group in groups if group["InstanceRole"] != "TASK")


def test_a_configured_spot_maximum_caps_the_bid_instead():
    settings = ClusterSettings(spot_max_price_usd=0.1)
    groups = job_flow(settings, node_count=3, spot_task_nodes=1)["Instances"]["InstanceGroups"]
    [task] = [group for group in groups if group["InstanceRole"] == "TASK"]
    assert task["BidPrice"] == "0.1"


def test_no_spot_task_nodes_no_task_group():
    groups = job_flow(node_count=3, spot_task_nodes=0)["Instances"]["InstanceGroups"]
    assert [g["InstanceRole"] for g in groups] == ["MASTER", "CORE"]

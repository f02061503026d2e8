"""The IAM policy shipped for Airflow's AWS connection covers every AWS call the pipeline makes, no more."""
import json
import re

from conftest import REPO

POLICY = json.loads((REPO / "deploy" / "iam" / "airflow-pipeline-policy.json").read_text())
ALLOWED = {action for statement in POLICY["Statement"] for action in
           ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])}


def pipeline_calls(client):
    """The API calls the package makes through a boto3 client named `client`: direct calls and paginators."""
    source = "".join(path.read_text() for path in (REPO / "include" / "movielens_emr").rglob("*.py"))
    calls = set(re.findall(rf"\b{client}\.([a-z_]+)\(", source)) - {"get_paginator"}
    calls |= set(re.findall(rf"\b{client}\.get_paginator\(\"([a-z_]+)\"\)", source))
    return {"".join(word.capitalize() for word in call.split("_")) for call in calls}


def test_every_emr_call_of_the_pipeline_is_allowed():
    calls = pipeline_calls("emr")
    # the package's own calls, found: a pattern that found none would pass any policy
    assert {"DescribeCluster", "ListSteps", "ListInstances", "TerminateJobFlows"} <= calls
    needed = {f"elasticmapreduce:{call}" for call in calls}
    needed |= {"elasticmapreduce:RunJobFlow", "elasticmapreduce:AddJobFlowSteps",
               "elasticmapreduce:ListClusters"}
    assert needed <= ALLOWED, needed - ALLOWED


def test_every_ec2_call_of_the_pipeline_is_allowed():
    calls = pipeline_calls("ec2")
    assert calls == {"DescribeSpotPriceHistory"}
    assert {f"ec2:{call}" for call in calls} <= ALLOWED


def test_no_wildcard_actions_and_termination_is_limited_to_tagged_clusters():
    assert not [action for action in ALLOWED if "*" in action]
    [terminate] = [s for s in POLICY["Statement"] if s["Action"] == "elasticmapreduce:TerminateJobFlows"]
    assert terminate["Condition"]["StringEquals"] == {
        "elasticmapreduce:ResourceTag/movielens:pipeline": "movielens-similarity"}


def test_the_default_emr_roles_may_be_handed_to_the_cluster():
    from movielens_emr.config.settings import ClusterSettings

    [pass_role] = [s for s in POLICY["Statement"] if s["Action"] == "iam:PassRole"]
    names = {arn.rsplit("/", 1)[1] for arn in pass_role["Resource"]}
    assert names == {ClusterSettings().service_role, ClusterSettings().job_flow_role}

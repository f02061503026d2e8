"""The AWS fault injector: errors as AWS sends them, retried by botocore, never carried out by moto."""
import boto3
import botocore
import pytest
from moto import mock_aws

from tests.support.aws_faults import S3_SLOW_DOWN, THROTTLING, Fault, aws_faults

REGION = "us-east-1"
RETRIES = botocore.config.Config(retries={"mode": "standard", "max_attempts": 4})
DENIED = ("AccessDenied", "Access Denied", 403)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION, config=RETRIES)
        client.create_bucket(Bucket="faults-test")
        yield client


def keys(s3):
    return [item["Key"] for item in s3.list_objects_v2(Bucket="faults-test").get("Contents", [])]


def test_a_throttling_burst_is_retried_by_botocore_and_the_call_succeeds(s3):
    emr = boto3.client("emr", region_name=REGION, config=RETRIES)
    with aws_faults([Fault("emr", "ListClusters", THROTTLING, times=2),
                     Fault("s3", "PutObject", S3_SLOW_DOWN, times=2)]) as faults:
        assert emr.list_clusters()["Clusters"] == []
        s3.put_object(Bucket="faults-test", Key="a", Body=b"1")
    assert faults.injected == [("emr", "ListClusters")] * 2 + [("s3", "PutObject")] * 2
    assert faults.passed == [("emr", "ListClusters"), ("s3", "PutObject")]
    assert keys(s3) == ["a"]


def test_a_denied_call_raises_awss_error_and_moto_does_not_carry_it_out(s3):
    with aws_faults([Fault("s3", "PutObject", DENIED, url_contains="/results/")]) as faults:
        s3.put_object(Bucket="faults-test", Key="run/output/part-00000", Body=b"1")
        with pytest.raises(botocore.exceptions.ClientError, match=r"\(AccessDenied\).*PutObject"):
            s3.put_object(Bucket="faults-test", Key="run/results/similarities.csv", Body=b"1")
        # The fault was once: the second put goes through.
        s3.put_object(Bucket="faults-test", Key="run/results/similarities.csv", Body=b"2")
    assert faults.count("s3", "PutObject") == 1 and faults.count("s3", "PutObject", injected=False) == 2
    assert sorted(keys(s3)) == ["run/output/part-00000", "run/results/similarities.csv"]


def test_a_throttled_mutation_is_not_done_twice():
    with mock_aws():
        emr = boto3.client("emr", region_name=REGION, config=RETRIES)
        with aws_faults([Fault("emr", "RunJobFlow", THROTTLING, times=2)]):
            emr.run_job_flow(Name="once", ReleaseLabel="emr-7.9.0", JobFlowRole="EMR_EC2_DefaultRole",
                             ServiceRole="EMR_DefaultRole",
                             Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1})
        assert len(emr.list_clusters()["Clusters"]) == 1

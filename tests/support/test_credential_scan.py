"""The credential scan itself: it finds a canary in every form and place a run could leak it to."""
import base64
import gzip
import json
import re
import sqlite3
from contextlib import closing

import boto3
import pytest
from moto import mock_aws

from tests.support.credential_scan import (
    base64_fragments,
    files_under,
    find_leaks,
    make_canary,
    run_values,
    s3_objects,
)

CANARY = make_canary()


def test_canaries_have_the_shape_of_real_aws_credentials_and_differ_every_time():
    assert re.fullmatch(r"AKIA[0-9A-Z]{16}", CANARY.access_key_id)
    assert re.fullmatch(r"[A-Za-z0-9]{40}", CANARY.secret_access_key)
    assert make_canary() != CANARY


def test_a_task_log_line_holding_the_secret_is_found_by_place_and_line():
    log = ("[2026-01-01 00:00:00] INFO - creating the S3 client\n"
           f"[2026-01-01 00:00:01] DEBUG - credentials: {CANARY.secret_access_key}\n")
    assert find_leaks({"task log": log}, CANARY) == ["task log, line 2: the secret access key"]


def test_the_access_key_id_is_found_too():
    leaks = find_leaks({"output": f"key {CANARY.access_key_id} used"}, CANARY)
    assert leaks == ["output, line 1: the access key id"]


@pytest.mark.parametrize("before", ["", "x", "xy"])
def test_the_secret_is_found_inside_base64_at_any_offset(before):
    secret = CANARY.secret_access_key
    encoded = base64.b64encode(f'{before}{{"password": "{secret}"}}'.encode()).decode()
    assert any(fragment in encoded for fragment in base64_fragments(secret))
    assert find_leaks({"xcom": encoded}, CANARY) == ["xcom, line 1: the secret access key in base64"]


def test_the_secrets_base64_is_the_same_in_the_url_safe_alphabet():
    secret = CANARY.secret_access_key.encode()
    for before in (b"", b"x", b"xy"):
        assert base64.b64encode(before + secret) == base64.urlsafe_b64encode(before + secret)


def test_text_without_the_canary_is_clean():
    other = make_canary()
    encoded = base64.b64encode(other.secret_access_key.encode()).decode()
    text = f"{other.access_key_id} {other.secret_access_key} {encoded}"
    assert find_leaks({"log": text, "empty": ""}, CANARY) == []


def test_log_files_are_read_gunzipped_and_named_by_path(tmp_path):
    (tmp_path / "dag_id=d" / "run_id=r").mkdir(parents=True)
    (tmp_path / "dag_id=d" / "run_id=r" / "attempt=1.log").write_text("nothing here\n")
    (tmp_path / "stderr.gz").write_bytes(gzip.compress(f"secret={CANARY.secret_access_key}\n".encode()))
    leaks = find_leaks(files_under(tmp_path), CANARY)
    assert leaks == [f"{tmp_path / 'stderr.gz'}, line 1: the secret access key"]


def test_s3_objects_are_read_gunzipped_and_named_by_uri():
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="scan-test")
        s3.put_object(Bucket="scan-test", Key="runs/r/metrics.json", Body=b"{}")
        s3.put_object(Bucket="scan-test", Key="runs/r/logs/syslog.gz",
                      Body=gzip.compress(CANARY.access_key_id.encode()))
        objects = s3_objects(s3, "scan-test", "runs/")
    assert list(objects) == ["s3://scan-test/runs/r/logs/syslog.gz", "s3://scan-test/runs/r/metrics.json"]
    assert find_leaks(objects, CANARY) == ["s3://scan-test/runs/r/logs/syslog.gz, line 1: the access key id"]


def test_a_runs_xcoms_and_rendered_fields_are_read_and_named_by_task_and_key(tmp_path):
    database = tmp_path / "airflow.db"
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute("CREATE TABLE xcom (run_id, task_id, map_index, key, value)")
        connection.execute(
            "CREATE TABLE rendered_task_instance_fields (run_id, task_id, map_index, rendered_fields)")
        connection.execute("INSERT INTO xcom VALUES ('r1', 'plan_emr_run', -1, 'job_flow', ?)",
                           (json.dumps({"password": CANARY.secret_access_key}),))
        connection.execute("INSERT INTO xcom VALUES ('r2', 'plan_emr_run', -1, 'job_flow', ?)",
                           (json.dumps({"password": CANARY.secret_access_key}),))
        connection.execute(
            "INSERT INTO rendered_task_instance_fields VALUES ('r1', 'create_cluster', -1, '{}')")
    values = run_values(database, "r1")
    assert set(values) == {"xcom task_id=plan_emr_run map_index=-1 key=job_flow",
                           "rendered_task_instance_fields task_id=create_cluster map_index=-1"}
    assert find_leaks(values, CANARY) == [
        "xcom task_id=plan_emr_run map_index=-1 key=job_flow, line 1: the secret access key"]

"""The storage root: a local folder or S3 (moto), behind one interface."""
import boto3
import pytest
from moto import mock_aws

from movielens_emr.storage import LocalStorage, S3Storage, dataset_folder, open_storage, run_folder


def test_run_folder_keeps_safe_characters_only():
    assert run_folder("manual__2026-11-22T03:54:33.099694+00:00") == "runs/manual__2026-11-22T03_54_33.099694_00_00"


def test_dataset_folder():
    assert dataset_folder("ml-100k", "abc") == "datasets/ml-100k/abc"


@pytest.mark.parametrize("root, kind", [("s3://bucket/pre/fix", S3Storage), ("/tmp/x", LocalStorage)])
def test_open_storage_picks_the_kind_from_the_root(root, kind):
    with mock_aws():
        assert isinstance(open_storage(root), kind)


def test_open_storage_refuses_other_schemes():
    with pytest.raises(ValueError, match="use s3://bucket/prefix or a local folder"):
        open_storage("gs://bucket/x")


def exercise(storage, local_file):
    storage.put_bytes(b"one", "runs/r/a.txt")
    storage.put_file(local_file, "runs/r/sub/b.txt")
    assert storage.exists("runs/r/a.txt") and not storage.exists("runs/r/missing")
    assert storage.get_bytes("runs/r/sub/b.txt") == b"two"
    assert storage.list_keys("runs/r") == ["runs/r/a.txt", "runs/r/sub/b.txt"]
    storage.put_bytes(b"uno", "runs/r/a.txt")
    assert storage.get_bytes("runs/r/a.txt") == b"uno"
    storage.delete_prefix("runs/r/sub")
    assert storage.list_keys("runs/r") == ["runs/r/a.txt"]
    storage.delete_key("runs/r/a.txt")
    assert storage.list_keys("runs/r") == []


def test_local_storage(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"two")
    storage = LocalStorage(tmp_path / "root")
    exercise(storage, tmp_path / "b.txt")
    assert storage.uri("runs/r/a.txt") == str(tmp_path / "root" / "runs/r/a.txt")


@mock_aws
def test_s3_storage_encrypts_and_blocks_public_access(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"two")
    storage = open_storage("s3://movielens-test/pipeline")
    assert storage.ensure_bucket() is True and storage.ensure_bucket() is False
    exercise(storage, tmp_path / "b.txt")
    storage.put_bytes(b"secret-free", "runs/r/c.txt")
    s3 = boto3.client("s3")
    head = s3.head_object(Bucket="movielens-test", Key="pipeline/runs/r/c.txt")
    assert head["ServerSideEncryption"] == "AES256"
    block = s3.get_public_access_block(Bucket="movielens-test")["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    assert storage.uri("runs/r/a.txt") == "s3://movielens-test/pipeline/runs/r/a.txt"

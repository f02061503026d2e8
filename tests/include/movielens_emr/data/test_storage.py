"""The storage root: a local folder or S3 (moto), behind one interface."""
import re
import threading

import boto3
import pytest
from moto import mock_aws

from movielens_emr.data.storage import (
    RUN_OWNER_MARKER,
    LocalStorage,
    RunFolderTaken,
    S3Storage,
    claim_run_folder,
    dataset_folder,
    open_storage,
    run_folder,
)


def test_a_plain_run_id_is_its_own_folder():
    assert run_folder("manual__local") == "runs/manual__local"


def test_other_run_ids_stay_readable_with_a_hash_suffix():
    assert re.fullmatch(r"runs/manual__2026-11-22T03_54_33\.099694_00_00--[0-9a-f]{16}",
                        run_folder("manual__2026-11-22T03:54:33.099694+00:00"))


@pytest.mark.parametrize("first, second", [
    ("collide:1", "collide_1"), ("a:b", "a+b"), ("x", "x~"),
    # a plain id shaped like the other's encoded name is encoded too
    ("collide:1", run_folder("collide:1").removeprefix("runs/")),
])
def test_run_ids_that_differ_get_different_folders(first, second):
    assert run_folder(first) != run_folder(second)


@pytest.mark.parametrize("run_id", [".", "..", "../x", "a/../../b", "", "x" * 250])
def test_no_run_id_names_a_folder_outside_runs(run_id):
    name = run_folder(run_id).removeprefix("runs/")
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,230}", name), name


def test_a_run_claims_its_folder_and_may_claim_it_again(tmp_path):
    storage = LocalStorage(tmp_path)
    folders = [claim_run_folder(storage, "collide:1") for _ in range(2)]
    assert folders == [run_folder("collide:1")] * 2
    assert storage.get_bytes(f"{run_folder('collide:1')}/{RUN_OWNER_MARKER}") == b"collide:1"


def test_a_run_refuses_a_folder_another_run_owns(tmp_path):
    storage = LocalStorage(tmp_path)
    # as if two ids had met in one folder (a sha256 collision, or a folder named by an older encoding)
    storage.put_bytes(b"collide_1", f"{run_folder('collide:1')}/{RUN_OWNER_MARKER}")
    storage.put_bytes(b"first run's result", f"{run_folder('collide:1')}/results/similarities.csv")
    with pytest.raises(RunFolderTaken, match="belongs to run 'collide_1', not 'collide:1'"):
        claim_run_folder(storage, "collide:1")
    assert storage.get_bytes(f"{run_folder('collide:1')}/results/similarities.csv") == b"first run's result"


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


def test_local_writes_show_a_reader_the_old_file_or_the_whole_new_one(tmp_path):
    storage = LocalStorage(tmp_path)
    versions = [bytes([65 + n]) * (4 << 20) for n in range(3)]
    storage.put_bytes(versions[0], "runs/r/big.bin")
    stop, seen = threading.Event(), set()

    def read_until_stopped():
        while not stop.is_set():
            data = storage.get_bytes("runs/r/big.bin")
            seen.add(data if data in versions else b"partial")

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    for round_number in range(12):
        source = tmp_path / "source.bin"
        source.write_bytes(versions[round_number % 3])
        if round_number % 2:
            storage.put_file(source, "runs/r/big.bin")
        else:
            storage.put_bytes(versions[round_number % 3], "runs/r/big.bin")
    stop.set()
    reader.join()
    assert b"partial" not in seen
    assert storage.list_keys("runs/r") == ["runs/r/big.bin"]  # no temporary file left or listed


def test_a_failed_local_write_leaves_the_old_file_and_no_temporary(tmp_path):
    storage = LocalStorage(tmp_path)
    storage.put_bytes(b"old", "runs/r/a.txt")
    with pytest.raises(FileNotFoundError):
        storage.put_file(tmp_path / "missing", "runs/r/a.txt")
    with pytest.raises(TypeError):
        storage.put_bytes("not bytes", "runs/r/a.txt")
    assert storage.get_bytes("runs/r/a.txt") == b"old"
    assert sorted(path.name for path in (tmp_path / "runs/r").iterdir()) == ["a.txt"]

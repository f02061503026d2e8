"""Getting a dataset (source folder or verified download) and staging it once by content checksum."""
import concurrent.futures
import dataclasses
import functools
import http.server
import threading
import zipfile

import pytest
from moto import mock_aws

from movielens_emr.data.datasets import UnknownDataset, get_dataset
from movielens_emr.data.staging import (
    STAGED_MARKER,
    ChecksumMismatch,
    content_checksum,
    dataset_source_files,
    file_md5,
    stage_dataset,
)
from movielens_emr.data.storage import LocalStorage, dataset_folder, open_storage

from conftest import MOVIELENS, REPO

SAMPLE = REPO / "include" / "sample_data" / "ml-latest-small-sample"


@pytest.fixture
def served_zip(tmp_path):
    """An ml-latest-small zip built from the bundled sample, served over HTTP on loopback."""
    site = tmp_path / "site"
    site.mkdir()
    with zipfile.ZipFile(site / "ml-latest-small.zip", "w") as archive:
        for name in ("ratings.csv", "movies.csv"):
            archive.write(SAMPLE / name, f"ml-latest-small/{name}")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", file_md5(site / "ml-latest-small.zip")
    server.shutdown()


def test_source_dir_files_are_used_as_they_are(tmp_path):
    files = dataset_source_files(get_dataset("ml-100k"), MOVIELENS, tmp_path)
    assert files == {"u.data": MOVIELENS / "ml-100k" / "u.data", "u.item": MOVIELENS / "ml-100k" / "u.item"}


def test_missing_source_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ml-1m: ratings\.dat not found in .*ml-1m"):
        dataset_source_files(get_dataset("ml-1m"), MOVIELENS, tmp_path)


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UnknownDataset, match=r"unknown dataset 'ml-5m'; known: ml-100k, ml-1m"):
        get_dataset("ml-5m")


def test_download_is_verified_and_extracted(served_zip, tmp_path):
    url, md5 = served_zip
    dataset = dataclasses.replace(get_dataset("ml-latest-small"), zip_md5=md5)
    files = dataset_source_files(dataset, "", tmp_path / "cache", base_url=url)
    assert files["ratings.csv"].read_bytes() == (SAMPLE / "ratings.csv").read_bytes()
    assert files["movies.csv"].read_bytes() == (SAMPLE / "movies.csv").read_bytes()


def test_download_with_the_wrong_checksum_is_refused_and_removed(served_zip, tmp_path):
    url, _ = served_zip
    with pytest.raises(ChecksumMismatch, match="but GroupLens publishes 31a303aabbc519bd33d025e44d6c2570"):
        dataset_source_files(get_dataset("ml-latest-small"), "", tmp_path / "cache", base_url=url)
    assert not (tmp_path / "cache" / "ml-latest-small.zip").exists()


def test_a_dataset_is_uploaded_once_per_content(tmp_path):
    storage = LocalStorage(tmp_path / "root")
    dataset = get_dataset("ml-latest-small")
    files = {"ratings.csv": SAMPLE / "ratings.csv", "movies.csv": SAMPLE / "movies.csv"}
    first = stage_dataset(storage, dataset, files)
    second = stage_dataset(storage, dataset, files)
    assert first["uploaded"] == ["movies.csv", "ratings.csv"] and second["uploaded"] == []
    assert first["folder"] == f"datasets/ml-latest-small/{content_checksum(files)}"
    assert storage.exists(f"{first['folder']}/{STAGED_MARKER}")
    assert first["ratings_uris"] == [storage.uri(f"{first['folder']}/ratings.csv")]


def test_changed_content_gets_a_new_checksum(tmp_path):
    changed = tmp_path / "ratings.csv"
    changed.write_bytes((SAMPLE / "ratings.csv").read_bytes() + b"999,1,4.0,1\r\n")
    original = {"ratings.csv": SAMPLE / "ratings.csv", "movies.csv": SAMPLE / "movies.csv"}
    assert content_checksum(original) != content_checksum({**original, "ratings.csv": changed})


def distinct_dataset_files(folder, round_number, megabytes=16):
    """A ratings file of `megabytes` MB and a movies file, different in every round (so a new checksum)."""
    folder.mkdir(parents=True, exist_ok=True)
    line = f"{round_number},1,4.0,964982703\n".encode()
    header = b"userId,movieId,rating,timestamp\n"
    (folder / "ratings.csv").write_bytes(header + line * (megabytes * 2**20 // len(line)))
    (folder / "movies.csv").write_bytes((SAMPLE / "movies.csv").read_bytes())
    return {"ratings.csv": folder / "ratings.csv", "movies.csv": folder / "movies.csv"}


def read_while_staging(target, expected, stop, seen_partial):
    """Read `target` whenever it exists until `stop` is set; note every read that is not the whole file."""
    while not stop.is_set():
        try:
            data = target.read_bytes()
        except FileNotFoundError:
            continue
        if data != expected:
            seen_partial.append((len(data), data.count(b"\0")))


def test_two_runs_staging_one_new_dataset_at_once_never_show_a_reader_a_partial_file(tmp_path):
    storage, dataset = LocalStorage(tmp_path / "root"), get_dataset("ml-latest-small")
    seen_partial = []
    for round_number in range(4):
        files = distinct_dataset_files(tmp_path / f"source-{round_number}", round_number)
        target = storage.local_path(f"{dataset_folder(dataset.name, content_checksum(files))}/ratings.csv")
        stop = threading.Event()
        reader = threading.Thread(target=read_while_staging,
                                  args=(target, files["ratings.csv"].read_bytes(), stop, seen_partial))
        reader.start()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            staged = list(pool.map(stage_dataset, [storage] * 2, [dataset] * 2, [files] * 2))
        stop.set()
        reader.join()
        folder = target.parent.relative_to(storage.root).as_posix()
        assert [result["folder"] for result in staged] == [folder] * 2
        assert target.read_bytes() == files["ratings.csv"].read_bytes()
    assert seen_partial == []
    assert not [path for path in storage.root.rglob("*") if path.name.endswith(".partial")]


@pytest.mark.parametrize("damage", [
    lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),  # cut short
    lambda path: path.write_bytes(b"\0" * path.stat().st_size),  # same size, NUL bytes
    lambda path: path.unlink(),
])
def test_a_damaged_staged_copy_is_staged_again_before_use(tmp_path, damage):
    storage, dataset = LocalStorage(tmp_path / "root"), get_dataset("ml-latest-small")
    files = {"ratings.csv": SAMPLE / "ratings.csv", "movies.csv": SAMPLE / "movies.csv"}
    folder = stage_dataset(storage, dataset, files)["folder"]
    damage(storage.local_path(f"{folder}/ratings.csv"))
    again = stage_dataset(storage, dataset, files)
    assert again["uploaded"] == ["movies.csv", "ratings.csv"]
    assert storage.get_bytes(f"{folder}/ratings.csv") == (SAMPLE / "ratings.csv").read_bytes()


@mock_aws
def test_a_staged_s3_object_of_the_wrong_size_is_staged_again():
    storage, dataset = open_storage("s3://movielens-test/pipeline"), get_dataset("ml-latest-small")
    storage.ensure_bucket()
    files = {"ratings.csv": SAMPLE / "ratings.csv", "movies.csv": SAMPLE / "movies.csv"}
    folder = stage_dataset(storage, dataset, files)["folder"]
    assert stage_dataset(storage, dataset, files)["uploaded"] == []
    storage.put_bytes(b"userId,movieId,rating,timestamp\n", f"{folder}/ratings.csv")
    assert stage_dataset(storage, dataset, files)["uploaded"] == ["movies.csv", "ratings.csv"]
    assert storage.get_bytes(f"{folder}/ratings.csv") == (SAMPLE / "ratings.csv").read_bytes()

"""runs.py: a run's folder and files, found from a run id (user input), never outside the storage root."""
import pytest

from movielens_emr.data.storage import LocalStorage, run_folder
from plugins.movielens_benchmarks import runs
from plugins.movielens_benchmarks.sources import NoResults, UnreadableFile

from tests.plugins.movielens_benchmarks.stored import LOCAL_METRICS, add_local_run, add_run_folder, write

RUN_ID = "manual__2026-03-01T12:00:00.123456+00:00"


@pytest.fixture
def storage(storage_root):
    return LocalStorage(storage_root)


@pytest.mark.parametrize("run_id", [
    RUN_ID, "scheduled__2026-03-01T00:00:00+00:00", "backfill~1", "a", "x" * 250, "run.with.dots"])
def test_a_run_id_as_airflow_makes_them_names_its_folder(run_id):
    assert runs.folder_of(run_id) == run_folder(run_id)


@pytest.mark.parametrize("run_id", [
    "", ".", "..", ".hidden", "../etc", "a/b", "a\\b", "a b", "x" * 251, "a\nb", "a%2Fb", "ü", None])
def test_any_other_run_id_is_refused(run_id):
    with pytest.raises(runs.UnsafeName, match="is not a run id"):
        runs.folder_of(run_id)


def test_a_folder_not_yet_claimed_is_none(storage):
    assert runs.owned_folder(storage, RUN_ID) is None


def test_a_folder_claimed_by_another_run_is_refused(storage, storage_root):
    add_run_folder(storage_root, RUN_ID, LOCAL_METRICS, owner="manual__another")
    with pytest.raises(runs.NotThisRun, match="belongs to run 'manual__another'"):
        runs.owned_folder(storage, RUN_ID)


def test_result_files_are_the_plain_files_of_results(storage, storage_root):
    folder = add_local_run(storage_root, RUN_ID)
    write(folder / "results" / ".similarities.csv.1234.partial", "half")
    write(folder / "results" / "deeper" / "x.csv", "x")
    files = runs.result_files(storage, runs.owned_folder(storage, RUN_ID))
    assert [file["name"] for file in files] == ["similarities.csv", "top_neighbours.json"]
    assert files[0]["size"] == (folder / "results" / "similarities.csv").stat().st_size


@pytest.mark.parametrize("name, error", [
    ("../metrics.json", runs.UnsafeName), (".hidden", runs.UnsafeName), ("missing.csv", NoResults)])
def test_a_result_file_is_a_plain_name_the_run_has(storage, storage_root, name, error):
    add_local_run(storage_root, RUN_ID)
    with pytest.raises(error):
        runs.result_key(storage, run_folder(RUN_ID), name)


def test_a_link_out_of_the_storage_root_is_refused(storage, storage_root, tmp_path):
    folder = add_local_run(storage_root, RUN_ID)
    secret = tmp_path / "secret.txt"
    secret.write_text("not the run's")
    (folder / "results" / "leak.csv").symlink_to(secret)
    with pytest.raises(runs.UnsafeName, match="leads out of the storage root"):
        runs.result_key(storage, run_folder(RUN_ID), "leak.csv")


def test_metrics_that_are_not_a_json_object_are_unreadable(storage, storage_root):
    folder = add_run_folder(storage_root, RUN_ID)
    write(folder / "metrics.json", "[1, 2]")
    with pytest.raises(UnreadableFile, match="not a JSON object but a list"):
        runs.read_metrics(storage, run_folder(RUN_ID))


def test_neighbours_are_the_similarity_engines_alone(storage, storage_root):
    add_local_run(storage_root, RUN_ID)
    folder = run_folder(RUN_ID)
    assert set(runs.neighbours(storage, folder, LOCAL_METRICS)) == {"1", "2", "3"}
    assert runs.neighbours(storage, folder, {**LOCAL_METRICS, "engine": "rating_counts"}) is None


@pytest.mark.parametrize("run_id, path", [
    (RUN_ID, "runs/manual__2026-03-01T12%3A00%3A00.123456%2B00%3A00"), ("../x", None)])
def test_page_path(run_id, path):
    assert runs.page_path(run_id) == path

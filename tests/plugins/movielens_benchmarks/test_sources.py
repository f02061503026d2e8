"""What the page reads, from a local storage root: the newest report and results, each file checked."""
import json

import pytest

from movielens_emr.data.storage import LocalStorage
from plugins.movielens_benchmarks import sources
from plugins.movielens_benchmarks.sources import NoResults, UnreadableFile

from tests.plugins.movielens_benchmarks.stored import add_reports, add_runs, neighbours_json, write


@pytest.fixture
def storage(storage_root, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    storage_root.mkdir(parents=True, exist_ok=True)
    return LocalStorage(str(storage_root))


def test_the_latest_report_is_the_folder_written_last(storage, storage_root):
    add_reports(storage_root)
    assert sources.latest_report_folder(storage) == "benchmarks/manual__bench"
    write(storage_root / "benchmarks/newer/report.md", "# newer")
    assert sources.latest_report_folder(storage) == "benchmarks/newer"


def test_load_report_reads_the_summary_text_and_plot_names(storage, storage_root):
    add_reports(storage_root)
    report = sources.load_report(storage, "benchmarks/manual__bench")
    assert report["folder"] == "manual__bench" and report["problems"] == []
    assert report["summary"]["measured_members"] == 2
    assert report["report_markdown"].startswith("# movielens_similarity benchmark")
    assert report["plots"] == ["cost_vs_time.png", "time_breakdown.png", "time_vs_nodes.png"]


def test_load_report_names_an_unreadable_file_and_reads_the_others(storage, storage_root):
    add_reports(storage_root)
    write(storage_root / "benchmarks/manual__bench/summary.json", '{"cut short')
    report = sources.load_report(storage, "benchmarks/manual__bench")
    assert report["summary"] is None and report["report_markdown"] is not None
    [problem] = report["problems"]
    assert problem.startswith("benchmarks/manual__bench/summary.json is not valid JSON (11 bytes)")


def test_no_report_yet(storage):
    with pytest.raises(NoResults, match="no benchmark report yet: nothing under .*benchmarks"):
        sources.latest_report(storage)


def test_read_text_refuses_what_is_not_utf8(storage, storage_root):
    write(storage_root / "benchmarks/b/report.md", "Durée".encode("latin-1"))
    with pytest.raises(UnreadableFile, match="benchmarks/b/report.md is not UTF-8 text"):
        sources.read_text(storage, "benchmarks/b/report.md")


def test_the_latest_results_are_the_newest_successful_runs(storage, storage_root):
    add_runs(storage_root)
    run, movies = sources.latest_neighbours(storage)
    assert run == "runs/manual__local" and len(movies) == 5  # not the newer, failed run's


def test_without_history_the_latest_results_are_the_newest_file(storage, storage_root):
    write(storage_root / "runs/a/results/top_neighbours.json", neighbours_json("Up (2009)"), mtime=1_000)
    write(storage_root / "runs/b/results/top_neighbours.json", neighbours_json("Ran (1985)"), mtime=2_000)
    assert sources.latest_results_key(storage, []) == "runs/b/results/top_neighbours.json"


def test_no_results_yet(storage):
    with pytest.raises(NoResults, match="no results yet: no top_neighbours.json under .*runs"):
        sources.latest_neighbours(storage)


@pytest.mark.parametrize("movies, reason", [
    (["Toy Story (1995)"], "not a mapping of movie ids to movies but a list"),
    ({"1": {"title": "Toy Story (1995)"}}, "movie 1 is not a title with a list of neighbours"),
    ({"1": {"title": 1995, "neighbours": []}}, "movie 1 is not a title with a list of neighbours"),
    ({"1": {"title": None, "neighbours": [{"title": {"nested": 1}}]}},
     "movie 1 is not a title with a list of neighbours"),
], ids=["a list", "without neighbours", "a number for a title", "a nested neighbour"])
def test_check_neighbours_names_the_first_movie_not_as_written(movies, reason):
    with pytest.raises(UnreadableFile, match=f"^top_neighbours.json: {reason}$"):
        sources.check_neighbours(movies, "top_neighbours.json")


def test_check_neighbours_takes_the_results_as_written():
    movies = json.loads(neighbours_json("Toy Story (1995)", "Heat (1995)"))
    assert sources.check_neighbours(movies, "top_neighbours.json") is movies

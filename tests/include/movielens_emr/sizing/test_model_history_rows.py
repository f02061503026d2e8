"""The rows a model reads, and the planned run's work: exact wherever the history or its files allow."""
import json
from collections import Counter

import pytest

from movielens_emr.config.settings import Settings
from movielens_emr.data.datasets import CATALOGUE, SAMPLE_DATA
from movielens_emr.engine.similarity.job import job_kernel
from movielens_emr.sizing.advise import main
from movielens_emr.sizing.counted_work import counted_pair_work, local_ratings_files
from movielens_emr.sizing.history_rows import observation, planned_pair_work
from movielens_emr.sizing.model import NotEnoughHistory, PlannedWork


def row(fraction=1.0, dataset="ml-latest-small", nodes=2, **changes):
    figures = {"run_id": f"{dataset}-{fraction}-{nodes}", "outcome": "success", "target": "local",
               "dataset": dataset, "node_count": nodes, "sample_fraction": fraction,
               "pair_work": {0.3: 1.2e7, 0.6: 2.7e7, 1.0: 3.8e7}[fraction], "cluster_seconds": 12.0,
               "provisioning_seconds": 0.0, "stage_1_seconds": 3.0, "stage_2_seconds": 4.0,
               "stage_3_seconds": 4.5, "input_ratings": 100_836,
               "output_pairs": {0.3: 1_000, 0.6: 6_000, 1.0: 20_000}[fraction]}
    return {**figures, **changes}


def test_an_observation_carries_its_stages_and_sizes():
    seen = observation(row())
    assert (seen.dataset, seen.ratings, seen.output_pairs, seen.stage_seconds) == (
        "ml-latest-small", 100_836, 20_000, (3.0, 4.0, 4.5))
    assert seen.work_seconds == 12.0


def test_an_observation_missing_a_stage_has_no_stages_rather_than_a_wrong_sum():
    assert observation(row(stage_3_seconds=None)).stage_seconds == ()
    assert observation(row(output_pairs=None)).output_pairs is None


def test_a_counted_w_is_used_as_counted_never_scaled():
    work = planned_pair_work([row(1.0)], "ml-latest-small", 0.3, counted=1.234e7)
    assert work == 1.234e7 and work.source.startswith("W counted on the ratings files")
    assert work.dataset == "ml-latest-small"


def test_a_run_of_the_same_input_gives_its_exact_w_and_output_before_any_count():
    def count():
        raise AssertionError("counted although a run of the same input measured it")

    work = planned_pair_work([row(1.0), row(0.6)], "ml-latest-small", 0.6, count=count)
    assert (work, work.output_pairs, work.ratings) == (2.7e7, 6_000, 100_836)
    assert work.source == ("W measured by a run of the same input; ratings read measured by the dataset's "
                           "runs; output pairs measured by a run of the same input")


def test_a_fraction_never_run_is_counted_on_the_files_and_its_output_scaled_from_the_nearest_run():
    work = planned_pair_work([row(1.0), row(0.3)], "ml-latest-small", 0.6, count=lambda: 2.7e7)
    assert work == 2.7e7  # not 0.6 x W(1.0) = 2.28e7: W is not linear in the fraction
    assert work.output_pairs == pytest.approx(20_000 * 2.7e7 / 3.8e7)
    assert "scaled by W from run ml-latest-small-1.0-2" in work.source


def test_only_without_a_count_is_w_scaled_by_the_fraction_and_the_plan_says_so():
    work = planned_pair_work([row(1.0)], "ml-latest-small", 0.6, count=lambda: None)
    assert work == pytest.approx(0.6 * 3.8e7)
    assert "scaled from the dataset's measured runs by the sample fraction" in work.source


def test_a_dataset_never_run_takes_its_ratings_from_the_catalogue_and_leaves_its_output_to_the_model():
    work = planned_pair_work([row(1.0)], "ml-100k", 1.0, count=lambda: 2.2e7)
    assert (work.ratings, work.output_pairs) == (CATALOGUE["ml-100k"].ratings, None)
    assert work.source.endswith("ratings read from the dataset catalogue; output pairs unknown (estimated by "
                                "the model)")
    with pytest.raises(NotEnoughHistory, match="no successful run of ml-100k with a pair work count, and its "
                                               "ratings files are not on this machine"):
        planned_pair_work([row(1.0)], "ml-100k", 1.0, count=lambda: None)


def test_a_planned_work_passes_through_unchanged():
    work = PlannedWork(5e6, "ml-1m", 1e6, 10, "given")
    assert planned_pair_work([], "ml-1m", 1.0, counted=work) is work


def independent_pair_work(path, fraction):
    """sum of n_u^2 over the users the job keeps, read with the csv module and the kernel's sampling rule."""
    counts = Counter()
    seen = set()
    for line in path.read_text().splitlines()[1:]:
        user, movie = line.split(",")[:2]
        if (user, movie) not in seen and job_kernel().in_sample(user, fraction):
            seen.add((user, movie))
            counts[user] += 1
    return sum(count * count for count in counts.values())


def test_a_samples_w_is_counted_exactly_on_its_own_files():
    settings = Settings(source_dir="", cache_dir="")
    path = SAMPLE_DATA / "ml-latest-small-sample" / "ratings.csv"
    sample = counted_pair_work("ml-latest-small-sample", 0.3, settings=settings)
    whole = counted_pair_work("ml-latest-small-sample", 1.0, settings=settings)
    assert sample == independent_pair_work(path, 0.3)
    assert whole == independent_pair_work(path, 1.0)
    assert sample != pytest.approx(0.3 * whole, rel=0.01)  # a linear scaling would have been wrong


def test_ratings_files_are_found_only_where_they_already_are(tmp_path):
    dataset = CATALOGUE["ml-100k"]
    assert local_ratings_files(dataset, "", str(tmp_path)) is None
    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t4\n")
    assert local_ratings_files(dataset, str(tmp_path), "") == [tmp_path / "ml-100k" / "u.data"]


def test_an_engine_that_counts_no_work_gets_none(monkeypatch):
    class NoCount:
        name = "no-count"

    monkeypatch.setattr("movielens_emr.sizing.counted_work.engine_named", lambda name: NoCount())
    assert counted_pair_work("ml-latest-small-sample", 1.0, "no-count") is None


def emr_rows():
    rows = []
    for nodes in (2, 3, 5):
        for fraction in (0.3, 1.0):
            rows.append(row(fraction, nodes=nodes, target="emr", instance_type="m5.xlarge",
                            cluster_seconds=400 + 30 * fraction / (nodes - 1), provisioning_seconds=300.0,
                            stage_1_seconds=10 + 20 * fraction / (nodes - 1),
                            stage_2_seconds=30 / (nodes - 1), stage_3_seconds=5.0,
                            run_id=f"emr-{nodes}-{fraction}"))
    return rows


def test_the_command_line_plans_a_new_fraction_on_its_counted_w_with_the_stage_model(capsys):
    counted = []

    def count(dataset, fraction, engine):
        counted.append((dataset, fraction, engine))
        return 2.7e7

    assert main(["--dataset", "ml-latest-small", "--sample-fraction", "0.6", "--json"], rows=emr_rows(),
                price_overrides={}, count_work=count) == 0
    plan = json.loads(capsys.readouterr().out)
    assert counted == [("ml-latest-small", 0.6, "similarity")]
    assert plan["pair_work"] == 2.7e7
    assert plan["pair_work_source"].startswith("W counted on the ratings files")
    assert plan["model"]["formula"].startswith("per stage, seconds on m machines")
    assert all(len(option["stage_seconds"]) == 3 for option in plan["predictions"])

"""The scale benchmark's own figures: the user sample it runs on, the growth exponent, the skew table."""
import numpy as np
import pytest

from benchmarks import reference, scale
from benchmarks.synthetic import SyntheticShape, generate_ratings

SMALL = SyntheticShape(users=300, movies=200, ratings=15_000, seed=7)


def test_sample_is_the_users_the_job_and_the_reference_keep():
    ratings = generate_ratings(SMALL)
    sampled = scale.in_sample(ratings, 0.3)
    as_reference = reference.Ratings(ratings["user_id"].astype(str), ratings["movie_id"].astype(str),
                                     ratings["rating"].astype(float), ratings["timestamp"])
    expected = reference.sample_users(as_reference, 0.3)
    assert np.array_equal(sampled["user_id"].astype(str), expected.users)


def test_growth_exponent_is_the_slope_in_log_log():
    assert scale.growth_exponent([(1e8, 2.0), (1e9, 20.0), (1e10, 200.0)]) == pytest.approx(1.0)
    assert scale.growth_exponent([(1e8, 2.0)]) is None


def test_planned_skews_cover_every_slot_count_and_stay_at_least_one():
    ratings = generate_ratings(SMALL)
    rows = scale.planned_skews(ratings["user_id"], ratings["movie_id"], SMALL.movies)
    assert [row["slots"] for row in rows] == list(scale.TASK_SLOTS)
    assert all(row["hash_dealt"] >= 1 and row["mass_routed"] >= 1 for row in rows)


def test_a_sample_is_extrapolated_with_stage_1_as_measured_and_the_rest_by_the_work():
    size = {"size": "25M", "sample_fraction": 0.05, "seconds": 400.0, "blocks": 22,
            "full": {"pair_work": 4e10}, "run": {"pair_work": 1e9},
            "phases": [{"stage": "start-up", "total": 1.0}, {"stage": 1, "total": 100.0},
                       {"stage": 2, "total": 250.0}, {"stage": 3, "total": 49.0}]}
    line = scale.extrapolation_line(size, 1.0, [4])
    # 100 s + 300 s x 40
    assert f"= {(100 + 300 * 40) / 3600:.1f} h" in line
    assert "4 movie blocks, this size's on 22" in line


def test_waiting_for_a_quiet_machine_polls_each_minute_until_the_load_falls():
    loads, slept = iter([(1.9, 1, 1), (1.2, 1, 1), (0.4, 1, 1)]), []
    load, waited = scale.wait_for_quiet(0.7, 1200, sleep=slept.append, load=lambda: next(loads))
    assert load == [0.4, 1, 1] and waited == 120 and slept == [60, 60]


def test_waiting_for_a_quiet_machine_gives_up_after_its_limit():
    slept = []
    load, waited = scale.wait_for_quiet(0.7, 180, sleep=slept.append, load=lambda: (3.0, 3.0, 3.0))
    assert load == [3.0, 3.0, 3.0] and waited == 180 and len(slept) == 3


def test_the_jobs_answer_is_read_into_arrays(tmp_path):
    output = tmp_path / "stdout.txt"
    output.write_text('["1", "Toy Story (1995)"]\t["3114", "Toy Story 2 (1999)", 0.9734, 57]\n'
                      '["3114", "Toy Story 2 (1999)"]\t["1", "Toy Story (1995)", 0.9734, 57]\n'
                      '["7", null]\t["20", "Money, Money, Money (1999)", 0.95000001, 11]\n')
    movies, similar, scores, co_raters = scale.read_job_pair_arrays(output)
    assert movies.tolist() == [1, 3114, 7] and similar.tolist() == [3114, 1, 20]
    assert scores.tolist() == [0.9734, 0.9734, 0.95000001] and co_raters.tolist() == [57, 57, 11]


def test_the_reference_pairs_are_ordered_both_ways_and_agree_with_the_whole_reference():
    ratings = generate_ratings(SMALL)
    as_reference = reference.Ratings(ratings["user_id"].astype(str), ratings["movie_id"].astype(str),
                                     ratings["rating"].astype(float), ratings["timestamp"])
    whole = reference.similar_pairs(as_reference, "cosine", 0.5, 10)
    movies, similar, scores, co_raters = scale.reference_pairs(as_reference, block_movies=64)
    blocked = {(str(a), str(b)): (score, count) for a, b, score, count in
               zip(movies.tolist(), similar.tolist(), scores.tolist(), co_raters.tolist(), strict=True)}
    assert len(whole) > 100 and blocked == {pair: value for pair, value in whole.items()
                                            if value[0] > 0.95}


def arrays(*pairs):
    return tuple(np.array(column) for column in zip(*pairs, strict=True))


def test_answers_as_arrays_agree_whatever_their_order():
    yardstick = arrays((1, 2, 0.96, 12), (2, 1, 0.96, 12), (3, 5, 0.99, 40))
    job = arrays((3, 5, 0.99, 40), (2, 1, 0.96, 12), (1, 2, 0.96, 12))
    agreement = scale.compare_pair_arrays(yardstick, job)
    assert agreement == {"yardstick_pairs": 3, "job_pairs": 3, "same_set": True, "only_yardstick": 0,
                         "only_job": 0, "max_score_diff": 0.0, "co_raters_mismatches": 0}


def test_answers_as_arrays_that_differ_say_how():
    yardstick = arrays((1, 2, 0.96, 12), (2, 1, 0.96, 12), (3, 5, 0.99, 40))
    job = arrays((1, 2, 0.97, 12), (2, 1, 0.96, 13), (4, 5, 0.99, 40))
    agreement = scale.compare_pair_arrays(yardstick, job)
    assert not agreement["same_set"] and agreement["only_yardstick"] == agreement["only_job"] == 1
    assert agreement["max_score_diff"] == pytest.approx(0.01) and agreement["co_raters_mismatches"] == 1


def size_figures(name, seconds, peak_mb):
    return {"size": name, "sample_fraction": 1.0, "seconds": seconds,
            "tasks": [{"stage": 2, "phase": "reducer", "peak_rss_bytes": peak_mb * 1e6, "seconds": 1.0}]}


def test_targets_say_met_or_missed_with_the_figure():
    lines = scale.target_lines([size_figures("10M", 150.0, 700), size_figures("25M", 1300.0, 1600)])
    assert lines == [
        "- target 10M-shaped <= 3 min: 150 s (2.5 min): met",
        "- target every task <= 1.5 GB, 10M: largest 700 MB: met",
        "- target 25M-shaped <= 20 min: 1300 s (21.7 min): MISSED; where the time goes: the phase table "
        "above",
        "- target every task <= 1.5 GB, 25M: largest 1,600 MB: MISSED"]

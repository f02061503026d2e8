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

"""Ranking metrics at k, against hand-computed values."""
import math

import pytest

from movielens_emr.evaluation.ranking import (
    average_precision_at_k,
    evaluate,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)

# hits at positions 1 and 3 of a list of 4; three movies were liked
LIST, LIKED = [10, 20, 30, 40], {10, 30, 99}


def test_precision_and_recall_count_the_hits_in_the_first_k():
    assert precision_at_k(LIST, LIKED, k=4) == 0.5
    assert recall_at_k(LIST, LIKED, k=4) == pytest.approx(2 / 3)
    assert precision_at_k(LIST, LIKED, k=2) == 0.5 and recall_at_k(LIST, LIKED, k=2) == pytest.approx(1 / 3)


def test_ndcg_discounts_each_hit_by_its_position():
    gain = 1 + 1 / math.log2(4)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(LIST, LIKED, k=4) == pytest.approx(gain / ideal)
    assert ndcg_at_k([10, 30], {10, 30}, k=2) == pytest.approx(1.0)


def test_average_precision_averages_the_precision_at_each_hit():
    assert average_precision_at_k(LIST, LIKED, k=4) == pytest.approx((1 / 1 + 2 / 3) / 3)
    assert average_precision_at_k([5, 10], {10}, k=2) == pytest.approx(0.5)


def test_evaluate_averages_over_the_users_with_positives_and_measures_coverage():
    result = evaluate({1: LIST, 2: [7]}, {1: LIKED, 2: {7}, 3: {8}}, catalogue_size=10, k=4)
    assert result["users"] == 3 and result["users_with_fewer_than_k"] == 2
    assert result["precision_at_k"] == pytest.approx((0.5 + 0.25 + 0) / 3, abs=1e-6)
    assert result["recall_at_k"] == pytest.approx((2 / 3 + 1 + 0) / 3, abs=1e-6)
    assert result["coverage"] == 0.5


def test_no_user_to_evaluate_gives_no_figures():
    assert evaluate({}, {}, catalogue_size=5)["precision_at_k"] is None

"""The scipy reference blocked by movie ranges gives the whole-matrix reference's answer, bit for bit."""
import numpy as np
import pytest

from benchmarks import reference

from conftest import MOVIELENS


@pytest.fixture(scope="module")
def ml_100k():
    return reference.read_ratings([MOVIELENS / "ml-100k" / "u.data"])


@pytest.mark.parametrize("metric, min_score", [("cosine", 0.95), ("pearson", 0.5), ("jaccard", 0.3)])
def test_blocked_reference_is_the_whole_matrix_reference(ml_100k, metric, min_score):
    whole = reference.similar_pairs(ml_100k, metric, min_score, 10)
    blocked = {}
    # 1,682 movies in ranges of 500: diagonal and off-diagonal range pairs, and a short last range.
    for columns in reference.similar_pairs_blocked(ml_100k, metric, min_score, 10, block_movies=500):
        for a, b, score, count in zip(*(column.tolist() for column in columns), strict=True):
            blocked[(a, b)] = blocked[(b, a)] = (score, int(count))
    assert len(whole) > 1000
    assert blocked == whole


def test_blocked_reference_of_no_ratings_yields_nothing():
    empty = reference.Ratings(*(np.array([], dtype=dtype) for dtype in (str, str, float, np.int64)))
    assert list(reference.similar_pairs_blocked(empty)) == []

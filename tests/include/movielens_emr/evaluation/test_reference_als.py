"""The numpy ALS that checks Spark's: its row solves, its loss, its recommendations."""
import numpy as np
import pytest

from movielens_emr.evaluation import reference_als
from movielens_emr.evaluation.split import Ratings

TRAIN = Ratings(np.array([1, 1, 2, 3, 3, 3]), np.array([10, 20, 20, 10, 20, 30]),
                np.array([5.0, 3.0, 4.0, 1.0, 2.0, 5.0]), np.zeros(6, dtype=int))


def dense_objective(users, movies, alpha, reg_param):
    """The objective from its definition, over the dense 3 x 3 matrix of TRAIN."""
    preference, confidence = np.zeros((3, 3)), np.ones((3, 3))
    for user, movie, rating in zip(TRAIN.users, TRAIN.movies, TRAIN.ratings, strict=True):
        row, column = user - 1, movie // 10 - 1
        preference[row, column], confidence[row, column] = 1, 1 + alpha * rating
    error = (confidence * (preference - users @ movies.T) ** 2).sum()
    return error + reg_param * (preference.sum(axis=1) @ (users ** 2).sum(axis=1)
                                + preference.sum(axis=0) @ (movies ** 2).sum(axis=1))


def test_a_fit_lowers_the_objective_and_its_loss_is_the_objectives():
    one = reference_als.fit(TRAIN, 2, 0.1, 2.0, 1)
    many = reference_als.fit(TRAIN, 2, 0.1, 2.0, 20)
    assert reference_als.loss(many, TRAIN, 0.1, 2.0) < reference_als.loss(one, TRAIN, 0.1, 2.0)
    assert reference_als.loss(many, TRAIN, 0.1, 2.0) == pytest.approx(
        dense_objective(many[1], many[3], 2.0, 0.1), rel=1e-12)


def test_each_row_solve_is_the_minimum_of_the_objective_for_that_row():
    _, users, _, movies = reference_als.fit(TRAIN, 2, 0.1, 2.0, 5)
    base = dense_objective(users, movies, 2.0, 0.1)
    for step in (np.array([1e-3, 0]), np.array([0, -1e-3])):
        moved = users.copy()
        moved[2] += step
        assert dense_objective(moved, movies, 2.0, 0.1) > base


def test_recommendations_leave_out_the_rated_movies():
    model = reference_als.fit(TRAIN, 2, 0.1, 2.0, 5)
    found = reference_als.recommend(model, TRAIN, [1, 2, 3, 9], k=2)
    assert found[1] == [30] and sorted(found[2]) == [10, 30] and found[3] == [] and found[9] == []

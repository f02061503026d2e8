"""The baseline recommenders: popularity, and item-item neighbours summed over a user's movies."""
import numpy as np

from movielens_emr.evaluation.recommenders import item_item, popularity
from movielens_emr.evaluation.split import Ratings


def train(rows):
    users, movies = (np.array(column) for column in zip(*rows, strict=True))
    return Ratings(users, movies, np.full(users.size, 4.0), np.zeros(users.size, dtype=int))


TRAIN = train([(1, 10), (2, 10), (3, 10), (2, 20), (3, 20), (3, 30), (1, 40), (2, 40)])


def test_popularity_recommends_the_most_rated_movies_not_yet_rated_ties_by_id():
    # counts: 10: 3, 20: 2, 40: 2, 30: 1
    assert popularity(TRAIN, [1, 3, 9], k=2) == {1: [20, 30], 3: [40], 9: [10, 20]}


def test_item_item_sums_the_similarities_to_the_users_movies():
    neighbours = [(10, 20, 0.5), (40, 20, 0.25), (10, 30, 0.5), (40, 30, 0.5), (20, 30, 0.9)]
    found = item_item(TRAIN, neighbours, [1, 3], k=3)
    # user 1 rated 10 and 40: 30 scores 1.0, 20 scores 0.75
    assert found[1] == [30, 20]
    # user 3 rated 10, 20, 30: nothing left with a positive score
    assert found[3] == []

"""The per-user time split and the held-out positives."""
import numpy as np

from movielens_emr.evaluation.split import Ratings, positives, split_summary, time_split


def ratings(rows):
    users, movies, stars, times = (np.array(column) for column in zip(*rows, strict=True))
    return Ratings(users, movies, stars.astype(float), times)


def pairs(part):
    return sorted(zip(part.users.tolist(), part.movies.tolist(), strict=True))


def test_each_users_latest_fifth_is_held_out_ties_by_movie_id():
    # user 1: ten ratings, times 0..9 except two at time 9 (movies 10 and 11): the last two held out
    rows = [(1, movie, 4, time) for movie, time in zip(range(1, 9), range(8), strict=True)]
    rows += [(1, 11, 5, 9), (1, 10, 3, 9)]
    train, held_out = time_split(ratings(rows))
    assert pairs(held_out) == [(1, 10), (1, 11)] and len(train) == 8


def test_a_user_with_too_few_ratings_keeps_them_all_to_train_on():
    # 4 ratings: floor(0.8) = 0 held out; 5 ratings: 1 held out, the latest
    rows = [(1, movie, 4, movie) for movie in range(4)] + [(2, movie, 4, 10 - movie) for movie in range(5)]
    train, held_out = time_split(ratings(rows))
    assert pairs(held_out) == [(2, 0)] and len(train) == 8


def test_the_split_does_not_depend_on_the_input_order():
    rows = [(user, movie, 3, (user * 7 + movie * 3) % 11) for user in range(1, 6) for movie in range(12)]
    first = time_split(ratings(rows))[1]
    second = time_split(ratings(rows[::-1]))[1]
    assert pairs(first) == pairs(second)


def test_positives_are_held_out_ratings_of_four_stars_or_more():
    held_out = ratings([(1, 5, 4.0, 0), (1, 6, 3.5, 0), (2, 7, 3.0, 0), (3, 8, 5.0, 0)])
    assert positives(held_out) == {1: {5}, 3: {8}}


def test_the_summary_counts_the_split():
    train, held_out = ratings([(1, 1, 4, 0), (2, 1, 4, 0)]), ratings([(1, 2, 5, 1)])
    summary = split_summary(train, held_out, positives(held_out))
    assert (summary["train_ratings"], summary["held_out_ratings"], summary["users"],
            summary["evaluated_users"], summary["positives"]) == (2, 1, 2, 1, 1)

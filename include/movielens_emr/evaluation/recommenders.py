"""Recommendation lists from a time split's training ratings: by popularity, and from item-item neighbours.

A list never holds a movie the user rated in training; ties go to the lower movie id.
"""
import numpy as np
from scipy import sparse

from movielens_emr.evaluation.ranking import K


def rated_by_user(train):
    """{user: set of the movies rated in training}."""
    found = {}
    for user, movie in zip(train.users.tolist(), train.movies.tolist(), strict=True):
        found.setdefault(user, set()).add(movie)
    return found


def popularity(train, users, k=K):
    """{user: the k movies with the most training ratings that the user has not rated}."""
    movies, counts = np.unique(train.movies, return_counts=True)
    ranked = movies[np.lexsort((movies, -counts))].tolist()
    seen = rated_by_user(train)
    result = {}
    for user in users:
        own = seen.get(user, set())
        result[user] = _first_unseen(ranked, own, k)
    return result


def _first_unseen(ranked, seen, k):
    found = []
    for movie in ranked:
        if movie not in seen:
            found.append(movie)
            if len(found) == k:
                break
    return found


def item_item(train, neighbours, users, k=K):
    """{user: the k movies scoring highest by the sum of their similarities to the user's training movies}
    (only movies with a positive score: a user whose movies have no kept neighbours gets fewer than k).

    neighbours: (movie, similar movie, score) triples, e.g. an item-item similarity job's kept pairs.
    """
    pair_movies = [movie for pair in neighbours for movie in pair[:2]]
    movie_ids = np.unique(np.r_[train.movies, np.array(pair_movies, dtype=train.movies.dtype)])
    column = {movie: index for index, movie in enumerate(movie_ids.tolist())}
    rows = [column[pair[0]] for pair in neighbours]
    columns = [column[pair[1]] for pair in neighbours]
    similarity = sparse.csr_matrix(([pair[2] for pair in neighbours], (rows, columns)),
                                   shape=(movie_ids.size, movie_ids.size))
    seen = rated_by_user(train)
    result = {}
    for user in users:
        own = sorted(seen.get(user, ()))
        scores = np.asarray(similarity[[column[movie] for movie in own]].sum(axis=0)).ravel()
        scores[[column[movie] for movie in own]] = 0
        candidates = np.flatnonzero(scores > 0)
        best = candidates[np.lexsort((movie_ids[candidates], -scores[candidates]))][:k]
        result[user] = movie_ids[best].tolist()
    return result

"""An independent implicit-feedback ALS in numpy, for checking Spark's: the same objective (Hu, Koren and
Volinsky's, confidence 1 + alpha r, the regularisation scaled by each user's and movie's ratings, as
Spark's ALS weights it), solved exactly row by row, items first in each iteration as Spark does. Its start
is its own (unit Gaussian vectors from numpy's generator), so its factors differ from Spark's; its
recommendations and loss should be as good. Memory: the factors, and one row's ratings at a time."""
import numpy as np
from scipy import sparse

from movielens_emr.evaluation.ranking import K


def fit(train, rank, reg_param, alpha, iterations, seed=0):
    """(user ids, user factors, movie ids, movie factors) of `train` (Ratings)."""
    user_ids, rows = np.unique(train.users, return_inverse=True)
    movie_ids, columns = np.unique(train.movies, return_inverse=True)
    by_user = sparse.csr_matrix((train.ratings, (rows, columns)), shape=(user_ids.size, movie_ids.size))
    by_movie = by_user.T.tocsr()
    generator = np.random.default_rng(seed)
    users, movies = (unit_rows(generator.standard_normal((size, rank)))
                     for size in (user_ids.size, movie_ids.size))
    for _ in range(iterations):
        movies = solve_rows(by_movie, users, reg_param, alpha)
        users = solve_rows(by_user, movies, reg_param, alpha)
    return user_ids, users, movie_ids, movies


def unit_rows(matrix):
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def solve_rows(ratings, other, reg_param, alpha):
    """Each row's factors given the other side's: (Y'Y + Y'(C - I)Y + reg n I)^-1 Y'C p, p = 1 where rated."""
    gram, identity = other.T @ other, np.eye(other.shape[1])
    solved = np.zeros((ratings.shape[0], other.shape[1]))
    for row in range(ratings.shape[0]):
        start, end = ratings.indptr[row], ratings.indptr[row + 1]
        if start == end:
            continue
        rated, confidence = other[ratings.indices[start:end]], 1 + alpha * ratings.data[start:end]
        lhs = gram + (rated.T * (confidence - 1)) @ rated + reg_param * (end - start) * identity
        solved[row] = np.linalg.solve(lhs, rated.T @ confidence)
    return solved


def recommend(model, train, users, k=K):
    """{user: the k movies of highest x_u . y_i that the user did not rate in train}, ties by movie id."""
    user_ids, user_factors, movie_ids, movie_factors = model
    row_of = {user: row for row, user in enumerate(user_ids.tolist())}
    column_of = {movie: column for column, movie in enumerate(movie_ids.tolist())}
    rated = {}
    for user, movie in zip(train.users.tolist(), train.movies.tolist(), strict=True):
        rated.setdefault(user, []).append(column_of[movie])
    result = {}
    for user in users:
        if user not in row_of:
            result[user] = []
            continue
        scores = movie_factors @ user_factors[row_of[user]]
        scores[rated[user]] = -np.inf
        best = np.lexsort((movie_ids, -scores))[:k]
        result[user] = movie_ids[best[np.isfinite(scores[best])]].tolist()
    return result


def loss(model, train, reg_param, alpha):
    """The objective at the model's factors (every pair; unrated ones with preference 0, confidence 1)."""
    user_ids, users, movie_ids, movies = model
    rows, columns = np.searchsorted(user_ids, train.users), np.searchsorted(movie_ids, train.movies)
    scores = np.einsum("ij,ij->i", users[rows], movies[columns])
    unrated_as_zero = float(np.trace((users.T @ users) @ (movies.T @ movies)))
    rated = float(((1 + alpha * train.ratings) * (1 - scores) ** 2 - scores ** 2).sum())
    penalty = (np.bincount(rows, minlength=user_ids.size) @ (users ** 2).sum(axis=1)
               + np.bincount(columns, minlength=movie_ids.size) @ (movies ** 2).sum(axis=1))
    return unrated_as_zero + rated + reg_param * float(penalty)

"""Movie similarities computed in one process with scipy sparse algebra: the MapReduce job's yardstick."""
import csv
import io
import zlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse

METRICS = ("cosine", "pearson", "jaccard")


@dataclass(frozen=True)
class Ratings:
    """One rating per (user, movie): the latest by timestamp, the higher rating on ties."""

    users: np.ndarray  # user ids as str
    movies: np.ndarray  # movie ids as str
    ratings: np.ndarray  # float64 stars
    timestamps: np.ndarray  # int64 seconds


def read_ratings(paths):
    """Read MovieLens ratings files of any release (tab, '::' or CSV with header) into Ratings."""
    columns = [_read_ratings_file(path) for path in paths]
    # Each file gives the same four columns.
    users, movies, ratings, timestamps = (np.concatenate(parts) for parts in zip(*columns, strict=True))
    return _latest_per_user_and_movie(Ratings(users, movies, ratings, timestamps))


def _read_ratings_file(path):
    with open(path, "rb") as ratings_file:
        text = ratings_file.read().decode("ascii")
    first_line = text[: text.find("\n")]
    if "::" in first_line:
        rows = [line.split("::") for line in text.splitlines() if line]
    elif "\t" in first_line:
        rows = [line.split("\t") for line in text.splitlines() if line]
    else:
        rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].isdigit()]
    # Not strict: the rows are read as they come, so their field counts are not known to agree.
    users, movies, ratings, timestamps = zip(*rows, strict=False) if rows else ((), (), (), ())
    # Ids as the job writes them: integers as text, without leading zeros ("0001" is movie "1").
    return (
        np.array(users, dtype=np.int64).astype(str),
        np.array(movies, dtype=np.int64).astype(str),
        np.array(ratings, dtype=np.float64),
        np.array(timestamps, dtype=np.int64),
    )


def _latest_per_user_and_movie(ratings):
    order = np.lexsort((ratings.ratings, ratings.timestamps, ratings.movies, ratings.users))
    users, movies = ratings.users[order], ratings.movies[order]
    is_last = np.ones(len(order), dtype=bool)
    is_last[:-1] = (users[1:] != users[:-1]) | (movies[1:] != movies[:-1])
    keep = order[is_last]
    return Ratings(ratings.users[keep], ratings.movies[keep], ratings.ratings[keep], ratings.timestamps[keep])


def sample_users(ratings, fraction):
    """The ratings of the users in the deterministic sample: crc32(user id) below fraction * 2**32."""
    if fraction >= 1:
        return ratings
    chosen = np.array([zlib.crc32(user.encode()) < fraction * 2**32 for user in ratings.users], dtype=bool)
    columns = (ratings.users, ratings.movies, ratings.ratings, ratings.timestamps)
    return Ratings(*(column[chosen] for column in columns))


def similar_pairs(ratings, metric="cosine", min_score=0.95, min_co_ratings=10):
    """Every kept ordered pair as {(movie_id, similar_movie_id): (score, co_raters)}.

    A pair is kept when its co-raters exceed min_co_ratings and its score exceeds min_score.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if len(ratings.users) == 0:
        return {}
    movie_ids, user_index, movie_index = _indices(ratings)
    rated = sparse.csr_matrix((np.ones(len(user_index)), (user_index, movie_index)))
    stars = sparse.csr_matrix((ratings.ratings, (user_index, movie_index)))
    co_raters = sparse.triu(rated.T @ rated, k=1).tocoo()
    enough = co_raters.data > min_co_ratings
    i, j, n = co_raters.row[enough], co_raters.col[enough], co_raters.data[enough]
    scores = _scores(metric, rated, stars, i, j, n)
    kept = scores > min_score
    pairs = {}
    for a, b, score, count in zip(
            movie_ids[i[kept]].tolist(), movie_ids[j[kept]].tolist(), scores[kept].tolist(),
            n[kept].tolist(), strict=True):  # one mask over i, j, n and their scores
        pairs[(a, b)] = pairs[(b, a)] = (score, int(count))
    return pairs


def _indices(ratings):
    _, user_index = np.unique(ratings.users, return_inverse=True)
    movie_ids, movie_index = np.unique(ratings.movies, return_inverse=True)
    return movie_ids, user_index, movie_index


def _scores(metric, rated, stars, i, j, n):
    def at(matrix):
        return np.asarray(matrix.tocsr()[i, j]).ravel()

    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "jaccard":
            raters = np.asarray(rated.sum(axis=0)).ravel()
            return n / (raters[i] + raters[j] - n)
        squares = stars.multiply(stars)
        sum_xy, sum_xx, sum_yy = at(stars.T @ stars), at(squares.T @ rated), at(rated.T @ squares)
        if metric == "cosine":
            return sum_xy / np.sqrt(sum_xx * sum_yy)
        sum_x, sum_y = at(stars.T @ rated), at(rated.T @ stars)
        # n*sum_xy - sum_x*sum_y keeps half-star sums exact, so a score of exactly 0.5 stays 0.5.
        covariance = n * sum_xy - sum_x * sum_y
        variances = (n * sum_xx - sum_x**2) * (n * sum_yy - sum_y**2)
        return np.where(variances > 0, covariance / np.sqrt(variances), -np.inf)

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
    _check_metric(metric)
    if len(ratings.users) == 0:
        return {}
    movie_ids, user_index, movie_index = _indices(ratings)
    rated = sparse.csr_matrix((np.ones(len(user_index)), (user_index, movie_index)))
    stars = sparse.csr_matrix((ratings.ratings, (user_index, movie_index)))
    i, j, scores, n = _kept_pairs(metric, (rated, stars), (rated, stars), True, min_score, min_co_ratings)
    pairs = {}
    for a, b, score, count in zip(
            movie_ids[i].tolist(), movie_ids[j].tolist(), scores.tolist(), n.tolist(), strict=True):
        pairs[(a, b)] = pairs[(b, a)] = (score, int(count))
    return pairs


def similar_pairs_blocked(ratings, metric="cosine", min_score=0.95, min_co_ratings=10, block_movies=4096):
    """similar_pairs' answer one pair of movie ranges at a time, for data whose movie x movie sums do not
    fit in memory at once (ml-25m's 59,047 movies): yields, per pair of ranges of block_movies movies (in
    movie id order), arrays (movie ids, similar movie ids, scores, co-raters) of its kept pairs, each
    unordered pair once. The sums are the same, so the scores are those of similar_pairs, bit for bit.
    """
    _check_metric(metric)
    if len(ratings.users) == 0:
        return
    movie_ids, user_index, movie_index = _indices(ratings)
    # By columns: a range of movies is a cheap slice.
    rated = sparse.csc_matrix((np.ones(len(user_index)), (user_index, movie_index)))
    stars = sparse.csc_matrix((ratings.ratings, (user_index, movie_index)))
    starts = range(0, len(movie_ids), block_movies)
    for first in starts:
        left = (rated[:, first:first + block_movies], stars[:, first:first + block_movies])
        for second in (start for start in starts if start >= first):
            right = (rated[:, second:second + block_movies], stars[:, second:second + block_movies])
            i, j, scores, n = _kept_pairs(metric, left, right, first == second, min_score, min_co_ratings)
            yield movie_ids[i + first], movie_ids[j + second], scores, n


def _check_metric(metric):
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def _kept_pairs(metric, left, right, diagonal, min_score, min_co_ratings):
    """Rows, columns, scores and co-raters of the kept pairs of left's movies x right's, each a (rated,
    stars) users x movies matrix; on the diagonal (left is right) only the pairs above it."""
    co_raters = (left[0].T @ right[0]).tocoo()
    if diagonal:
        co_raters = sparse.triu(co_raters, k=1).tocoo()
    enough = co_raters.data > min_co_ratings
    i, j, n = co_raters.row[enough], co_raters.col[enough], co_raters.data[enough]
    scores = _scores(metric, left, right, i, j, n)
    kept = scores > min_score
    return i[kept], j[kept], scores[kept], n[kept]


def _indices(ratings):
    _, user_index = np.unique(ratings.users, return_inverse=True)
    movie_ids, movie_index = np.unique(ratings.movies, return_inverse=True)
    return movie_ids, user_index, movie_index


def _scores(metric, left, right, i, j, n):
    (rated_x, stars_x), (rated_y, stars_y) = left, right

    def at(matrix):
        return np.asarray(matrix.tocsr()[i, j]).ravel()

    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "jaccard":
            raters_x, raters_y = (np.asarray(rated.sum(axis=0)).ravel() for rated in (rated_x, rated_y))
            return n / (raters_x[i] + raters_y[j] - n)
        squares_x, squares_y = stars_x.multiply(stars_x), stars_y.multiply(stars_y)
        sum_xy, sum_xx, sum_yy = at(stars_x.T @ stars_y), at(squares_x.T @ rated_y), at(rated_x.T @ squares_y)
        if metric == "cosine":
            return sum_xy / np.sqrt(sum_xx * sum_yy)
        sum_x, sum_y = at(stars_x.T @ rated_y), at(rated_x.T @ stars_y)
        # n*sum_xy - sum_x*sum_y keeps half-star sums exact, so a score of exactly 0.5 stays 0.5.
        covariance = n * sum_xy - sum_x * sum_y
        variances = (n * sum_xx - sum_x**2) * (n * sum_yy - sum_y**2)
        return np.where(variances > 0, covariance / np.sqrt(variances), -np.inf)

"""Deterministic generator of MovieLens-shaped (1M, 10M, 25M) synthetic ratings.dat and movies.dat files."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

ML1M_MOVIE_ID_SPACE = 3952  # ml-1m movie ids run 1..3952, of which 3706 are rated
FIRST_TIMESTAMP = 956_703_932  # 2000-04-25 23:05:32 UTC, the earliest ml-1m rating
LAST_TIMESTAMP = 1_046_454_590  # 2003-02-28 17:49:50 UTC, the latest ml-1m rating
END_OF_2000 = 978_307_199  # ml-1m users all joined in 2000, so first sessions start before this

RATING_SHARES = (0.056, 0.108, 0.261, 0.349, 0.226)  # ml-1m share of ratings 1..5
# ml-25m share of ratings 0.5, 1, ..., 5 (ml-10m is within a point of it).
HALF_STAR_SHARES = (0.016, 0.031, 0.016, 0.066, 0.050, 0.196, 0.126, 0.266, 0.085, 0.148)

# Number of ml-1m movies carrying each genre; used as weights when tagging synthetic movies.
GENRE_FREQUENCIES = {
    "Action": 503, "Adventure": 283, "Animation": 105, "Children's": 251, "Comedy": 1200,
    "Crime": 211, "Documentary": 127, "Drama": 1603, "Fantasy": 68, "Film-Noir": 44,
    "Horror": 343, "Musical": 114, "Mystery": 106, "Romance": 471, "Sci-Fi": 276,
    "Thriller": 492, "War": 143, "Western": 68,
}
GENRES = tuple(GENRE_FREQUENCIES)
GENRE_COUNT_SHARES = (0.5, 0.35, 0.15)  # share of movies tagged with 1, 2 and 3 genres

# Tuned so the full shape lands near ml-1m: per-user median ~95 (ml-1m 96) and max ~1800-2500
# (2314); per-movie max ~3400-3600 (3428) and median ~107 (123); hundreds of movies under 10.
ACTIVITY_GAMMA_SHAPE = 0.55
POPULARITY_GAMMA_SHAPE = 0.6
POPULARITY_EXPONENT = 1.4
# A small weight floor trims single-rating movies to ~70-90 (ml-1m has about a hundred)
# from ~250 without it.
POPULARITY_FLOOR_SHARE = 0.003
LATENT_DIMS = 8
USER_BIAS_SD = 0.45
QUALITY_SD = 0.45
QUALITY_POPULARITY_SLOPE = 0.25  # popular ml-1m movies are rated a little higher
TASTE_SD = 0.3
MOVIE_FACTOR_NOISE_SD = 0.5
RATING_NOISE_SD = 0.8

RATINGS_DTYPE = np.dtype(
    [("user_id", np.int32), ("movie_id", np.int32), ("rating", np.int8), ("timestamp", np.int64)]
)
# Half-star shapes (ml-10m and later): the same columns, ratings 0.5..5 as float32.
HALF_STAR_RATINGS_DTYPE = np.dtype(
    [("user_id", np.int32), ("movie_id", np.int32), ("rating", np.float32), ("timestamp", np.int64)]
)
# Users whose count exceeds movies / HEAVY_USER_SHARE draw their movies one by one (exact keys,
# O(movies) each); the others draw with replacement in bulk, dropping repeats.
HEAVY_USER_SHARE = 8
# Draws per missing rating in a bulk round: a few repeats are dropped, and short users draw again.
BULK_DRAW_FACTOR = 1.3
BULK_BATCH_RATINGS = 2_000_000
# Shapes with more user x movie cells than this use the bulk draws (ml-1m's 22 million do not).
BULK_ABOVE_CELLS = 100_000_000
WRITE_ROWS = 1_000_000
MOVIES_DTYPE = np.dtype([("movie_id", np.int32), ("title", "U64"), ("genres", "U64")])


@dataclass(frozen=True)
class SyntheticShape:
    """Size and seed of a synthetic dataset; the defaults are the real ml-1m figures.

    Construction raises ValueError when no dataset can have this shape (for example more
    ratings than distinct (user, movie) pairs, or fewer ratings than movies).
    """

    users: int = 6040
    movies: int = 3706
    ratings: int = 1_000_209
    min_ratings_per_user: int = 20
    seed: int = 1
    # Heavier shapes: the heaviest user's exact count, the most-rated movie's target count
    # (popularity is tuned to reach it), a log-normal activity spread, and half-star ratings.
    max_ratings_per_user: int | None = None
    max_raters_per_movie: int | None = None
    activity_sigma: float | None = None
    half_stars: bool = False

    def __post_init__(self) -> None:
        problems = _shape_problems(self)
        if problems:
            raise ValueError(f"infeasible {self}: " + "; ".join(problems))


def _shape_problems(shape: SyntheticShape) -> list[str]:
    """Every reason the shape cannot be generated; empty when it can."""
    checks = [
        (shape.users >= 1 and shape.movies >= 1, "users and movies must be at least 1"),
        (shape.min_ratings_per_user >= 1, "min_ratings_per_user must be at least 1"),
        (shape.min_ratings_per_user <= shape.movies, "min_ratings_per_user exceeds movies"),
        (shape.users * shape.min_ratings_per_user <= shape.ratings,
         "ratings below users * min_ratings_per_user"),
        (shape.ratings <= shape.users * shape.movies, "ratings exceed users * movies pairs"),
        (shape.ratings >= shape.movies, "ratings below movies, so some movie would be unrated"),
        (shape.max_ratings_per_user is None
         or shape.min_ratings_per_user <= shape.max_ratings_per_user <= shape.movies,
         "max_ratings_per_user outside min_ratings_per_user..movies"),
        (shape.max_raters_per_movie is None or 1 <= shape.max_raters_per_movie <= shape.users,
         "max_raters_per_movie outside 1..users"),
    ]
    return [message for ok, message in checks if not ok]


# The published figures of each release: users, rated movies, ratings, the heaviest user's
# ratings and the most-rated movie's raters; the spread of activity matches each median user.
PRESETS = {
    "ml-1m": SyntheticShape(),
    "ml-10m": SyntheticShape(users=71_567, movies=10_681, ratings=10_000_054, max_ratings_per_user=7_359,
                             max_raters_per_movie=34_864, activity_sigma=1.2, half_stars=True),
    "ml-25m": SyntheticShape(users=162_541, movies=59_047, ratings=25_000_095, max_ratings_per_user=32_202,
                             max_raters_per_movie=81_491, activity_sigma=1.25, half_stars=True),
}


@dataclass(frozen=True)
class _Catalogue:
    movie_ids: np.ndarray  # ascending ids drawn from the ml-1m id space
    years: np.ndarray
    genres: np.ndarray  # bool (movies, len(GENRES))
    popularity: np.ndarray  # positive sampling weights
    quality: np.ndarray  # additive rating shift per movie
    factors: np.ndarray  # (movies, LATENT_DIMS), close for movies sharing genres


@dataclass(frozen=True)
class _Users:
    counts: np.ndarray  # ratings per user, summing to shape.ratings
    bias: np.ndarray
    taste: np.ndarray  # (users, LATENT_DIMS)
    first_session: np.ndarray  # seconds
    session_seconds: np.ndarray
    return_share: np.ndarray  # share of a user's ratings made after the first session


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent named generators, so e.g. the catalogue does not depend on the user count."""
    names = ("catalogue", "users", "picks", "scores", "times", "order")
    return dict(zip(names, np.random.default_rng(seed).spawn(len(names)), strict=False))


def _draw_movie_ids(movies: int, rng: np.random.Generator) -> np.ndarray:
    """Ascending distinct ids from 1..3952 (or 1..movies when that is larger)."""
    id_space = max(ML1M_MOVIE_ID_SPACE, movies)
    return np.sort(rng.choice(id_space, size=movies, replace=False) + 1).astype(np.int32)


def _draw_years(movies: int, rng: np.random.Generator) -> np.ndarray:
    """Release years 1919..2000 skewed towards the late 1990s like ml-1m."""
    age = np.floor(rng.exponential(scale=9.0, size=movies))
    return np.clip(2000 - age, 1919, 2000).astype(np.int32)


def _draw_genres(movies: int, rng: np.random.Generator) -> np.ndarray:
    """Bool matrix tagging each movie with 1..3 distinct genres, weighted by ml-1m frequency."""
    weights = np.array(list(GENRE_FREQUENCIES.values()), dtype=float)
    # Efraimidis-Spirakis keys: the top-n keys are a weighted sample without replacement.
    keys = np.log(rng.random((movies, len(GENRES)))) / weights
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    genre_counts = rng.choice(len(GENRE_COUNT_SHARES), size=movies, p=GENRE_COUNT_SHARES) + 1
    return rank < genre_counts[:, None]


def _genre_factors(genres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Latent vectors: the mean of the movie's genre vectors plus individual noise."""
    genre_vectors = rng.normal(size=(len(GENRES), LATENT_DIMS))
    shared = genres @ genre_vectors / genres.sum(axis=1, keepdims=True)
    return shared + rng.normal(scale=MOVIE_FACTOR_NOISE_SD, size=shared.shape)


def _build_catalogue(movies: int, rng: np.random.Generator) -> _Catalogue:
    """All per-movie properties, drawn in a fixed order from the catalogue stream."""
    movie_ids = _draw_movie_ids(movies, rng)
    years = _draw_years(movies, rng)
    genres = _draw_genres(movies, rng)
    factors = _genre_factors(genres, rng)
    popularity = rng.gamma(POPULARITY_GAMMA_SHAPE, size=movies) ** POPULARITY_EXPONENT
    popularity += POPULARITY_FLOOR_SHARE * popularity.mean()
    log_popularity = np.log(popularity)
    popularity_z = (log_popularity - log_popularity.mean()) / log_popularity.std()
    quality = QUALITY_POPULARITY_SLOPE * popularity_z + rng.normal(scale=QUALITY_SD, size=movies)
    return _Catalogue(movie_ids, years, genres, popularity, quality, factors)


def _fit_counts(weights: np.ndarray, floor: int, cap: int, total: int) -> np.ndarray:
    """Integers in [floor, cap] summing exactly to total, growing with weights (water-filling)."""
    def filled(scale: float) -> np.ndarray:
        return np.minimum(floor + scale * weights, cap)

    low, high = 0.0, 1.0
    while filled(high).sum() < total:
        high *= 2.0
    for _ in range(100):
        middle = (low + high) / 2.0
        low, high = (middle, high) if filled(middle).sum() < total else (low, middle)
    return _round_to_total(filled(low), cap, total)


def _round_to_total(real_counts: np.ndarray, cap: int, total: int) -> np.ndarray:
    """Floor the counts, then hand the shortfall to the largest fractional parts below cap."""
    counts = np.floor(real_counts).astype(np.int64)
    fractions = real_counts - counts
    while (shortfall := total - int(counts.sum())) > 0:
        eligible = np.flatnonzero(counts < cap)
        chosen = eligible[np.argsort(-fractions[eligible], kind="stable")[:shortfall]]
        counts[chosen] += 1
        fractions[chosen] = 0.0
    return counts


def _build_users(shape: SyntheticShape, rng: np.random.Generator) -> _Users:
    """Per-user activity, rating bias, taste and timing habits."""
    activity = _activity(shape, rng)
    cap = shape.max_ratings_per_user or shape.movies
    counts = _fit_counts(activity, shape.min_ratings_per_user, cap, shape.ratings)
    bias = rng.normal(scale=USER_BIAS_SD, size=shape.users)
    taste = rng.normal(scale=TASTE_SD, size=(shape.users, LATENT_DIMS))
    first_session = rng.uniform(FIRST_TIMESTAMP, END_OF_2000, size=shape.users)
    # Most ml-1m users rate in one sitting of minutes to hours; a few keep coming back.
    session_seconds = np.exp(rng.normal(np.log(3600.0), 1.5, size=shape.users))
    return_share = rng.beta(0.3, 3.0, size=shape.users)
    return _Users(counts, bias, taste, first_session, session_seconds, return_share)


def _activity(shape: SyntheticShape, rng: np.random.Generator) -> np.ndarray:
    """Relative activity per user; with max_ratings_per_user the most active user reaches it exactly."""
    if shape.activity_sigma is None:
        activity = rng.gamma(ACTIVITY_GAMMA_SHAPE, size=shape.users)
    else:
        activity = rng.lognormal(sigma=shape.activity_sigma, size=shape.users)
    if shape.max_ratings_per_user is not None:
        # A weight that saturates at the cap whatever the scale the water-filling settles on.
        activity[np.argmax(activity)] = activity.sum() * shape.ratings
    return activity


def _calibrated_popularity(popularity: np.ndarray, counts: np.ndarray, target: int | None) -> np.ndarray:
    """Popularity raised to the power that gives the most popular movie about `target` raters.

    The expected raters of a movie drawn with probability p per pick is sum_u 1 - (1 - p)^n_u.
    """
    if target is None:
        return popularity
    log_weights = np.log(popularity / popularity.max())

    def expected_top_raters(power: float) -> float:
        top_share = 1.0 / np.exp(power * log_weights).sum()
        return float(np.sum(-np.expm1(counts * np.log1p(-min(top_share, 1 - 1e-12)))))

    low, high = 0.0, 8.0
    for _ in range(50):
        middle = (low + high) / 2.0
        low, high = (middle, high) if expected_top_raters(middle) < target else (low, middle)
    return np.exp(low * log_weights)


def _forced_movies(counts: np.ndarray, movies: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per user, the movie indexes it must rate; each movie is forced on exactly one user.

    No user is forced more movies than its count: each movie takes a distinct rating slot
    out of counts.sum(), and the slot's owner must rate it.
    """
    slots = rng.choice(int(counts.sum()), size=movies, replace=False)
    raters = np.searchsorted(np.cumsum(counts), slots, side="right")
    by_rater = np.argsort(raters, kind="stable")
    bounds = np.searchsorted(raters[by_rater], np.arange(counts.size + 1))
    return [by_rater[bounds[user]:bounds[user + 1]] for user in range(counts.size)]


def _pick_movies(counts: np.ndarray, popularity: np.ndarray,
                 rng: np.random.Generator, bulk: bool = False) -> np.ndarray:
    """Movie indexes of all ratings, grouped by user, ascending within a user, no repeats.

    Each user draws counts[u] movies weighted by popularity without replacement, always
    including its forced movies, so every movie is rated at least once. bulk draws light
    users' movies all at once (the same distribution, far faster for large shapes).
    """
    movies = popularity.size
    forced = _forced_movies(counts, movies, rng)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    picks = np.empty(offsets[-1], dtype=np.int32)
    heavy = counts * HEAVY_USER_SHARE > movies if bulk else np.ones(counts.size, dtype=bool)
    for user in np.flatnonzero(heavy).tolist():
        picks[offsets[user]:offsets[user + 1]] = _user_picks(counts[user], forced[user], popularity, rng)
    light = np.flatnonzero(~heavy)
    # Batches of about BULK_BATCH_RATINGS ratings bound the memory of the bulk draws.
    for batch in np.array_split(light, int(np.ceil(counts[light].sum() / BULK_BATCH_RATINGS)) or 1):
        batch_picks = _bulk_picks(counts[batch], [forced[u] for u in batch.tolist()], popularity, rng)
        for user, user_picks in zip(batch.tolist(), batch_picks, strict=True):
            picks[offsets[user]:offsets[user + 1]] = user_picks
    return picks


def _user_picks(count: int, forced: np.ndarray, popularity: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """One user's movies by Efraimidis-Spirakis keys, forced movies first, ascending."""
    movies = popularity.size
    keys = np.log(rng.random(movies)) / popularity
    keys[forced] = np.inf
    return np.sort(np.argpartition(keys, movies - count)[movies - count:])


def _bulk_picks(counts: np.ndarray, forced: list[np.ndarray], popularity: np.ndarray,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Per user, its forced movies plus draws with replacement, the first distinct ones kept.

    Drawing by weight with replacement and dropping repeats is weighted sampling without
    replacement; users still short after a round draw again for what they miss.
    """
    cumulative = np.cumsum(popularity / popularity.sum())
    cumulative[-1] = 1.0
    movies = popularity.size
    chosen = [np.asarray(user_forced, dtype=np.int64) for user_forced in forced]
    missing = counts - np.array([len(user_chosen) for user_chosen in chosen])
    while missing.sum():
        short = np.flatnonzero(missing)
        draws_per_user = np.ceil(missing[short] * BULK_DRAW_FACTOR).astype(np.int64) + 2
        owners = np.repeat(short, draws_per_user)
        drawn = np.searchsorted(cumulative, rng.random(owners.size), side="right")
        # First occurrence of each (user, movie), in draw order, among the user's earlier picks too.
        earlier = np.concatenate([chosen[user] for user in short])
        earlier_owners = np.repeat(short, [len(chosen[user]) for user in short])
        keys = np.concatenate((earlier_owners * movies + earlier, owners * movies + drawn))
        _, first = np.unique(keys, return_index=True)
        first.sort()
        first = first[first >= earlier.size]
        new_owners, new_movies = keys[first] // movies, keys[first] % movies
        starts = np.searchsorted(new_owners, short)
        rank = np.arange(new_owners.size) - np.repeat(starts, np.diff(np.append(starts, new_owners.size)))
        take = rank < missing[new_owners]
        for user, user_new in zip(*_split_by_owner(new_owners[take], new_movies[take]), strict=True):
            chosen[user] = np.concatenate((chosen[user], user_new))
            missing[user] -= user_new.size
    return [np.sort(user_chosen).astype(np.int32) for user_chosen in chosen]


def _split_by_owner(owners: np.ndarray, values: np.ndarray) -> tuple[list[int], list[np.ndarray]]:
    """(distinct owners ascending, the values of each) from owner-sorted arrays."""
    if not owners.size:
        return [], []
    distinct, starts = np.unique(owners, return_index=True)
    return distinct.tolist(), np.split(values, starts[1:])


def _score_to_rating(scores: np.ndarray, half_stars: bool = False) -> np.ndarray:
    """Ratings cutting the scores at quantiles: integers 1..5 in ml-1m's shares, or half
    stars 0.5..5 in ml-25m's."""
    shares = HALF_STAR_SHARES if half_stars else RATING_SHARES
    cut_points = np.quantile(scores, np.cumsum(shares)[:-1])
    levels = np.searchsorted(cut_points, scores, side="right") + 1
    return (levels / 2).astype(np.float32) if half_stars else levels.astype(np.int8)


def _rate(users: _Users, catalogue: _Catalogue, user_index: np.ndarray,
          movie_index: np.ndarray, rng: np.random.Generator, half_stars: bool) -> np.ndarray:
    """Ratings from user bias + movie quality + taste-factor affinity + noise."""
    affinity = np.einsum("ij,ij->i", users.taste[user_index], catalogue.factors[movie_index])
    scores = users.bias[user_index] + catalogue.quality[movie_index] + affinity
    scores += rng.normal(scale=RATING_NOISE_SD, size=scores.size)
    return _score_to_rating(scores, half_stars)


def _timestamps(users: _Users, user_index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seconds within ml-1m's span: mostly a user's first session, sometimes a later return."""
    size = user_index.size
    start = users.first_session[user_index]
    in_session = start + rng.exponential(users.session_seconds[user_index])
    returned = start + rng.random(size) * (LAST_TIMESTAMP - start)
    is_return = rng.random(size) < users.return_share[user_index]
    seconds = np.where(is_return, returned, in_session)
    return np.clip(seconds, FIRST_TIMESTAMP, LAST_TIMESTAMP).astype(np.int64)


def generate_movies(shape: SyntheticShape) -> np.ndarray:
    """The shape.movies rated movies as a MOVIES_DTYPE array, ascending by movie_id.

    Titles look like "Synthetic Movie 123 (1997)" and genres like "Comedy|Drama" (ml-1m
    genre names); both are ASCII and depend only on shape.movies and shape.seed.
    """
    catalogue = _build_catalogue(shape.movies, _streams(shape.seed)["catalogue"])
    movies = np.empty(shape.movies, dtype=MOVIES_DTYPE)
    movies["movie_id"] = catalogue.movie_ids
    movies["title"] = [
        f"Synthetic Movie {movie_id} ({year})"
        for movie_id, year in zip(catalogue.movie_ids.tolist(), catalogue.years.tolist(), strict=False)
    ]
    genre_names = np.array(GENRES)
    movies["genres"] = ["|".join(genre_names[row]) for row in catalogue.genres]
    return movies


def generate_ratings(shape: SyntheticShape) -> np.ndarray:
    """Exactly shape.ratings distinct (user, movie) ratings as a RATINGS_DTYPE array
    (HALF_STAR_RATINGS_DTYPE for a half-star shape).

    Every user id 1..shape.users has at least shape.min_ratings_per_user ratings (and at most
    max_ratings_per_user, which the heaviest user has exactly), each of the shape.movies ids of
    generate_movies(shape) is rated at least once, ratings are 1..5 (0.5..5 in half stars) and
    timestamps lie within ml-1m's span. Rows are ordered by user_id, in a seeded shuffled
    order within a user. The same shape always gives the same bytes.
    """
    streams = _streams(shape.seed)
    catalogue = _build_catalogue(shape.movies, streams["catalogue"])
    users = _build_users(shape, streams["users"])
    popularity = _calibrated_popularity(catalogue.popularity, users.counts, shape.max_raters_per_movie)
    bulk = shape.users * shape.movies > BULK_ABOVE_CELLS
    movie_index = _pick_movies(users.counts, popularity, streams["picks"], bulk)
    user_index = np.repeat(np.arange(shape.users, dtype=np.int32), users.counts)
    ratings = np.empty(shape.ratings, dtype=HALF_STAR_RATINGS_DTYPE if shape.half_stars else RATINGS_DTYPE)
    ratings["user_id"] = user_index + 1
    ratings["movie_id"] = catalogue.movie_ids[movie_index]
    ratings["rating"] = _rate(users, catalogue, user_index, movie_index, streams["scores"], shape.half_stars)
    ratings["timestamp"] = _timestamps(users, user_index, streams["times"])
    within_user_order = streams["order"].random(shape.ratings)
    return ratings[np.lexsort((within_user_order, user_index))]


def format_ratings(ratings: np.ndarray) -> str:
    """ml-1m / ml-10m ratings.dat text: one "UserID::MovieID::Rating::Timestamp" line per row,
    LF-ended; half stars as in ml-10m ("4", "3.5")."""
    columns = [ratings[name].tolist() for name in RATINGS_DTYPE.names]
    if ratings.dtype == HALF_STAR_RATINGS_DTYPE:
        columns[2] = [f"{rating:g}" for rating in columns[2]]
    return "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in zip(*columns, strict=True))


def format_movies(movies: np.ndarray) -> str:
    """ml-1m movies.dat text: one "MovieID::Title::Genres" line per row, LF-ended."""
    columns = (movies[name].tolist() for name in MOVIES_DTYPE.names)
    return "".join(f"{movie}::{title}::{genres}\n" for movie, title, genres in zip(*columns, strict=False))


def _write_text(path: str | Path, text: str, encoding: str) -> int:
    """Write text with LF line endings in the given encoding; return the bytes written."""
    data = text.encode(encoding)
    Path(path).write_bytes(data)
    return len(data)


def write_ml1m_ratings(path: str | Path, shape: SyntheticShape,
                       ratings: np.ndarray | None = None) -> int:
    """Write generate_ratings(shape) (or the given ratings) as ASCII ratings.dat; return bytes.

    Written WRITE_ROWS rows at a time, so a 25M-rating file needs no gigabytes of text at once.
    """
    rows = generate_ratings(shape) if ratings is None else ratings
    written = 0
    with open(path, "wb") as ratings_file:
        for start in range(0, rows.size, WRITE_ROWS):
            written += ratings_file.write(format_ratings(rows[start:start + WRITE_ROWS]).encode("ascii"))
    return written


def write_movies_dat(path: str | Path, shape: SyntheticShape) -> int:
    """Write generate_movies(shape) as latin-1 movies.dat; return the bytes written."""
    return _write_text(path, format_movies(generate_movies(shape)), "latin-1")


_OPTION_HELP = {
    "users": "number of users, ids 1..N",
    "movies": "number of distinct rated movies, ids drawn from 1..max(3952, N)",
    "ratings": "exact number of ratings",
    "min_ratings_per_user": "fewest ratings any user has",
    "max_ratings_per_user": "the heaviest user's exact number of ratings (none: at most movies)",
    "max_raters_per_movie": "raters the most-rated movie aims at (none: ml-1m's popularity curve)",
    "seed": "random seed; the same seed writes the same bytes",
}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; the defaults reproduce ml-1m's size."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.synthetic",
        description="Write a deterministic synthetic MovieLens-shaped dataset: "
        "OUTDIR/ratings.dat (UserID::MovieID::Rating::Timestamp) and "
        "OUTDIR/movies.dat (MovieID::Title::Genres).",
    )
    parser.add_argument("outdir", metavar="OUTDIR", type=Path,
                        help="directory to write into (created if missing)")
    parser.add_argument("--preset", choices=PRESETS, default="ml-1m",
                        help="the release whose shape to copy; the options below override it "
                             "(default: %(default)s)")
    defaults = SyntheticShape()
    for field, help_text in _OPTION_HELP.items():
        parser.add_argument(f"--{field.replace('_', '-')}", dest=field, type=int, metavar="N",
                            help=f"{help_text} (ml-1m: {getattr(defaults, field)})")
    return parser.parse_args(argv)


def shape_from_args(args: argparse.Namespace) -> SyntheticShape:
    """The preset's shape with the options given on the command line; ValueError if infeasible."""
    given = {field: getattr(args, field) for field in _OPTION_HELP if getattr(args, field) is not None}
    return dataclasses.replace(PRESETS[args.preset], **given)


def _summary(ratings: np.ndarray, shape: SyntheticShape, outdir: Path,
             sizes: tuple[int, int], seconds: float) -> str:
    """One line with the counts actually generated and the sizes of both files."""
    users, movies = (np.unique(ratings[name]).size for name in ("user_id", "movie_id"))
    return (
        f"wrote {ratings.size} ratings by {users} users of {movies} movies (seed {shape.seed}) "
        f"to {outdir / 'ratings.dat'} ({sizes[0]} bytes) and {outdir / 'movies.dat'} "
        f"({sizes[1]} bytes) in {seconds:.1f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Generate and write both files and print a one-line summary; return the exit status."""
    args = _parse_args(argv)
    try:
        shape = shape_from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    args.outdir.mkdir(parents=True, exist_ok=True)
    ratings = generate_ratings(shape)
    sizes = (
        write_ml1m_ratings(args.outdir / "ratings.dat", shape, ratings),
        write_movies_dat(args.outdir / "movies.dat", shape),
    )
    print(_summary(ratings, shape, args.outdir, sizes, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())

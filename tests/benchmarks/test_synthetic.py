"""Tests for the deterministic MovieLens-shaped (1M, 10M, 25M) synthetic data generator."""

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import synthetic
from benchmarks.synthetic import (
    FIRST_TIMESTAMP,
    GENRES,
    LAST_TIMESTAMP,
    ML1M_MOVIE_ID_SPACE,
    PRESETS,
    RATINGS_DTYPE,
    SyntheticShape,
    generate_movies,
    generate_ratings,
    write_ml1m_ratings,
    write_movies_dat,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = SyntheticShape(users=300, movies=200, ratings=15_000, seed=7)
FULL = SyntheticShape()
ML1M_RATING_SHARES = {1: 0.056, 2: 0.108, 3: 0.261, 4: 0.349, 5: 0.226}  # from the real ratings.dat
SHAPES = [pytest.param(SMALL, id="small"), pytest.param(FULL, id="full-ml1m")]


@functools.lru_cache(maxsize=None)
def ratings_for(shape: SyntheticShape) -> np.ndarray:
    """Generate once per shape; the full shape takes a couple of seconds."""
    return generate_ratings(shape)


def per_user_counts(ratings: np.ndarray) -> np.ndarray:
    return np.unique(ratings["user_id"], return_counts=True)[1]


def per_movie_counts(ratings: np.ndarray) -> np.ndarray:
    return np.unique(ratings["movie_id"], return_counts=True)[1]


def parse_ratings_dat(text: str) -> np.ndarray:
    rows = [tuple(int(field) for field in line.split("::")) for line in text.splitlines()]
    return np.array(rows, dtype=RATINGS_DTYPE)


@pytest.mark.parametrize("shape", SHAPES)
def test_generates_exactly_the_requested_number_of_ratings(shape):
    assert ratings_for(shape).size == shape.ratings


@pytest.mark.parametrize("shape", SHAPES)
def test_every_user_id_from_1_to_users_appears(shape):
    assert np.array_equal(np.unique(ratings_for(shape)["user_id"]), np.arange(1, shape.users + 1))


@pytest.mark.parametrize("shape", SHAPES)
def test_exactly_the_requested_number_of_movies_is_rated(shape):
    assert np.unique(ratings_for(shape)["movie_id"]).size == shape.movies


@pytest.mark.parametrize("shape", SHAPES)
def test_user_movie_pairs_are_distinct(shape):
    ratings = ratings_for(shape)
    pairs = ratings["user_id"].astype(np.int64) * (ML1M_MOVIE_ID_SPACE + 1) + ratings["movie_id"]
    assert np.unique(pairs).size == ratings.size


@pytest.mark.parametrize("shape", SHAPES)
def test_every_user_has_at_least_the_minimum_ratings(shape):
    assert per_user_counts(ratings_for(shape)).min() >= shape.min_ratings_per_user


@pytest.mark.parametrize("shape", SHAPES)
def test_rated_movies_are_exactly_the_catalogue(shape):
    rated = np.unique(ratings_for(shape)["movie_id"])
    assert np.array_equal(rated, generate_movies(shape)["movie_id"])


@pytest.mark.parametrize("shape", SHAPES)
def test_movie_ids_lie_in_the_ml1m_id_space(shape):
    movie_ids = ratings_for(shape)["movie_id"]
    assert movie_ids.min() >= 1 and movie_ids.max() <= ML1M_MOVIE_ID_SPACE


@pytest.mark.parametrize("shape", SHAPES)
def test_rows_are_ordered_by_user(shape):
    assert np.all(np.diff(ratings_for(shape)["user_id"]) >= 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_ratings_are_integers_1_to_5(shape):
    assert set(np.unique(ratings_for(shape)["rating"]).tolist()) == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("shape", SHAPES)
def test_timestamps_lie_within_the_ml1m_span(shape):
    timestamps = ratings_for(shape)["timestamp"]
    assert timestamps.min() >= FIRST_TIMESTAMP and timestamps.max() <= LAST_TIMESTAMP


def test_within_user_order_is_not_sorted_by_movie():
    # ml-1m lists a user's ratings in no particular order; a sorted order would hint otherwise.
    ratings = ratings_for(SMALL)
    first_user = ratings["movie_id"][ratings["user_id"] == 1]
    assert not np.all(np.diff(first_user) > 0)


def test_same_seed_gives_the_same_bytes():
    assert generate_ratings(SMALL).tobytes() == generate_ratings(SMALL).tobytes()


@pytest.mark.parametrize("generate", [generate_ratings, generate_movies])
def test_different_seeds_give_different_data(generate):
    other_seed = SyntheticShape(SMALL.users, SMALL.movies, SMALL.ratings, seed=SMALL.seed + 1)
    assert generate(SMALL).tobytes() != generate(other_seed).tobytes()


@pytest.mark.parametrize("value, target_share", list(ML1M_RATING_SHARES.items()))
def test_full_shape_rating_distribution_matches_ml1m(value, target_share):
    share = np.mean(ratings_for(FULL)["rating"] == value)
    assert share == pytest.approx(target_share, abs=0.02)


def test_full_shape_user_activity_is_heavy_tailed():
    counts = per_user_counts(ratings_for(FULL))
    assert counts.max() > 5 * np.median(counts)


def test_full_shape_movie_popularity_is_heavy_tailed():
    counts = per_movie_counts(ratings_for(FULL))
    assert counts.max() > 10 * np.median(counts)


def test_full_shape_has_many_rarely_rated_movies():
    assert np.sum(per_movie_counts(ratings_for(FULL)) < 10) >= 100


def centred_rating_similarity(ratings: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
    """Cosine similarity between movies' rating columns, each rating minus its user's mean."""
    rows = ratings["user_id"] - 1
    columns = np.searchsorted(movie_ids, ratings["movie_id"])
    values = ratings["rating"].astype(float)
    user_means = np.bincount(rows, values) / np.bincount(rows)
    matrix = np.zeros((rows.max() + 1, movie_ids.size))
    matrix[rows, columns] = values - user_means[rows]
    unit = matrix / np.linalg.norm(matrix, axis=0)
    return unit.T @ unit


def test_movies_sharing_a_genre_are_rated_more_alike():
    # Pure-noise ratings would show no gap between same-genre and unrelated movie pairs.
    movies = generate_movies(SMALL)
    similarity = centred_rating_similarity(ratings_for(SMALL), movies["movie_id"])
    listed_genres = [listed.split("|") for listed in movies["genres"]]
    tags = np.array([[genre in listed for genre in GENRES] for listed in listed_genres])
    share_genre = (tags.astype(int) @ tags.T.astype(int)) > 0
    same = similarity[share_genre & ~np.eye(SMALL.movies, dtype=bool)].mean()
    assert same - similarity[~share_genre].mean() > 0.02


@pytest.mark.parametrize(
    "shape_kwargs, reason",
    [
        (dict(users=10, movies=5, ratings=51, min_ratings_per_user=1), "exceed users \\* movies"),
        (dict(users=10, movies=50, ratings=199), "below users \\* min_ratings_per_user"),
        (dict(users=1, movies=50, ratings=40, min_ratings_per_user=1), "below movies"),
        (dict(users=10, movies=10, ratings=100), "min_ratings_per_user exceeds movies"),
        (dict(users=0, movies=10, ratings=100), "at least 1"),
    ],
)
def test_infeasible_shapes_are_rejected_with_the_reason(shape_kwargs, reason):
    with pytest.raises(ValueError, match=reason):
        SyntheticShape(**shape_kwargs)


def test_ratings_file_round_trips(tmp_path):
    path = tmp_path / "ratings.dat"
    write_ml1m_ratings(path, SMALL)
    parsed = parse_ratings_dat(path.read_text(encoding="ascii"))
    assert parsed.tobytes() == generate_ratings(SMALL).tobytes()


def test_ratings_file_is_ascii_with_lf_line_endings(tmp_path):
    path = tmp_path / "ratings.dat"
    byte_count = write_ml1m_ratings(path, SMALL)
    data = path.read_bytes()
    assert (len(data), data.count(b"\n"), b"\r" in data, data.isascii()) == (
        byte_count, SMALL.ratings, False, True
    )


def test_ratings_file_uses_the_ml1m_line_format(tmp_path):
    path = tmp_path / "ratings.dat"
    write_ml1m_ratings(path, SMALL)
    first = generate_ratings(SMALL)[0]
    expected = f"{first['user_id']}::{first['movie_id']}::{first['rating']}::{first['timestamp']}\n"
    assert path.read_text(encoding="ascii").startswith(expected)


def test_movies_file_lists_each_rated_movie_with_title_and_genres(tmp_path):
    path = tmp_path / "movies.dat"
    write_movies_dat(path, SMALL)
    lines = path.read_bytes().decode("latin-1").splitlines()
    fields = [line.split("::") for line in lines]
    assert [int(movie_id) for movie_id, _, _ in fields] == np.unique(
        ratings_for(SMALL)["movie_id"]
    ).tolist()


def test_movies_file_titles_carry_id_and_year_and_genres_are_ml1m_names(tmp_path):
    path = tmp_path / "movies.dat"
    write_movies_dat(path, SMALL)
    for line in path.read_text(encoding="latin-1").splitlines():
        movie_id, title, genres = line.split("::")
        assert title.startswith(f"Synthetic Movie {movie_id} (") and title.endswith(")")
        assert 1919 <= int(title[-5:-1]) <= 2000
        assert set(genres.split("|")) <= set(GENRES)


SMALL_OPTIONS = ("--users", "300", "--movies", "200", "--ratings", "15000", "--seed", "7")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "include")}
    command = [sys.executable, "-m", "benchmarks.synthetic", *args]
    return subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_cli_writes_both_files_matching_the_library(tmp_path):
    result = run_cli(str(tmp_path), *SMALL_OPTIONS)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ratings.dat").read_bytes().decode("ascii") == "".join(
        f"{u}::{m}::{r}::{t}\n" for u, m, r, t in generate_ratings(SMALL).tolist()
    )
    assert (tmp_path / "movies.dat").stat().st_size > 0


def test_cli_prints_a_one_line_summary_with_counts_and_sizes(tmp_path):
    result = run_cli(str(tmp_path), *SMALL_OPTIONS)
    sizes = [str((tmp_path / name).stat().st_size) for name in ("ratings.dat", "movies.dat")]
    expected_parts = ["15000 ratings", "300 users", "200 movies", *sizes]
    assert result.stdout.count("\n") == 1
    assert all(part in result.stdout for part in expected_parts), result.stdout


def test_cli_help_describes_the_options():
    result = run_cli("--help")
    options = ("OUTDIR", "--users", "--movies", "--ratings", "--min-ratings-per-user", "--seed")
    assert result.returncode == 0 and all(option in result.stdout for option in options)


def test_cli_rejects_an_infeasible_shape(tmp_path):
    result = run_cli(str(tmp_path), "--users", "10", "--movies", "5", "--ratings", "1000")
    assert result.returncode == 2 and "infeasible" in result.stderr


# --- heavier shapes: presets, the bulk draws, half stars ---------------------------------------

HEAVY = SyntheticShape(users=400, movies=300, ratings=20_000, max_ratings_per_user=280,
                       max_raters_per_movie=350, activity_sigma=1.2, half_stars=True, seed=3)


@pytest.fixture
def bulk_draws(monkeypatch):
    """The bulk draws of the 10M and 25M shapes, on a shape small enough for a test."""
    monkeypatch.setattr(synthetic, "BULK_ABOVE_CELLS", 0)


def test_bulk_draws_keep_the_shape_exact(bulk_draws):
    ratings = generate_ratings(HEAVY)
    pairs = ratings["user_id"].astype(np.int64) * 10_000 + ratings["movie_id"]
    counts = per_user_counts(ratings)
    assert (ratings.size, np.unique(pairs).size, np.unique(ratings["movie_id"]).size) == (20_000, 20_000, 300)
    assert counts.min() >= HEAVY.min_ratings_per_user and counts.max() == HEAVY.max_ratings_per_user


def test_bulk_draws_follow_popularity_like_the_exact_draws(bulk_draws, monkeypatch):
    bulk = per_movie_counts(generate_ratings(HEAVY))
    monkeypatch.setattr(synthetic, "BULK_ABOVE_CELLS", 10**12)
    exact = per_movie_counts(generate_ratings(HEAVY))
    assert np.corrcoef(np.sort(bulk), np.sort(exact))[0, 1] > 0.99


def test_most_rated_movie_reaches_about_its_target():
    assert per_movie_counts(generate_ratings(HEAVY)).max() == pytest.approx(350, rel=0.1)


def test_half_star_shapes_rate_in_half_stars_and_write_them_as_ml10m_does(tmp_path):
    ratings = generate_ratings(HEAVY)
    assert set(np.unique(ratings["rating"]).tolist()) == {value / 2 for value in range(1, 11)}
    write_ml1m_ratings(tmp_path / "ratings.dat", HEAVY, ratings)
    written = {line.split("::")[2] for line in (tmp_path / "ratings.dat").read_text().splitlines()}
    assert written == {"0.5", "1", "1.5", "2", "2.5", "3", "3.5", "4", "4.5", "5"}


@pytest.mark.parametrize("name, users, movies, ratings, heaviest, most_rated", [
    ("ml-10m", 71_567, 10_681, 10_000_054, 7_359, 34_864),
    ("ml-25m", 162_541, 59_047, 25_000_095, 32_202, 81_491),
])
def test_presets_carry_the_published_figures(name, users, movies, ratings, heaviest, most_rated):
    shape = PRESETS[name]
    assert (shape.users, shape.movies, shape.ratings, shape.max_ratings_per_user,
            shape.max_raters_per_movie, shape.half_stars) == (
                users, movies, ratings, heaviest, most_rated, True)


def test_a_heaviest_user_beyond_the_catalogue_is_rejected():
    with pytest.raises(ValueError, match="max_ratings_per_user outside"):
        SyntheticShape(users=10, movies=50, ratings=300, max_ratings_per_user=60)


def test_cli_preset_options_override_the_preset(tmp_path):
    result = run_cli(str(tmp_path), "--preset", "ml-10m", "--users", "300", "--movies", "200",
                     "--ratings", "15000", "--seed", "7", "--max-ratings-per-user", "150",
                     "--max-raters-per-movie", "250")
    assert result.returncode == 0, result.stderr
    assert "15000 ratings by 300 users of 200 movies" in result.stdout
    assert "::4.5::" in (tmp_path / "ratings.dat").read_text()

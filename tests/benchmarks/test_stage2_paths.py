"""The stage 2 paths benchmark: its users' rows, and its check that the three ways give the same sums."""
from types import SimpleNamespace

import numpy as np

from benchmarks import stage2_paths


def test_rows_hold_both_blocks_movies_with_a_rating_each():
    rows = stage2_paths.chunk_rows(np.random.default_rng(1), 50, 30, 4.0)
    assert len(rows) == 50
    for movies_a, letters_a, movies_b, letters_b in (row.split("|") for row in rows):
        assert {int(movie) for movie in movies_a.split()} <= set(range(30))
        assert {int(movie) for movie in movies_b.split()} <= set(range(30, 60))
        assert len(movies_a.split()) == len(letters_a) and len(movies_b.split()) == len(letters_b)


def test_each_shape_is_summed_alike_by_both_paths_and_by_density():
    for seed, (name, movies, mean) in enumerate(stage2_paths.SHAPES):
        row = stage2_paths.measure(name, movies // 10, mean, SimpleNamespace(user_chunk=16, chunks=3), seed)
        assert row[0] == name and row[1] == "48" and row[-1] == "yes"

"""The block cap benchmark's input: one block pair's user rows that fill both blocks."""
from benchmarks import block_cap_memory


def test_rows_fill_both_blocks_and_one_user_rated_every_movie():
    rows = [row.split("|") for row in block_cap_memory.block_pair_rows(50, 30, 7)]
    assert len(rows) == 30
    movies_a, letters_a, movies_b, letters_b = rows[0]
    assert movies_a.split() == [str(movie) for movie in range(1, 51)]
    assert movies_b.split() == [str(movie) for movie in range(51, 101)]
    assert len(letters_a) == len(letters_b) == 50
    for movies_a, letters_a, movies_b, letters_b in rows[1:]:
        assert len(movies_a.split()) == len(letters_a) == len(movies_b.split()) == len(letters_b) == 7
        assert {int(movie) for movie in movies_a.split()} <= set(range(1, 51))
        assert {int(movie) for movie in movies_b.split()} <= set(range(51, 101))
        assert len(set(letters_a + letters_b)) == 1 and letters_a[0] in "abcdefghij"


def test_the_bound_is_the_jobs_formula_at_the_cap():
    formula = "12.5*(S+2)*B^2 + 20*C*B + 8*(S+5)*256*B + 64*C*r"
    assert block_cap_memory.bound_bytes(formula, 2800, "cosine") == (
        12.5 * 6 * 2800**2 + 20 * 1024 * 2800 + 8 * 9 * 256 * 2800 + 64 * 1024 * 5600)

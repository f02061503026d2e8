"""The similarity job's kernel: parsing, routing, block sums, scoring, titles, ranking, as plain functions."""
import bz2
import gzip
import importlib
import json
import math
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from jobs.movie_similarities import TooManyBadLines

from conftest import MOVIELENS
from tests.support.emr_double import hash_partition as doubles_hash_partition

# The kernel as the job file imports it: by its own name, from the job's folder, which importing the job
# put on sys.path. One module object, so what a test patches there is what the job runs.
kernel = importlib.import_module("similarity_kernel")


# --- parsing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    (b"196\t242\t3\t881250949", ("196", "242", 6, 881250949)),
    (b"1::1193::5::978300760", ("1", "1193", 10, 978300760)),
    (b"1,31,2.5,1260759144\r", ("1", "31", 5, 1260759144)),
    (b"1,31,0.5,1260759144", ("1", "31", 1, 1260759144)),
    (b"userId,movieId,rating,timestamp", None),
    (b"", None),
    (b"   \r", None),
    # A byte-order mark starts some editors' UTF-8 files; trailing whitespace is invisible in them.
    (b"\xef\xbb\xbfuserId,movieId,rating,timestamp", None),
    (b"\xef\xbb\xbf1,31,2.5,1260759144\r\n", ("1", "31", 5, 1260759144)),
    (b"196\t242\t3\t881250949\t\n", ("196", "242", 6, 881250949)),
    (b"1,31,2.5,1260759144\t", ("1", "31", 5, 1260759144)),
    (b"1::1193::5::978300760  \r\n", ("1", "1193", 10, 978300760)),
    (b"1:: 1193 :: 5 ::978300760", ("1", "1193", 10, 978300760)),
    # Ids are integers: 0001 is movie 1, as the reference and the result files' id order read it.
    (b"0001::0031::4::978300760", ("1", "31", 8, 978300760)),
    (b"00::0::4::1", ("0", "0", 8, 1)),
    (b"1::" + b"9" * 5000 + b"::4::1", ("1", "9" * 5000, 8, 1)),  # beyond int()'s 4,300 digits
])
def test_parse_rating_line_reads_every_release_format(line, expected):
    assert kernel.parse_rating_line(line) == expected


@pytest.mark.parametrize("line, reason", [
    (b"1;31;2.5;1260759144", "no known delimiter"),
    (b"1::31::4", "wrong field count"),
    (b"1,31,2.5,1260759144,extra", "wrong field count"),
    (b"1::31::four::978300760", "non-numeric rating"),
    (b"1::31::6::978300760", "rating out of range"),
    (b"1::31::0::978300760", "rating out of range"),
    (b"1::31::3.3::978300760", "rating out of range"),
    # float() reads all of these; none is how a rating is written, and '0_5' would be 5 stars.
    (b"1::31::0_5::978300760", "rating not a plain decimal"),
    (b"1::31::5e0::978300760", "rating not a plain decimal"),
    (b"1::31::nan::978300760", "rating not a plain decimal"),
    (b"1::31::inf::978300760", "rating not a plain decimal"),
    (b"1::31::+4::978300760", "rating not a plain decimal"),
    (b"1::31::-1::978300760", "rating out of range"),
    (b"1::31\xef\xbb\xbf::3::978300760", "undecodable bytes"),
    (b"x1::31::3::978300760", "non-numeric id"),
    (b"1::31::3::yesterday", "non-numeric timestamp"),
    (b"1::3\xe91::3::978300760", "undecodable bytes"),
])
def test_parse_rating_line_names_the_reason_for_a_bad_line(line, reason):
    with pytest.raises(kernel.BadRatingLine, match=f"^{reason}$"):
        kernel.parse_rating_line(line)


def test_latest_ratings_keeps_the_latest_rating_of_a_movie():
    ratings, duplicates = kernel.latest_ratings(["7:b:100", "7:j:300", "8:c:100", "7:e:200"])
    assert ratings == {"7": "j", "8": "c"}
    assert duplicates == 2


def test_latest_ratings_breaks_a_timestamp_tie_by_the_higher_rating():
    assert kernel.latest_ratings(["7:j:100", "7:b:100"]) == ({"7": "j"}, 1)


@pytest.mark.parametrize("blocks_present, needs_marginals, expected", [
    ({0: (["1", "2"], "ab"), 2: (["3"], "c")}, False, [(0, 0), (0, 2)]),
    ({1: (["1"], "a")}, False, []),
    ({1: (["1"], "a")}, True, [(0, 1), (1, 1), (1, 2)]),
])
def test_block_pairs_for_user(blocks_present, needs_marginals, expected):
    assert kernel.block_pairs_for_user(blocks_present, 3, needs_marginals) == expected


@pytest.mark.parametrize("key, java_string_hash", [("", 0), ("a", 97), ("hello", 99_162_322),
                                                   ("Hello World", -862_545_276)])
def test_text_hash_is_hadoops_text_hashcode(key, java_string_hash):
    # Text.hashCode starts from 1 where Java's String.hashCode starts from 0, so over n ASCII
    # bytes it is 31^n + String.hashCode, in 32-bit ints; the String values are Java's own.
    text_hashcode = (31 ** len(key) + java_string_hash) & 0xFFFFFFFF
    assert kernel.text_hash(key) == text_hashcode - (1 << 32) * (text_hashcode >= 1 << 31)


@pytest.mark.parametrize("reduce_tasks", [1, 7, 64])
def test_routed_keys_reach_their_planned_task(reduce_tasks):
    for pair, task in kernel.dealt_routes(5, reduce_tasks).items():
        key = kernel.routed_key(pair, task, reduce_tasks)
        assert key.split("@")[0] == pair and kernel.hash_partition(key, reduce_tasks) == task


def test_routed_keys_reach_their_task_under_the_emr_doubles_partitioner():
    for pair, task in kernel.dealt_routes(12, 40).items():
        assert doubles_hash_partition(kernel.routed_key(pair, task, 40).encode(), 40) == task


def test_dealt_routes_give_each_task_floor_or_ceil_of_the_block_pairs():
    per_task = Counter(kernel.dealt_routes(5, 4).values())
    assert sorted(per_task.values()) == [3, 4, 4, 4]


def test_rank_neighbours_orders_by_score_then_by_movie_id():
    ranked = kernel.rank_neighbours(["10 0.9 12", "9 0.99 11", "2 0.9 30"])
    assert ranked == [("9", "0.99", "11"), ("2", "0.9", "30"), ("10", "0.9", "12")]


def test_rank_neighbours_reads_a_movies_entries_batched_by_its_block_pairs():
    ranked = kernel.rank_neighbours(["10 0.9 12;9 0.99 11", "2 0.9 30"])
    assert ranked == [("9", "0.99", "11"), ("2", "0.9", "30"), ("10", "0.9", "12")]


def test_rank_neighbours_orders_ids_beyond_int64_by_their_value_too():
    huge = "9" * 25
    ranked = kernel.rank_neighbours([f"{huge} 0.9 12;10 0.9 11;{huge}0 0.95 30"])
    assert ranked == [(f"{huge}0", "0.95", "30"), ("10", "0.9", "11"), (huge, "0.9", "12")]


def test_read_titles_decodes_ml_100k_items_as_latin_1():
    titles = kernel.read_titles(MOVIELENS / "ml-100k" / "u.item", counters=Counter())
    assert len(titles) == 1682
    assert titles["1"] == "Toy Story (1995)"
    assert "Misérables, Les (1995)" in titles.values()


def test_read_titles_reads_ml_1m_movies_dat():
    titles = kernel.read_titles(MOVIELENS / "ml-1m" / "movies.dat", counters=Counter())
    assert len(titles) == 3883
    assert titles["1"] == "Toy Story (1995)"


def test_read_titles_reads_quoted_csv_titles_with_commas():
    titles = kernel.read_titles(MOVIELENS / "ml-latest-small" / "movies.csv", counters=Counter())
    assert len(titles) == 9742
    assert titles["11"] == "American President, The (1995)"


def test_read_titles_counts_undecodable_csv_titles(tmp_path):
    movies = tmp_path / "movies.csv"
    movies.write_bytes(b"movieId,title,genres\r\n1,Caf\xe9 (1999),Drama\r\n2,Fine (2000),Drama\r\n")
    counters = Counter()
    titles = kernel.read_titles(movies, counters)
    assert titles["1"] == "Caf\N{REPLACEMENT CHARACTER} (1999)"
    assert titles["2"] == "Fine (2000)"
    assert counters["titles: undecodable bytes replaced"] == 1


def test_read_titles_keeps_the_first_title_of_a_duplicate_id_and_counts_the_others(tmp_path):
    movies = tmp_path / "movies.dat"
    movies.write_text("1::First (2001)::Drama\n2::Two (2002)::Drama\n"
                      "1::Second (2003)::Drama\n0001::Third::Drama\n")
    counters = Counter()
    assert kernel.read_titles(movies, counters) == {"1": "First (2001)", "2": "Two (2002)"}
    assert counters["titles: duplicate movie ids skipped (first title kept)"] == 2


def test_read_titles_reads_a_byte_order_mark_and_zero_padded_ids(tmp_path):
    movies = tmp_path / "movies.csv"
    movies.write_bytes(b"\xef\xbb\xbfmovieId,title,genres\r\n007,Seven (1995),Drama\r\n")
    counters = Counter()
    assert kernel.read_titles(movies, counters) == {"7": "Seven (1995)"}
    assert not counters


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress], ids=["gzip", "bzip2"])
def test_read_titles_reads_a_compressed_movies_file(tmp_path, compress):
    movies = tmp_path / "movies.dat.compressed"
    movies.write_bytes(compress(b"1::Toy Story (1995)::Animation\n"))
    assert kernel.read_titles(movies, Counter()) == {"1": "Toy Story (1995)"}


def test_run_summary_says_when_the_input_held_no_ratings():
    assert "held no ratings: the output is empty" in kernel.run_summary([{}, {}, {}])


def test_run_summary_of_a_failed_run_ends_with_the_jobs_error():
    failure = TooManyBadLines("3 of 10 ... e.g. 'x'")
    summary = kernel.run_summary([{"input": {"ratings read": 7}}], failure=failure)
    assert summary.splitlines()[-1] == "TooManyBadLines: 3 of 10 ... e.g. 'x'"
    assert "the output is empty" not in summary


# --- stage 1 records and the bad-line verdict ---------------------------------------------------

def test_a_rating_token_is_read_back_by_latest_ratings():
    token = kernel.rating_token("31", 7, 1260759144)
    assert token == "31:g:1260759144"
    ratings, _ = kernel.latest_ratings([token, kernel.rating_token("2", 10, 5)])
    assert kernel.user_ratings_record(ratings) == "31 2|gj"


def quality_report(input_file, lines, bad, example="", reason=""):
    return json.dumps([input_file, lines, bad, example, reason])


def test_bad_lines_within_the_fraction_give_no_verdict():
    reports = [quality_report("a.dat", 100, 1, "x", "no known delimiter"), quality_report("b.dat", 10, 0)]
    assert kernel.excess_bad_lines(reports, 0.01) is None


def test_the_bad_lines_of_a_file_are_summed_over_its_map_tasks_with_its_first_example():
    reports = [quality_report("b.dat", 50, 0), quality_report("a.dat", 10, 0),
               quality_report("b.dat", 50, 2, "1;2", "no known delimiter")]
    assert kernel.excess_bad_lines(reports, 0.01) == (
        "2 of 100 ratings lines in b.dat are bad, above --max-bad-fraction 0.01; "
        "e.g. '1;2' (no known delimiter)")


# --- stage 2 rows, routes, block sums and kept neighbours ---------------------------------------

def test_block_rows_use_the_plans_blocks_and_hash_the_movies_it_lacks_once():
    block_of = {"1": 0, "2": 0}
    rows = dict(kernel.block_rows("1 2 3|jhb", block_of, 3, needs_marginals=False))
    hashed = block_of["3"]
    assert hashed == kernel.zlib.crc32(b"3") % 3
    assert rows == {"0,0": "1 2|jh", f"0,{hashed}": "1 2|jh|3|b"}


def test_a_block_holding_one_of_a_users_movies_sends_no_diagonal_row():
    rows = dict(kernel.block_rows("1 2|jh", {"1": 0, "2": 1}, 2, needs_marginals=False))
    assert rows == {"0,1": "1|j|2|h"}


def test_jaccard_rows_reach_the_blocks_the_user_rated_nothing_in_with_an_empty_side():
    rows = dict(kernel.block_rows("1|j", {"1": 1}, 2, needs_marginals=True))
    assert rows == {"0,1": "||1|j", "1,1": "1|j"}


def test_routed_keys_follow_a_plan_made_for_the_runs_reduce_tasks_only():
    plan = {"reduce_tasks": 3, "routes": {"0,0": 2, "0,1": 2, "1,1": 0}}
    keys = kernel.routed_keys(plan, 2, 3)
    assert {pair: kernel.hash_partition(key, 3) for pair, key in keys.items()} == plan["routes"]
    dealt = kernel.routed_keys(plan, 2, 2)
    assert {pair: kernel.hash_partition(key, 2) for pair, key in dealt.items()} == kernel.dealt_routes(2, 2)
    assert kernel.routed_keys(plan, 2, 1) == {}


@pytest.mark.parametrize("key", ["3,5", "3,5@17"])
def test_the_block_pair_of_a_stage_2_key_drops_its_salt(key):
    assert kernel.block_pair_of(key) == ("3", "5")


# Four users, three movies (tests/jobs/test_movie_similarities.py's HAND_RATINGS), doubled as letters.
HAND_ROWS = ["1 2 3|jhb", "1 2|ff", "1 2 3|hjd", "3|j"]


def test_sums_added_a_chunk_at_a_time_are_those_of_one_chunk():
    whole, chunked = (kernel.BlockAccumulator(kernel.METRIC_STATS["pearson"], diagonal=True) for _ in "ab")
    work = whole.add_users(HAND_ROWS)
    assert chunked.add_user_rows(iter(HAND_ROWS), 1) == work == 9 + 4 + 9 + 1
    assert chunked.movies_a == whole.movies_a
    for name, sums in whole.unpacked_sums().items():
        assert (np.triu(chunked.unpacked_sums()[name], 1) == np.triu(sums, 1)).all(), name


def test_a_record_of_several_rows_is_read_as_those_rows():
    one_by_one, batched = (kernel.BlockAccumulator(kernel.METRIC_STATS["cosine"], False) for _ in "ab")
    rows = ["1 2|jh|7|b", "2|f|7 8|fj", "||8|c"]
    work = one_by_one.add_user_rows(rows, 2)
    assert batched.add_user_rows(["|".join(rows[:2]), rows[2]], 2) == work == 2 + 2
    assert batched.movies_a == one_by_one.movies_a and batched.movies_b == one_by_one.movies_b
    for name, sums in one_by_one.unpacked_sums().items():
        assert (batched.unpacked_sums()[name] == sums).all(), name


def test_a_mappers_rows_are_batched_per_key_up_to_row_batch_bytes(monkeypatch):
    monkeypatch.setattr(kernel, "ROW_BATCH_BYTES", 20)
    batches = kernel.RowBatches()
    written = [batches.add("0,0", row) for row in ("1 2|jh", "3|b", "4 5 6|abc", "7|d")]
    written += [batches.add("0,1", "1|j|9|c")] + batches.drain()
    # "1 2|jh" (7 bytes with its separator) + "3|b" (4) + "4 5 6|abc" (10) reach 20 bytes: one record.
    assert written == [None, None, ("0,0", "1 2|jh|3|b|4 5 6|abc"), None, None, ("0,0", "7|d"),
                       ("0,1", "1|j|9|c")]
    assert batches.drain() == []


# --- stage 2: the dense and the sparse path give the same sums --------------------------------------

def random_rows(rng, users, density, diagonal, movies=(120, 90)):
    """User rows of one block pair: each user rates each movie of a side with probability `density`
    (a few users ten times as often), ratings 1..10 as letters."""
    rows = []
    for user in range(users):
        rate = min(1.0, density * (10 if user % 17 == 0 else 1))
        sides = []
        for side, count in enumerate(movies[:1] if diagonal else movies):
            rated = np.flatnonzero(rng.random(count) < rate) + 1000 * side
            ratings = rng.integers(1, 11, rated.size)
            letters = "".join(chr(kernel.RATING_LETTER_BASE + rating) for rating in ratings)
            sides.append(" ".join(map(str, rated)) + "|" + letters)
        rows.append("|".join(sides))
    return rows


def comparable_sums(accumulator):
    """The sums by name over the movies in id order, both triangles from the upper one on the diagonal."""
    order_a = np.argsort([int(movie) for movie in accumulator.movies_a])
    order_b = np.argsort([int(movie) for movie in accumulator.movies_b])
    rows, cols = len(order_a), len(order_b)
    sums = {}
    for name, values in accumulator.unpacked_sums().items():
        if accumulator.diagonal:
            values = np.triu(values, 1) + np.triu(values, 1).T
        sums[name] = values[np.ix_(order_a, order_b)]
    raters_b = accumulator.raters_a if accumulator.diagonal else accumulator.raters_b
    sums["raters_a"], sums["raters_b"] = accumulator.raters_a[:rows][order_a], raters_b[:cols][order_b]
    return sums


def brute_force_sums(rows, stats, index=None):
    """The co-rating sums {(name, movie x, movie y): sum} one user and one pair at a time, in plain Python;
    with the diagonal's index ({movie: its place}) the pairs of one side, x placed before y."""
    terms = {"n": lambda x, y: 1, "sxy": lambda x, y: x * y, "sxx": lambda x, y: x * x,
             "syy": lambda x, y: y * y, "sx": lambda x, y: x, "sy": lambda x, y: y}
    sums = Counter()
    for row in rows:
        fields = row.split("|")
        sides = [list(zip(fields[k].split(), (ord(c) - kernel.RATING_LETTER_BASE for c in fields[k + 1]),
                          strict=True)) for k in range(0, len(fields), 2)]
        left, right = (sides[0], sides[0]) if index else sides
        for movie_x, x in left:
            for movie_y, y in right:
                if not index or index[movie_x] < index[movie_y]:
                    for name in stats:
                        sums[name, movie_x, movie_y] += terms[name](x, y)
    return sums


@pytest.mark.parametrize("diagonal", [True, False], ids=["diagonal", "off-diagonal"])
@pytest.mark.parametrize("density", [0.003, 0.03, 0.3, 0.9])
@pytest.mark.parametrize("metric", ["cosine", "pearson", "jaccard"])
def test_the_dense_and_the_sparse_path_give_identical_sums(metric, density, diagonal):
    rows = random_rows(np.random.default_rng(int(density * 1000)), 300, density, diagonal)
    results = {}
    for path in ("dense", "sparse", None):
        accumulator = kernel.BlockAccumulator(kernel.METRIC_STATS[metric], diagonal, path=path)
        work = accumulator.add_user_rows(iter(rows), 64)
        results[path] = work, comparable_sums(accumulator)
    dense_work, dense_sums = results["dense"]
    assert dense_sums["n"].sum() > 0
    for path in ("sparse", None):
        work, sums = results[path]
        assert work == dense_work
        assert sums.keys() == dense_sums.keys()
        for name, values in sums.items():
            assert np.array_equal(values, dense_sums[name]), (path, name)


@pytest.mark.parametrize("path", ["dense", "sparse"])
def test_each_path_gives_the_sums_of_each_pair_one_user_at_a_time(path):
    rows = random_rows(np.random.default_rng(3), 60, 0.1, diagonal=False, movies=(30, 20))
    accumulator = kernel.BlockAccumulator(kernel.METRIC_STATS["pearson"], diagonal=False, path=path)
    accumulator.add_user_rows(iter(rows), 16)
    expected, sums = brute_force_sums(rows, kernel.METRIC_STATS["pearson"]), accumulator.unpacked_sums()
    assert len(expected) > 1000
    for (name, movie_x, movie_y), total in expected.items():
        i, j = accumulator.index_a[movie_x], accumulator.index_b[movie_y]
        assert sums[name][i, j] == total, (name, movie_x, movie_y)


def test_on_the_diagonal_the_sparse_path_sums_each_unordered_pair_once():
    rows = random_rows(np.random.default_rng(4), 60, 0.2, diagonal=True, movies=(25,))
    accumulator = kernel.BlockAccumulator(kernel.METRIC_STATS["cosine"], diagonal=True, path="sparse")
    accumulator.add_user_rows(iter(rows), 16)
    expected = brute_force_sums(rows, kernel.METRIC_STATS["cosine"], index=accumulator.index_a)
    sums = accumulator.unpacked_sums()
    assert len(expected) > 500
    for (name, movie_x, movie_y), total in expected.items():
        i, j = accumulator.index_a[movie_x], accumulator.index_a[movie_y]
        assert sums[name][i, j] == total, (name, movie_x, movie_y)


def test_the_density_sends_heavy_raters_dense_and_light_ones_sparse(monkeypatch):
    summed = Counter()
    for path in ("dense", "sparse"):
        method = getattr(kernel.BlockAccumulator, f"_add_{path}")
        monkeypatch.setattr(kernel.BlockAccumulator, f"_add_{path}",
                            lambda self, left, right, path=path, method=method:
                            (summed.update({path: len(left.lengths)}), method(self, left, right)))
    rows = random_rows(np.random.default_rng(5), 340, 0.02, diagonal=False, movies=(400, 400))
    rows[::17] = random_rows(np.random.default_rng(6), 20, 0.8, diagonal=False, movies=(400, 400))
    kernel.BlockAccumulator(kernel.METRIC_STATS["cosine"], diagonal=False).add_user_rows(iter(rows), 64)
    # The 20 heavy raters (640 pairs of 160,000 cells or more: above DENSE_ROW_SHARE) go dense, the rest
    # (about 64 pairs) sparse.
    assert summed == {"dense": 20, "sparse": 320}


def test_sums_stay_the_same_in_small_sparse_batches_and_when_the_packed_sums_spill(monkeypatch):
    rows = random_rows(np.random.default_rng(7), 200, 0.05, diagonal=False)
    expected = kernel.BlockAccumulator(kernel.METRIC_STATS["pearson"], False, path="sparse")
    expected.add_user_rows(iter(rows), 64)
    monkeypatch.setattr(kernel, "MIN_SPARSE_BATCH_PAIRS", 7)
    monkeypatch.setattr(kernel, "SPARSE_BATCH_SHARE", 10**6)
    monkeypatch.setattr(kernel, "SLICE_CELLS", 100)
    monkeypatch.setattr(kernel, "PACKED_USERS", 30)
    for path in ("sparse", "dense"):
        accumulator = kernel.BlockAccumulator(kernel.METRIC_STATS["pearson"], False, path=path)
        accumulator.add_user_rows(iter(rows), 16 if path == "dense" else 64)
        sums, reference_sums = comparable_sums(accumulator), comparable_sums(expected)
        for name, values in reference_sums.items():
            assert np.array_equal(sums[name], values), (path, name)


def test_an_unknown_path_is_refused():
    with pytest.raises(ValueError, match="unknown path 'fast'"):
        kernel.BlockAccumulator(kernel.METRIC_STATS["cosine"], diagonal=True, path="fast")


def test_kept_neighbours_write_both_directions_of_each_kept_pair_and_count_them():
    accumulator = kernel.BlockAccumulator(kernel.METRIC_STATS["cosine"], diagonal=True)
    accumulator.add_users(HAND_ROWS)
    counters = Counter()
    records = list(kernel.kept_neighbours(accumulator, kernel.PairRule("cosine", 1, 0.95), counters))
    entries = sorted((movie, *entry.split(" ")) for movie, value in records for entry in value.split(";"))
    # (1,2): 49/50 = 0.98 over 3 co-raters; (2,3): 14/sqrt(205) = 0.978; (1,3): 13/sqrt(205) = 0.908, dropped
    assert [(movie, other, co_raters) for movie, other, _, co_raters in entries] == [
        ("1", "2", "3"), ("2", "1", "3"), ("2", "3", "2"), ("3", "2", "2")]
    scores = [float(score) for _, _, score, _ in entries]
    assert scores == pytest.approx([0.98, 0.98, 14 / math.sqrt(205), 14 / math.sqrt(205)])
    assert counters == {"pairs: over min co-ratings": 3, "pairs: kept": 2}


# --- the command line's account of a failed task ------------------------------------------------

def task_failure(task_type="reducer", step_num=0, task_num=1):
    """mrjob's local runner's failure of one task, as the fields it names."""
    return SimpleNamespace(task_type=task_type, step_num=step_num, task_num=task_num)


def runner_with_stderr(tmp_path, text):
    """A runner whose failed task wrote `text` to its stderr."""
    stderr = tmp_path / "stderr"
    stderr.write_text(text)
    return SimpleNamespace(_task_stderr_path=lambda task_type, step_num, task_num: str(stderr))


def test_a_failed_tasks_own_error_is_rebuilt_from_its_stderr(tmp_path):
    runner = runner_with_stderr(tmp_path, "Traceback (most recent call last):\n  File ...\n"
                                          "TooManyBadLines: 5 of 7 ratings lines in a.dat are bad\n")
    error = kernel.failed_task_error(runner, task_failure(), (TooManyBadLines,))
    assert type(error) is TooManyBadLines and str(error) == "5 of 7 ratings lines in a.dat are bad"


@pytest.mark.parametrize("stderr, failure", [
    ("Traceback (most recent call last):\nMemoryError: out of memory\n", task_failure()),
    ("TooManyBadLines: 5 of 7\n", task_failure(task_num=None)),  # a runner that names no task
])
def test_a_failure_the_job_did_not_raise_on_purpose_gives_no_error(tmp_path, stderr, failure):
    runner = runner_with_stderr(tmp_path, stderr)
    assert kernel.failed_task_error(runner, failure, (TooManyBadLines,)) is None

"""The similarity job's kernel: parsing, routing, block sums, scoring, titles, ranking, as plain functions."""
import bz2
import gzip
import importlib
import json
import math
from collections import Counter
from types import SimpleNamespace

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
    assert ranked == [["9", "0.99", "11"], ["2", "0.9", "30"], ["10", "0.9", "12"]]


def test_rank_neighbours_reads_a_movies_entries_batched_by_its_block_pairs():
    ranked = kernel.rank_neighbours(["10 0.9 12;9 0.99 11", "2 0.9 30"])
    assert ranked == [["9", "0.99", "11"], ["2", "0.9", "30"], ["10", "0.9", "12"]]


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
    for name, sums in whole.sums.items():
        assert (chunked.sums[name][:3, :3] == sums[:3, :3]).all(), name


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

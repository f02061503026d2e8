"""The similarity job: hand-computed answers, formats, its command line, exactness on real MovieLens data."""
import gzip
import importlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import reference
from jobs.movie_similarities import ItemsFileUnusable, MRMovieSimilarities, TooManyBadLines
from movielens_emr.engine.similarity.block_plan import block_pair_work, hash_blocks

REPO = Path(__file__).resolve().parents[2]
JOB_FILE = REPO / "jobs" / "movie_similarities.py"
MOVIELENS = REPO.parent / "shared" / "data" / "movielens"
SAMPLE = REPO / "include" / "sample_data" / "ml-latest-small-sample"
# The kernel as the job file imports it (by its own name, from the job's folder): what the job runs.
kernel = importlib.import_module("similarity_kernel")

# Four users, three movies; sums worked out by hand in the tests below.
HAND_RATINGS = [
    (1, 1, 5, 100), (1, 2, 4, 100), (1, 3, 1, 100),
    (2, 1, 3, 100), (2, 2, 3, 100),
    (3, 1, 4, 100), (3, 2, 5, 100), (3, 3, 2, 100),
    (4, 3, 5, 100),
]


def write_ratings(path, rows, fmt="::"):
    """Write (user, movie, rating, timestamp) rows in one of the MovieLens layouts."""
    if fmt == "csv":
        lines = ["userId,movieId,rating,timestamp"] + [",".join(map(str, row)) for row in rows]
        path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    else:
        path.write_text("".join(fmt.join(map(str, row)) + "\n" for row in rows))
    return path


def run_job(*args, runner="inline"):
    """Run the job; return ({(movie, similar): (score, co_raters)}, output rows, totals of counters)."""
    job = MRMovieSimilarities(["-r", runner, "--no-conf", "--no-bootstrap-mrjob", *map(str, args)])
    with job.make_runner() as job_runner:
        job_runner.run()
        rows = list(job.parse_output(job_runner.cat_output()))
        counters = job_runner.counters()
    pairs = {(key[0], value[0]): (value[2], value[3]) for key, value in rows}
    totals = {}
    for step in counters:
        for group, named in step.items():
            for name, amount in named.items():
                totals[f"{group}: {name}"] = totals.get(f"{group}: {name}", 0) + amount
    return pairs, rows, totals


@pytest.fixture
def hand_ratings(tmp_path):
    return write_ratings(tmp_path / "ratings.dat", HAND_RATINGS)


# --- how stage 2 routes and releases its work leaves the answer unchanged -----------------------

def test_routing_and_work_counters_leave_the_answer_unchanged(hand_ratings):
    args = ("--min-co-ratings", "1", "--min-score", "0", "--movie-blocks", "2")
    baseline, _, _ = run_job(*args, hand_ratings)
    pairs, _, totals = run_job(*args, "--reduce-tasks", "3", hand_ratings, runner="local")
    assert pairs == baseline
    # W = 3^2 + 2^2 + 3^2 + 1^2; each task's work, n_a * n_b over its block pairs' users.
    assert totals["work: pair work sum n_u^2"] == 23
    users, movies = (np.array([str(row[field]) for row in HAND_RATINGS]) for field in (0, 1))
    expected = block_pair_work(users, movies, hash_blocks(movies, 2), 2)
    task_work = [amount for name, amount in totals.items() if name.startswith("stage 2 work: reduce task ")]
    assert task_work and sum(task_work) == sum(expected.values())


def test_neighbours_released_early_give_the_same_answer(monkeypatch):
    """Stage 2 holds the column movies' entries up to HELD_NEIGHBOURS; released after every slice, the
    answer is the same, row for row."""
    args = ("--items", MOVIELENS / "ml-100k" / "u.item", "--min-co-ratings", "5", "--min-score", "0.9",
            MOVIELENS / "ml-100k" / "u.data")
    _, rows, totals = run_job(*args)
    monkeypatch.setattr(kernel, "HELD_NEIGHBOURS", 0)
    _, early_rows, early_totals = run_job(*args)
    assert len(rows) > 10_000 and early_rows == rows
    assert early_totals["output: ordered pairs"] == totals["output: ordered pairs"] == len(rows)


# --- hand-computed answers ---------------------------------------------------------------------

def test_cosine_on_hand_computed_fixture(hand_ratings):
    pairs, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0", hand_ratings)
    # (1,2): x=(5,3,4) y=(4,3,5): 49/sqrt(50*50); (1,3): x=(5,4) y=(1,2): 13/sqrt(41*5); (2,3): 14/sqrt(41*5)
    expected = {("1", "2"): (0.98, 3), ("1", "3"): (13 / math.sqrt(205), 2),
                ("2", "3"): (14 / math.sqrt(205), 2)}
    expected.update({(b, a): value for (a, b), value in expected.items()})
    assert pairs.keys() == expected.keys()
    for pair, (score, co_raters) in expected.items():
        assert pairs[pair] == (pytest.approx(score, abs=1e-12), co_raters)


def test_pearson_on_hand_computed_fixture(hand_ratings):
    pairs, _, _ = run_job("--metric", "pearson", "--min-co-ratings", "1", "--min-score", "0", hand_ratings)
    # (1,2): deviations (1,-1,0) and (0,-1,1): 1/sqrt(2*2) = 0.5; (2,3): +1; (1,3): -1, dropped.
    assert pairs == {("1", "2"): (0.5, 3), ("2", "1"): (0.5, 3), ("2", "3"): (1.0, 2), ("3", "2"): (1.0, 2)}


def test_jaccard_on_hand_computed_fixture(hand_ratings):
    pairs, _, _ = run_job("--metric", "jaccard", "--min-co-ratings", "1", "--min-score", "0", hand_ratings)
    # raters: 1 {1,2,3}, 2 {1,2,3}, 3 {1,3,4}: 3/3, 2/4, 2/4; movie 3's lone rater 4 counts.
    expected = {("1", "2"): (1.0, 3), ("1", "3"): (0.5, 2), ("2", "3"): (0.5, 2)}
    expected.update({(b, a): value for (a, b), value in expected.items()})
    assert pairs == expected


def test_min_score_is_strict(hand_ratings):
    at_threshold, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0.98", hand_ratings)
    below_threshold, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0.9799", hand_ratings)
    assert at_threshold == {}  # (1,2) scores exactly 0.98, the others less
    assert set(below_threshold) == {("1", "2"), ("2", "1")}


def test_min_co_ratings_is_strict(hand_ratings):
    pairs, _, _ = run_job("--min-co-ratings", "2", "--min-score", "0", hand_ratings)
    assert set(pairs) == {("1", "2"), ("2", "1")}


@pytest.mark.parametrize("movie_blocks", ["1", "2", "5"])
def test_answer_does_not_depend_on_block_count_or_chunk_size(hand_ratings, movie_blocks):
    args = ("--min-co-ratings", "1", "--min-score", "0")
    baseline, _, _ = run_job(*args, hand_ratings)
    pairs, _, _ = run_job(*args, "--movie-blocks", movie_blocks, "--user-chunk", "1", hand_ratings)
    assert pairs == baseline


def test_output_contract_keys_values_and_neighbour_order(hand_ratings, tmp_path):
    movies = tmp_path / "movies.dat"
    movies.write_bytes("1::Am\xe9lie (2001)::Comedy\n2::Heat (1995)::Action\n".encode("latin-1"))
    _, rows, totals = run_job("--min-co-ratings", "1", "--min-score", "0", "--items", movies, hand_ratings)
    by_movie = {}
    for key, value in rows:
        by_movie.setdefault(tuple(key), []).append(value)
    assert by_movie[("1", "Amélie (2001)")] == [
        ["2", "Heat (1995)", 0.98, 3], ["3", None, pytest.approx(13 / math.sqrt(205)), 2]]
    assert isinstance(rows[0][1][2], float) and isinstance(rows[0][1][3], int)
    assert totals["output: movies without a title"] == 1


# --- formats, bad lines, duplicates, samples --------------------------------------------------

@pytest.mark.parametrize("fmt", ["::", "\t", "csv"])
def test_every_format_gives_the_same_answer(tmp_path, fmt):
    expected, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0",
                             write_ratings(tmp_path / "a.dat", HAND_RATINGS))
    pairs, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0",
                          write_ratings(tmp_path / "b", HAND_RATINGS, fmt))
    assert pairs == expected


def test_several_input_files_of_mixed_formats_are_one_input(tmp_path):
    first = write_ratings(tmp_path / "part1.csv", HAND_RATINGS[:4], "csv")
    second = write_ratings(tmp_path / "part2.data", HAND_RATINGS[4:], "\t")
    expected, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0",
                             write_ratings(tmp_path / "all.dat", HAND_RATINGS))
    pairs, _, totals = run_job("--min-co-ratings", "1", "--min-score", "0", first, second)
    assert pairs == expected
    assert totals["input: ratings read"] == len(HAND_RATINGS)


def test_bad_lines_are_skipped_and_counted_by_reason(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.dat", HAND_RATINGS)
    with ratings.open("a") as extra:
        extra.write("1::2::9::100\n1;2;3;4\nuserId::movieId::rating::timestamp\n")
    pairs, _, totals = run_job("--min-co-ratings", "1", "--min-score", "0",
                               "--max-bad-fraction", "0.5", ratings)
    assert len(pairs) == 6
    assert totals["bad lines: rating out of range"] == 1
    assert totals["bad lines: no known delimiter"] == 1
    assert totals["input: bad lines skipped"] == 2
    assert totals["input: header or blank lines skipped"] == 1


def test_too_many_bad_lines_fails_naming_the_file_and_an_example(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.dat", HAND_RATINGS)
    with ratings.open("a") as extra:
        extra.write("1::2::five::100\n")
    expected = r"1 of 10 ratings lines in .*ratings\.dat .*'1::2::five::100' \(non-numeric rating\)"
    with pytest.raises(TooManyBadLines, match=expected):
        run_job("--max-bad-fraction", "0.05", ratings)


def test_too_many_bad_lines_on_the_command_line_ends_with_the_summary_and_the_jobs_message(tmp_path):
    ratings = write_ratings(tmp_path / "ratings.dat", HAND_RATINGS)
    with ratings.open("a") as extra:
        extra.write("1::2::five::100\n")
    result = subprocess.run([sys.executable, JOB_FILE, "-r", "local", "--no-bootstrap-mrjob",
                             "--max-bad-fraction", "0.05", ratings], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.rstrip("\n").splitlines()
    summary_start = max(number for number, line in enumerate(lines) if line.endswith("Run summary:"))
    summary, last_line = lines[summary_start + 1:-1], lines[-1]
    assert "  input: bad lines skipped: 1" in summary and "  input: ratings read: 9" in summary
    assert all(line.startswith("  ") for line in summary)  # nothing but the counters between the two
    assert last_line.startswith("TooManyBadLines: 1 of 10 ratings lines in ")
    assert last_line.endswith("e.g. '1::2::five::100' (non-numeric rating)")


def test_zero_padded_ids_are_the_same_movies_and_users_in_the_job_and_the_reference(tmp_path):
    padded_rows = [(f"{user:04d}", f"00{movie}", rating, time) for user, movie, rating, time in HAND_RATINGS]
    padded = write_ratings(tmp_path / "padded.dat", padded_rows)
    plain = write_ratings(tmp_path / "plain.dat", HAND_RATINGS)
    pairs, _, _ = run_job("--min-co-ratings", "1", "--min-score", "0", padded)
    assert pairs == run_job("--min-co-ratings", "1", "--min-score", "0", plain)[0]
    expected = reference.similar_pairs(reference.read_ratings([padded]), "cosine", 0, 1)
    assert pairs.keys() == expected.keys()


def test_title_counters_count_once_whatever_the_number_of_stage_3_reducers(hand_ratings, tmp_path):
    movies = tmp_path / "movies.dat"
    movies.write_text("1::One (2001)::Drama\nnot a title line\n2::Two (2002)::Drama\n2::Again::Drama\n")
    _, rows, totals = run_job("--min-co-ratings", "1", "--min-score", "0", "--items", movies,
                              "--jobconf", "mapreduce.job.reduces=3", hand_ratings, runner="local")
    assert len({tuple(key) for key, _ in rows}) == 3  # three movies: more than one stage 3 reducer task
    assert totals["titles: bad lines skipped"] == 1
    assert totals["titles: duplicate movie ids skipped (first title kept)"] == 1


def test_a_missing_items_file_is_refused_before_any_stage(hand_ratings, tmp_path):
    missing = tmp_path / "movies.dat"
    job = MRMovieSimilarities(["-r", "inline", "--no-conf", "--items", str(missing), str(hand_ratings)])
    with pytest.raises(ItemsFileUnusable, match=r"^--items .*movies\.dat: No such file or directory$"):
        job.make_runner()


def test_a_compressed_items_file_gives_titles(hand_ratings, tmp_path):
    movies = tmp_path / "movies.dat.gz"
    movies.write_bytes(gzip.compress(b"1::One (2001)::Drama\n2::Two (2002)::Drama\n3::Three (2003)::Drama\n"))
    _, rows, totals = run_job("--min-co-ratings", "1", "--min-score", "0", "--items", movies, hand_ratings)
    assert {tuple(key) for key, _ in rows} == {("1", "One (2001)"), ("2", "Two (2002)"),
                                              ("3", "Three (2003)")}
    assert totals.get("output: movies without a title", 0) == 0


def test_duplicate_ratings_keep_the_latest(tmp_path):
    rows = HAND_RATINGS + [(1, 1, 1, 50), (2, 2, 5, 999)]  # older 1-star: ignored; newer 5-star: replaces 3
    pairs, _, totals = run_job("--min-co-ratings", "1", "--min-score", "0",
                               write_ratings(tmp_path / "ratings.dat", rows))
    # (1,2) becomes x=(5,3,4) y=(4,5,5): 55 / sqrt(50 * 66)
    assert pairs[("1", "2")] == (pytest.approx(55 / math.sqrt(50 * 66), abs=1e-12), 3)
    assert totals["input: duplicate ratings dropped (latest kept)"] == 2


def test_empty_input_gives_empty_output_and_says_so(tmp_path):
    empty = tmp_path / "ratings.dat"
    empty.write_text("")
    result = subprocess.run([sys.executable, JOB_FILE, "-r", "local", "--no-bootstrap-mrjob", empty],
                            capture_output=True, text=True, check=True)
    assert result.stdout == ""
    assert "The input held no ratings: the output is empty." in result.stderr


def test_command_line_run_prints_pairs_and_a_summary(tmp_path):
    result = subprocess.run(
        [sys.executable, JOB_FILE, "-r", "local", "--no-bootstrap-mrjob", "--min-co-ratings", "1",
         "--min-score", "0", write_ratings(tmp_path / "ratings.dat", HAND_RATINGS)],
        capture_output=True, text=True, check=True)
    assert len(result.stdout.splitlines()) == 6
    assert "ratings read: 9" in result.stderr and "output: ordered pairs: 6" in result.stderr


def test_command_line_help_documents_every_option():
    result = subprocess.run([sys.executable, JOB_FILE, "--help"], capture_output=True, text=True, check=True)
    for option in ("--items", "--metric", "--min-score", "--min-co-ratings", "--max-bad-fraction",
                   "--sample-fraction", "--movie-blocks", "--user-chunk", "cosine", "pearson", "jaccard"):
        assert option in result.stdout


@pytest.mark.parametrize("option, value", [
    ("--sample-fraction", "0"), ("--sample-fraction", "1.5"), ("--movie-blocks", "0"),
    ("--user-chunk", "70000"), ("--min-co-ratings", "-1"), ("--metric", "euclid"),
    ("--min-score", "nan"), ("--min-score", "inf"),
])
def test_bad_options_are_refused(option, value, hand_ratings):
    with pytest.raises(ValueError, match=option):
        MRMovieSimilarities([option, value, str(hand_ratings)])


# --- exact on real MovieLens ------------------------------------------------------------------

REAL_DATASETS = {
    "ml-100k": ["u.data"],
    "ml-latest-small": ["ratings.csv"],
}
# Thresholds that keep a few thousand pairs or more for each metric.
METRIC_THRESHOLDS = {"cosine": "0.95", "pearson": "0.5", "jaccard": "0.3"}


@pytest.fixture(scope="module", params=list(REAL_DATASETS))
def real_ratings(request):
    paths = [MOVIELENS / request.param / name for name in REAL_DATASETS[request.param]]
    return paths, reference.read_ratings(paths)


@pytest.mark.parametrize("metric", list(METRIC_THRESHOLDS))
def test_matches_independent_computation_on_real_data(real_ratings, metric):
    paths, ratings = real_ratings
    min_score = METRIC_THRESHOLDS[metric]
    expected = reference.similar_pairs(ratings, metric, float(min_score), 10)
    pairs, _, _ = run_job("--metric", metric, "--min-score", min_score, *paths)
    assert len(expected) > 10_000
    assert pairs.keys() == expected.keys()
    worst = max(abs(pairs[pair][0] - score) for pair, (score, _) in expected.items())
    assert worst < 1e-9
    assert all(pairs[pair][1] == co_raters for pair, (_, co_raters) in expected.items())


@pytest.mark.parametrize("dense_row_share", [0.0, 2.0], ids=["every row dense", "every row sparse"])
@pytest.mark.parametrize("metric", ["cosine", "pearson"])
def test_either_stage_2_path_alone_gives_the_independent_answer_exactly(monkeypatch, metric, dense_row_share):
    """By default heavy raters take the dense path and light ones the sparse path; either alone gives the
    reference's pairs, scores and co-raters, bit for bit."""
    monkeypatch.setattr(kernel, "DENSE_ROW_SHARE", dense_row_share)
    paths = [MOVIELENS / "ml-100k" / "u.data"]
    min_score = METRIC_THRESHOLDS[metric]
    expected = reference.similar_pairs(reference.read_ratings(paths), metric, float(min_score), 10)
    pairs, _, _ = run_job("--metric", metric, "--min-score", min_score, *paths)
    assert len(expected) > 10_000
    assert pairs == expected


def test_local_runner_matches_independent_computation_on_ml_100k():
    paths = [MOVIELENS / "ml-100k" / "u.data"]
    expected = reference.similar_pairs(reference.read_ratings(paths))
    pairs, _, totals = run_job("--items", MOVIELENS / "ml-100k" / "u.item", *paths, runner="local")
    assert pairs.keys() == expected.keys()
    assert totals["input: ratings read"] == 100_000


def test_sample_fraction_uses_the_same_users_as_the_reference():
    paths = [SAMPLE / "ratings.csv"]
    sampled = reference.sample_users(reference.read_ratings(paths), 0.5)
    expected = reference.similar_pairs(sampled, "cosine", 0.9, 5)
    pairs, _, totals = run_job("--sample-fraction", "0.5", "--min-score", "0.9", "--min-co-ratings", "5",
                               *paths)
    assert 0 < len(expected) and pairs.keys() == expected.keys()
    assert 0 < totals["input: ratings outside the sample"] < totals["input: ratings read"]


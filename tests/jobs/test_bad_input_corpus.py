"""The bad-input corpus: each kind of bad input with its expected outcome, a named error or a counted skip."""
import dataclasses
import gzip
import importlib
import math
from collections import Counter

import pytest

from jobs.movie_similarities import ItemsFileUnusable, MRMovieSimilarities, TooManyBadLines
from movielens_emr.airflow.similarity_tasks import StorageRootUnusable, check_writable
from movielens_emr.config.params import InvalidParam, validate_run_config
from movielens_emr.data.datasets import UnknownDataset, get_dataset
from movielens_emr.data.staging import ChecksumMismatch, dataset_source_files
from movielens_emr.data.storage import LocalStorage

# The kernel as the job file imports it: by its own name, from the job's folder.
kernel = importlib.import_module("similarity_kernel")
GOOD = "".join(f"{user}::{movie}::{(user + movie) % 5 + 1}::{1000 + movie}\n"
               for user in range(1, 21) for movie in range(1, 6))  # 100 good lines


@dataclasses.dataclass(frozen=True)
class BadRatings:
    """A ratings file and what the job must do with it: fail naming it, or count its skips."""

    name: str
    text: bytes
    error: str = ""  # TooManyBadLines message pattern, when the job must fail
    counters: tuple = ()  # (counter, amount) pairs, when the job must skip and count


RATINGS_CORPUS = [
    BadRatings("empty file", b"", counters=(("input: ratings read", 0),)),
    BadRatings("wrong delimiter", b"1;2;3;4\n5;6;4;4\n",
               error=r"2 of 2 ratings lines in .*wrong_delimiter are bad.*\(no known delimiter\)"),
    BadRatings("wrong field count", GOOD.encode() + b"1::2::3\n",
               counters=(("bad lines: wrong field count", 1),)),
    BadRatings("non-numeric rating", GOOD.encode() + b"1::2::great::7\n",
               counters=(("bad lines: non-numeric rating", 1),)),
    BadRatings("rating out of range", GOOD.encode() + b"1::2::7::7\n1::3::0::7\n",
               counters=(("bad lines: rating out of range", 2),)),
    BadRatings("header in the middle",
               GOOD.encode() + b"userId::movieId::rating::timestamp\n" + GOOD.encode(),
               counters=(("input: header or blank lines skipped", 1),
                         ("input: duplicate ratings dropped (latest kept)", 100))),
    BadRatings("undecodable bytes in a ratings line", GOOD.encode() + b"1::\xff2::3::7\n",
               counters=(("bad lines: undecodable bytes", 1),)),
    BadRatings("duplicate (user, movie) ratings", GOOD.encode() + b"1::1::5::9999\n",
               counters=(("input: duplicate ratings dropped (latest kept)", 1),)),
    # float() reads '0_5' as 5 and '5e0' as 5: neither is how a rating is written, so neither is guessed at.
    BadRatings("rating with an underscore or an exponent", GOOD.encode() + b"1::2::0_5::7\n1::3::5e0::7\n",
               counters=(("bad lines: rating not a plain decimal", 2),)),
    BadRatings("UTF-8 byte-order mark", b"\xef\xbb\xbf" + GOOD.encode(),
               counters=(("input: ratings read", 100), ("input: bad lines skipped", 0))),
    BadRatings("trailing tab on every line", GOOD.replace("\n", "\t\n").encode(),
               counters=(("input: ratings read", 100), ("input: bad lines skipped", 0))),
    BadRatings("CSV with trailing spaces and CRLF", b"userId,movieId,rating,timestamp\r\n" + GOOD.replace(
        "::", ",").replace("\n", "  \r\n").encode(), counters=(("input: ratings read", 100),
                                                                  ("input: bad lines skipped", 0))),
    BadRatings("zero-padded ids are the same user and movie", GOOD.encode() + b"0001::0001::5::9999\n",
               counters=(("input: duplicate ratings dropped (latest kept)", 1),)),
    BadRatings("over the bad-line threshold", GOOD.encode() + b"1::2::x::7\n" * 5,
               error=r"5 of 105 ratings lines in .*over_the_bad-line_threshold are bad, above "
                     r"--max-bad-fraction 0.01; e\.g\. '1::2::x::7' \(non-numeric rating\)"),
]


def run_job(path, *args):
    job = MRMovieSimilarities(["-r", "inline", "--no-conf", "--min-co-ratings", "1", "--min-score", "0",
                               "--max-bad-fraction", "0.04", *args, str(path)])
    with job.make_runner() as runner:
        runner.run()
        rows = list(job.parse_output(runner.cat_output()))
        totals = Counter()
        for step in runner.counters():
            for group, counters in step.items():
                totals.update({f"{group}: {name}": amount for name, amount in counters.items()})
    return rows, totals


@pytest.mark.parametrize("case", RATINGS_CORPUS, ids=lambda case: case.name)
def test_bad_ratings_input(case, tmp_path):
    path = tmp_path / case.name.replace(" ", "_")
    path.write_bytes(case.text)
    if case.error:
        with pytest.raises(TooManyBadLines, match=case.error):
            run_job(path, "--max-bad-fraction", "0.01")
        return
    rows, totals = run_job(path)
    for counter, amount in case.counters:
        assert totals[counter] == amount, counter
    if case.text:
        assert rows, "the good lines still give pairs"


def test_undecodable_bytes_in_titles_are_counted_and_replaced(tmp_path):
    movies = tmp_path / "movies.csv"
    movies.write_bytes(b"movieId,title,genres\n1,Caf\xe9 Society (2016),Comedy\n")
    counters = Counter()
    assert kernel.read_titles(movies, counters)["1"] == "Caf\N{REPLACEMENT CHARACTER} Society (2016)"
    assert counters["titles: undecodable bytes replaced"] == 1


def test_duplicate_movie_ids_in_the_movies_file_keep_the_first_title_and_are_counted(tmp_path):
    ratings, movies = tmp_path / "ratings.dat", tmp_path / "movies.dat"
    ratings.write_text(GOOD)
    movies.write_text("1::One (2001)::Drama\n1::Uno (2001)::Drama\n01::Eins::Drama\n")
    rows, totals = run_job(ratings, "--items", str(movies))
    assert {tuple(key) for key, _ in rows} >= {("1", "One (2001)")}
    assert totals["titles: duplicate movie ids skipped (first title kept)"] == 2


def test_a_missing_movies_file_is_refused_before_any_stage(tmp_path):
    ratings = tmp_path / "ratings.dat"
    ratings.write_text(GOOD)
    with pytest.raises(ItemsFileUnusable, match=r"^--items .*movies\.dat: No such file or directory$"):
        run_job(ratings, "--items", str(tmp_path / "movies.dat"))


def test_a_compressed_movies_file_is_read(tmp_path):
    ratings, movies = tmp_path / "ratings.dat", tmp_path / "movies.dat.gz"
    ratings.write_text(GOOD)
    movies.write_bytes(gzip.compress(b"1::One (2001)::Drama\n"))
    rows, _ = run_job(ratings, "--items", str(movies))
    assert ("1", "One (2001)") in {tuple(key) for key, _ in rows}


def test_a_movie_missing_from_the_movies_file_still_counts_with_a_null_title(tmp_path):
    ratings, movies = tmp_path / "ratings.dat", tmp_path / "movies.dat"
    ratings.write_text(GOOD)
    movies.write_text("1::One (2001)::Drama\n")
    rows, totals = run_job(ratings, "--items", str(movies))
    assert {tuple(key) for key, _ in rows} >= {("1", "One (2001)"), ("2", None)}
    assert totals["output: movies without a title"] == 4


def test_a_dataset_name_that_does_not_exist_is_refused_before_anything_runs():
    with pytest.raises(InvalidParam, match="^dataset: 'ml-5m' is not one of"):
        validate_run_config({"dataset": "ml-5m"}, max_node_count=20)
    with pytest.raises(UnknownDataset, match="unknown dataset 'ml-5m'"):
        get_dataset("ml-5m")


def test_a_checksum_mismatch_on_download_is_refused(tmp_path):
    archive = tmp_path / "cache" / "ml-100k.zip"
    archive.parent.mkdir()
    archive.write_bytes(b"not the published archive")
    dataset = dataclasses.replace(get_dataset("ml-100k"))
    with pytest.raises((ChecksumMismatch, OSError)):
        # The cached file has the wrong checksum, so it is fetched again from an address that
        # refuses the connection here; either way nothing unverified is used.
        dataset_source_files(dataset, "", tmp_path / "cache", base_url="http://127.0.0.1:9")


def test_an_unreadable_storage_root_is_refused_before_anything_runs(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the storage folder should be")
    with pytest.raises(StorageRootUnusable, match="is not writable"):
        check_writable(LocalStorage(blocked))


@pytest.mark.parametrize("params, field", [
    ({"node_count": 50}, "node_count"), ({"min_score": 2}, "min_score"), ({"node_count": "4"}, "node_count"),
    # JSON schema takes 4.0 as an integer and NaN inside any bounds; the run's validation does not.
    ({"node_count": 4.0}, "node_count"), ({"min_co_ratings": 10.0}, "min_co_ratings"),
    ({"min_score": math.nan}, "min_score"),
])
def test_params_out_of_range_by_api_or_cli_name_the_field(params, field):
    with pytest.raises(InvalidParam, match=f"^{field}: "):
        validate_run_config(params, max_node_count=20)

"""The ALS script: its rules and numpy parts by hand, and its Spark parts in one shared local session: the
ratings it keeps, the loss it reports, the factors Spark fits (they solve the implicit objective's normal
equations), and a whole run's output files."""
import csv
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from jobs import als_recommender as als
from movielens_emr.engine.als.evaluation_split import ratings_tsv, read_ratings
from movielens_emr.engine.similarity.results import parse_output_line
from movielens_emr.evaluation import reference_als
from movielens_emr.evaluation.ranking import evaluate
from movielens_emr.evaluation.split import Ratings, positives, time_split
from movielens_emr.local.recommender_comparison import (
    IMPLICIT,
    SPARK,
    implicit_check,
    implicit_fit,
    implicit_regularization,
)

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = REPO.parent / "shared" / "data" / "movielens"
SAMPLE = REPO / "include" / "sample_data" / "ml-latest-small-sample"
# Small and quick: a session's fits here take a few seconds each.
FIT = ["--rank", "4", "--max-iter", "5", "--user-blocks", "2", "--item-blocks", "2"]


@pytest.fixture(scope="module")
def spark():
    """One local Spark session for this worker's tests (getOrCreate: the same one for any other module that
    asks), its Python workers able to import the script and its kernel as this process does."""
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("als-recommender-tests")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.serializer", als.JAVA_SERIALIZER.replace("Java", "Kryo"))
               .config("spark.pyspark.python", sys.executable)
               .config("spark.executorEnv.PYTHONPATH", os.pathsep.join([str(REPO), str(REPO / "jobs")]))
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session


def options(*args):
    return als.argument_parser().parse_args(["--ratings", "unused", "--output", "unused", *FIT, *args])


# --- the rules and the numpy parts ----------------------------------------------------------------
@pytest.mark.parametrize(("line", "expected"), [
    ("1\t2\t3.5\t100", ("rating", 1, 2, 7, 100)),
    ("0007::0002::5::9", ("rating", 7, 2, 10, 9)),
    ("userId,movieId,rating,timestamp", ("skipped",)),
    ("", ("skipped",)),
    ("1,2,6,100", ("bad", "rating out of range")),
    ("1,x,3,100", ("bad", "non-numeric id")),
    ("3000000000,2,3,100", ("bad", als.ID_TOO_LARGE)),
])
def test_a_line_is_read_by_the_similarity_jobs_rules(line, expected):
    assert als.parse_line(line, 1.0) == expected


def test_a_user_outside_the_sample_is_skipped_as_the_similarity_job_skips_it():
    kernel = sys.modules["similarity_kernel"]
    users = [str(user) for user in range(1, 200)]
    kept = [user for user in users if als.parse_line(f"{user},1,4,10", 0.3)[0] == "rating"]
    assert kept == [user for user in users if kernel.in_sample(user, 0.3)] and 0 < len(kept) < len(users)


def test_the_lines_figures_count_each_kind_and_reason():
    kinds = {"rating": 97, "skipped": 1, "bad: rating out of range": 1, "bad: non-numeric id": 1}
    assert als.read_figures(kinds, 0.05) == {
        "lines": 100, "ratings_read": 97, "bad_lines": 2,
        "bad_line_reasons": {"non-numeric id": 1, "rating out of range": 1}}


def test_more_bad_lines_than_allowed_stop_the_run():
    with pytest.raises(als.TooManyBadLines, match=r"2 of 10 ratings lines are bad, above --max-bad-fraction"):
        als.read_figures({"rating": 8, "bad: no known delimiter": 2}, 0.1)


@pytest.mark.parametrize("args", [["--rank", "0"], ["--alpha", "-1"], ["--reg-param", "nan"],
                                  ["--alpha", "inf"], ["--max-iter", "0"], ["--sample-fraction", "0"]])
def test_bad_hyperparameters_are_refused(args, capsys):
    with pytest.raises(SystemExit):
        options(*args)
    assert "error: argument" in capsys.readouterr().err


def test_nearest_neighbours_rank_by_cosine_of_the_factors_ties_by_id():
    ids = np.array([10, 20, 30, 40])
    factors = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    found = dict(als.nearest_neighbours(ids, factors, 2, block_rows=3))
    # 10 and 20 point the same way (cosine 1); 40 is at 45 degrees from both axes
    assert [movie for movie, _ in found[10]] == [20, 40] and found[10][0][1] == pytest.approx(1.0)
    assert found[40] == [(10, pytest.approx(math.sqrt(0.5))), (20, pytest.approx(math.sqrt(0.5)))]
    assert [movie for movie, _ in found[30]] == [40, 10]


def test_a_movie_without_factors_is_no_ones_neighbour_ahead_of_a_real_one():
    found = dict(als.nearest_neighbours(np.array([1, 2, 3]), np.array([[1.0, 0], [0, 0], [1.0, 0.1]]), 1))
    assert found[1] == [(3, pytest.approx(1 / math.sqrt(1.01)))] and found[2][0][1] == 0.0


def test_recommendations_leave_out_what_the_user_rated_best_first_ties_by_id():
    users, items = np.array([1, 2]), np.array([5, 6, 7, 8])
    user_factors = np.array([[1.0, 0.0], [0.0, 1.0]])
    item_factors = np.array([[3.0, 0.0], [2.0, 1.0], [2.0, 5.0], [1.0, 0.0]])
    found = dict(als.recommend(users, user_factors, items, item_factors, {1: [5], 2: [7, 6, 5]}, 2,
                               block_rows=1))
    assert found == {1: [(6, 2.0), (7, 2.0)], 2: [(8, 0.0)]}


def test_neighbour_lines_follow_the_similarity_jobs_output_contract():
    lines = list(als.neighbour_lines([(1, [(2, 0.5)])], {"1": "Heat (1995)"}, {(1, 2): 7}))
    assert [tuple(parse_output_line(line)) for line in lines] == [("1", "Heat (1995)", "2", None, 0.5, 7)]


def test_recommendation_lines_are_csv_with_quoted_titles():
    text = als.recommendation_lines([(3, [(1, 0.25), (2, 0.125)])], {"1": "Godfather, The (1972)"})
    assert list(csv.reader(io.StringIO(text))) == [["3", "1", "1", "Godfather, The (1972)", "0.25"],
                                                   ["3", "2", "2", "", "0.125"]]


def test_implicits_lambda_is_reg_param_times_ratings_over_the_root_of_users_times_movies():
    train = Ratings(np.array([1, 1, 1, 1, 2, 2, 2, 2]), np.arange(8), np.full(8, 4.0), np.zeros(8))
    # 8 ratings, 2 users (4 each on average), 8 movies (1 each): the geometric mean of 4 and 1 is 2
    assert implicit_regularization(train, 0.1) == pytest.approx(0.2)


def test_implicits_check_says_which_metric_is_outside_the_tolerance():
    check = implicit_check({SPARK: {"precision_at_k": 0.1, "ndcg_at_k": 0.2},
                            IMPLICIT: {"precision_at_k": 0.105, "ndcg_at_k": 0.18}},
                           tolerance={"precision_at_k": 0.008, "ndcg_at_k": 0.008})
    assert check["precision_at_k"] == {"spark": 0.1, "implicit": 0.105, "difference": 0.005,
                                       "tolerance": 0.008, "within": True}
    assert check["ndcg_at_k"]["within"] is False and check["ndcg_at_k"]["difference"] == pytest.approx(-0.02)


def test_implicits_movie_factors_solve_the_normal_equations_of_confidence_one_plus_alpha_r():
    """implicit's last step solves every movie's factors for the users':
    y_i = (X'X + X'(C_i - I)X + lambda I)^-1 X'C_i p(i), with C = 1 + alpha r where rated and the rule's
    lambda, to float32's precision: the same confidence as Spark's, not implicit's own alpha x r."""
    train = read_ratings([SAMPLE / "ratings.csv"])
    user_ids, x, movie_ids, y = implicit_fit(train, 4, 0.05, 2.0, 3, threads=2)
    lam = implicit_regularization(train, 0.05)
    rows, columns = np.searchsorted(user_ids, train.users), np.searchsorted(movie_ids, train.movies)
    gram, worst = x.T @ x, 0.0
    for column in range(0, movie_ids.size, 37):  # every 37th movie: a few hundred solves
        rated = columns == column
        raters, confidence = x[rows[rated]], 1 + 2.0 * train.ratings[rated]
        lhs = gram + (raters.T * (confidence - 1)) @ raters + lam * np.eye(4)
        solved = np.linalg.solve(lhs, raters.T @ confidence)
        worst = max(worst, np.abs(solved - y[column]).max() / np.abs(y).max())
    assert worst < 1e-3


# --- Spark: one session ------------------------------------------------------------------------------
def write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def test_ratings_keep_the_latest_of_a_pair_the_highest_on_ties(spark, tmp_path):
    uri = write_lines(tmp_path / "ratings.csv", [
        "userId,movieId,rating,timestamp", "1,10,2,100", "1,10,4,300", "1,10,3,200",
        "2,10,1,50", "2,10,5,50", "2,20,3.5,60", "2,x,3,60"])
    ratings, figures = als.read_ratings(spark, [uri], 1.0, 0.5)
    rows = sorted(tuple(row) for row in ratings.collect())
    assert rows == [(1, 10, 4.0, 300), (2, 10, 5.0, 50), (2, 20, 3.5, 60)]
    assert figures == {"lines": 8, "ratings_read": 6, "bad_lines": 1,
                       "bad_line_reasons": {"non-numeric id": 1}}


@pytest.fixture(scope="module")
def sample(spark):
    ratings, _ = als.read_ratings(spark, [str(SAMPLE / "ratings.csv")], 1.0, 0.01)
    return ratings


@pytest.fixture(scope="module")
def fitted(sample):
    model, _ = als.fit(sample, options("--alpha", "2", "--reg-param", "0.05"))
    return model


def numpy_objective(users, items, ratings, alpha, reg_param):
    """The implicit objective from its definition: every (user, movie) pair, a dense matrix."""
    user_ids, x = users
    item_ids, y = items
    row = {user: index for index, user in enumerate(user_ids)}
    column = {item: index for index, item in enumerate(item_ids)}
    preference, confidence = np.zeros((len(user_ids), len(item_ids))), np.ones((len(user_ids), len(item_ids)))
    for user, movie, rating in ratings:
        preference[row[user], column[movie]], confidence[row[user], column[movie]] = 1, 1 + alpha * rating
    n_u, n_i = preference.sum(axis=1), preference.sum(axis=0)
    error = (confidence * (preference - x @ y.T) ** 2).sum()
    return error + reg_param * ((n_u * (x ** 2).sum(axis=1)).sum() + (n_i * (y ** 2).sum(axis=1)).sum())


def test_the_training_loss_is_the_implicit_objective_at_the_fitted_factors(sample, fitted):
    rows = [(row["user"], row["movie"], row["rating"]) for row in sample.collect()]
    expected = numpy_objective(als.factor_arrays(fitted.userFactors), als.factor_arrays(fitted.itemFactors),
                               rows, 2.0, 0.05)
    assert als.training_loss(fitted, sample, 2.0, 0.05) == pytest.approx(expected, rel=1e-9)


def test_sparks_user_factors_solve_the_implicit_normal_equations_for_its_item_factors(sample, fitted):
    """Each iteration ends by solving every user's factors for the item factors: x_u = (Y'C_uY + reg n_u I)^-1
    Y'C_u p(u), confidence 1 + alpha r. Solved here in float64 from Spark's float32 item factors, they must
    equal Spark's to float32's precision (relative 1e-4 allows for Spark's own float32 rounding)."""
    user_ids, x = als.factor_arrays(fitted.userFactors)
    item_ids, y = als.factor_arrays(fitted.itemFactors)
    column = {item: index for index, item in enumerate(item_ids)}
    rated = {}
    for row in sample.collect():
        rated.setdefault(row["user"], []).append((column[row["movie"]], row["rating"]))
    gram = y.T @ y
    worst = 0.0
    for user, factors in zip(user_ids, x, strict=True):
        columns, ratings = (np.array(part) for part in zip(*rated[user], strict=True))
        confidence = 1 + 2.0 * ratings
        lhs = gram + (y[columns].T * (confidence - 1)) @ y[columns] + 0.05 * len(columns) * np.eye(y.shape[1])
        solved = np.linalg.solve(lhs, y[columns].T @ confidence)
        worst = max(worst, np.abs(solved - factors).max() / np.abs(factors).max())
    assert worst < 1e-4


def test_the_same_seed_and_blocks_give_the_same_factors(sample, fitted):
    again, _ = als.fit(sample, options("--alpha", "2", "--reg-param", "0.05"))
    for first, second in ((fitted.userFactors, again.userFactors), (fitted.itemFactors, again.itemFactors)):
        assert np.array_equal(als.factor_arrays(first)[1], als.factor_arrays(second)[1])


def test_a_run_writes_neighbours_recommendations_evaluation_and_figures(spark, tmp_path):
    train_lines = (SAMPLE / "ratings.csv").read_text().splitlines()[1:5000]
    train = write_lines(tmp_path / "train.csv", train_lines)
    run_options = als.argument_parser().parse_args([
        "--ratings", str(SAMPLE / "ratings.csv"), "--items", str(SAMPLE / "movies.csv"),
        "--output", str(tmp_path / "out"), "--evaluation-train", train, "--neighbours", "3",
        "--recommendations", "4", "--loss-per-iteration", *FIT])
    figures = als.run(spark, run_options)
    out = tmp_path / "out"
    neighbours = [parse_output_line(line)
                  for line in (out / "neighbours" / "part-00000").read_text().splitlines()]
    assert len(neighbours) == 3 * figures["movies"]
    assert neighbours[0].movie_title == "Toy Story (1995)" and neighbours[0].co_raters > 0
    recommendations = list(csv.reader((out / "recommendations" / "part-00000").open()))
    assert len(recommendations) == 4 * figures["users"]
    sample_ratings, _ = als.read_ratings(spark, [str(SAMPLE / "ratings.csv")], 1.0, 0.01)
    rated = {(row["user"], row["movie"]) for row in sample_ratings.collect()}
    assert not {(int(row[0]), int(row[2])) for row in recommendations} & rated
    evaluation = (out / "evaluation" / "part-00000").read_text().splitlines()
    assert {line.split("\t")[0] for line in evaluation} == {line.split(",")[0] for line in train_lines}
    assert all(len(line.split("\t")[1].split(",")) == 4 for line in evaluation)
    written = json.loads((out / "figures.json").read_text())
    assert written["ratings_read"] == 22303 and written["iterations"] == 5
    assert [step["iteration"] for step in written["per_iteration"]] == [1, 2, 3, 4, 5]
    losses = [step["training_loss"] for step in written["per_iteration"]]
    assert losses == sorted(losses, reverse=True) and losses[-1] == written["training_loss"]
    assert (out / "_SUCCESS").exists() and written["serializer"].endswith("KryoSerializer")


@pytest.fixture(scope="module")
def ml_100k(spark, tmp_path_factory):
    """ml-100k's time split and Spark's ALS fitted on its training part with the engine's defaults (rank 10,
    10 iterations, reg_param 0.1, alpha 1, 10 x 10 blocks): {"train", "relevant", "catalogue", "metrics"
    (Spark's recommendations scored), "loss" (Spark's training loss)}."""
    train, held_out = time_split(read_ratings([MOVIELENS / "ml-100k" / "u.data"]))
    relevant = positives(held_out)
    train_file = tmp_path_factory.mktemp("ml-100k") / "train.tsv"
    train_file.write_bytes(ratings_tsv(train))
    run_options = options("--rank", "10", "--max-iter", "10", "--user-blocks", "10", "--item-blocks", "10")
    ratings, _ = als.read_ratings(spark, [str(train_file)], 1.0, 0.01)
    model, _ = als.fit(ratings, run_options)
    user_ids, user_factors = als.factor_arrays(model.userFactors)
    item_ids, item_factors = als.factor_arrays(model.itemFactors)
    spark_lists = {user: [movie for movie, _ in movies] for user, movies in als.recommend(
        user_ids, user_factors, item_ids, item_factors, als.rated_movies(ratings), 10)}
    catalogue = len(set(train.movies.tolist()))
    return {"train": train, "relevant": relevant, "catalogue": catalogue,
            "metrics": evaluate(spark_lists, relevant, catalogue),
            "loss": als.training_loss(model, ratings, 1.0, 0.1)}


def test_sparks_als_recommends_as_well_as_an_independent_numpy_als_on_ml_100k(ml_100k):
    """The same objective and hyperparameters, different starts (Spark's seeded factors, numpy's): on
    ml-100k's time split both reach the same training loss within 0.1% and the same P@10 and NDCG@10
    within 0.005 (measured: 0.03%, 0.0011 and 0.0010; docs/als.md)."""
    train, relevant = ml_100k["train"], ml_100k["relevant"]
    reference = reference_als.fit(train, 10, 0.1, 1.0, 10)
    numpy_lists = reference_als.recommend(reference, train, relevant)
    numpy_metrics = evaluate(numpy_lists, relevant, ml_100k["catalogue"])
    assert ml_100k["loss"] == pytest.approx(reference_als.loss(reference, train, 0.1, 1.0), rel=1e-3)
    for metric in ("precision_at_k", "ndcg_at_k"):
        assert ml_100k["metrics"][metric] == pytest.approx(numpy_metrics[metric], abs=0.005), metric
    assert ml_100k["metrics"]["precision_at_k"] > 0.1  # and both well above popularity's 0.07


def test_sparks_als_recommends_as_well_as_the_implicit_librarys_on_ml_100k(ml_100k):
    """The implicit library's ALS with the same rank, iterations, confidence 1 + alpha r and split, its plain
    lambda standing for Spark's count-weighted reg_param (recommender_comparison.implicit_regularization):
    P@10 and NDCG@10 within the stated tolerance of Spark's (docs/als.md, "The check against the implicit
    library")."""
    train, relevant = ml_100k["train"], ml_100k["relevant"]
    model = implicit_fit(train, 10, 0.1, 1.0, 10, threads=2)
    implicit_lists = reference_als.recommend(model, train, relevant)
    implicit_metrics = evaluate(implicit_lists, relevant, ml_100k["catalogue"])
    check = implicit_check({SPARK: ml_100k["metrics"], IMPLICIT: implicit_metrics})
    assert set(check) == {"precision_at_k", "ndcg_at_k"}
    for metric, found in check.items():
        assert found["within"], (metric, found)
    assert implicit_metrics["precision_at_k"] > 0.09  # well above popularity's 0.07: a real fit

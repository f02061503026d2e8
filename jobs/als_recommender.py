"""Movie recommendations from implicit feedback: alternating least squares on Spark (pyspark.ml's ALS).

Usage: spark-submit [--py-files similarity_kernel.py] jobs/als_recommender.py --ratings RATINGS...
       --output FOLDER [--items MOVIES] [--evaluation-train RATINGS] [options]
Its ratings and titles rules are jobs/similarity_kernel.py's (the similarity job's), shipped beside it.

Each rating r (0.5 to 5 stars, one per user and movie: the latest, the highest on ties) is an implicit
observation: preference 1, confidence 1 + alpha * r; every pair not rated has preference 0 and
confidence 1. ALS (Hu, Koren and Volinsky's implicit-feedback objective, Spark's blocked solver: each
user block gets only the item factors its users need) finds rank-k factors x_u, y_i minimising

    sum over all (u, i) of c_ui (p_ui - x_u . y_i)^2 + reg_param (sum_u n_u |x_u|^2 + sum_i n_i |y_i|^2)

(n_u, n_i: the ratings of u and of i, Spark's weighted regularisation). From the factors:

* FOLDER/neighbours/part-00000: each movie's --neighbours nearest movies by the cosine of their item
  factors, with how many users rated both, in the similarity job's output contract: JSON
  [movie_id, title] TAB JSON [similar_id, similar_title, score, co_raters];
* FOLDER/recommendations/part-00000: each user's --recommendations best movies not rated, as CSV
  lines user_id,rank,movie_id,movie_title,score, by user then rank;
* FOLDER/evaluation/part-00000 (with --evaluation-train): a second model, fitted the same way on that
  file alone, and each of its users' recommendations from it, as user_id TAB movie,movie,...;
* FOLDER/figures.json: ratings read and used, bad lines, users, movies, iterations, fit seconds,
  seconds per iteration and the training loss (per iteration with --loss-per-iteration).

Memory on the driver, beyond Spark's: the factors of every user and movie (8 * rank bytes each), every
user's rated movies as Python lists (about 40 bytes a rating: 1 GB for ml-25m's 25M), and one block of
scores (BLOCK_ROWS rows of every movie, 8 bytes each). Python 3.9, as on the EMR nodes.
"""
import argparse
import json
import logging
import math
import os
import platform
import sys
import time

# The kernel (the similarity job's rules) is imported from beside this file, or from --py-files.
_JOB_FOLDER = os.path.dirname(os.path.abspath(__file__))
if _JOB_FOLDER not in sys.path:
    sys.path.append(_JOB_FOLDER)

import numpy as np  # noqa: E402
from similarity_kernel import (  # noqa: E402
    BadRatingLine,
    in_sample,
    parse_rating_line,
    read_titles,
)

log = logging.getLogger("als_recommender")
# ALS takes 32-bit integer ids: a larger one is a bad line here.
MAX_ID = 2**31 - 1
# Rows of factors scored against every movie at once on the driver.
BLOCK_ROWS = 1024
WRITE_CHUNK_BYTES = 1 << 20
# Spark's default serializer, when spark.serializer is not set.
JAVA_SERIALIZER = "org.apache.spark.serializer.JavaSerializer"
# The figures' key of the bad lines, and the reason a too-large id is one.
ID_TOO_LARGE = "id too large for ALS"
BAD = "bad: "


class TooManyBadLines(RuntimeError):
    """More of the ratings lines are bad than --max-bad-fraction allows."""


class NoRatings(ValueError):
    """No rating is left to fit (every line bad, or no user in the sample)."""


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def finite_float(low, high, low_open=False):
    """A float parser for [low, high] ((low, high] when low_open); NaN and infinities refused."""
    def parse(text):
        value = float(text)
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            bracket = "(" if low_open else "["
            raise argparse.ArgumentTypeError(
                f"must be a finite number in {bracket}{low}, {high}], got {text}")
        return value
    return parse


def argument_parser():
    parser = argparse.ArgumentParser(prog="als_recommender.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratings", nargs="+", required=True,
                        help="ratings files (u.data, ratings.dat or ratings.csv lines; any URI Spark reads)")
    parser.add_argument("--output", required=True, help="the folder to write (replaced if there)")
    parser.add_argument("--items", help="movies file with titles (u.item, movies.dat or movies.csv, a path "
                                        "on the driver); without it titles are null")
    parser.add_argument("--evaluation-train",
                        help="ratings to fit a second model on, whose recommendations are written to "
                             "evaluation/ (a time split's training part)")
    parser.add_argument("--rank", type=positive_int, default=10,
                        help="factors per user and movie (default 10)")
    parser.add_argument("--reg-param", type=finite_float(0, 1e6), default=0.1,
                        help="regularisation, scaled by each user's and movie's ratings (default 0.1)")
    parser.add_argument("--alpha", type=finite_float(0, 1e6), default=1.0,
                        help="confidence of a rating r: 1 + alpha * r (default 1)")
    parser.add_argument("--max-iter", type=positive_int, default=10, help="ALS iterations (default 10)")
    parser.add_argument("--user-blocks", type=positive_int, default=10,
                        help="blocks the users are split into (Spark's numUserBlocks, default 10)")
    parser.add_argument("--item-blocks", type=positive_int, default=10,
                        help="blocks the movies are split into (Spark's numItemBlocks, default 10)")
    parser.add_argument("--seed", type=int, default=42,
                        help="seed of the factors' initial values (default 42)")
    parser.add_argument("--neighbours", type=positive_int, default=10,
                        help="nearest movies written per movie (default 10)")
    parser.add_argument("--recommendations", type=positive_int, default=10,
                        help="movies recommended per user (default 10)")
    parser.add_argument("--sample-fraction", type=finite_float(0, 1, low_open=True), default=1.0,
                        help="use only this fraction of users, chosen by user id as the similarity job "
                             "does (default 1)")
    parser.add_argument("--max-bad-fraction", type=finite_float(0, 1), default=0.01,
                        help="fail when more than this fraction of the ratings lines are bad (default 0.01)")
    parser.add_argument("--log-level", default="WARN", choices=("ERROR", "WARN", "INFO", "DEBUG"),
                        help="Spark's log level once the application has started (default WARN)")
    parser.add_argument("--loss-per-iteration", action="store_true",
                        help="also fit 1, 2, ... max-iter - 1 iterations (the same seed gives the same "
                             "first iterations) for the training loss and time after each: about "
                             "max-iter / 2 times the work")
    return parser


# --- ratings: the similarity job's rules ---------------------------------------------------------
def parse_line(line, sample_fraction):
    """One ratings line (text) as ("rating", user, movie, doubled rating, timestamp); ("skipped",) for a
    header, a blank line or a user outside the sample; ("bad", reason) for a line the rules refuse."""
    try:
        parsed = parse_rating_line(line.encode("utf-8"))
    except BadRatingLine as error:
        return ("bad", str(error))
    if parsed is None:
        return ("skipped",)
    user, movie, doubled, timestamp = parsed
    if int(user) > MAX_ID or int(movie) > MAX_ID:
        return ("bad", ID_TOO_LARGE)
    if not in_sample(user, sample_fraction):
        return ("skipped",)
    return ("rating", int(user), int(movie), doubled, timestamp)


def line_kind(parsed):
    """What parse_line made of a line, for counting: "rating", "skipped" or "bad: <reason>"."""
    return parsed[0] if parsed[0] != "bad" else f"{BAD}{parsed[1]}"


def read_figures(kinds, max_bad_fraction):
    """{"lines", "ratings_read", "bad_lines", "bad_line_reasons"} from {line_kind: lines}; TooManyBadLines
    when the bad lines are more than max_bad_fraction of all lines."""
    reasons = {kind[len(BAD):]: count for kind, count in sorted(kinds.items()) if kind.startswith(BAD)}
    figures = {"lines": sum(kinds.values()), "ratings_read": kinds.get("rating", 0),
               "bad_lines": sum(reasons.values()), "bad_line_reasons": reasons}
    if figures["bad_lines"] > max_bad_fraction * figures["lines"]:
        raise TooManyBadLines(f"{figures['bad_lines']:,} of {figures['lines']:,} ratings lines are bad, "
                              f"above --max-bad-fraction {max_bad_fraction}: {reasons}")
    return figures


def read_ratings(spark, uris, sample_fraction, max_bad_fraction):
    """A cached DataFrame (user, movie, rating, timestamp): one rating per user and movie, the latest (the
    highest on ties), as the similarity job keeps; and read_figures' figures of its lines."""
    from pyspark.sql import functions as F

    parsed = spark.sparkContext.textFile(",".join(uris)).map(lambda line: parse_line(line, sample_fraction))
    parsed = parsed.cache()
    figures = read_figures(dict(parsed.map(line_kind).countByValue()), max_bad_fraction)
    kept = parsed.filter(lambda row: row[0] == "rating").map(lambda row: row[1:])
    frame = spark.createDataFrame(kept, "user int, movie int, doubled int, timestamp long")
    latest = frame.groupBy("user", "movie").agg(F.max(F.struct("timestamp", "doubled")).alias("latest"))
    ratings = latest.select("user", "movie", (F.col("latest.doubled") / 2.0).alias("rating"),
                            F.col("latest.timestamp").alias("timestamp")).cache()
    ratings.count()
    parsed.unpersist()
    return ratings, figures


# --- the model ------------------------------------------------------------------------------------
def als_estimator(options, max_iter=None):
    from pyspark.ml.recommendation import ALS

    return ALS(rank=options.rank, maxIter=max_iter or options.max_iter, regParam=options.reg_param,
               alpha=options.alpha, implicitPrefs=True, numUserBlocks=options.user_blocks,
               numItemBlocks=options.item_blocks, seed=options.seed, userCol="user", itemCol="movie",
               ratingCol="rating", coldStartStrategy="drop")


def fit(ratings, options, max_iter=None):
    """(the fitted model, its seconds): Spark's ALS.fit runs every iteration and materialises the factors."""
    started = time.monotonic()
    model = als_estimator(options, max_iter).fit(ratings)
    return model, time.monotonic() - started


def factor_arrays(factors):
    """(ids, matrix) of a factors DataFrame (id, features), by id."""
    rows = sorted((row["id"], row["features"]) for row in factors.collect())
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    matrix = np.array([row[1] for row in rows], dtype=np.float64).reshape(len(rows), -1)
    return ids, matrix


def training_loss(model, ratings, alpha, reg_param):
    """The implicit objective above at the model's factors: the sum over all pairs of (x_u . y_i)^2 is
    trace(X'X Y'Y); the rated pairs add c (1 - s)^2 - s^2 each (s = x_u . y_i), computed by Spark."""
    from pyspark.sql import functions as F

    _, users = factor_arrays(model.userFactors)
    _, items = factor_arrays(model.itemFactors)
    unrated_as_zero = float(np.trace((users.T @ users) @ (items.T @ items)))
    user_factors = model.userFactors.toDF("user", "x")
    item_factors = model.itemFactors.toDF("movie", "y")
    scored = (ratings.join(user_factors, "user").join(item_factors, "movie")
              .select("rating", F.aggregate(F.zip_with("x", "y", lambda a, b: a * b), F.lit(0.0),
                                            lambda total, value: total + value).alias("s")))
    confidence = 1 + alpha * F.col("rating")
    rated = scored.agg(F.sum(confidence * (1 - F.col("s")) ** 2 - F.col("s") ** 2)).first()[0]
    user_counts = ratings.groupBy("user").count().withColumnRenamed("user", "id")
    item_counts = ratings.groupBy("movie").count().withColumnRenamed("movie", "id")
    penalty = sum(_weighted_norms(factors, counts) for factors, counts in
                  ((model.userFactors, user_counts), (model.itemFactors, item_counts)))
    return unrated_as_zero + rated + reg_param * penalty


def _weighted_norms(factors, counts):
    from pyspark.sql import functions as F

    norm = F.aggregate(F.transform("features", lambda value: value * value), F.lit(0.0),
                       lambda total, value: total + value)
    return factors.join(counts, "id").agg(F.sum(norm * F.col("count"))).first()[0]


# --- from the factors: neighbours and recommendations (numpy, on the driver) ----------------------
def nearest_neighbours(ids, factors, count, block_rows=BLOCK_ROWS):
    """[(movie, [(similar movie, cosine), ...])]: each movie's `count` nearest others by the cosine of their
    factors, best first, ties by id; a movie whose factors are all zero has cosine 0 with every other."""
    norms = np.linalg.norm(factors, axis=1)
    unit = factors / np.where(norms > 0, norms, 1)[:, None]
    count = min(count, len(ids) - 1)
    result = []
    for start in range(0, len(ids), block_rows):
        scores = unit[start:start + block_rows] @ unit.T
        rows = np.arange(scores.shape[0])
        scores[rows, start + rows] = -np.inf  # not its own neighbour
        for row, best in zip(rows, top_columns(scores, count)):
            result.append((int(ids[start + row]), [(int(ids[column]), float(scores[row, column]))
                                                   for column in best]))
    return result


def top_columns(scores, count):
    """Per row, the columns of its `count` highest scores, highest first, ties by column (the lower id)."""
    if count <= 0:
        return [[] for _ in range(scores.shape[0])]
    candidates = np.argpartition(-scores, count - 1, axis=1)[:, :count] if count < scores.shape[1] else \
        np.tile(np.arange(scores.shape[1]), (scores.shape[0], 1))
    # argpartition cuts ties at the boundary arbitrarily: take every column tied with the last kept score.
    result = []
    for row, kept in zip(scores, candidates):
        threshold = row[kept].min()
        columns = np.flatnonzero(row >= threshold)
        order = np.lexsort((columns, -row[columns]))
        result.append(columns[order][:count])
    return result


def recommend(user_ids, user_factors, item_ids, item_factors, rated, count, block_rows=BLOCK_ROWS):
    """[(user, [(movie, score), ...])]: each user's `count` highest-scoring movies x_u . y_i that the user
    has not rated (rated: {user: movie ids}), best first, ties by movie id."""
    column_of = {int(movie): column for column, movie in enumerate(item_ids)}
    result = []
    for start in range(0, len(user_ids), block_rows):
        scores = user_factors[start:start + block_rows] @ item_factors.T
        for row, user in enumerate(user_ids[start:start + block_rows]):
            seen = [column_of[movie] for movie in rated.get(int(user), ()) if movie in column_of]
            scores[row, seen] = -np.inf
        available = np.isfinite(scores).sum(axis=1)
        for row, best in enumerate(top_columns(scores, min(count, scores.shape[1]))):
            best = best[:available[row]]
            result.append((int(user_ids[start + row]), [(int(item_ids[column]), float(scores[row, column]))
                                                        for column in best]))
    return result


def rated_movies(ratings):
    """{user: [movie, ...]} of the ratings, gathered by Spark, streamed to the driver a partition at a
    time."""
    from pyspark.sql import functions as F

    grouped = ratings.groupBy("user").agg(F.collect_list("movie").alias("movies"))
    return {row["user"]: row["movies"] for row in grouped.toLocalIterator()}


def co_raters(spark, ratings, pairs):
    """{(movie, similar): users who rated both} of the (movie, similar) pairs, counted by Spark."""
    frame = spark.createDataFrame(pairs, "movie int, similar int")
    first = ratings.select("user", "movie")
    second = ratings.select(ratings["user"], ratings["movie"].alias("similar"))
    counted = frame.join(first, "movie").join(second, ["user", "similar"]).groupBy("movie", "similar").count()
    counts = {(row["movie"], row["similar"]): row["count"] for row in counted.toLocalIterator()}
    return {pair: counts.get(pair, 0) for pair in pairs}


# --- output -----------------------------------------------------------------------------------------
def neighbour_lines(neighbours, titles, counts):
    """The similarity job's output lines of each movie's neighbours."""
    for movie, similar in neighbours:
        key = json.dumps([str(movie), titles.get(str(movie))])
        for other, score in similar:
            value = json.dumps([str(other), titles.get(str(other)), round(score, 6), counts[(movie, other)]])
            yield f"{key}\t{value}\n"


def recommendation_lines(recommendations, titles):
    """CSV lines user_id,rank,movie_id,movie_title,score, by user then rank."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for user, movies in sorted(recommendations):
        for rank, (movie, score) in enumerate(movies, start=1):
            writer.writerow([user, rank, movie, titles.get(str(movie)) or "", repr(round(score, 6))])
    return text.getvalue()


def evaluation_lines(recommendations):
    return "".join(f"{user}\t{','.join(str(movie) for movie, _ in movies)}\n"
                   for user, movies in sorted(recommendations))


def write_text(spark, uri, text):
    """text (str) as UTF-8 into the file uri, through Hadoop's FileSystem of its scheme (S3 on EMR, file:
    here), from the driver."""
    context = spark.sparkContext
    path = context._jvm.org.apache.hadoop.fs.Path(uri)
    stream = path.getFileSystem(context._jsc.hadoopConfiguration()).create(path, True)
    try:
        data = text.encode("utf-8")
        for start in range(0, len(data), WRITE_CHUNK_BYTES):
            stream.write(bytearray(data[start:start + WRITE_CHUNK_BYTES]))
    finally:
        stream.close()


def remove_folder(spark, uri):
    context = spark.sparkContext
    path = context._jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(context._jsc.hadoopConfiguration()).delete(path, True)


# --- the run -----------------------------------------------------------------------------------------
def titles_of(items_path):
    """{movie id: title} of the movies file (the similarity job's rules), {} without one."""
    if not items_path:
        return {}
    from collections import Counter

    return read_titles(items_path, Counter())


def fit_figures(ratings, model, seconds, options):
    """The fit's figures: iterations, seconds (the ratings' blocking included), the training loss, and with
    --loss-per-iteration the same after each earlier iteration (fits of 1 .. max_iter - 1 iterations from
    the same seed, whose first iterations are the full fit's)."""
    loss = training_loss(model, ratings, options.alpha, options.reg_param)
    figures = {"iterations": options.max_iter, "fit_seconds": round(seconds, 3),
               "seconds_per_iteration": round(seconds / options.max_iter, 3), "training_loss": loss}
    if options.loss_per_iteration:
        trace = []
        for iterations in range(1, options.max_iter):
            earlier, earlier_seconds = fit(ratings, options, iterations)
            trace.append({"iteration": iterations, "fit_seconds": round(earlier_seconds, 3),
                          "training_loss": training_loss(earlier, ratings, options.alpha, options.reg_param)})
        trace.append({"iteration": options.max_iter, "fit_seconds": round(seconds, 3), "training_loss": loss})
        figures["per_iteration"] = trace
    return figures


def model_outputs(spark, ratings, model, options, titles):
    """The neighbour lines and recommendation CSV of a fitted model."""
    item_ids, item_factors = factor_arrays(model.itemFactors)
    user_ids, user_factors = factor_arrays(model.userFactors)
    neighbours = nearest_neighbours(item_ids, item_factors, options.neighbours)
    pairs = [(movie, other) for movie, similar in neighbours for other, _ in similar]
    counts = co_raters(spark, ratings, pairs)
    recommendations = recommend(user_ids, user_factors, item_ids, item_factors, rated_movies(ratings),
                                options.recommendations)
    return "".join(neighbour_lines(neighbours, titles, counts)), recommendation_lines(recommendations, titles)


def evaluation_output(ratings, figures, options):
    """The evaluation lines of a model fitted on the --evaluation-train ratings alone, and its figures."""
    model, seconds = fit(ratings, options)
    user_ids, user_factors = factor_arrays(model.userFactors)
    item_ids, item_factors = factor_arrays(model.itemFactors)
    recommendations = recommend(user_ids, user_factors, item_ids, item_factors, rated_movies(ratings),
                                options.recommendations)
    ratings.unpersist()
    return evaluation_lines(recommendations), {"ratings": figures["ratings_read"],
                                               "fit_seconds": round(seconds, 3)}


def run(spark, options):
    """Fit, write every output under --output (figures.json and _SUCCESS last); the figures."""
    output = options.output.rstrip("/")
    remove_folder(spark, output)
    titles = titles_of(options.items)
    ratings, figures = read_ratings(spark, options.ratings, options.sample_fraction, options.max_bad_fraction)
    evaluation = (read_ratings(spark, [options.evaluation_train], 1.0, options.max_bad_fraction)
                  if options.evaluation_train else None)  # read before any fit: a missing file fails now
    figures.update(ratings_used=ratings.count(), users=ratings.select("user").distinct().count(),
                   movies=ratings.select("movie").distinct().count())
    if not figures["ratings_used"]:
        raise NoRatings("no rating to fit: every line was bad, or no user is in the sample")
    model, seconds = fit(ratings, options)
    figures.update(fit_figures(ratings, model, seconds, options))
    neighbour_text, recommendation_text = model_outputs(spark, ratings, model, options, titles)
    write_text(spark, f"{output}/neighbours/part-00000", neighbour_text)
    write_text(spark, f"{output}/recommendations/part-00000", recommendation_text)
    if evaluation:
        evaluation_text, figures["evaluation_model"] = evaluation_output(*evaluation, options)
        write_text(spark, f"{output}/evaluation/part-00000", evaluation_text)
    figures.update(runtime_figures(spark))
    write_text(spark, f"{output}/figures.json", json.dumps(figures, indent=1, sort_keys=True))
    write_text(spark, f"{output}/_SUCCESS", "")
    return figures


def runtime_figures(spark):
    """What ran the job: Spark's version and application, its serializer, the driver's Python and numpy."""
    context = spark.sparkContext
    return {"spark_version": spark.version, "application_id": context.applicationId,
            "serializer": context.getConf().get("spark.serializer", JAVA_SERIALIZER),
            "default_parallelism": context.defaultParallelism, "python_version": platform.python_version(),
            "numpy_version": np.__version__}


def main(argv=None):
    options = argument_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("movielens-als").getOrCreate()
    spark.sparkContext.setLogLevel(options.log_level)
    # ALS checkpoints its factors every 10 iterations, on the default file system (HDFS on EMR).
    checkpoints = f"/tmp/movielens-als-checkpoints/{spark.sparkContext.applicationId}"
    spark.sparkContext.setCheckpointDir(checkpoints)
    try:
        figures = run(spark, options)
        log.info("fitted %d iterations on %d ratings in %.1f s; training loss %.6g", figures["iterations"],
                 figures["ratings_used"], figures["fit_seconds"], figures["training_loss"])
    finally:
        remove_folder(spark, checkpoints)
        spark.stop()


if __name__ == "__main__":
    main()

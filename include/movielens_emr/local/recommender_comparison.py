"""Every recommender scored on one dataset's time split, on this machine (docs/als.md, "Evaluation").

Usage: python -m movielens_emr.local.recommender_comparison DATASET OUT_DIR [--cores N] [options]

The ratings are read by the jobs' rules and split in time (evaluation.split); then, each fitted on the
training ratings alone and scored on the held-out positives at k = 10: popularity; the similarity engine's
item-item neighbours as a recommender (its own MapReduce job, run by mrjob's local runner with the run's
metric and thresholds; a candidate scores the sum of its similarities to the user's training movies); the
als engine (its own script, Spark's local mode); an independent implicit ALS in numpy with the same
objective and hyperparameters (evaluation.reference_als), the check of Spark's; and the `implicit` library's
ALS (a test-only requirement, imported only here) with the same rank, iterations and confidence, its plain
regularisation chosen by implicit_regularization. Writes OUT_DIR/evaluation.json and OUT_DIR/evaluation.md
(a table), and the jobs' outputs beside them.
"""
import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from movielens_emr.config.params import DEFAULT_ENGINE, DEFAULT_MAX_NODE_COUNT, validate_run_config
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.datasets import CATALOGUE, get_dataset
from movielens_emr.data.staging import dataset_source_files
from movielens_emr.engine.als.engine import ALS_ENGINE
from movielens_emr.engine.als.evaluation_split import ratings_tsv, read_ratings
from movielens_emr.engine.als.job import SEED
from movielens_emr.engine.registry import engine_named
from movielens_emr.engine.similarity.results import parse_output_line
from movielens_emr.evaluation import reference_als
from movielens_emr.evaluation.ranking import K, evaluate
from movielens_emr.evaluation.recommenders import item_item, popularity
from movielens_emr.evaluation.split import positives, split_summary, time_split
from movielens_emr.local.runner import run_local_job
from movielens_emr.local.spark_runner import run_local_spark_job

log = logging.getLogger(__name__)
TABLE_COLUMNS = ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage")
SPARK, NUMPY, IMPLICIT = "ALS (Spark)", "ALS (numpy reference)", "ALS (implicit library)"
# How far implicit's P@10 and NDCG@10 may be from Spark's (docs/als.md, "The check against the implicit
# library"): about twice the largest difference measured over 8 of implicit's random starts on ml-100k and
# ml-latest-small (0.0039), which is about the spread of implicit's own starts.
IMPLICIT_TOLERANCE = {"precision_at_k": 0.008, "ndcg_at_k": 0.008}


def run_config(args, engine):
    """The RunConfig of a local run of engine with the command line's parameters."""
    return validate_run_config(
        {"engine": engine, "dataset": args.dataset, "target": "local", "node_count": args.cores,
         "metric": args.metric, "min_score": args.min_score, "min_co_ratings": args.min_co_ratings,
         "als_rank": args.als_rank, "als_max_iter": args.als_max_iter, "als_reg_param": args.als_reg_param,
         "als_alpha": args.als_alpha}, DEFAULT_MAX_NODE_COUNT, engines=(DEFAULT_ENGINE, ALS_ENGINE))


def similarity_neighbours(args, train_file, movies_file, out):
    """The similarity job's kept pairs on the training ratings: [(movie, similar movie, score)]."""
    job = engine_named(DEFAULT_ENGINE).job(run_config(args, DEFAULT_ENGINE), {"movies_uri": str(movies_file)})
    output = out / "similarity-output"
    run_local_job(job, [train_file], output, args.cores, out / "similarity-work")
    rows = [parse_output_line(line) for part in sorted(output.glob("part-*"))
            for line in part.read_text(encoding="utf-8").splitlines() if line]
    return [(int(row.movie_id), int(row.similar_movie_id), row.score) for row in rows]


def als_recommendations(args, train_file, movies_file, out):
    """The als script's recommendations fitted on the training ratings ({user: movies}) and its figures."""
    job = engine_named(ALS_ENGINE).job(run_config(args, ALS_ENGINE), {"movies_uri": str(movies_file)})
    output = out / "als-output"
    run_local_spark_job(job, [train_file], output, args.cores, out / "als-work")
    recommendations = {}
    with open(output / "recommendations" / "part-00000", newline="", encoding="utf-8") as lines:
        for user, _, movie, *_ in csv.reader(lines):
            recommendations.setdefault(int(user), []).append(int(movie))
    return recommendations, json.loads((output / "figures.json").read_text())


def implicit_regularization(train, reg_param):
    """implicit's plain lambda standing for Spark's weighted reg_param: reg_param x ratings / sqrt(users x
    movies), the geometric mean of the mean ratings per user and per movie.

    Spark penalises reg_param (sum_u n_u |x_u|^2 + sum_i n_i |y_i|^2); with each n at its side's mean that is
    a |X|^2 + b |Y|^2 (a = reg_param x ratings / users, b = reg_param x ratings / movies), and since scaling X
    by s and Y by 1 / s changes no prediction, its minimum is that of sqrt(a b) (|X|^2 + |Y|^2): one lambda.
    What remains different is the spread of the counts about their means."""
    users, movies = np.unique(train.users).size, np.unique(train.movies).size
    return reg_param * len(train) / math.sqrt(users * movies)


def implicit_fit(train, rank, reg_param, alpha, iterations, threads, seed=SEED):
    """(user ids, user factors, movie ids, movie factors) of the implicit library's ALS on `train`
    (Ratings): the same rank, iterations and confidence 1 + alpha x rating (implicit takes each rated
    pair's confidence as its value), regularisation implicit_regularization(train, reg_param), its exact
    (Cholesky) solver as Spark's rather than its default conjugate gradient, float32 factors as Spark's."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits
    except ImportError as error:
        raise RuntimeError(f"the implicit library is not installed ({error}): it is a test-only requirement "
                           "(requirements-dev.txt; scripts/bootstrap.sh installs it)") from error
    user_ids, rows = np.unique(train.users, return_inverse=True)
    movie_ids, columns = np.unique(train.movies, return_inverse=True)
    confidence = sparse.csr_matrix((1 + alpha * train.ratings, (rows, columns)),
                                   shape=(user_ids.size, movie_ids.size), dtype=np.float32)
    # implicit runs its own threads; a multi-threaded BLAS under them slows it (it warns of that)
    regularization = implicit_regularization(train, reg_param)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=rank, regularization=regularization, alpha=1.0, use_cg=False,
                                        iterations=iterations, num_threads=threads, random_state=seed)
        model.fit(confidence, show_progress=False)
    return (user_ids, np.asarray(model.user_factors, dtype=np.float64), movie_ids,
            np.asarray(model.item_factors, dtype=np.float64))


def implicit_check(metrics, spark_name=SPARK, implicit_name=IMPLICIT, tolerance=IMPLICIT_TOLERANCE):
    """{metric: {"spark", "implicit", "difference", "tolerance", "within"}} of the tolerance's metrics."""
    found = {}
    for metric, allowed in tolerance.items():
        spark_value, implicit_value = metrics[spark_name][metric], metrics[implicit_name][metric]
        difference = round(implicit_value - spark_value, 6)
        found[metric] = {"spark": spark_value, "implicit": implicit_value, "difference": difference,
                         "tolerance": allowed, "within": abs(difference) <= allowed}
    return found


def timed(function, *args):
    started = time.monotonic()
    result = function(*args)
    return result, round(time.monotonic() - started, 1)


def compare(args):
    """{"dataset", "split", "recommenders": {name: metrics and seconds}, "als_check": ...}."""
    dataset, settings, out = get_dataset(args.dataset), settings_from_env(), Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = dataset_source_files(dataset, settings.source_dir, settings.cache_dir)
    train, held_out = time_split(read_ratings([files[name] for name in dataset.ratings_files]))
    relevant, catalogue = positives(held_out), len(set(train.movies.tolist()))
    train_file = out / "train.tsv"
    train_file.write_bytes(ratings_tsv(train))
    movies_file = files[dataset.movies_file]
    lists, seconds = {}, {}
    lists["popularity"], seconds["popularity"] = timed(popularity, train, relevant, K)
    item_item_name = "item-item (similarity job)"
    pairs, seconds[item_item_name] = timed(similarity_neighbours, args, train_file, movies_file, out)
    lists[item_item_name] = item_item(train, pairs, relevant, K)
    (lists[SPARK], figures), seconds[SPARK] = timed(als_recommendations, args, train_file, movies_file, out)
    models = {}
    models[NUMPY], seconds[NUMPY] = timed(
        reference_als.fit, train, args.als_rank, args.als_reg_param, args.als_alpha, args.als_max_iter)
    models[IMPLICIT], seconds[IMPLICIT] = timed(
        implicit_fit, train, args.als_rank, args.als_reg_param, args.als_alpha, args.als_max_iter, args.cores)
    lists.update((name, reference_als.recommend(model, train, relevant, K)) for name, model in models.items())
    metrics = {name: {**evaluate(found, relevant, catalogue, K), "seconds": seconds[name]}
               for name, found in lists.items()}
    result = {"dataset": dataset.name, "k": K, "split": split_summary(train, held_out, relevant),
              "parameters": vars(args) | {"out_dir": str(out)}, "recommenders": metrics,
              "similarity_pairs": len(pairs), "als_check": als_check(args, figures, models, train, metrics)}
    (out / "evaluation.json").write_text(json.dumps(result, indent=1))
    (out / "evaluation.md").write_text(markdown_table(result))
    return result


def als_check(args, spark_figures, models, train, metrics):
    """Spark's training loss beside the objective (Spark's) at the numpy reference's and at implicit's
    factors, implicit's regularisation, and implicit's P@10 and NDCG@10 against Spark's (implicit_check)."""
    losses = {name: reference_als.loss(model, train, args.als_reg_param, args.als_alpha)
              for name, model in models.items()}
    return {"spark_training_loss": spark_figures["training_loss"], "numpy_training_loss": losses[NUMPY],
            "implicit_training_loss_in_sparks_objective": losses[IMPLICIT],
            "implicit_regularization": implicit_regularization(train, args.als_reg_param),
            "implicit": implicit_check(metrics, SPARK)}


def markdown_table(result):
    """The recommenders' metrics as a Markdown table, k and the split in its caption."""
    split = result["split"]
    lines = [f"{result['dataset']}: {split['train_ratings']:,} ratings to fit on, "
             f"{split['held_out_ratings']:,} held out, {split['evaluated_users']:,} users with held-out "
             f"positives; k = {result['k']}", "",
             "| recommender | P@k | R@k | NDCG@k | MAP@k | coverage | seconds |", "| --- |" + " --- |" * 6]
    for name, metrics in result["recommenders"].items():
        figures = " | ".join(f"{metrics[column]:.4f}" for column in TABLE_COLUMNS)
        lines.append(f"| {name} | {figures} | {metrics['seconds']} |")
    return "\n".join(lines) + "\n"


def argument_parser():
    parser = argparse.ArgumentParser(prog="python -m movielens_emr.local.recommender_comparison",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=list(CATALOGUE))
    parser.add_argument("out_dir")
    parser.add_argument("--cores", type=int, default=2, help="parallel tasks and Spark cores (default 2)")
    parser.add_argument("--metric", default="cosine", help="the similarity job's metric (default cosine)")
    parser.add_argument("--min-score", type=float, default=0.95, help="its minimum score (default 0.95)")
    parser.add_argument("--min-co-ratings", type=int, default=10, help="its minimum co-raters (default 10)")
    parser.add_argument("--als-rank", type=int, default=10)
    parser.add_argument("--als-max-iter", type=int, default=10)
    parser.add_argument("--als-reg-param", type=float, default=0.1)
    parser.add_argument("--als-alpha", type=float, default=1.0)
    return parser


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    result = compare(argument_parser().parse_args(argv))
    sys.stdout.write(markdown_table(result))
    sys.stdout.write(check_lines(result["als_check"]))


def check_lines(check):
    """The training losses and implicit's metrics against Spark's, as text."""
    lines = [f"training loss: Spark {check['spark_training_loss']:.6g}, numpy reference "
             f"{check['numpy_training_loss']:.6g}; Spark's objective at implicit's factors "
             f"{check['implicit_training_loss_in_sparks_objective']:.6g} (its own lambda "
             f"{check['implicit_regularization']:.4g})"]
    for metric, found in check["implicit"].items():
        lines.append(f"{metric}: implicit {found['implicit']:.4f}, Spark {found['spark']:.4f}, difference "
                     f"{found['difference']:+.4f}: {'within' if found['within'] else 'OUTSIDE'} the "
                     f"tolerance {found['tolerance']}")
    return "\n" + "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

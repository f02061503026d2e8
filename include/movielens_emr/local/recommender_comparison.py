"""Every recommender scored on one dataset's time split, on this machine (docs/als.md, "Evaluation").

Usage: python -m movielens_emr.local.recommender_comparison DATASET OUT_DIR [--cores N] [options]

The ratings are read by the jobs' rules and split in time (evaluation.split); then, each fitted on the
training ratings alone and scored on the held-out positives at k = 10: popularity; the similarity engine's
item-item neighbours as a recommender (its own MapReduce job, run by mrjob's local runner with the run's
metric and thresholds; a candidate scores the sum of its similarities to the user's training movies); the
als engine (its own script, Spark's local mode); and an independent implicit ALS in numpy with the same
objective and hyperparameters (evaluation.reference_als), the check of Spark's. Writes OUT_DIR/evaluation.json
and OUT_DIR/evaluation.md (a table), and the jobs' outputs beside them.
"""
import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

from movielens_emr.config.params import DEFAULT_ENGINE, DEFAULT_MAX_NODE_COUNT, validate_run_config
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.datasets import CATALOGUE, get_dataset
from movielens_emr.data.staging import dataset_source_files
from movielens_emr.engine.als.engine import ALS_ENGINE
from movielens_emr.engine.als.evaluation_split import ratings_tsv, read_ratings
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
    (lists["ALS (Spark)"], figures), seconds["ALS (Spark)"] = timed(
        als_recommendations, args, train_file, movies_file, out)
    model, seconds["ALS (numpy reference)"] = timed(
        reference_als.fit, train, args.als_rank, args.als_reg_param, args.als_alpha, args.als_max_iter)
    lists["ALS (numpy reference)"] = reference_als.recommend(model, train, relevant, K)
    result = {"dataset": dataset.name, "k": K, "split": split_summary(train, held_out, relevant),
              "parameters": vars(args) | {"out_dir": str(out)}, "recommenders": {
                  name: {**evaluate(found, relevant, catalogue, K), "seconds": seconds[name]}
                  for name, found in lists.items()},
              "similarity_pairs": len(pairs),
              "als_check": {"spark_training_loss": figures["training_loss"],
                            "numpy_training_loss": reference_als.loss(model, train, args.als_reg_param,
                                                                      args.als_alpha)}}
    (out / "evaluation.json").write_text(json.dumps(result, indent=1))
    (out / "evaluation.md").write_text(markdown_table(result))
    return result


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
    check = result["als_check"]
    sys.stdout.write(f"\ntraining loss: Spark {check['spark_training_loss']:.6g}, numpy reference "
                     f"{check['numpy_training_loss']:.6g}\n")


if __name__ == "__main__":
    main()

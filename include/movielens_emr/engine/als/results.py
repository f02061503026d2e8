"""The als engine's results, from its script's output folder: the nearest movies in the similarity engine's
files, the recommendations CSV, the script's figures, and the evaluation of its recommendations beside
popularity's."""
import json
import logging
import posixpath

from movielens_emr.engine.als.evaluation_split import read_split, split_keys
from movielens_emr.engine.similarity.collect import collect_output
from movielens_emr.evaluation.ranking import K, evaluate
from movielens_emr.evaluation.recommenders import popularity
from movielens_emr.evaluation.split import positives, split_summary

log = logging.getLogger(__name__)
RECOMMENDATIONS_CSV, EVALUATION_JSON, FIGURES_JSON = "recommendations.csv", "evaluation.json", "figures.json"
RECOMMENDATION_COLUMNS = "user_id,rank,movie_id,movie_title,score\n"
NEIGHBOURS, RECOMMENDATIONS, EVALUATION = "neighbours", "recommendations", "evaluation"


def collect_results(storage, output_folder, results_prefix):
    """results/similarities.csv and top_neighbours.json (the similarity engine's, from neighbours/),
    results/recommendations.csv and, when the script evaluated, results/evaluation.json; a summary."""
    summary = collect_output(storage, f"{output_folder}/{NEIGHBOURS}", results_prefix)
    recommendations = storage.get_bytes(f"{output_folder}/{RECOMMENDATIONS}/part-00000")
    csv_key = f"{results_prefix}/{RECOMMENDATIONS_CSV}"
    storage.put_bytes(RECOMMENDATION_COLUMNS.encode() + recommendations, csv_key)
    summary.update(recommendations_csv=storage.uri(csv_key),
                   recommendation_rows=recommendations.count(b"\n"),
                   job_figures=json.loads(storage.get_bytes(f"{output_folder}/{FIGURES_JSON}")))
    evaluation_key = f"{output_folder}/{EVALUATION}/part-00000"
    if storage.exists(evaluation_key):
        split = split_keys(posixpath.dirname(results_prefix))  # results/ is a folder of the run's, as job/ is
        als = parse_evaluation(storage.get_bytes(evaluation_key))
        evaluation = evaluate_recommenders(storage, split, als)
        storage.put_bytes(json.dumps(evaluation, indent=1).encode(), f"{results_prefix}/{EVALUATION_JSON}")
        summary["evaluation"] = evaluation
    return summary


def parse_evaluation(data):
    """{user: [movie, ...]} of the script's evaluation/ lines, user TAB movie,movie,..."""
    recommendations = {}
    for line in data.decode().splitlines():
        user, _, movies = line.partition("\t")
        recommendations[int(user)] = [int(movie) for movie in movies.split(",") if movie]
    return recommendations


def evaluate_recommenders(storage, split, als_recommendations, k=K):
    """{"split": its figures, "recommenders": {"popularity": metrics, "als": metrics}} at k."""
    train, held_out = read_split(storage, split)
    relevant = positives(held_out)
    catalogue = len(set(train.movies.tolist()))
    result = {"split": split_summary(train, held_out, relevant), "recommenders": {
        "popularity": evaluate(popularity(train, relevant, k), relevant, catalogue, k),
        "als": evaluate(als_recommendations, relevant, catalogue, k)}}
    log.info("evaluation at %d: %s", k, {name: (metrics["precision_at_k"], metrics["ndcg_at_k"])
                                          for name, metrics in result["recommenders"].items()})
    return result

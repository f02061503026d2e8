"""The comparison's table and the runs it configures (its end-to-end measurement is in docs/als.md)."""
from movielens_emr.local.recommender_comparison import argument_parser, markdown_table, run_config


def test_the_command_lines_parameters_configure_both_engines_runs():
    args = argument_parser().parse_args(["ml-100k", "out", "--cores", "3", "--min-score", "-1",
                                         "--als-rank", "5"])
    similarity, als = run_config(args, "similarity"), run_config(args, "als")
    assert (similarity.engine, similarity.node_count, similarity.min_score) == ("similarity", 3, -1.0)
    assert (als.engine, als.target, als.als_rank, als.als_alpha) == ("als", "local", 5, 1.0)


def test_the_table_has_a_row_per_recommender():
    metrics = {"precision_at_k": 0.1, "recall_at_k": 0.2, "ndcg_at_k": 0.3, "map_at_k": 0.05,
               "coverage": 0.5, "seconds": 1.5}
    result = {"dataset": "ml-100k", "k": 10, "recommenders": {"popularity": metrics},
              "split": {"train_ratings": 80, "held_out_ratings": 20, "evaluated_users": 9}}
    assert markdown_table(result).splitlines() == [
        "ml-100k: 80 ratings to fit on, 20 held out, 9 users with held-out positives; k = 10", "",
        "| recommender | P@k | R@k | NDCG@k | MAP@k | coverage | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        "| popularity | 0.1000 | 0.2000 | 0.3000 | 0.0500 | 0.5000 | 1.5 |"]

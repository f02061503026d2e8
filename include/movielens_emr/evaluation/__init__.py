"""How good a recommender is: a per-user time split of the ratings, ranking metrics at k, and the
baseline recommenders, as plain functions over numpy arrays (docs/als.md, "Evaluation")."""

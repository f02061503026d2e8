"""Ranking metrics at k of recommendation lists against each user's held-out positives."""
import math

K = 10


def precision_at_k(recommended, relevant, k=K):
    return sum(movie in relevant for movie in recommended[:k]) / k


def recall_at_k(recommended, relevant, k=K):
    return sum(movie in relevant for movie in recommended[:k]) / len(relevant)


def ndcg_at_k(recommended, relevant, k=K):
    """DCG of the hits (1 / log2(position + 1), positions from 1) over the DCG of a perfect list."""
    gain = sum(1 / math.log2(position + 1) for position, movie in enumerate(recommended[:k], start=1)
               if movie in relevant)
    ideal = sum(1 / math.log2(position + 1) for position in range(1, min(k, len(relevant)) + 1))
    return gain / ideal


def average_precision_at_k(recommended, relevant, k=K):
    """The mean over the hits of the precision at each hit's position, over min(k, |relevant|)."""
    hits, total = 0, 0.0
    for position, movie in enumerate(recommended[:k], start=1):
        if movie in relevant:
            hits += 1
            total += hits / position
    return total / min(k, len(relevant))


def evaluate(recommendations, relevant, catalogue_size, k=K):
    """{"precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage", ...}: the per-user metrics
    averaged over the users of relevant ({user: held-out positives}; a user with no recommendation
    scores 0), and catalogue coverage, the share of the catalogue_size movies recommended to any of them.
    recommendations: {user: movies, best first}."""
    sums = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    recommended_movies, short = set(), 0
    for user, liked in relevant.items():
        movies = list(recommendations.get(user, ()))[:k]
        recommended_movies.update(movies)
        short += len(movies) < k
        sums["precision"] += precision_at_k(movies, liked, k)
        sums["recall"] += recall_at_k(movies, liked, k)
        sums["ndcg"] += ndcg_at_k(movies, liked, k)
        sums["map"] += average_precision_at_k(movies, liked, k)
    users = len(relevant)
    result = {f"{name}_at_k": round(total / users, 6) if users else None for name, total in sums.items()}
    result.update(k=k, users=users, users_with_fewer_than_k=short,
                  coverage=round(len(recommended_movies) / catalogue_size, 6) if catalogue_size else None)
    return result

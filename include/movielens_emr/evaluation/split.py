"""A per-user time split: each user's latest ratings held out, the rest to fit on."""
from dataclasses import dataclass

import numpy as np

HELD_OUT_FRACTION = 0.2
# A held-out rating of at least this many stars is a movie the user liked: what a recommender should find.
POSITIVE_RATING = 4.0


@dataclass(frozen=True)
class Ratings:
    """One rating per user and movie, as parallel arrays."""

    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray

    def __len__(self):
        return int(self.users.size)

    def subset(self, mask):
        return Ratings(self.users[mask], self.movies[mask], self.ratings[mask], self.timestamps[mask])


def time_split(ratings, held_out_fraction=HELD_OUT_FRACTION):
    """(train, held out): each user's floor(held_out_fraction * n) latest ratings held out, by timestamp,
    ties by movie id (so a user with fewer than 1 / held_out_fraction ratings keeps them all to train on)."""
    order = np.lexsort((ratings.movies, ratings.timestamps, ratings.users))
    users = ratings.users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, users.size])
    position = np.arange(users.size) - np.repeat(starts, counts)
    held_count = np.floor(counts * held_out_fraction + 1e-9).astype(np.int64)
    held = np.zeros(users.size, dtype=bool)
    held[order] = position >= np.repeat(counts - held_count, counts)
    return ratings.subset(~held), ratings.subset(held)


def positives(held_out, threshold=POSITIVE_RATING):
    """{user: set of movies} of the held-out ratings of at least threshold stars (users without any left
    out)."""
    liked = held_out.ratings >= threshold
    found = {}
    for user, movie in zip(held_out.users[liked].tolist(), held_out.movies[liked].tolist(), strict=True):
        found.setdefault(user, set()).add(movie)
    return found


def split_summary(train, held_out, relevant):
    """The split's figures for metrics.json."""
    return {"rule": f"each user's latest {HELD_OUT_FRACTION:.0%} of ratings held out (ties by movie id); "
                    f"held-out ratings >= {POSITIVE_RATING:g} are positives",
            "train_ratings": len(train), "held_out_ratings": len(held_out),
            "users": int(np.unique(np.r_[train.users, held_out.users]).size),
            "evaluated_users": len(relevant),
            "positives": sum(len(movies) for movies in relevant.values())}

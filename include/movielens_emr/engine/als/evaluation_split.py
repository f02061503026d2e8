"""The run's evaluation split, made on this machine before the job runs: its ratings read by the jobs'
rules, split in time (evaluation.split), the training part written for the script's --evaluation-train and
the held-out part kept beside it; after the run, both read back to score the recommenders."""
import io
import logging
import time

import numpy as np

from movielens_emr.engine.als.job import kernel
from movielens_emr.evaluation.split import Ratings, time_split

log = logging.getLogger(__name__)
TRAIN_FILE, HELD_OUT_FILE = "evaluation_train.tsv", "evaluation_held_out.tsv"


def read_ratings(paths, sample_fraction=1.0):
    """The ratings the jobs keep from the files: their parsing rules, their sample of users, one rating per
    user and movie (the latest, the highest on ties)."""
    rules = kernel()
    rows = []
    for path in paths:
        with open(path, "rb") as lines:
            for line in lines:
                try:
                    parsed = rules.parse_rating_line(line)
                except rules.BadRatingLine:
                    continue
                if parsed and rules.in_sample(parsed[0], sample_fraction):
                    rows.append((int(parsed[0]), int(parsed[1]), parsed[2], parsed[3]))
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return latest_per_pair(table[:, 0], table[:, 1], table[:, 2] / 2, table[:, 3])


def latest_per_pair(users, movies, ratings, timestamps):
    """Ratings with one per (user, movie): the latest, the highest on ties."""
    order = np.lexsort((ratings, timestamps, movies, users))
    users, movies = users[order], movies[order]
    last = np.r_[(users[1:] != users[:-1]) | (movies[1:] != movies[:-1]), True]
    return Ratings(users[last], movies[last], ratings[order][last], timestamps[order][last])


def ratings_tsv(ratings):
    """The ratings as u.data-style lines, user TAB movie TAB rating TAB timestamp, by user then time."""
    order = np.lexsort((ratings.movies, ratings.timestamps, ratings.users))
    text = io.StringIO()
    columns = (ratings.users, ratings.movies, ratings.ratings, ratings.timestamps)
    for user, movie, rating, timestamp in zip(*(column[order].tolist() for column in columns), strict=True):
        text.write(f"{user}\t{movie}\t{rating:g}\t{timestamp}\n")
    return text.getvalue().encode()


def parse_tsv(data):
    """Ratings from ratings_tsv's bytes."""
    table = np.loadtxt(io.BytesIO(data), dtype=np.float64, delimiter="\t", ndmin=2).reshape(-1, 4)
    return Ratings(table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2],
                   table[:, 3].astype(np.int64))


def stage_evaluation_split(storage, run_prefix, config, ratings_paths):
    """The split written to the run's job/ folder; {"train_uri", "train_key", "held_out_key", "seconds"}."""
    started = time.monotonic()
    train, held_out = time_split(read_ratings(ratings_paths, config.sample_fraction))
    keys = split_keys(run_prefix)
    storage.put_bytes(ratings_tsv(train), keys["train_key"])
    storage.put_bytes(ratings_tsv(held_out), keys["held_out_key"])
    summary = {**keys, "train_uri": storage.uri(keys["train_key"]),
               "seconds": round(time.monotonic() - started, 3)}
    log.info("evaluation split: %d ratings to fit on, %d held out (%s), in %.1f s", len(train), len(held_out),
             summary["train_uri"], summary["seconds"])
    return summary


def split_keys(run_prefix):
    """Where a run's split is: its job/ folder."""
    folder = f"{run_prefix}/job"
    return {"train_key": f"{folder}/{TRAIN_FILE}", "held_out_key": f"{folder}/{HELD_OUT_FILE}"}


def read_split(storage, split):
    """(train, held out) Ratings of a run's split (stage_evaluation_split's summary)."""
    return tuple(parse_tsv(storage.get_bytes(split[key])) for key in ("train_key", "held_out_key"))

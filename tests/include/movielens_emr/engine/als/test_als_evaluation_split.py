"""The run's evaluation split: its ratings read by the jobs' rules, written, read back."""
from types import SimpleNamespace

import numpy as np

from movielens_emr.data.storage import LocalStorage
from movielens_emr.engine.als.evaluation_split import (
    parse_tsv,
    ratings_tsv,
    read_ratings,
    read_split,
    stage_evaluation_split,
)
from movielens_emr.engine.als.job import kernel
from movielens_emr.engine.similarity.job import job_kernel


def test_ratings_are_read_by_the_jobs_rules_one_per_user_and_movie(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("userId,movieId,rating,timestamp\n1,10,2,100\n1,10,4,300\n001,10,3,300\n"
                    "2,20,3.5,60\n2,x,3,60\n\n")
    ratings = read_ratings([path])
    assert list(zip(ratings.users.tolist(), ratings.movies.tolist(), ratings.ratings.tolist(),
                    ratings.timestamps.tolist(), strict=True)) == [(1, 10, 4.0, 300), (2, 20, 3.5, 60)]


def test_the_sample_is_the_jobs_sample_of_users(tmp_path):
    path = tmp_path / "u.data"
    path.write_text("".join(f"{user}\t1\t4\t10\n" for user in range(1, 300)))
    kept = set(read_ratings([path], 0.25).users.tolist())
    assert kept == {user for user in range(1, 300) if kernel().in_sample(str(user), 0.25)}


def test_its_rules_are_the_module_the_similarity_job_imports():
    assert kernel() is job_kernel()


def test_the_tsv_round_trips():
    ratings = SimpleNamespace(users=np.array([2, 1]), movies=np.array([5, 6]), ratings=np.array([0.5, 4.0]),
                              timestamps=np.array([7, 8]))
    text = ratings_tsv(ratings)
    assert text == b"1\t6\t4\t8\n2\t5\t0.5\t7\n"
    back = parse_tsv(text)
    assert back.users.tolist() == [1, 2] and back.ratings.tolist() == [4.0, 0.5]


def test_the_split_is_staged_in_the_runs_job_folder_and_read_back(tmp_path):
    source = tmp_path / "u.data"
    source.write_text("".join(f"1\t{movie}\t4\t{movie}\n" for movie in range(10)))
    storage = LocalStorage(tmp_path / "root")
    summary = stage_evaluation_split(storage, "runs/r", SimpleNamespace(sample_fraction=1.0), [source])
    assert summary["train_key"] == "runs/r/job/evaluation_train.tsv"
    assert summary["train_uri"] == str(tmp_path / "root" / "runs/r/job/evaluation_train.tsv")
    train, held_out = read_split(storage, summary)
    assert train.movies.tolist() == list(range(8)) and held_out.movies.tolist() == [8, 9]

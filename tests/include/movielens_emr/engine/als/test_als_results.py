"""The als engine's results, from an output folder laid out as its script writes it."""
import json

from movielens_emr.data.storage import LocalStorage
from movielens_emr.engine.als.results import collect_results, parse_evaluation

NEIGHBOURS = ('["1", "Heat (1995)"]\t["2", "Up (2009)", 0.5, 3]\n'
              '["2", "Up (2009)"]\t["1", "Heat (1995)", 0.5, 3]\n')


def output(storage, evaluation=None):
    storage.put_bytes(NEIGHBOURS.encode(), "runs/r/output/stage-1/neighbours/part-00000")
    storage.put_bytes(b"7,1,2,Up (2009),0.75\n", "runs/r/output/stage-1/recommendations/part-00000")
    storage.put_bytes(json.dumps({"ratings_read": 12}).encode(), "runs/r/output/stage-1/figures.json")
    if evaluation is not None:
        storage.put_bytes(evaluation, "runs/r/output/stage-1/evaluation/part-00000")
        storage.put_bytes(b"7\t1\t4\t1\n8\t1\t4\t1\n8\t3\t4\t2\n", "runs/r/job/evaluation_train.tsv")
        storage.put_bytes(b"7\t2\t5\t3\n8\t2\t1\t3\n", "runs/r/job/evaluation_held_out.tsv")


def test_the_similarity_engines_files_the_recommendations_and_the_figures(tmp_path):
    storage = LocalStorage(tmp_path)
    output(storage)
    summary = collect_results(storage, "runs/r/output/stage-1", "runs/r/results")
    assert (summary["output_pairs"], summary["movies"], summary["recommendation_rows"]) == (2, 2, 1)
    assert storage.get_bytes("runs/r/results/similarities.csv").decode().splitlines()[1] == \
        "1,Heat (1995),2,Up (2009),0.5,3"
    assert json.loads(storage.get_bytes("runs/r/results/top_neighbours.json"))["2"]["title"] == "Up (2009)"
    assert storage.get_bytes("runs/r/results/recommendations.csv") == (
        b"user_id,rank,movie_id,movie_title,score\n7,1,2,Up (2009),0.75\n")
    assert summary["job_figures"] == {"ratings_read": 12} and "evaluation" not in summary


def test_the_scripts_evaluation_lists_are_scored_beside_popularitys(tmp_path):
    storage = LocalStorage(tmp_path)
    output(storage, evaluation=b"7\t3,2\n8\t\n")
    evaluation = collect_results(storage, "runs/r/output/stage-1", "runs/r/results")["evaluation"]
    # user 7 liked movie 2 (held out, 5 stars); user 8's held-out rating is 1 star: not evaluated
    assert evaluation["split"]["evaluated_users"] == 1
    assert evaluation["recommenders"]["als"]["recall_at_k"] == 1.0
    # the training ratings' most rated movie that user 7 has not rated is 3, not 2
    assert evaluation["recommenders"]["popularity"]["recall_at_k"] == 0.0
    assert json.loads(storage.get_bytes("runs/r/results/evaluation.json")) == evaluation


def test_evaluation_lines_are_parsed_per_user():
    assert parse_evaluation(b"3\t5,6\n4\t\n") == {3: [5, 6], 4: []}

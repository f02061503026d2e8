"""Choosing the leaked clusters to terminate."""
import datetime

from movielens_emr.emr.reaper import PipelineCluster, clusters_to_reap, pipeline_clusters

NOW = datetime.datetime(2026, 1, 1, 12, tzinfo=datetime.timezone.utc)


def described(cluster_id, hours_old, tags):
    return {"Id": cluster_id, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
            "Status": {"Timeline": {"CreationDateTime": NOW - datetime.timedelta(hours=hours_old)}}}


PIPELINE = {"movielens:pipeline": "movielens-similarity", "movielens:dag_id": "movielens_similarity"}


def test_only_clusters_tagged_by_the_pipeline_are_considered():
    clusters = pipeline_clusters([
        described("j-ours", 1, {**PIPELINE, "movielens:run_id": "r1"}),
        described("j-theirs", 1, {"team": "other"}),
        described("j-lookalike", 1, {"movielens:pipeline": "something-else"}),
    ])
    assert [cluster.cluster_id for cluster in clusters] == ["j-ours"]
    assert clusters[0].run_id == "r1" and clusters[0].dag_id == "movielens_similarity"


def cluster(cluster_id, run_id, hours_old):
    return PipelineCluster(
        cluster_id, "movielens_similarity", run_id, NOW - datetime.timedelta(hours=hours_old))


def test_a_cluster_whose_run_ended_is_reaped_and_a_live_ones_is_kept():
    active_runs = {"running-run"}
    doomed = clusters_to_reap([cluster("j-1", "running-run", 1), cluster("j-2", "ended-run", 1)],
                              lambda dag_id, run_id: run_id in active_runs, NOW, datetime.timedelta(hours=12))
    assert [(c.cluster_id, reason) for c, reason in doomed] == [
        ("j-2", "its run movielens_similarity/ended-run is no longer running")]


def test_a_cluster_past_the_maximum_age_is_reaped_even_if_its_run_is_active():
    doomed = clusters_to_reap([cluster("j-old", "running-run", 13)], lambda *_: True, NOW,
                              datetime.timedelta(hours=12))
    assert [c.cluster_id for c, _ in doomed] == ["j-old"]
    assert doomed[0][1].startswith("older than 12:00:00")

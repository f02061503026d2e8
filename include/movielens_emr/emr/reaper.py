"""Which of this pipeline's EMR clusters to terminate: those whose run ended, and any past a maximum age."""
import datetime
from dataclasses import dataclass

from movielens_emr.emr.cluster import PIPELINE_TAG

ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")


@dataclass(frozen=True)
class PipelineCluster:
    cluster_id: str
    dag_id: str
    run_id: str
    created: datetime.datetime


def pipeline_clusters(described_clusters):
    """The clusters tagged as this pipeline's, from describe_cluster results; others are never touched."""
    clusters = []
    for cluster in described_clusters:
        tags = {tag["Key"]: tag["Value"] for tag in cluster.get("Tags", [])}
        if tags.get(PIPELINE_TAG[0]) != PIPELINE_TAG[1]:
            continue
        clusters.append(PipelineCluster(cluster["Id"], tags.get("movielens:dag_id", ""),
                                        tags.get("movielens:run_id", ""),
                                        cluster["Status"]["Timeline"]["CreationDateTime"]))
    return clusters


def clusters_to_reap(clusters, run_is_active, now, max_age):
    """[(cluster, reason)] for clusters whose run is not active, or older than max_age whatever the run."""
    doomed = []
    for cluster in clusters:
        age = now - cluster.created
        if age > max_age:
            doomed.append((cluster, f"older than {max_age} ({age} old)"))
        elif not run_is_active(cluster.dag_id, cluster.run_id):
            doomed.append((cluster, f"its run {cluster.dag_id}/{cluster.run_id} is no longer running"))
    return doomed

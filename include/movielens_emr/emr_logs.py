"""EMR's log layout under a run's log URI, and what the pipeline reads from it: step counters and logs."""
import gzip
import logging
import time

from movielens_emr.metrics import parse_hadoop_counters

log = logging.getLogger(__name__)


def step_log_folder(run_prefix, cluster_id, step_id):
    """Where EMR delivers a step's logs (syslog.gz, stderr.gz) under the run's log URI, runs/<run>/logs/."""
    return f"{run_prefix}/logs/{cluster_id}/steps/{step_id}"


def node_log_folder(run_prefix, cluster_id):
    """Where EMR delivers the nodes' logs, the bootstrap actions' included."""
    return f"{run_prefix}/logs/{cluster_id}/node/"


def step_counters(storage, run_prefix, cluster_id, step_id):
    """A step's Hadoop counters from the syslog EMR delivers to the log URI; empty if not delivered yet."""
    key = f"{step_log_folder(run_prefix, cluster_id, step_id)}/syslog.gz"
    if not storage.exists(key):
        log.warning("no step log at %s yet: the job's counts are left out of the metrics", storage.uri(key))
        return {}
    return parse_hadoop_counters(gzip.decompress(storage.get_bytes(key)).decode("utf-8", errors="replace"))


def wait_for_object(storage, key, wait_seconds, poll_seconds):
    """The object's bytes once it exists, waiting at most wait_seconds (EMR delivers logs minutes late)."""
    deadline = time.monotonic() + wait_seconds
    while not storage.exists(key):
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_seconds)
    return storage.get_bytes(key)

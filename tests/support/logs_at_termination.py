"""The EMR double with EMR's log delivery at its latest: a step's logs reach S3 as its cluster terminates.

EMR uploads a cluster's logs every few minutes and pushes what is left as it terminates the cluster:
a step's logs can arrive minutes after the step ended, or only with the termination. The double
(tests/support/emr_double.py) writes them as the step ends; this subclass holds them back until
TerminateJobFlows for the step's cluster (the pipeline's clusters end that way, or by a failed
bootstrap before any step ran), and records when that call first came for each cluster.
"""
import threading
import time

from moto.emr.models import ElasticMapReduceBackend

from tests.support.emr_double import EmrStreamingDouble, StepArgsError, StepFailure


class HeldLogs:
    """Stands in for the double's S3 while it writes a step's logs: keeps them for later delivery."""

    def __init__(self, s3, held):
        self.s3, self.held = s3, held

    def put(self, uri, data):
        self.held.append((self.s3, uri, data))


class LogsAtTermination(EmrStreamingDouble):
    """Install with `with LogsAtTermination().installed() as double:`; double.terminate_calls is
    {cluster id: time.time() of its first TerminateJobFlows call}."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.terminate_calls = {}
        self._held_logs = {}  # {cluster id: [(s3, uri, data)]}
        self._held_logs_lock = threading.Lock()

    def holds_logs_of(self, cluster):
        """Whether the cluster's step logs wait for its termination (every cluster's, here)."""
        return True

    def _write_logs(self, s3, cluster, *args):
        if self.holds_logs_of(cluster):
            with self._held_logs_lock:
                s3 = HeldLogs(s3, self._held_logs.setdefault(cluster.id, []))
        EmrStreamingDouble._write_logs(s3, cluster, *args)

    def deliver_logs(self, cluster_id):
        with self._held_logs_lock:
            held = self._held_logs.pop(cluster_id, [])
        for s3, uri, data in held:
            try:
                s3.put(uri, data)
            except (StepFailure, StepArgsError):  # a log bucket that is missing: EMR logs nothing either
                return

    def _backend_patches(self):
        double = self
        original_terminate = ElasticMapReduceBackend.terminate_job_flows

        def terminate_job_flows(backend, job_flow_ids):
            for cluster_id in job_flow_ids:
                double.terminate_calls.setdefault(cluster_id, time.time())
            terminated = original_terminate(backend, job_flow_ids)
            for cluster_id in job_flow_ids:
                double.deliver_logs(cluster_id)
            return terminated

        return (*super()._backend_patches(),
                (ElasticMapReduceBackend, "terminate_job_flows", terminate_job_flows))

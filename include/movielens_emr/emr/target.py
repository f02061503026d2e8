"""The EMR target's share of a run: what it checks before anything is staged, what it ships to the cluster,
the steps of the engine's job, and where the run's figures are read once the cluster has ended."""
import gzip
import logging
import posixpath

from movielens_emr.config.params import InvalidParam
from movielens_emr.config.targets import EMR
from movielens_emr.emr.client import LINUX_PRODUCTS, EmrClient
from movielens_emr.emr.cluster import node_python_for
from movielens_emr.emr.job_files import stage_job_files
from movielens_emr.emr.steps import build_spark_step, build_stage_steps
from movielens_emr.emr.wheelhouse import node_wheels, requirements_file
from movielens_emr.engine.protocol import SparkJob, needs_spark
from movielens_emr.reporting.metrics import emr_timings
from movielens_emr.reporting.spark_events import spark_task_times, unknown_spark_task_times
from movielens_emr.sizing.prices import time_weighted_price
from movielens_emr.sizing.task_times import unknown_task_times

log = logging.getLogger(__name__)
# Where a Spark step writes its event log, in the run's folder (EMR keeps Spark's own on the cluster's HDFS,
# gone with the cluster).
SPARK_EVENTS = "spark-events"
# How EMR says an instance ended with its cluster; any other end of a Spot task instance is an interruption.
CLUSTER_TERMINATED = "CLUSTER_TERMINATED"
NO_TASK_TIMES = ("a Spark step: its tasks are under spark_task_times (Spark's event log); the one-run "
                 "prediction models MapReduce task waves only")


class EmrTarget:
    """A new EMR cluster per run; its tasks are create_cluster .. wait_for_termination in the DAG."""

    target = EMR
    # The DAG's first task of this target's branch, and the tasks whose results give the run's figures.
    first_task = "plan_emr_run"
    result_tasks = ("create_cluster", "submit_stages")

    def check_config(self, config, settings):
        """The nodes' Python must exist on the run's release and instance type."""
        try:
            node_python_for(config, settings.cluster)
        except ValueError as error:
            raise InvalidParam(str(error)) from None

    def stage_run_files(self, storage, run_prefix, config, settings, engine):
        """The engine's job files, the bootstrap and its pins, and the nodes' wheels: {"job_files": URIs}."""
        node, cluster = node_python_for(config, settings.cluster), settings.cluster
        wheels = node_wheels(node, settings.cache_dir, cluster.wheelhouse_dir, requirements_file(cluster))
        staged = {"job_files": stage_job_files(storage, run_prefix, engine.shipped_files(), node, wheels,
                                               requirements_file(cluster))}
        if needs_spark(engine):
            # A folder marker: Spark checks that its event log folder is one before it writes there.
            storage.put_bytes(b"", f"{run_prefix}/{SPARK_EVENTS}/")
            staged["spark_event_log"] = storage.uri(f"{run_prefix}/{SPARK_EVENTS}")
        return staged

    def steps(self, job, staged, output_uri, run_id, config, settings):
        """The EMR steps of the engine's job, under the nodes' Python: steps.build_stage_steps of an
        MrjobJob, steps.build_spark_step of a SparkJob (its event log in the run's spark-events/)."""
        node = node_python_for(config, settings.cluster)
        if isinstance(job, SparkJob):
            event_log = (staged.get("spark_event_log")
                         or f"{posixpath.dirname(output_uri.rstrip('/'))}/{SPARK_EVENTS}")
            return [build_spark_step(job, staged["job_files"]["shipped"], staged["ratings_uris"], output_uri,
                                     run_id, node, event_log)]
        return build_stage_steps(job, staged["job_files"]["shipped"], staged["ratings_uris"], output_uri,
                                 run_id, node)

    def run_figures(self, results, settings, storage, run_prefix, stage_count):
        """Timings from EMR's timestamps, counters from the steps' logs, task times from the job history;
        results: {task id: its XCom} of result_tasks."""
        cluster_id, step_ids = results["create_cluster"], results["submit_stages"]
        client = EmrClient(settings.aws_conn_id)
        steps = client.describe_steps(cluster_id, step_ids)
        if any(is_spark_step(step) for step in steps):
            cluster = client.describe_cluster(cluster_id)
            return {**spark_run_figures(cluster, steps, storage, run_prefix),
                    "spot_market": spot_market_figures(client, cluster)}
        figures = client.run_figures(
            storage, run_prefix, cluster_id, step_ids, settings.log_wait_seconds, settings.poll_seconds)
        return {"cluster_id": cluster_id, "timings": figures.timings, "counters": figures.counters,
                "counter_sources": figures.counter_sources, "task_times": figures.task_times,
                "spot_market": spot_market_figures(client, client.describe_cluster(cluster_id))}


def spot_market_figures(client, cluster):
    """What the cluster's Spot task nodes were, how long they ran, how many EC2 took back, and the EC2 Spot
    price over the run (reporting.metrics.spot_metrics prices them). A figure EMR or EC2 would not give
    is None with the reason, never guessed; nothing here fails the run."""
    try:
        instances = [instance for instance in client.list_instances(cluster["Id"], ["TASK"])
                     if instance.get("Market") == "SPOT"]
    except Exception as error:  # a refused ListInstances costs the run these figures, not its metrics
        log.warning("the cluster's task instances could not be listed (%s: %s)", type(error).__name__, error)
        return {"spot_instances": None, "why": f"ListInstances failed: {type(error).__name__}: {error}"}
    timeline = cluster["Status"]["Timeline"]
    start, end = timeline.get("CreationDateTime"), timeline.get("EndDateTime")
    zone = (cluster.get("Ec2InstanceAttributes") or {}).get("Ec2AvailabilityZone")
    lost = [lost_instance(instance) for instance in instances if is_interrupted(instance)]
    figures = {"spot_instances": len(instances), "availability_zone": zone,
               "spot_node_seconds": spot_node_seconds(instances, start, end), "lost_instances": lost}
    if instances:
        figures.update(spot_history_price(client, instances[0]["InstanceType"], zone, start, end))
    return figures


def is_interrupted(instance):
    """Whether a task instance (ListInstances') ended before its cluster did: EC2 took a Spot node back."""
    status = instance.get("Status") or {}
    return (status.get("State") == "TERMINATED"
            and (status.get("StateChangeReason") or {}).get("Code") != CLUSTER_TERMINATED)


def lost_instance(instance):
    """The lost instance's id, when and why EMR says it ended."""
    status = instance.get("Status") or {}
    ended = (status.get("Timeline") or {}).get("EndDateTime")
    return {"instance_id": instance.get("Ec2InstanceId") or instance.get("Id"),
            "ended": ended.isoformat() if ended else None,
            "reason": (status.get("StateChangeReason") or {}).get("Message")}


def spot_node_seconds(instances, start, end):
    """Seconds the Spot instances ran within the cluster's span: each from its creation (the cluster's, if
    later) to its end (the cluster's, if it ran to it); None when the cluster's span is unknown."""
    if not (start and end):
        return None
    total = 0.0
    for instance in instances:
        timeline = (instance.get("Status") or {}).get("Timeline") or {}
        began = max(timeline.get("CreationDateTime") or start, start)
        ended = min(timeline.get("EndDateTime") or end, end)
        total += max((ended - began).total_seconds(), 0.0)
    return round(total, 3)


def spot_history_price(client, instance_type, zone, start, end):
    """{"history_ec2_usd_per_hour": the EC2 Spot price time-weighted over the run, or None, "why": where it
    came from or why there is none}."""
    if not (zone and start and end):
        return {"history_ec2_usd_per_hour": None,
                "why": "the cluster's availability zone or span is unknown to EMR"}
    try:
        records = client.spot_price_history(instance_type, zone, start, end)
    except Exception as error:  # e.g. no ec2:DescribeSpotPriceHistory: the price is assumed, and says so
        log.warning("EC2's Spot price history could not be read (%s: %s)", type(error).__name__, error)
        return {"history_ec2_usd_per_hour": None,
                "why": f"DescribeSpotPriceHistory failed: {type(error).__name__}: {error}"}
    price = time_weighted_price(spot_price_points(records, zone), start, end)
    if price is None:
        return {"history_ec2_usd_per_hour": None,
                "why": f"EC2 has no Spot price of {instance_type} in {zone} in force at the cluster's start"}
    return {"history_ec2_usd_per_hour": round(price, 6),
            "why": f"EC2's Spot price history of {instance_type} in {zone}, time-weighted over the cluster's "
                   f"{(end - start).total_seconds():,.0f} s"}


def spot_price_points(records, zone):
    """[(time, USD)] of describe_spot_price_history's records in one zone and of one Linux product (the
    first of client.LINUX_PRODUCTS it has: EC2 prices them alike, and one keeps the changes in order)."""
    in_zone = [record for record in records if record.get("AvailabilityZone") == zone]
    products = [record.get("ProductDescription") for record in in_zone]
    product = next((name for name in LINUX_PRODUCTS if name in products), None)
    return [(record["Timestamp"], float(record["SpotPrice"])) for record in in_zone
            if record.get("ProductDescription") == product]


def is_spark_step(step):
    """Whether a described step runs spark-submit (a SparkJob's) rather than Hadoop streaming."""
    args = (step.get("Config") or {}).get("Args") or []
    return bool(args) and args[0] == "spark-submit"


def spark_run_figures(cluster, steps, storage, run_prefix):
    """A Spark step's figures: EMR's timings; no Hadoop counters (its engine's figures are the script's own);
    its tasks from the event log it wrote to the run's spark-events/ (there once the step has ended)."""
    timings = emr_timings(cluster["Status"]["Timeline"], [step["Status"]["Timeline"] for step in steps])
    tasks = event_log_task_times(storage, f"{run_prefix}/{SPARK_EVENTS}")
    return {"cluster_id": cluster["Id"], "timings": timings, "counters": {}, "counter_sources": None,
            "task_times": unknown_task_times(len(steps), NO_TASK_TIMES),
            "target_figures": {"spark_task_times": tasks}}


def event_log_task_times(storage, folder):
    """spark_task_times of the one application whose event log is in folder (Spark compresses none by
    default; a .gz one is read too)."""
    keys = [key for key in storage.list_keys(folder)
            if not key.endswith("/") and not posixpath.basename(key).startswith(".")]
    if len(keys) != 1:
        return unknown_spark_task_times(f"{len(keys)} event logs in {storage.uri(folder)}, not one")
    data = storage.get_bytes(keys[0])
    text = (gzip.decompress(data) if keys[0].endswith(".gz") else data).decode("utf-8", "replace")
    return spark_task_times(text.splitlines(), storage.uri(keys[0]))

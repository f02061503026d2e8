"""Where a run's job runs, and what that decides: the one place that tells the two targets apart.

Every other module asks a Target for the fact it needs (is it priced, which machines run its tasks,
does its storage root have to be on S3) instead of comparing the target's name.
"""
from dataclasses import dataclass

from movielens_emr.config.capacity import cluster_task_slots, task_nodes


@dataclass(frozen=True)
class Target:
    """One target's facts; `name` is the trigger form's value."""

    name: str
    description: str
    # A cluster of nodes of one instance type (a master, then core nodes that run the tasks), whose
    # instance type decides its speed; else this machine, node_count parallel tasks.
    cluster: bool
    # A price per node-hour applies: cost figures are estimated.
    priced: bool
    # Its storage root must be on S3 (the cluster reads its input from there).
    needs_s3_storage: bool
    # Its reduce tasks receive the keys the job's partitioner routes to them (Hadoop's streaming jobs do);
    # mrjob's local runner cuts the sorted map output into byte ranges instead.
    routes_keys_to_reducers: bool

    def task_machines(self, node_count):
        """The machines that run tasks: a cluster's core nodes (its master when alone), or this machine's
        node_count parallel tasks, each a machine to the time model."""
        return task_nodes(node_count) if self.cluster else node_count

    def task_slots(self, node_count, instance_type):
        """Concurrent map or reduce tasks of a run of node_count nodes of instance_type."""
        return cluster_task_slots(node_count, instance_type) if self.cluster else node_count

    def instance_type_of(self, instance_type):
        """The instance type that tells its runs apart: none here, where every run is on this machine."""
        return instance_type if self.cluster else None

    def task_slots_by_node_count(self, instance_type, largest):
        """{node count: concurrent tasks} of runs of 1 to `largest` nodes."""
        return {count: self.task_slots(count, instance_type) for count in range(1, largest + 1)}


EMR = Target("emr", "a new EMR cluster (needs the AWS connection and an s3:// storage root)",
             cluster=True, priced=True, needs_s3_storage=True, routes_keys_to_reducers=True)
LOCAL = Target("local", "this machine, no AWS account",
               cluster=False, priced=False, needs_s3_storage=False, routes_keys_to_reducers=False)
TARGETS = {target.name: target for target in (EMR, LOCAL)}
TARGET_NAMES = tuple(TARGETS)


def target_named(name):
    """The Target called name; ValueError naming the known ones for any other."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}: one of {', '.join(TARGET_NAMES)}") from None


def deployment_target(storage_root):
    """The target a deployment runs by default: EMR when its storage root is on S3, else this machine."""
    return EMR.name if storage_root.startswith("s3://") else LOCAL.name

"""Task slots of a cluster: how many map or reduce tasks its nodes run at once (targets.Target.task_slots
holds the rule for both targets)."""

# vCPUs of common instance types: each is one concurrent map or reduce task slot.
INSTANCE_VCPUS = {
    "m5.large": 2, "m5.xlarge": 4, "m5.2xlarge": 8, "m5.4xlarge": 16,
    "m6i.xlarge": 4, "m6i.2xlarge": 8, "m6g.xlarge": 4, "m7g.xlarge": 4,
    "c5.xlarge": 4, "c5.2xlarge": 8, "r5.xlarge": 4, "r5.2xlarge": 8,
}
DEFAULT_VCPUS = 4


def task_slots(config):
    """Concurrent tasks the cluster runs: vCPUs of the core nodes (of the master when it is alone)."""
    return cluster_task_slots(config.node_count, config.instance_type)


def task_nodes(node_count):
    """The nodes of a cluster that run tasks: its node_count - 1 core nodes, or the master when alone."""
    return max(node_count - 1, 1)


def cluster_task_slots(node_count, instance_type):
    """Concurrent tasks of a cluster of node_count nodes (1 master + node_count - 1 core) of one type."""
    return task_nodes(node_count) * INSTANCE_VCPUS.get(instance_type, DEFAULT_VCPUS)

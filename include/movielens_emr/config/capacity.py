"""Task slots of a cluster: how many map or reduce tasks its nodes run at once (targets.Target.task_slots
holds the rule for both targets)."""

from movielens_emr.config.instances import catalogue

# vCPUs of the catalogue's instance types: each is one concurrent map or reduce task slot.
INSTANCE_VCPUS = {name: instance.vcpus for name, instance in catalogue().items()}
# A type outside the catalogue (a run recorded before it) is taken as 4 vCPUs, the xlarge size.
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

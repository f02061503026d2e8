"""The EMR job flow of a run, built from its RunConfig: sizes, software, bootstrap, logs, tags, backstops."""
from dataclasses import dataclass
from pathlib import Path

from movielens_emr.emr.wheelhouse import DEFAULT_NODE_PYTHON, REQUIREMENTS_FILE, node_python

# vCPUs of common instance types: each is one concurrent map or reduce task slot.
INSTANCE_VCPUS = {
    "m5.large": 2, "m5.xlarge": 4, "m5.2xlarge": 8, "m5.4xlarge": 16,
    "m6i.xlarge": 4, "m6i.2xlarge": 8, "m6g.xlarge": 4, "m7g.xlarge": 4,
    "c5.xlarge": 4, "c5.2xlarge": 8, "r5.xlarge": 4, "r5.2xlarge": 8,
}
DEFAULT_VCPUS = 4
# A cluster idle this long terminates itself even if every other safeguard failed.
IDLE_TIMEOUT_SECONDS = 3600
PIPELINE_TAG = ("movielens:pipeline", "movielens-similarity")
# EMR's current service role, EMR_DefaultRole_V2, has the managed policy AmazonEMRServicePolicy_v2, which acts
# only on resources with this tag: the cluster passes it on to the instances and resources EMR creates.
MANAGED_POLICY_TAG = ("for-use-with-amazon-emr-managed-policies", "true")


@dataclass(frozen=True)
class ClusterSettings:
    """Deployment settings that are not per-run choices (from environment variables)."""

    job_flow_role: str = "EMR_EC2_DefaultRole"
    service_role: str = "EMR_DefaultRole_V2"
    subnet_id: str = ""
    security_configuration: str = ""
    # The nodes' Python the job runs under, and where its pinned wheels come from ("": the worker's cache,
    # downloaded from PyPI once; a requirements file "": the bundled one).
    node_python: str = DEFAULT_NODE_PYTHON
    wheelhouse_dir: str = ""
    requirements_file: str = ""

    @property
    def requirements(self):
        """The hash-pinned requirements file of the nodes' packages."""
        return Path(self.requirements_file).expanduser() if self.requirements_file else REQUIREMENTS_FILE


def task_slots(config):
    """Concurrent tasks the cluster runs: vCPUs of the core nodes (of the master when it is alone)."""
    return cluster_task_slots(config.node_count, config.instance_type)


def task_nodes(node_count):
    """The nodes of a cluster that run tasks: its node_count - 1 core nodes, or the master when alone."""
    return max(node_count - 1, 1)


def cluster_task_slots(node_count, instance_type):
    """Concurrent tasks of a cluster of node_count nodes (1 master + node_count - 1 core) of one type."""
    return task_nodes(node_count) * INSTANCE_VCPUS.get(instance_type, DEFAULT_VCPUS)


def run_task_slots(target, node_count, instance_type):
    """Concurrent tasks of a run: the cluster's on EMR; locally node_count (mrjob's --num-cores)."""
    return cluster_task_slots(node_count, instance_type) if target == "emr" else node_count


def task_slots_by_node_count(target, instance_type, largest):
    """{node count: concurrent tasks} of runs of 1 to `largest` nodes."""
    return {count: run_task_slots(target, count, instance_type) for count in range(1, largest + 1)}


def build_job_flow(config, dag_id, run_id, log_uri, job_files, settings=ClusterSettings()):
    """The run_job_flow request of one run: 1 master + node_count - 1 core nodes of one type; job_files are
    stage_job_files' URIs (the bootstrap installs the wheelhouse's packages for the nodes' Python)."""
    node = node_python_for(config, settings)
    job_flow = {
        "Name": f"movielens-similarity {run_id}",
        "ReleaseLabel": config.release_label,
        "Applications": [{"Name": "Hadoop"}],
        "LogUri": log_uri,
        "Instances": {
            "InstanceGroups": _instance_groups(config),
            # Steps are added after creation, so the cluster must not end when it has none.
            "KeepJobFlowAliveWhenNoSteps": True,
            "TerminationProtected": False,
        },
        "BootstrapActions": [{
            "Name": "install the job's Python requirements",
            "ScriptBootstrapAction": {"Path": job_files["bootstrap"], "Args": [
                job_files["wheelhouse"], job_files["requirements"], node.binary, node.packages_dir]},
        }],
        "AutoTerminationPolicy": {"IdleTimeout": IDLE_TIMEOUT_SECONDS},
        "JobFlowRole": settings.job_flow_role,
        "ServiceRole": settings.service_role,
        "VisibleToAllUsers": True,
        "Tags": [
            {"Key": PIPELINE_TAG[0], "Value": PIPELINE_TAG[1]},
            {"Key": "movielens:dag_id", "Value": dag_id},
            {"Key": "movielens:run_id", "Value": run_id},
            {"Key": MANAGED_POLICY_TAG[0], "Value": MANAGED_POLICY_TAG[1]},
        ],
    }
    if settings.subnet_id:
        job_flow["Instances"]["Ec2SubnetId"] = settings.subnet_id
    security_configuration = chosen_security_configuration(config, settings)
    if security_configuration:
        job_flow["SecurityConfiguration"] = security_configuration
    return job_flow


def node_python_for(config, settings):
    """The NodePython of the run's cluster; ValueError when its release has no such Python."""
    return node_python(settings.node_python, config.release_label, config.instance_type)


def chosen_security_configuration(config, settings):
    """The run's security configuration name: the form's when given, else the deployment's; "" for none."""
    return config.security_configuration or settings.security_configuration


def _instance_groups(config):
    groups = [{"Name": "master", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
               "InstanceType": config.instance_type, "InstanceCount": 1}]
    if config.core_node_count:
        groups.append({"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
                       "InstanceType": config.instance_type, "InstanceCount": int(config.core_node_count)})
    return groups

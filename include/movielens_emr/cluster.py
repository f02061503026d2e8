"""The EMR job flow of a run, built from its RunConfig: sizes, software, bootstrap, logs, tags, backstops."""
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ClusterSettings:
    """Deployment settings that are not per-run choices (from environment variables)."""

    job_flow_role: str = "EMR_EC2_DefaultRole"
    service_role: str = "EMR_DefaultRole"
    subnet_id: str = ""
    security_configuration: str = ""


def task_slots(config):
    """Concurrent tasks the cluster runs: vCPUs of the core nodes (of the master when it is alone)."""
    return max(config.core_node_count, 1) * INSTANCE_VCPUS.get(config.instance_type, DEFAULT_VCPUS)


def build_job_flow(config, dag_id, run_id, log_uri, bootstrap_uri, settings=ClusterSettings()):
    """The run_job_flow request of one run: 1 master + node_count - 1 core nodes of one type."""
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
            "ScriptBootstrapAction": {"Path": bootstrap_uri, "Args": []},
        }],
        "AutoTerminationPolicy": {"IdleTimeout": IDLE_TIMEOUT_SECONDS},
        "JobFlowRole": settings.job_flow_role,
        "ServiceRole": settings.service_role,
        "VisibleToAllUsers": True,
        "Tags": [
            {"Key": PIPELINE_TAG[0], "Value": PIPELINE_TAG[1]},
            {"Key": "movielens:dag_id", "Value": dag_id},
            {"Key": "movielens:run_id", "Value": run_id},
        ],
    }
    if settings.subnet_id:
        job_flow["Instances"]["Ec2SubnetId"] = settings.subnet_id
    security_configuration = chosen_security_configuration(config, settings)
    if security_configuration:
        job_flow["SecurityConfiguration"] = security_configuration
    return job_flow


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

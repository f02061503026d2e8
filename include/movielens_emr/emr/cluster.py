"""The EMR job flow of a run, built from its RunConfig: sizes, software, bootstrap, logs, tags, backstops."""
from movielens_emr.config.instances import instance_type
from movielens_emr.config.settings import ClusterSettings
from movielens_emr.emr.wheelhouse import node_python
from movielens_emr.engine.registry import engine_named
from movielens_emr.sizing.prices import spot_bid_price

# A cluster idle this long terminates itself even if every other safeguard failed.
IDLE_TIMEOUT_SECONDS = 3600
PIPELINE_TAG = ("movielens:pipeline", "movielens-similarity")
# EMR's current service role, EMR_DefaultRole_V2, has the managed policy AmazonEMRServicePolicy_v2, which acts
# only on resources with this tag: the cluster passes it on to the instances and resources EMR creates.
MANAGED_POLICY_TAG = ("for-use-with-amazon-emr-managed-policies", "true")
DEFAULT_CLUSTER_SETTINGS = ClusterSettings()


def build_job_flow(config, dag_id, run_id, log_uri, job_files, settings=DEFAULT_CLUSTER_SETTINGS):
    """The run_job_flow request of one run: node_count nodes of one type, 1 master, spot_task_nodes task nodes
    on Spot and the rest core nodes, on-demand; job_files are stage_job_files' URIs (the bootstrap installs
    the wheelhouse's packages for the nodes' Python)."""
    node = node_python_for(config, settings)
    job_flow = {
        "Name": f"movielens-similarity {run_id}",
        "ReleaseLabel": config.release_label,
        "Applications": [{"Name": name} for name in cluster_applications(config)],
        "LogUri": log_uri,
        "Instances": {
            "InstanceGroups": instance_groups(config, settings),
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


def cluster_applications(config):
    """The EMR applications the run's engine needs (its `applications`; Hadoop alone by default), Hadoop
    always among them: its YARN runs Spark too."""
    wanted = getattr(engine_named(config.engine), "applications", ())
    return ("Hadoop", *(name for name in wanted if name != "Hadoop"))


def node_python_for(config, settings):
    """The NodePython of the run's cluster; ValueError when its release has no such Python."""
    return node_python(settings.node_python, config.release_label, config.instance_type)


def chosen_security_configuration(config, settings):
    """The run's security configuration name: the form's when given, else the deployment's; "" for none."""
    return config.security_configuration or settings.security_configuration


def instance_groups(config, settings=DEFAULT_CLUSTER_SETTINGS):
    """The master and core groups on-demand; the Spot task nodes, if any, a TASK group on Spot whose BidPrice
    caps the EC2 price (prices.spot_bid_price: the configured maximum, else the on-demand EC2 price).

    Task nodes run tasks but hold no HDFS blocks: losing one costs the tasks it was running, which Hadoop
    reruns elsewhere; the stages' outputs stay on the core nodes and S3.
    """
    groups = [{"Name": "master", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
               "InstanceType": config.instance_type, "InstanceCount": 1}]
    if config.core_node_count:
        groups.append({"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
                       "InstanceType": config.instance_type, "InstanceCount": int(config.core_node_count)})
    if config.spot_task_nodes:
        bid = spot_bid_price(instance_type(config.instance_type), settings.spot_max_price_usd)
        groups.append({"Name": "task (spot)", "InstanceRole": "TASK", "Market": "SPOT", "BidPrice": bid,
                       "InstanceType": config.instance_type, "InstanceCount": int(config.spot_task_nodes)})
    return groups

"""Deployment settings read from the environment: where data lives, which AWS connection and roles to use."""
import math
import os
from dataclasses import dataclass, field

from movielens_emr.config.targets import deployment_target

DEFAULT_LOCAL_ROOT = "~/.movielens-emr"
# The EMR nodes' Python the job runs under by default: every EMR 7 release has it.
DEFAULT_NODE_PYTHON = "3.9"

# Every AWS client of the pipeline retries throttled and failed calls inside the call, with
# backoff and a client-side rate limit, rather than failing a task that would re-run it all.
AWS_CLIENT_CONFIG = {"retries": {"mode": "adaptive", "max_attempts": 10}}


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
    # The most a Spot task node's EC2 part may cost, USD per hour (the instance group's BidPrice); None: the
    # instance type's on-demand EC2 price from the instance catalogue.
    spot_max_price_usd: float | None = None


@dataclass(frozen=True)
class Settings:
    """Everything a run needs that is not a per-run choice; see docs/pipeline.md, Settings."""

    storage_root: str = DEFAULT_LOCAL_ROOT
    source_dir: str = ""
    cache_dir: str = "~/.cache/movielens-emr"
    aws_conn_id: str = "aws_default"
    poll_seconds: int = 30
    task_retries: int = 2
    cluster_max_age_hours: float = 12.0
    log_wait_seconds: int = 300
    # 0: the stage wait's ceiling is computed from the data size (tasks.wait_timeout_seconds)
    stage_timeout_seconds: int = 0
    cluster: ClusterSettings = field(default_factory=ClusterSettings)

    @property
    def default_target(self):
        """emr if the storage root is on S3 (an AWS deployment), else local: a fresh install works offline."""
        return deployment_target(self.storage_root)


def settings_from_env(environ=None):
    """Settings from MOVIELENS_* environment variables, each falling back to its documented default."""
    env = os.environ if environ is None else environ
    defaults, cluster_defaults = Settings(), ClusterSettings()
    return Settings(
        storage_root=env.get("MOVIELENS_STORAGE_ROOT") or defaults.storage_root,
        source_dir=env.get("MOVIELENS_SOURCE_DIR", ""),
        cache_dir=env.get("MOVIELENS_CACHE_DIR") or defaults.cache_dir,
        aws_conn_id=env.get("MOVIELENS_AWS_CONN_ID") or defaults.aws_conn_id,
        poll_seconds=int(env.get("MOVIELENS_POLL_SECONDS") or defaults.poll_seconds),
        task_retries=int(env.get("MOVIELENS_TASK_RETRIES") or defaults.task_retries),
        cluster_max_age_hours=float(
            env.get("MOVIELENS_CLUSTER_MAX_AGE_HOURS") or defaults.cluster_max_age_hours),
        log_wait_seconds=int(env.get("MOVIELENS_LOG_WAIT_SECONDS") or defaults.log_wait_seconds),
        stage_timeout_seconds=int(
            env.get("MOVIELENS_STAGE_TIMEOUT_SECONDS") or defaults.stage_timeout_seconds),
        cluster=ClusterSettings(
            job_flow_role=env.get("MOVIELENS_EMR_JOB_FLOW_ROLE") or cluster_defaults.job_flow_role,
            service_role=env.get("MOVIELENS_EMR_SERVICE_ROLE") or cluster_defaults.service_role,
            subnet_id=env.get("MOVIELENS_EMR_SUBNET_ID", ""),
            security_configuration=env.get("MOVIELENS_EMR_SECURITY_CONFIGURATION", ""),
            node_python=env.get("MOVIELENS_EMR_PYTHON") or cluster_defaults.node_python,
            wheelhouse_dir=env.get("MOVIELENS_EMR_WHEELHOUSE", ""),
            requirements_file=env.get("MOVIELENS_EMR_REQUIREMENTS", ""),
            spot_max_price_usd=spot_max_price(env.get("MOVIELENS_EMR_SPOT_MAX_PRICE", "")),
        ),
    )


def spot_max_price(text):
    """MOVIELENS_EMR_SPOT_MAX_PRICE as USD per hour (None when unset); ValueError naming it when it is not a
    price: a wrong cap would silently keep Spot nodes from starting, or pay more than meant."""
    if not text.strip():
        return None
    try:
        price = float(text)
    except ValueError:
        price = None
    if price is None or not math.isfinite(price) or price <= 0:
        raise ValueError(f"MOVIELENS_EMR_SPOT_MAX_PRICE: {text!r} is not a price in USD per hour above 0")
    return price

"""The instance catalogue (instances.toml): each EC2 type a run may choose, its size, its YARN containers
as EMR configures them, its architecture, its on-demand price and its assumed Spot price."""
import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

CATALOGUE_FILE = Path(__file__).with_name("instances.toml")
# What a Hadoop streaming task's own JVM (the task's Java side, its sort and spill buffers) takes of its
# container, beside the Python process that runs the job: the Python process gets the rest.
STREAMING_JVM_MB = 1024


class UnknownInstanceType(ValueError):
    """An instance type the catalogue does not hold."""


@dataclass(frozen=True)
class InstanceType:
    name: str
    vcpus: int
    memory_gib: float
    architecture: str
    yarn_node_mb: int
    map_container_mb: int
    reduce_container_mb: int
    yarn_source: str
    usd_per_hour: float
    emr_usd_per_hour: float
    spot_price_fraction: float

    @property
    def ec2_usd_per_hour(self):
        """The EC2 part of the on-demand price: usd_per_hour less EMR's charge."""
        return round(self.usd_per_hour - self.emr_usd_per_hour, 4)

    def assumed_spot_ec2_usd_per_hour(self, on_demand_usd_per_hour=None):
        """The assumed EC2 Spot price: spot_price_fraction of the on-demand EC2 price, that of
        on_demand_usd_per_hour (a node-hour price in force, EMR's charge included) when given."""
        on_demand = self.usd_per_hour if on_demand_usd_per_hour is None else on_demand_usd_per_hour
        return max(on_demand - self.emr_usd_per_hour, 0.0) * self.spot_price_fraction

    @property
    def spot_usd_per_hour(self):
        """A Spot node's assumed USD per hour: the assumed EC2 Spot price, EMR's charge in full."""
        return round(self.assumed_spot_ec2_usd_per_hour() + self.emr_usd_per_hour, 4)

    @property
    def python_task_mb(self):
        """Memory a streaming reduce task's Python process may use within its container."""
        return self.reduce_container_mb - STREAMING_JVM_MB

    def as_dict(self):
        return {**self.__dict__, "python_task_mb": self.python_task_mb,
                "spot_usd_per_hour": self.spot_usd_per_hour}


@functools.cache
def catalogue():
    """{name: InstanceType} of instances.toml, in its order."""
    with open(CATALOGUE_FILE, "rb") as file:
        table = tomllib.load(file)
    return {name: InstanceType(name=name, **fields) for name, fields in table.items()}


def instance_type(name):
    """The catalogue's InstanceType called name; UnknownInstanceType naming the catalogue's for any other."""
    try:
        return catalogue()[name]
    except KeyError:
        raise UnknownInstanceType(f"instance_type: {name!r} is not in the instance catalogue "
                                  f"({', '.join(catalogue())}; add it to {CATALOGUE_FILE.name})") from None


def memory_fit_error(need_mb, instance, what):
    """Why `instance` cannot run a task needing need_mb of memory (`what` names the task), or None."""
    if need_mb <= instance.python_task_mb:
        return None
    return (f"instance_type: {instance.name} cannot hold {what}: it needs about {need_mb:,.0f} MB, and a "
            f"{instance.name} reduce container is {instance.reduce_container_mb:,} MB "
            f"({instance.python_task_mb:,} MB for the task's Python beside its JVM); choose a type with "
            "larger containers (e.g. an r5)")

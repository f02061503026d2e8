"""USD per node-hour in force: the Variable movielens_hourly_prices over the built-in price table."""
import json
import math
from dataclasses import asdict, dataclass

from movielens_emr.config.instances import catalogue
from movielens_emr.config.targets import EMR, target_named

PRICE_REGION = "us-east-1"
# On-demand USD per node-hour in us-east-1 of the instance catalogue's types (config/instances.toml):
# the EC2 price plus the EMR charge. Override per instance type with the Variable movielens_hourly_prices.
HOURLY_PRICES_USD = {name: instance.usd_per_hour for name, instance in catalogue().items()}
PRICES_VARIABLE = "movielens_hourly_prices"
FROM_VARIABLE, BUILT_IN, NO_PRICE, NOT_PRICED = "variable", "built-in", "none", "local"


class BadPriceVariable(ValueError):
    """The Variable is not a JSON object of instance types to USD per node-hour; the message says why."""


@dataclass(frozen=True)
class Price:
    """One instance type's USD per node-hour (None when unknown) and where it comes from."""

    instance_type: str
    usd_per_node_hour: float | None
    source: str

    @property
    def description(self):
        """Where the price comes from, as a sentence's end: "... per node-hour, from ..."."""
        return {
            FROM_VARIABLE: f"from the Airflow Variable {PRICES_VARIABLE}",
            BUILT_IN: f"from the built-in {PRICE_REGION} on-demand table (EC2 + EMR)",
            NO_PRICE: f"unknown: {self.instance_type} is neither in the Variable {PRICES_VARIABLE} "
                      "nor in the built-in table",
            NOT_PRICED: "none: the local target costs nothing",
        }[self.source]

    def as_dict(self):
        return {**asdict(self), "description": self.description}


def overrides_from_variable(value):
    """The Variable's text (or already decoded JSON) as {instance type: USD per node-hour}; {} when unset.

    Raises BadPriceVariable naming the first entry that is not a number >= 0: a wrong price would
    silently price every plan and run wrong.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise BadPriceVariable(f"the Variable {PRICES_VARIABLE} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise BadPriceVariable(f"the Variable {PRICES_VARIABLE} is not a JSON object of instance types to "
                               f"USD per node-hour but a {type(value).__name__}")
    for instance_type, usd in value.items():
        if isinstance(usd, bool) or not isinstance(usd, int | float) or not math.isfinite(usd) or usd < 0:
            raise BadPriceVariable(f"the Variable {PRICES_VARIABLE}: {instance_type}'s price {usd!r} is not "
                                   "a number of USD per node-hour (0 or more)")
    return {instance_type: float(usd) for instance_type, usd in value.items()}


def price_in_force(instance_type, overrides, target=EMR.name):
    """The Price of a node-hour of instance_type: the Variable's overrides first, then the built-in table."""
    if not target_named(target).priced:
        return Price(instance_type, 0.0, NOT_PRICED)
    if instance_type in overrides:
        return Price(instance_type, overrides[instance_type], FROM_VARIABLE)
    if instance_type in HOURLY_PRICES_USD:
        return Price(instance_type, HOURLY_PRICES_USD[instance_type], BUILT_IN)
    return Price(instance_type, None, NO_PRICE)


def configured_overrides():
    """The Variable's overrides as a process outside a task reads them (the API server, the command line):
    AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES, a secrets backend or the metadata database. Tasks read it
    through the Task SDK instead (tasks.run_price)."""
    from airflow.models import Variable

    return overrides_from_variable(Variable.get(PRICES_VARIABLE, default_var=None))


def hourly_price(instance_type, overrides=None):
    """USD per node-hour of an instance type, overrides first; None when unknown."""
    return {**HOURLY_PRICES_USD, **(overrides or {})}.get(instance_type)


# Spot task nodes --------------------------------------------------------------------------------------
# A Spot node pays the EC2 Spot price plus EMR's charge in full (EMR's charge is not discounted on Spot).
SPOT_HISTORY, ASSUMED_SPOT = "spot price history", "assumed"


@dataclass(frozen=True)
class SpotPrice:
    """A Spot task node's USD per node-hour as charged (the EC2 Spot price + EMR's charge) and its source:
    SPOT_HISTORY (EC2's Spot price history of the type in the cluster's zone over the run, time-weighted)
    or ASSUMED_SPOT (the catalogue's spot_price_fraction of the on-demand EC2 price); `why` says why."""

    usd_per_node_hour: float
    ec2_usd_per_hour: float
    source: str
    why: str


def on_demand_ec2_usd_per_hour(instance):
    """The EC2 part of an instance type's on-demand price (the catalogue's usd_per_hour less EMR's charge)."""
    return instance.ec2_usd_per_hour


def spot_bid_price(instance, max_price_usd=None):
    """The Spot task group's BidPrice (USD per hour of the EC2 instance, as EMR takes it, a string): the
    configured maximum when there is one, else the type's on-demand EC2 price from the catalogue, so that
    Spot never costs more than on-demand would."""
    price = max_price_usd if max_price_usd is not None else on_demand_ec2_usd_per_hour(instance)
    return f"{price:.4f}".rstrip("0").rstrip(".")


def time_weighted_price(history, start, end):
    """The average over [start, end] of a price history [(time, USD)], each price in force from its time
    until the next one (as EC2's Spot price history gives it, the last change before `start` included);
    None when no price was in force at `start`. A zero-length span: the price in force at `start`."""
    points = sorted(history)
    before = [price for moment, price in points if moment <= start]
    if not before:
        return None
    if end <= start:
        return before[-1]
    changes = [(start, before[-1]), *((moment, price) for moment, price in points if start < moment < end)]
    until = [moment for moment, _ in changes[1:]] + [end]
    total = sum(price * _seconds(moment, ends) for (moment, price), ends in zip(changes, until, strict=True))
    return total / _seconds(start, end)


def _seconds(start, end):
    return (end - start).total_seconds()


def spot_price_charged(instance, on_demand_usd_per_node_hour, history_ec2_usd=None, why=""):
    """The SpotPrice of a Spot task node: from the EC2 Spot price read from the history (history_ec2_usd),
    else assumed: the catalogue's spot_price_fraction of the on-demand EC2 price in force (the node-hour in
    force less EMR's charge). `why`: where the history's price came from, or why there is none."""
    emr = instance.emr_usd_per_hour
    if history_ec2_usd is not None:
        return SpotPrice(round(history_ec2_usd + emr, 6), round(history_ec2_usd, 6), SPOT_HISTORY, why)
    ec2 = instance.assumed_spot_ec2_usd_per_hour(on_demand_usd_per_node_hour)
    return SpotPrice(round(ec2 + emr, 6), round(ec2, 6), ASSUMED_SPOT,
                     f"assumed: {instance.spot_price_fraction:.0%} of the on-demand EC2 price "
                     f"(instances.toml's spot_price_fraction), as the Spot price history could not be used: "
                     f"{why}")

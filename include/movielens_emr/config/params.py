"""Trigger-form parameters of movielens_similarity and their validation into one RunConfig."""
import math
from dataclasses import dataclass

import jsonschema

from movielens_emr.config.instances import catalogue
from movielens_emr.config.targets import LOCAL, TARGET_NAMES, TARGETS
from movielens_emr.data.datasets import CATALOGUE

# The engine a run computes with when its conf names none, and every run recorded before engines were named.
DEFAULT_ENGINE = "similarity"
METRICS = ("cosine", "pearson", "jaccard")
DEFAULT_MAX_NODE_COUNT = 20
DEFAULT_INSTANCE_TYPE = "m5.xlarge"
# EMR 7 runs Amazon Linux 2023 with Python 3.9, which the bootstrap's pinned packages support.
DEFAULT_RELEASE_LABEL = "emr-7.9.0"
# Patterns end in (?![\s\S]), not $: Python's $ also matches before a final newline.
RELEASE_LABEL_PATTERN = r"^emr-7\.[0-9]+\.[0-9]+(?![\s\S])"
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[0-9]*(nano|micro|small|medium|large|xlarge|metal)(?![\s\S])"
# EMR's API takes almost any text as a security configuration name; the form keeps to the letters,
# digits, dots, dashes and underscores names are made of, so that a pasted ARN or JSON document, or
# stray whitespace, is refused here rather than by RunJobFlow once the run has started. Empty: none.
SECURITY_CONFIGURATION_PATTERN = r"^([A-Za-z0-9][A-Za-z0-9._-]{0,255})?(?![\s\S])"
# Number fields take null in the form's schema: Airflow hands a run's conf to each task through JSON that
# writes NaN as null, and every task, the history teardown included, checks the conf against the form's
# schema before it starts. validated_values refuses null (and NaN) for them, in validate_config.
NUMBER_FORM_TYPE = ["number", "null"]
MAX_DEADLINE_MINUTES = 7 * 24 * 60
# The als engine's hyperparameters: Spark's own defaults (rank 10, 10 iterations, regParam 0.1, alpha 1;
# 10 user and 10 item blocks when left empty), and the ranges the form allows.
ALS_DEFAULTS = {"als_rank": 10, "als_max_iter": 10, "als_reg_param": 0.1, "als_alpha": 1.0,
                "als_user_blocks": None, "als_item_blocks": None, "als_loss_per_iteration": False}
MAX_ALS_RANK = 500
MAX_ALS_ITERATIONS = 100
MAX_ALS_BLOCKS = 10_000
MAX_BUDGET_USD = 100_000
# A cluster with Spot task nodes keeps a master and at least one core node on-demand: HDFS (the job's
# intermediate and final outputs between stages) lives on the core nodes, and losing the master ends the
# cluster.
MIN_ON_DEMAND_NODES = 2


# The benchmarks page's plan form, relative to the UI's base URL (the plugin is mounted at /movielens).
PLAN_PAGE = "movielens/#plan"
# What a field's spec holds for the form only, not for its JSON schema.
FORM_ONLY_KEYS = ("default", "title", "description", "description_md")


class InvalidParam(ValueError):
    """A run parameter out of its schema; the message starts with the field's name."""


@dataclass(frozen=True)
class RunConfig:
    """The validated parameters of one run."""

    node_count: int
    target: str
    dataset: str
    metric: str
    min_score: float
    min_co_ratings: int
    instance_type: str
    release_label: str
    sample_fraction: float
    # Defaults, so that a RunConfig saved before these fields existed (an older run's XCom) still loads.
    security_configuration: str = ""
    deadline_minutes: float | None = None
    budget_usd: float | None = None
    # What the sizing advisor said (movielens_emr.sizing.advise.run_advice), when the run asked it.
    advice: dict | None = None
    engine: str = DEFAULT_ENGINE
    # The als engine's (ignored by the others).
    als_rank: int = ALS_DEFAULTS["als_rank"]
    als_max_iter: int = ALS_DEFAULTS["als_max_iter"]
    als_reg_param: float = ALS_DEFAULTS["als_reg_param"]
    als_alpha: float = ALS_DEFAULTS["als_alpha"]
    als_user_blocks: int | None = None
    als_item_blocks: int | None = None
    als_loss_per_iteration: bool = False
    # How many of the node_count nodes are task nodes on Spot (EMR only); the rest stay on-demand.
    spot_task_nodes: int = 0

    @property
    def core_node_count(self):
        """The on-demand core nodes: node_count less the master and the Spot task nodes."""
        return self.node_count - 1 - self.spot_task_nodes


def param_schemas(max_node_count, default_target, engines=(DEFAULT_ENGINE,)):
    """JSON schema, title and description of every trigger-form field, keyed by name; engines: the names
    of the registered engines (engine.registry), the form's choices."""
    return {
        "node_count": dict(
            default=4, type=["integer", "null"], minimum=1, maximum=max_node_count, title="Node count",
            description=f"Total EMR nodes including the master (4 = 1 master + 3 core), 1 to "
                        f"{max_node_count} (Variable movielens_max_node_count). On the local target: "
                        "parallel tasks. Empty: the sizing advisor chooses it from the run history, for "
                        "the deadline or budget below.",
            description_md=f"Total EMR nodes including the master (4 = 1 master + 3 core), 1 to "
                           f"{max_node_count} (Variable `movielens_max_node_count`). On the local target: "
                           "parallel tasks. Empty: the sizing advisor chooses it from the run history, for "
                           "the deadline or budget below. **[See the predicted time and cost of every node "
                           f"count]({PLAN_PAGE})** before you trigger."),
        "target": dict(
            default=default_target, type="string", enum=list(TARGET_NAMES), title="Target",
            description="; ".join(f"{target.name}: {target.description}" for target in TARGETS.values())
                        + "."),
        "engine": dict(
            default=DEFAULT_ENGINE, type="string", enum=list(engines), title="Engine",
            description=f"What computes the result: {DEFAULT_ENGINE}, the exact item-item similarity "
                        "MapReduce job (three stages); als, implicit-feedback matrix factorisation on Spark "
                        "(nearest movies by their factors, and recommendations per user); or another "
                        "registered engine."),
        "dataset": dict(
            default="ml-latest-small-sample", type="string", enum=list(CATALOGUE), title="Dataset",
            description="MovieLens release (ml-latest-small-sample is bundled, for a first run offline): "
                        + "; ".join(
                f"{name} ({dataset.ratings:,} ratings)" for name, dataset in CATALOGUE.items())),
        "metric": dict(
            default="cosine", type="string", enum=list(METRICS), title="Similarity metric",
            description="cosine over co-raters' raw ratings; pearson centred on each movie's mean over "
                        "the co-raters; jaccard on the sets of raters."),
        "min_score": dict(
            default=0.95, type=NUMBER_FORM_TYPE, minimum=-1, maximum=1, title="Minimum score",
            description="Keep pairs scoring strictly above this."),
        "min_co_ratings": dict(
            default=10, type="integer", minimum=0, maximum=100_000, title="Minimum co-ratings",
            description="Keep pairs rated by strictly more users than this."),
        "instance_type": dict(
            default=DEFAULT_INSTANCE_TYPE, type="string", enum=list(catalogue()), title="Instance type",
            description="EC2 instance type of every node, from the instance catalogue "
                        "(include/movielens_emr/config/instances.toml): "
                        + "; ".join(f"{instance.name} ({instance.vcpus} vCPUs, {instance.memory_gib:g} GiB, "
                                    f"{instance.architecture}, ${instance.usd_per_hour:.3g}/h)"
                                    for instance in catalogue().values())),
        "release_label": dict(
            default=DEFAULT_RELEASE_LABEL, type="string", pattern=RELEASE_LABEL_PATTERN,
            title="EMR release", description="An EMR 7 release label, e.g. emr-7.9.0."),
        "sample_fraction": dict(
            default=1.0, type=NUMBER_FORM_TYPE, exclusiveMinimum=0, maximum=1, title="Sample fraction",
            description="Use this fraction of users, chosen by a hash of the user id (0 < f <= 1)."),
        "deadline_minutes": dict(
            default=None, type=NUMBER_FORM_TYPE, exclusiveMinimum=0, maximum=MAX_DEADLINE_MINUTES,
            title="Deadline (minutes)",
            description="With an empty node count: the sizing advisor picks the cheapest count predicted "
                        "to finish within this many minutes of cluster time. With a node count: the "
                        "prediction for it is recorded beside the measurement."),
        "budget_usd": dict(
            default=None, type=NUMBER_FORM_TYPE, exclusiveMinimum=0, maximum=MAX_BUDGET_USD,
            title="Budget (USD)",
            description="With an empty node count: the sizing advisor picks the fastest count predicted "
                        "to cost at most this (with a deadline too: the cheapest meeting both)."),
        "spot_task_nodes": dict(
            default=0, type="integer", minimum=0, maximum=max(max_node_count - MIN_ON_DEMAND_NODES, 0),
            title="Spot task nodes",
            description="EMR only: how many of the node count's nodes are task nodes on Spot (they run "
                        "tasks but hold no HDFS data). The master and at least one core node stay "
                        f"on-demand (so at most node count - {MIN_ON_DEMAND_NODES}); 0: every node "
                        "on-demand. A Spot node may be reclaimed mid-run: Hadoop reruns its tasks on the "
                        "other nodes, the result is unchanged, the run takes longer. The run records the "
                        "Spot price it was charged."),
        **als_param_schemas(),
        # null as well as "": the form sends null for a field the user typed in and then cleared.
        "security_configuration": dict(
            default="", type=["string", "null"], pattern=SECURITY_CONFIGURATION_PATTERN,
            title="EMR security configuration",
            description="Name of an EMR security configuration in the cluster's account and region "
                        "(letters, digits, '.', '-', '_'; up to 256). Empty: the setting "
                        "MOVIELENS_EMR_SECURITY_CONFIGURATION, or none if that is unset. Ignored on the "
                        "local target."),
    }


def als_param_schemas():
    """The als engine's fields: implicit-feedback ALS (Spark's pyspark.ml.recommendation.ALS)."""
    blocks = "Empty: Spark's default, 10. More blocks, more parallel tasks and more factors shipped."
    return {
        "als_rank": dict(
            default=ALS_DEFAULTS["als_rank"], type="integer", minimum=1, maximum=MAX_ALS_RANK,
            title="ALS: rank", description=f"als engine: factors per user and movie, 1 to {MAX_ALS_RANK}."),
        "als_max_iter": dict(
            default=ALS_DEFAULTS["als_max_iter"], type="integer", minimum=1, maximum=MAX_ALS_ITERATIONS,
            title="ALS: iterations",
            description=f"als engine: alternating least squares iterations, 1 to {MAX_ALS_ITERATIONS}."),
        "als_reg_param": dict(
            default=ALS_DEFAULTS["als_reg_param"], type=NUMBER_FORM_TYPE, minimum=0, maximum=1e6,
            title="ALS: regularisation",
            description="als engine: lambda, scaled by each user's and movie's ratings (Spark's "
                        "regParam), 0 or more."),
        "als_alpha": dict(
            default=ALS_DEFAULTS["als_alpha"], type=NUMBER_FORM_TYPE, minimum=0, maximum=1e6,
            title="ALS: alpha",
            description="als engine: a rating r counts with confidence 1 + alpha * r (unrated pairs with "
                        "confidence 1, as not liked), 0 or more."),
        "als_user_blocks": dict(
            default=None, type=["integer", "null"], minimum=1, maximum=MAX_ALS_BLOCKS,
            title="ALS: user blocks", description=f"als engine: blocks the users are split into. {blocks}"),
        "als_item_blocks": dict(
            default=None, type=["integer", "null"], minimum=1, maximum=MAX_ALS_BLOCKS,
            title="ALS: item blocks", description=f"als engine: blocks the movies are split into. {blocks}"),
        # Spark's ALS reports no loss while it fits and cannot resume a fit, so the loss after each
        # iteration takes a fit of 1, 2, ... iterations from the same seed: off unless asked for.
        "als_loss_per_iteration": dict(
            default=ALS_DEFAULTS["als_loss_per_iteration"], type="boolean",
            title="ALS: training loss per iteration",
            description="als engine: also record the training loss and fit seconds after each iteration "
                        "(als_per_iteration in metrics.json), from fits of 1, 2, ... iterations with the "
                        "same seed: about iterations / 2 times the fit's work."),
    }


def validated_values(params, schemas):
    """{field: value or default}, each checked against its schema; InvalidParam names the first bad field.

    A field is bad when it is unknown or its value fails its schema.
    """
    unknown = sorted(set(params) - set(schemas))
    if unknown:
        raise InvalidParam(f"{unknown[0]}: not a parameter of this DAG (known: {', '.join(schemas)})")
    values = {}
    for name, spec in schemas.items():
        value = params.get(name, spec["default"])
        schema = {key: spec[key] for key in spec if key not in FORM_ONLY_KEYS}
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as error:
            raise InvalidParam(f"{name}: {error.message}") from None
        _refuse_ambiguous_number(name, spec, value)
        values[name] = value
    return values


def _refuse_ambiguous_number(name, spec, value):
    """Refuse what JSON schema passes: 4.0 as an integer; NaN (it passes any bound) or null as a number."""
    types = _types(spec)
    if "integer" in types and isinstance(value, float):
        raise InvalidParam(f"{name}: must be a whole number, got {value!r}")
    optional = spec["default"] is None
    if "number" in types and not (optional and value is None) and not (
            isinstance(value, int | float) and math.isfinite(value)):
        raise InvalidParam(f"{name}: must be a finite number, got {_json_text(value)}")


def _types(spec):
    return spec["type"] if isinstance(spec["type"], list) else [spec["type"]]


def _json_text(value):
    """A value as the trigger form or the REST API would have written it: null, NaN, Infinity, 4.0."""
    if value is None:
        return "null"
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), repr(value))


def validate_run_config(params, max_node_count, default_target=LOCAL.name, engines=(DEFAULT_ENGINE,)):
    """Check every field against its schema and return the RunConfig; raise InvalidParam naming the field."""
    schemas = param_schemas(max_node_count, default_target, engines)
    values = validated_values(params, schemas)
    config = {name: _config_value(schemas[name], value) for name, value in values.items()}
    # An empty node count is the sizing advisor's to choose, and it needs a goal to choose for.
    config["node_count"] = values["node_count"]
    if config["node_count"] is None and config["deadline_minutes"] is None and config["budget_usd"] is None:
        raise InvalidParam("node_count: left empty, it is chosen by the sizing advisor, which needs a "
                           "deadline_minutes or a budget_usd")
    run_config = RunConfig(**config)
    if run_config.node_count is not None:  # the advisor's count is checked once it has chosen it
        check_spot_task_nodes(run_config)
    return run_config


def check_spot_task_nodes(config):
    """Refuse Spot task nodes on a target without a cluster, or so many that no on-demand core node is
    left."""
    spot = config.spot_task_nodes
    if not spot:
        return
    if not TARGETS[config.target].cluster:
        raise InvalidParam(f"spot_task_nodes: {spot} Spot task nodes asked, but the {config.target} target "
                           "runs on this machine, which has no Spot market: set it to 0, or choose the emr "
                           "target")
    if config.node_count - spot < MIN_ON_DEMAND_NODES:
        most = max(config.node_count - MIN_ON_DEMAND_NODES, 0)
        raise InvalidParam(f"spot_task_nodes: {spot} of {config.node_count} nodes on Spot would leave "
                           f"{max(config.node_count - 1 - spot, 0)} core nodes: a cluster keeps its master "
                           "and at least one core node on-demand (they hold HDFS and the job's outputs), so "
                           f"at most {most} of {config.node_count} nodes may be Spot task nodes")


def _config_value(spec, value):
    """A checked value as RunConfig holds it: numbers as floats, a cleared optional field as its default."""
    if value is None:
        return spec["default"]
    return float(value) if "number" in _types(spec) else value

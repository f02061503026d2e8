"""Trigger-form parameters: schemas for the form and the same rules at run time."""
import math

import jsonschema
import pytest

from movielens_emr.config.params import InvalidParam, RunConfig, param_schemas, validate_run_config


def test_defaults_make_a_valid_local_run():
    config = validate_run_config({}, max_node_count=20)
    assert config == RunConfig(node_count=4, target="local", dataset="ml-latest-small-sample",
                               metric="cosine", min_score=0.95, min_co_ratings=10, instance_type="m5.xlarge",
                               release_label="emr-7.9.0", sample_fraction=1.0,
                               security_configuration="")
    assert config.core_node_count == 3


def test_every_field_has_a_title_and_description():
    for name, spec in param_schemas(20, "local").items():
        assert spec["title"] and len(spec["description"]) > 20, name


def test_node_count_maximum_follows_the_limit():
    assert param_schemas(7, "local")["node_count"]["maximum"] == 7
    with pytest.raises(InvalidParam, match=r"^node_count: 8 is greater than the maximum of 7"):
        validate_run_config({"node_count": 8}, max_node_count=7)


@pytest.mark.parametrize("field, value", [
    ("node_count", 0), ("node_count", 3.5), ("node_count", "4"), ("node_count", True),
    ("target", "aws"), ("dataset", "ml-5m"), ("metric", "euclid"),
    ("min_score", 1.5), ("min_co_ratings", -1), ("instance_type", "huge"),
    ("release_label", "emr-6.15.0"), ("release_label", "emr-7.9.0\n"), ("instance_type", "m5.xlarge\n"),
    ("sample_fraction", 0), ("sample_fraction", 1.01),
    ("security_configuration", 7),
])
def test_bad_values_are_refused_naming_the_field(field, value):
    with pytest.raises(InvalidParam, match=f"^{field}: "):
        validate_run_config({field: value}, max_node_count=20)


@pytest.mark.parametrize("field, value", [("node_count", 4.0), ("min_co_ratings", 10.0)])
def test_a_float_for_an_integer_field_is_refused_though_json_schema_takes_it(field, value):
    # JSON schema counts 4.0 as an integer; mrjob's --num-cores refuses '4.0' only after the data is staged.
    with pytest.raises(InvalidParam, match=rf"^{field}: must be a whole number, got {value}$"):
        validate_run_config({field: value}, max_node_count=20)


@pytest.mark.parametrize("field, value, written", [
    ("min_score", math.nan, "NaN"), ("sample_fraction", math.nan, "NaN"),
    ("min_score", None, "null"), ("sample_fraction", None, "null"),
])
def test_nan_or_null_for_a_number_is_refused(field, value, written):
    with pytest.raises(InvalidParam, match=rf"^{field}: must be a finite number, got {written}$"):
        validate_run_config({field: value}, max_node_count=20)


@pytest.mark.parametrize("field", ["min_score", "sample_fraction"])
def test_the_form_lets_every_task_start_with_the_null_a_nan_becomes(field):
    # Airflow hands the conf to each task as JSON, NaN written as null, and checks it against the form's
    # schema before the task starts: were null refused there, the history teardown would fail too.
    spec = param_schemas(20, "local")[field]
    schema = {key: spec[key] for key in spec if key not in ("default", "title", "description")}
    jsonschema.validate(None, schema, format_checker=jsonschema.FormatChecker())
    with pytest.raises(InvalidParam, match=f"^{field}: must be a finite number"):
        validate_run_config({field: None}, max_node_count=20)


def test_unknown_field_is_refused_by_name():
    with pytest.raises(InvalidParam, match=r"^nodes: not a parameter"):
        validate_run_config({"nodes": 8}, max_node_count=20)


def test_numbers_become_floats():
    config = validate_run_config({"min_score": 1, "sample_fraction": 1}, max_node_count=20)
    assert isinstance(config.min_score, float) and isinstance(config.sample_fraction, float)


def test_default_target_is_configurable():
    assert param_schemas(20, "emr")["target"]["default"] == "emr"


@pytest.mark.parametrize("name", ["at-rest-kms", "MovieLens_Security.v2", "sc1", "a" * 256])
def test_security_configuration_names_are_accepted(name):
    config = validate_run_config({"security_configuration": name}, max_node_count=20)
    assert config.security_configuration == name


@pytest.mark.parametrize("name", [
    " at-rest-kms", "at rest", "-leading-dash", "a" * 257,
    "arn:aws:elasticmapreduce:us-east-1:123456789012:security-configuration/x",
    '{"EncryptionConfiguration": {}}', "name\n",
])
def test_bad_security_configuration_names_are_refused_naming_the_field(name):
    with pytest.raises(InvalidParam, match=r"^security_configuration: .* does not match"):
        validate_run_config({"security_configuration": name}, max_node_count=20)


@pytest.mark.parametrize("cleared", ["", None])
def test_an_empty_or_cleared_security_configuration_means_none_chosen(cleared):
    config = validate_run_config({"security_configuration": cleared}, max_node_count=20)
    assert config.security_configuration == ""


def test_security_configuration_is_accepted_on_the_local_target():
    config = validate_run_config({"target": "local", "security_configuration": "at-rest-kms"},
                                 max_node_count=20)
    assert (config.target, config.security_configuration) == ("local", "at-rest-kms")


def test_a_config_saved_before_security_configuration_existed_still_loads():
    saved = {"node_count": 4, "target": "emr", "dataset": "ml-1m", "metric": "cosine", "min_score": 0.95,
             "min_co_ratings": 10, "instance_type": "m5.xlarge", "release_label": "emr-7.9.0",
             "sample_fraction": 1.0}
    assert RunConfig(**saved).security_configuration == ""


def test_an_empty_node_count_is_left_to_the_advisor_with_a_deadline_or_budget():
    config = validate_run_config({"node_count": None, "deadline_minutes": 30}, max_node_count=20)
    assert config.node_count is None and config.deadline_minutes == 30.0 and config.budget_usd is None
    assert validate_run_config({"node_count": None, "budget_usd": 2}, max_node_count=20).budget_usd == 2.0


def test_an_empty_node_count_without_a_goal_is_refused():
    with pytest.raises(InvalidParam, match="^node_count: left empty, .* a deadline_minutes or a budget_usd"):
        validate_run_config({"node_count": None}, max_node_count=20)


@pytest.mark.parametrize("field, value", [
    ("deadline_minutes", 0), ("deadline_minutes", -5), ("deadline_minutes", math.nan), ("budget_usd", 0),
    ("budget_usd", math.inf), ("budget_usd", "5"),
])
def test_bad_deadlines_and_budgets_are_refused_naming_the_field(field, value):
    with pytest.raises(InvalidParam, match=f"^{field}: "):
        validate_run_config({field: value}, max_node_count=20)


def test_the_node_count_field_links_to_the_plan_before_the_trigger():
    from movielens_emr.config.params import PLAN_PAGE

    spec = param_schemas(20, "local")["node_count"]
    assert f"]({PLAN_PAGE})" in spec["description_md"] and PLAN_PAGE == "movielens/#plan"
    # the markdown is the form's, not part of the value's schema
    assert validate_run_config({"node_count": 3}, 20).node_count == 3


def test_spot_task_nodes_default_to_none_and_split_the_node_count():
    assert validate_run_config({}, max_node_count=20).spot_task_nodes == 0
    config = validate_run_config({"target": "emr", "node_count": 6, "spot_task_nodes": 4}, max_node_count=20)
    # node_count keeps meaning every node: 1 master, 1 core, 4 Spot task nodes
    assert (config.node_count, config.core_node_count, config.spot_task_nodes) == (6, 1, 4)


@pytest.mark.parametrize("node_count, spot", [(2, 1), (3, 2), (4, 4)])
def test_spot_task_nodes_that_leave_no_on_demand_core_node_are_refused(node_count, spot):
    refusal = (rf"^spot_task_nodes: {spot} of {node_count} nodes on Spot would leave "
               rf"{max(node_count - 1 - spot, 0)} core nodes: .* at most {node_count - 2} of {node_count} "
               r"nodes may be Spot task nodes$")
    with pytest.raises(InvalidParam, match=refusal):
        validate_run_config({"target": "emr", "node_count": node_count, "spot_task_nodes": spot},
                            max_node_count=20)


def test_spot_task_nodes_are_refused_on_the_local_target():
    with pytest.raises(InvalidParam, match=r"^spot_task_nodes: 1 Spot task nodes asked, but the local target "
                                           r"runs on this machine, which has no Spot market"):
        validate_run_config({"target": "local", "node_count": 4, "spot_task_nodes": 1}, max_node_count=20)


def test_the_spot_fields_range_follows_the_node_limit():
    assert param_schemas(7, "local")["spot_task_nodes"]["maximum"] == 5
    with pytest.raises(InvalidParam, match=r"^spot_task_nodes: -1 is less than the minimum of 0"):
        validate_run_config({"target": "emr", "spot_task_nodes": -1}, max_node_count=20)


@pytest.mark.parametrize("text, price", [("", None), ("  ", None), ("0.1", 0.1), ("2", 2.0)])
def test_the_spot_maximum_setting_is_a_price_or_unset(text, price):
    from movielens_emr.config.settings import settings_from_env

    assert settings_from_env({"MOVIELENS_EMR_SPOT_MAX_PRICE": text}).cluster.spot_max_price_usd == price


@pytest.mark.parametrize("text", ["cheap", "0", "-1", "nan", "inf"])
def test_a_spot_maximum_that_is_not_a_price_is_refused_naming_the_setting(text):
    from movielens_emr.config.settings import settings_from_env

    with pytest.raises(ValueError, match=rf"^MOVIELENS_EMR_SPOT_MAX_PRICE: '{text}' is not a price in USD"):
        settings_from_env({"MOVIELENS_EMR_SPOT_MAX_PRICE": text})

import pytest

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.config.params import validate_run_config
from movielens_emr.sizing.prices import BadPriceVariable, overrides_from_variable, price_in_force


def test_the_variable_overrides_the_built_in_table_per_instance_type():
    overrides = overrides_from_variable('{"m5.xlarge": 0.3, "x9.custom": 1}')
    assert overrides == {"m5.xlarge": 0.3, "x9.custom": 1.0}
    assert price_in_force("m5.xlarge", overrides).as_dict() == {
        "instance_type": "m5.xlarge", "usd_per_node_hour": 0.3, "source": "variable",
        "description": "from the Airflow Variable movielens_hourly_prices"}
    built_in = price_in_force("r5.xlarge", overrides)
    assert (built_in.usd_per_node_hour, built_in.source) == (pytest.approx(0.315), "built-in")
    assert built_in.description == "from the built-in us-east-1 on-demand table (EC2 + EMR)"
    assert price_in_force("x9.custom", overrides).usd_per_node_hour == 1.0


def test_an_unknown_instance_type_has_no_price_and_the_local_target_costs_nothing():
    unknown = price_in_force("x9.large", {})
    assert unknown.usd_per_node_hour is None
    assert unknown.description == ("unknown: x9.large is neither in the Variable movielens_hourly_prices "
                                   "nor in the built-in table")
    assert price_in_force("m5.xlarge", {"m5.xlarge": 0.3}, target="local").usd_per_node_hour == 0.0


@pytest.mark.parametrize("value", [None, "", "{}", {}])
def test_an_unset_variable_overrides_nothing(value):
    assert overrides_from_variable(value) == {}


@pytest.mark.parametrize("value, reason", [
    ("{m5.xlarge: 0.3}", "is not JSON"),
    ("[0.3]", "not a JSON object of instance types to USD per node-hour but a list"),
    ('{"m5.xlarge": "0.3"}', "m5.xlarge's price '0.3' is not a number"),
    ('{"m5.xlarge": -1}', "m5.xlarge's price -1 is not a number"),
    ('{"m5.xlarge": true}', "m5.xlarge's price True is not a number"),
])
def test_a_malformed_variable_is_refused_naming_it(value, reason):
    with pytest.raises(BadPriceVariable, match=f"^the Variable movielens_hourly_prices.*{reason}"):
        overrides_from_variable(value)


def test_runs_are_priced_from_the_variable_and_a_malformed_one_fails_validation(monkeypatch):
    config = validate_run_config({"target": "emr", "instance_type": "m5.xlarge"}, 20, "emr")
    assert tasks.run_price(config) == pytest.approx(0.24)
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": 0.5}')
    assert tasks.run_price(config) == 0.5
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": "cheap"}')
    monkeypatch.setenv("MOVIELENS_STORAGE_ROOT", "s3://bucket/movielens")
    monkeypatch.setattr(tasks, "max_node_count", lambda: 20)
    with pytest.raises(BadPriceVariable, match="m5.xlarge's price 'cheap'"):
        tasks.validate_config({"target": "emr"})

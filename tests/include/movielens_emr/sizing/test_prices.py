import datetime

import pytest

from movielens_emr.airflow import similarity_tasks as tasks
from movielens_emr.config.instances import instance_type
from movielens_emr.config.params import validate_run_config
from movielens_emr.sizing.prices import (
    ASSUMED_SPOT,
    SPOT_HISTORY,
    BadPriceVariable,
    on_demand_ec2_usd_per_hour,
    overrides_from_variable,
    price_in_force,
    spot_bid_price,
    spot_price_charged,
    time_weighted_price,
)


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


# Spot task nodes -------------------------------------------------------------------------------------
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def test_a_spot_price_counts_from_its_change_until_the_next_one():
    # 0.10 in force at the start (changed before it), 0.20 from 600 s, 0.05 from 900 s, to the end at 1200 s
    history = [(at(-3600), 0.10), (at(600), 0.20), (at(900), 0.05), (at(5000), 9.99)]
    expected = (0.10 * 600 + 0.20 * 300 + 0.05 * 300) / 1200
    assert time_weighted_price(history, at(0), at(1200)) == pytest.approx(expected)
    assert time_weighted_price(list(reversed(history)), at(0), at(1200)) == pytest.approx(expected)


def test_no_spot_price_in_force_at_the_start_is_no_price():
    assert time_weighted_price([(at(10), 0.1)], at(0), at(100)) is None
    assert time_weighted_price([], at(0), at(100)) is None
    assert time_weighted_price([(at(-1), 0.07)], at(0), at(0)) == 0.07  # a zero-length span


def test_a_spot_node_pays_the_historys_ec2_price_and_emrs_charge_in_full():
    m5 = instance_type("m5.xlarge")
    price = spot_price_charged(m5, 0.24, history_ec2_usd=0.07, why="EC2's Spot price history")
    assert (price.source, price.ec2_usd_per_hour) == (SPOT_HISTORY, 0.07)
    assert price.usd_per_node_hour == pytest.approx(0.07 + m5.emr_usd_per_hour)
    assert price.why == "EC2's Spot price history"


@pytest.mark.parametrize("on_demand", [0.24, 0.5, None])
def test_without_the_history_the_spot_price_is_the_assumed_fraction_of_the_on_demand_ec2_price(on_demand):
    m5 = instance_type("m5.xlarge")
    price = spot_price_charged(m5, on_demand, why="DescribeSpotPriceHistory failed: AccessDenied")
    in_force = m5.usd_per_hour if on_demand is None else on_demand
    assert price.source == ASSUMED_SPOT
    assert price.ec2_usd_per_hour == pytest.approx((in_force - m5.emr_usd_per_hour) * m5.spot_price_fraction)
    assert price.usd_per_node_hour == pytest.approx(price.ec2_usd_per_hour + m5.emr_usd_per_hour)
    assert price.why.startswith("assumed: 40% of the on-demand EC2 price") and "AccessDenied" in price.why
    if on_demand in (None, m5.usd_per_hour):  # at the catalogue's price: the catalogue's own Spot figure
        assert price.usd_per_node_hour == pytest.approx(m5.spot_usd_per_hour)


def test_the_spot_bid_is_the_on_demand_ec2_price_unless_a_maximum_is_set():
    m7g = instance_type("m7g.xlarge")
    assert on_demand_ec2_usd_per_hour(m7g) == pytest.approx(0.1632)
    assert spot_bid_price(m7g) == "0.1632"
    assert spot_bid_price(m7g, 0.05) == "0.05"

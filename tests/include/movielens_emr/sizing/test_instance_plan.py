"""Planning across instance types: fitted per type where the history allows, scaled by a calibrated speed
factor from one sample run otherwise, never planned without a run; Spot task nodes beside every count of 3 or
more; the Pareto front across types and markets, the choice and its reason; this machine beside them."""
import json
import math
import re

import pytest

from movielens_emr.config.instances import catalogue
from movielens_emr.sizing.advise import main
from movielens_emr.sizing.instance_plan import (
    format_type_plan,
    plan_instance_types,
    task_memory_need,
    type_models,
)
from movielens_emr.sizing.model import NoNodeCountFits, NotEnoughHistory

WORK = {"ml-25m": 3e11, "ml-1m": 4e9}
# Seconds of working time on m5.xlarge, and how much faster or slower each other type is.
SPEED = {"m5.xlarge": 1.0, "c5.2xlarge": 0.6, "r5.xlarge": 0.9}


def working_seconds(nodes, work, instance_type):
    machines = max(nodes - 1, 1)
    return SPEED[instance_type] * (120 + 2e-8 * work / machines + 10 * math.log(machines) + 4 * machines)


def row(nodes, instance_type="m5.xlarge", dataset="ml-1m", fraction=1.0):
    work = WORK[dataset] * fraction
    return {"run_id": f"{instance_type}-{dataset}-{nodes}-{fraction}", "outcome": "success", "target": "emr",
            "instance_type": instance_type, "dataset": dataset, "node_count": nodes,
            "sample_fraction": fraction,
            "pair_work": work, "provisioning_seconds": 400.0,
            "cluster_seconds": 400.0 + working_seconds(nodes, work, instance_type)}


def history():
    """m5.xlarge fitted (6 runs), c5.2xlarge one sample run, r5.xlarge one run, m6g.xlarge none."""
    m5 = [row(nodes, fraction=fraction) for nodes in (2, 4, 8) for fraction in (0.25, 1.0)]
    return m5 + [row(4, "c5.2xlarge", fraction=0.1), row(3, "r5.xlarge", "ml-25m", 0.01)]


def test_each_type_is_fitted_scaled_or_named_as_needing_one_run():
    models, unplanned = type_models(history(), "emr", ["m5.xlarge", "c5.2xlarge", "r5.xlarge", "m6g.xlarge"])
    assert models["m5.xlarge"].how == "fitted"
    assert models["c5.2xlarge"].how.startswith("scaled from m5.xlarge by a speed factor of 0.60 (1 run(s)")
    assert models["r5.xlarge"].how.startswith("scaled from m5.xlarge by a speed factor of 0.90")
    assert set(unplanned) == {"m6g.xlarge"} and "run it once" in unplanned["m6g.xlarge"]


def test_a_scaled_type_predicts_its_own_speed_with_low_confidence():
    plan = plan_instance_types(history(), "ml-1m", "emr", ["m5.xlarge", "c5.2xlarge"], node_counts=[5])
    by_type = {option["instance_type"]: option for option in plan["options"]}
    expected = working_seconds(5, 4e9, "c5.2xlarge")
    assert by_type["c5.2xlarge"]["work_seconds"] == pytest.approx(expected, rel=0.02)
    assert by_type["c5.2xlarge"]["confidence"] == "low"
    assert any("speed factor" in note for note in by_type["c5.2xlarge"]["extrapolation"])


THREE_TYPES = ["m5.xlarge", "c5.2xlarge", "r5.xlarge"]


def by_key(plan):
    """{(instance type, node count, market): option} of a plan's options."""
    return {(option["instance_type"], option["node_count"], option["market"]): option
            for option in plan["options"]}


def test_a_plan_for_ml_25m_with_a_deadline_compares_three_types_and_a_spot_option_and_says_why():
    plan = plan_instance_types(history(), "ml-25m", "emr", THREE_TYPES, node_counts=range(1, 21),
                               deadline_minutes=60)
    assert set(plan["types"]) == set(THREE_TYPES)
    compared = {(option["instance_type"], option["market"]) for option in plan["best_by_type"]}
    assert compared == {(name, market) for name in THREE_TYPES for market in ("on-demand", "spot")}
    chosen = plan["recommendation"]
    meeting = [option for option in plan["options"] if option["cluster_seconds"] <= 3600]
    assert chosen["cost_usd"] == min(option["cost_usd"] for option in meeting)
    # On this history Spot task nodes make the cheapest option within the hour; the reason says so, its risk,
    # and the all-on-demand option beside it.
    assert chosen["market"] == "spot" and chosen["spot_task_nodes"] == chosen["node_count"] - 2
    assert chosen["reason"].startswith(f"{chosen['node_count']} x {chosen['instance_type']}, "
                                       f"{chosen['spot_task_nodes']} of them Spot task nodes: ")
    assert "the cheapest within 60 min" in chosen["reason"]
    assert "at an assumed Spot price, and if they are reclaimed Hadoop reruns their tasks: at worst about" \
        in chosen["reason"]
    assert "all on-demand, the best is " in chosen["reason"]
    for other in set(THREE_TYPES) - {chosen["instance_type"]}:
        assert f"x {other} on-demand: " in chosen["reason"] and f"x {other}, " in chosen["reason"]
    front = [(option["cluster_seconds"], option["cost_usd"]) for option in plan["pareto"]]
    assert front == sorted(front) and all(b[1] < a[1] for a, b in zip(front, front[1:], strict=False))
    assert {option["market"] for option in plan["pareto"]} == {"on-demand", "spot"}


def test_a_spot_option_keeps_master_and_one_core_on_demand_at_the_assumed_spot_price():
    plan = plan_instance_types(history(), "ml-1m", "emr", ["m5.xlarge"], node_counts=range(1, 7))
    options = by_key(plan)
    assert {nodes for _, nodes, market in options if market == "spot"} == {3, 4, 5, 6}
    m5 = catalogue()["m5.xlarge"]
    for nodes in (3, 6):
        spot, on_demand = options["m5.xlarge", nodes, "spot"], options["m5.xlarge", nodes, "on-demand"]
        hours = on_demand["cluster_seconds"] / 3600
        assert spot["cluster_seconds"] == on_demand["cluster_seconds"]
        assert on_demand["cost_usd"] == pytest.approx(hours * nodes * m5.usd_per_hour, abs=1e-4)
        assert spot["cost_usd"] == pytest.approx(
            hours * (2 * m5.usd_per_hour + (nodes - 2) * m5.spot_usd_per_hour), abs=1e-4)
        assert spot["spot_usd_per_node_hour"] == m5.spot_usd_per_hour < m5.usd_per_hour
        # At worst every Spot node is lost near the end and its work is done again on the core node alone.
        alone = options["m5.xlarge", 2, "on-demand"]["work_seconds"]
        assert spot["if_spot_lost_seconds"] == pytest.approx(spot["cluster_seconds"] + alone, abs=0.2)
        assert spot["spot_notes"][0].startswith(f"an ASSUMED Spot price, ${m5.spot_usd_per_hour:.4g} per")
        assert "Spot task nodes can be reclaimed: Hadoop reruns a lost node's tasks" in spot["spot_notes"][1]
        assert on_demand["spot_notes"] == [] and on_demand["if_spot_lost_seconds"] is None


@pytest.mark.parametrize("changes", [
    {"spot_price_of": None},
    {"spot_price_of": lambda name: None},
    {"price_of": lambda name: None},
])
def test_without_both_prices_there_is_no_spot_option(changes):
    plan = plan_instance_types(history(), "ml-1m", "emr", ["m5.xlarge"], node_counts=range(1, 7), **changes)
    assert {option["market"] for option in plan["options"]} == {"on-demand"}


def test_a_local_plan_has_no_spot_option():
    local = [{**row(nodes), "target": "local", "instance_type": None, "provisioning_seconds": 0.0}
             for nodes in (1, 2, 4)] * 2
    plan = plan_instance_types(local, "ml-1m", "local", ["m5.xlarge"], node_counts=range(1, 5))
    assert {option["market"] for option in plan["options"]} == {"on-demand"}


def test_when_one_on_demand_node_is_cheapest_within_the_deadline_the_reason_says_why_not_spot():
    plan = plan_instance_types(history(), "ml-25m", "emr", THREE_TYPES, deadline_minutes=120)
    chosen = plan["recommendation"]
    assert chosen["market"] == "on-demand"
    spot_meeting = [option["cost_usd"] for option in plan["options"]
                    if option["market"] == "spot" and option["cluster_seconds"] <= 7200]
    assert spot_meeting and chosen["cost_usd"] < min(spot_meeting)
    assert "on-demand, since no Spot option does better for the goal (its best: " in chosen["reason"]


def test_a_budget_gets_the_fastest_option_within_it():
    plan = plan_instance_types(history(), "ml-25m", "emr", THREE_TYPES, budget_usd=0.6)
    chosen = plan["recommendation"]
    within = [option for option in plan["options"] if option["cost_usd"] <= 0.6]
    assert chosen["cluster_seconds"] == min(option["cluster_seconds"] for option in within)
    assert "the fastest within $0.6" in chosen["reason"]


def test_an_unreachable_goal_names_the_fastest_option():
    with pytest.raises(NoNodeCountFits, match=r"no instance type and node count fits: the fastest, 20 x "
                                              r"c5\.2xlarge on-demand, takes \d+\.\d min"):
        plan_instance_types(history(), "ml-25m", "emr", THREE_TYPES, deadline_minutes=1)


def test_without_any_fitted_type_the_plan_says_what_to_run():
    with pytest.raises(NotEnoughHistory, match="no instance type has enough runs"):
        plan_instance_types(history()[-2:], "ml-1m", "emr", ["c5.2xlarge"])


def test_the_command_line_plans_across_types(capsys):
    assert main(["--dataset", "ml-25m", "--instance-types", "m5.xlarge,c5.2xlarge,r5.xlarge,m6g.xlarge",
                 "--deadline-minutes", "60"], rows=history(), price_overrides={}) == 0
    printed = capsys.readouterr().out
    assert "c5.2xlarge: scaled from m5.xlarge by a speed factor of 0.60" in printed
    assert "m6g.xlarge: not planned: no run on m6g.xlarge yet" in printed
    assert "Pareto front" in printed and "recommended: " in printed
    assert "Each type's best for the goal, on-demand and Spot (cheapest within 60 min):" in printed
    assert re.search(r"^c5\.2xlarge +spot +\d+ ", printed, re.MULTILINE)
    assert "ASSUMED Spot price" in printed and "recommended: " in printed and "Spot task nodes" in printed
    plan = plan_instance_types(history(), "ml-25m", "emr", THREE_TYPES, deadline_minutes=60)
    chosen = plan["recommendation"]
    assert (f"  to run it: instance_type {chosen['instance_type']}, node_count {chosen['node_count']}, "
            f"spot_task_nodes {chosen['node_count'] - 2}") in printed


def test_the_command_line_plans_on_demand_only_when_asked(capsys):
    assert main(["--dataset", "ml-25m", "--instance-types", ",".join(THREE_TYPES), "--deadline-minutes", "60",
                 "--no-spot", "--json"], rows=history(), price_overrides={}) == 0
    plan = json.loads(capsys.readouterr().out)
    assert {option["market"] for option in plan["options"]} == {"on-demand"}
    assert "no Spot option in this plan" in plan["recommendation"]["reason"]


def local_row(seconds, dataset="ml-25m", nodes=2):
    return {"run_id": f"local-{dataset}-{seconds}", "outcome": "success", "target": "local",
            "instance_type": None, "dataset": dataset, "node_count": nodes, "sample_fraction": 1.0,
            "pair_work": WORK[dataset], "provisioning_seconds": 0.0, "cluster_seconds": seconds}


@pytest.mark.parametrize("seconds, faster", [(600.0, False), (20_000.0, True)])
def test_this_machine_is_set_beside_the_front(seconds, faster):
    plan = plan_instance_types(history() + [local_row(seconds), local_row(seconds * 2)], "ml-25m", "emr",
                               THREE_TYPES, deadline_minutes=60)
    single = plan["single_machine"]
    assert (single["seconds"], single["source"]) == (seconds, "measured")
    assert single["run_id"] == f"local-ml-25m-{seconds}"
    assert single["priced_as"] == "m5.xlarge"  # the cheapest planned type per node-hour
    hourly = catalogue()["m5.xlarge"].usd_per_hour
    assert single["cost_usd"] == pytest.approx(seconds / 3600 * hourly, abs=1e-4)
    assert bool(single["faster"]) is faster
    faster_on_front = [option for option in plan["pareto"] if option["cluster_seconds"] < seconds]
    assert single["faster"] == faster_on_front
    if not faster:
        assert "no option beats it on time (the fastest, " in single["summary"]
    cheaper_on_front = [option for option in plan["pareto"] if option["cost_usd"] < single["cost_usd"]]
    assert single["cheaper"] == cheaper_on_front and bool(cheaper_on_front) is faster
    assert ("no option costs less" in single["summary"]) is (not cheaper_on_front)
    assert single["summary"] in format_type_plan(plan)


def test_without_a_local_run_there_is_no_single_machine_line_but_a_hint():
    plan = plan_instance_types(history(), "ml-25m", "emr", THREE_TYPES)
    assert plan["single_machine"] is None
    assert "single machine: no local run of ml-25m at this sample fraction" in format_type_plan(plan)


def test_the_text_gives_seconds_when_the_runs_are_short():
    # The same history a hundred times faster: every time well under two minutes.
    fast = [{**row_, "cluster_seconds": row_["cluster_seconds"] / 100, "provisioning_seconds": 4.0}
            for row_ in history()]
    plan = plan_instance_types(fast, "ml-1m", "emr", THREE_TYPES, node_counts=range(1, 9), budget_usd=1)
    text = format_type_plan(plan)
    assert "type          market     nodes  seconds  cost USD  if lost  confidence" in text
    chosen = plan["recommendation"]
    assert f": {chosen['cluster_seconds']:.0f} s, $" in chosen["reason"] and " min" not in chosen["reason"]
    slow = format_type_plan(plan_instance_types(history(), "ml-1m", "emr", THREE_TYPES))
    assert "type          market     nodes  minutes  cost USD  if lost  confidence" in slow


def test_a_type_whose_containers_cannot_hold_the_largest_task_is_not_planned_and_says_why():
    python_mb = {name: instance.python_task_mb for name, instance in catalogue().items()}
    need = python_mb["r5.xlarge"]  # only r5.xlarge's containers are this large
    plan = plan_instance_types(history(), "ml-1m", "emr", THREE_TYPES, node_counts=[3, 5],
                               memory_need_of=lambda name, nodes: need)
    assert {option["instance_type"] for option in plan["options"]} == {"r5.xlarge"}
    assert plan["unplanned"]["m5.xlarge"].startswith(
        f"instance_type: m5.xlarge cannot hold the engine's largest task: it needs about {need:,} MB")


def test_a_need_that_falls_with_more_nodes_leaves_out_only_the_counts_that_do_not_fit():
    m5_python_mb = catalogue()["m5.xlarge"].python_task_mb

    def need(name, nodes):
        return m5_python_mb * 4 / nodes

    plan = plan_instance_types(history(), "ml-1m", "emr", ["m5.xlarge"], node_counts=[2, 4, 8],
                               spot_price_of=None, memory_need_of=need)
    assert sorted(option["node_count"] for option in plan["options"]) == [4, 8]


def test_when_no_type_can_hold_the_task_the_plan_says_so():
    with pytest.raises(NoNodeCountFits, match="cannot hold the engine's largest task"):
        plan_instance_types(history(), "ml-1m", "emr", THREE_TYPES, node_counts=[3],
                            memory_need_of=lambda name, nodes: 10**6)


def test_the_default_need_is_the_engines_own_for_the_dataset():
    need = task_memory_need("ml-25m", "emr", "similarity", "m5.xlarge", 4)
    assert 500 < need < catalogue()["c5.xlarge"].python_task_mb  # the job's bound at the block cap, ~1.2 GB
    assert task_memory_need("ml-25m", "emr", "als", "m5.xlarge", 4) is None  # als states none
    assert task_memory_need("no-such-dataset", "emr", "similarity", "m5.xlarge", 4) is None

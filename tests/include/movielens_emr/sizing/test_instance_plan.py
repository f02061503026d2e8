"""Planning across instance types: fitted per type where the history allows, scaled by a calibrated speed
factor from one sample run otherwise, never planned without a run; the Pareto front across types."""
import math

import pytest

from movielens_emr.sizing.advise import main
from movielens_emr.sizing.instance_plan import plan_instance_types, type_models
from movielens_emr.sizing.model import NotEnoughHistory

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


def test_a_plan_for_ml_25m_with_a_deadline_compares_three_types_and_says_why_it_chose():
    plan = plan_instance_types(history(), "ml-25m", "emr", ["m5.xlarge", "c5.2xlarge", "r5.xlarge"],
                               node_counts=range(1, 21), deadline_minutes=60)
    assert set(plan["types"]) == {"m5.xlarge", "c5.2xlarge", "r5.xlarge"}
    chosen = plan["recommendation"]
    fitting = [option for option in plan["options"] if option["cluster_seconds"] <= 3600]
    assert chosen["cost_usd"] == min(option["cost_usd"] for option in fitting)
    assert chosen["reason"].startswith(f"{chosen['node_count']} x {chosen['instance_type']}: ")
    assert "the cheapest within 60 min" in chosen["reason"]
    for other in {"m5.xlarge", "c5.2xlarge", "r5.xlarge"} - {chosen["instance_type"]}:
        assert f"{other}: " in chosen["reason"]
    front = [(option["cluster_seconds"], option["cost_usd"]) for option in plan["pareto"]]
    assert front == sorted(front) and all(b[1] < a[1] for a, b in zip(front, front[1:], strict=False))


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

import math

import pytest

from movielens_emr.reporting.sizing_section import (
    balanced_choice,
    member_price,
    plot_sizing,
    sizing_lines,
    sizing_section,
)
from movielens_emr.sizing.model import Observation, fit_time_model, predictions

FULL_WORK = 3e9


def minutes(nodes, work):
    return 100 + 3e-7 * work / nodes + 20 * math.log(nodes) + 5 * nodes


def member(nodes, fraction, state="success", **metrics):
    work = FULL_WORK * fraction
    return {"run_id": f"m-{nodes}-{fraction}", "state": state,
            "metrics": {"node_count": nodes, "sample_fraction": fraction, "pair_work": work,
                        "provisioning_seconds": 360.0, "cluster_seconds": 360.0 + minutes(nodes, work),
                        **metrics}}


def members():
    return [member(nodes, fraction) for nodes in (2, 4, 8) for fraction in (0.5, 1.0)]


def test_the_section_compares_the_fitted_curve_with_the_measured_full_input_runs():
    section = sizing_section(members(), price_per_node_hour=0.24)
    assert section["pair_work"] == FULL_WORK
    assert set(section["measured"]) == {"2", "4", "8"}
    predicted = {o["node_count"]: o["cluster_seconds"] for o in section["predictions"]}
    for nodes, seconds in section["measured"].items():
        assert predicted[int(nodes)] == pytest.approx(seconds, rel=1e-3)
    assert len(section["predictions"]) == 16  # up to twice the largest measured node count


def test_failed_members_and_members_without_pair_work_are_left_out():
    records = members() + [member(16, 1.0, state="failed"), member(16, 1.0, pair_work=None)]
    section = sizing_section(records, 0.24)
    assert section["model"]["runs"] == 6
    assert section["model"]["node_range"] == [2, 8]


def test_too_few_members_give_a_reason_instead_of_a_model():
    section = sizing_section(members()[:2], 0.24)
    assert "at least 4 successful runs" in section["error"]
    assert sizing_lines(section) == [f"No sizing model: {section['error']}."]


def test_the_balanced_choice_is_the_fewest_nodes_within_ten_percent_of_the_fastest():
    model = fit_time_model([Observation(n, FULL_WORK, minutes(n, FULL_WORK)) for n in (2, 4, 8, 16)])
    options = predictions(model, range(1, 17), FULL_WORK, 0.24)
    chosen = balanced_choice(options)
    fastest = min(o.cluster_seconds for o in options)
    assert chosen.cluster_seconds <= 1.1 * fastest
    assert all(o.cluster_seconds > 1.1 * fastest for o in options if o.node_count < chosen.node_count)


def test_the_report_lines_and_plot_are_made(tmp_path):
    section = sizing_section(members(), 0.24)
    text = "\n".join(sizing_lines(section))
    assert "Leave-one-out error" in text and "Balanced choice" in text
    png = plot_sizing({"sizing": section})
    assert png.startswith(b"\x89PNG")


def with_one_run(record, scale):
    """The member with a one-run prediction `scale` times the true cluster time of every node count."""
    nodes, work = record["metrics"]["node_count"], record["metrics"]["pair_work"]
    prediction = {"from_node_count": nodes, "from_task_slots": 4 * (nodes - 1), "missing": None,
                  "predictions": [{"node_count": n, "cluster_seconds": scale * (360 + minutes(n, work))}
                                  for n in range(1, 21)]}
    return {**record, "metrics": {**record["metrics"], "one_run_prediction": prediction}}


def test_the_one_run_curve_comes_from_the_full_input_member_on_the_most_nodes(tmp_path):
    scales = {"m-4-1.0": 1.1, "m-8-1.0": 1.2, "m-8-0.5": 1.5}
    records = [with_one_run(record, scales[record["run_id"]]) if record["run_id"] in scales else record
               for record in members()]
    section = sizing_section(records, 0.24)
    one_run = section["one_run"]
    assert (one_run["run_id"], one_run["from_node_count"], one_run["from_task_slots"]) == ("m-8-1.0", 8, 28)
    # compared with the measured medians of 2 and 4 nodes, not with its own run
    assert one_run["compared_node_counts"] == 2 and one_run["median_error"] == pytest.approx(0.2)
    assert "One-run prediction (dashed): the task waves of m-8-1.0 (8 nodes, 28 task slots)" in "\n".join(
        sizing_lines(section))
    assert "by 20% (median)" in sizing_lines(section)[-1]
    assert plot_sizing({"sizing": section}).startswith(b"\x89PNG")
    assert sizing_section(members(), 0.24)["one_run"] is None
    assert sizing_lines(sizing_section(members(), 0.24))[-1].startswith("No one-run prediction")


def test_the_members_price_is_their_median_and_none_without_one():
    priced = [member(n, 1.0, price_per_node_hour_usd=price) for n, price in ((2, 0.24), (4, 0.24), (8, 0.3))]
    assert member_price(priced) == 0.24
    assert member_price(members()) is None


def test_the_benchmark_report_has_a_sizing_section_and_plot():
    from movielens_emr.reporting import benchmark_report as report
    from movielens_emr.reporting.benchmark import summarize

    records = [{**record, "index": index, "conf": {"node_count": record["metrics"]["node_count"],
                                                   "sample_fraction": record["metrics"]["sample_fraction"]},
                "error": None, "metrics": {**record["metrics"], "wall_seconds": 900.0,
                                           "stage_seconds": [100.0, 200.0, 100.0], "overhead_seconds": 30.0,
                                           "node_minutes": 40.0, "estimated_cost_usd": 0.2}}
               for index, record in enumerate(members())]
    params = {"dataset": "ml-1m", "target": "emr", "node_counts": [2, 4, 8], "sample_fractions": [0.5, 1.0],
              "repetitions": 1, "member_runs": "cli", "parallel": False}
    document = {"benchmark_run_id": "b1", "params": params, "host_cpus": 2, **summarize(records),
                "member_runs": records, "sizing": sizing_section(records, 0.24)}
    files = report.report_files(document)
    assert "sizing.png" in files and files["sizing.png"].startswith(b"\x89PNG")
    assert "## Sizing" in files["report.md"].decode() and "Balanced choice" in files["report.md"].decode()


def test_a_cluster_benchmark_is_set_beside_this_machines_time_for_the_same_input():
    on_emr = [{**record, "metrics": {**record["metrics"], "target": "emr"}} for record in members()]
    fastest = min(option["cluster_seconds"] for option in sizing_section(on_emr, 0.24)["predictions"])
    slow = {"seconds": fastest * 3, "source": "measured", "run_id": "local-1", "node_count": 2}
    section = sizing_section(on_emr, 0.24, slow)
    assert section["single_machine"]["faster_node_counts"]
    assert sizing_lines(section)[-1].startswith("Against a single machine: a single machine (this one, 2 "
                                                "parallel tasks) takes")
    fast = {**slow, "seconds": fastest / 2}
    assert "no node count beats it on time" in sizing_lines(sizing_section(on_emr, 0.24, fast))[-1]
    assert sizing_lines(sizing_section(on_emr, 0.24))[-1].startswith("No single-machine line")
    assert "single_machine" not in sizing_section(members(), 0.24, slow)  # members on this machine

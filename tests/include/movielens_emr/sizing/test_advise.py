import json
import math
import re

import pytest

from movielens_emr.sizing.advise import (
    latest_one_run,
    main,
    one_run_candidates,
    plan_run,
    run_advice,
)
from movielens_emr.sizing.history_rows import planned_pair_work, usable_runs
from movielens_emr.sizing.model import NoNodeCountFits, NotEnoughHistory

FULL_WORK = {"ml-1m": 4e9, "ml-100k": 2e8}


def cluster_seconds(nodes, work):
    """Seconds of an EMR run of `nodes` nodes: Ernest's terms in its core nodes, which run the tasks."""
    machines = max(nodes - 1, 1)
    return 120 + 2e-7 * work / machines + 10 * math.log(machines) + 4 * machines


def history_row(nodes, dataset="ml-1m", fraction=1.0, **changes):
    work = FULL_WORK[dataset] * fraction
    row = {"run_id": f"{dataset}-{nodes}-{fraction}", "outcome": "success", "target": "emr",
           "instance_type": "m5.xlarge", "dataset": dataset, "node_count": nodes, "sample_fraction": fraction,
           "pair_work": work, "provisioning_seconds": 400.0,
           "cluster_seconds": 400.0 + cluster_seconds(nodes, work)}
    return {**row, **changes}


def history():
    return [history_row(nodes, "ml-1m", fraction) for nodes in (2, 4, 8) for fraction in (0.25, 1.0)]


def test_runs_on_samples_inform_the_full_run_through_the_pair_work():
    plan = plan_run(history(), "ml-1m", price_per_node_hour=0.24, node_counts=[3, 6])
    assert plan["pair_work"] == pytest.approx(4e9)
    for option in plan["predictions"]:
        expected = 400 + cluster_seconds(option["node_count"], 4e9)
        assert option["cluster_seconds"] == pytest.approx(expected, rel=1e-3)


def test_the_work_of_a_sample_is_scaled_from_the_datasets_measured_runs():
    assert planned_pair_work(history(), "ml-1m", 0.5) == pytest.approx(2e9)
    with pytest.raises(NotEnoughHistory, match="no successful run of ml-25m"):
        planned_pair_work(history(), "ml-25m", 1.0)


def test_only_successful_runs_of_the_same_target_and_instance_type_are_used():
    rows = history() + [history_row(16, outcome="failed"), history_row(16, instance_type="r5.xlarge"),
                        history_row(16, target="local"), history_row(16, pair_work=None)]
    runs, skipped = usable_runs(rows, "emr", "m5.xlarge")
    assert len(runs) == 6 and skipped == 1


def test_a_deadline_is_met_by_the_cheapest_count_and_the_plan_says_so():
    plan = plan_run(history(), "ml-1m", price_per_node_hour=0.24, node_counts=range(1, 9),
                    deadline_minutes=20)
    chosen = plan["recommendation"]
    assert chosen["cluster_seconds"] <= 1200
    assert all(option["cost_usd"] >= chosen["cost_usd"] for option in plan["predictions"]
               if option["cluster_seconds"] <= 1200)
    assert chosen["node_count"] in plan["pareto_node_counts"]


def test_the_command_line_prints_the_table_and_the_recommendation(capsys):
    assert main(["--dataset", "ml-1m", "--deadline-minutes", "20", "--max-nodes", "8"], rows=history(),
                price_overrides={}) == 0
    out = capsys.readouterr().out
    assert "leave-one-out error median" in out
    assert "prices: $0.24 per node-hour of m5.xlarge, from the built-in us-east-1 on-demand table" in out
    assert "recommended:" in out
    assert "8 nodes is outside" not in out and "1 nodes is outside the measured 2-8" in out


def test_the_command_line_answers_json(capsys):
    arguments = ["--dataset", "ml-1m", "--budget-usd", "1", "--json"]
    assert main(arguments, rows=history(), price_overrides={}) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["recommendation"]["cost_usd"] <= 1
    assert len(plan["predictions"]) == 20


def test_the_command_line_explains_missing_history_without_a_traceback(capsys):
    arguments = ["--dataset", "ml-1m", "--deadline-minutes", "5"]
    assert main(arguments, rows=history()[:2], price_overrides={}) == 2
    assert "the model needs at least 4 successful runs" in capsys.readouterr().err


def test_the_command_line_prices_as_the_pipeline_does(capsys, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": 0.48}')
    assert main(["--dataset", "ml-1m", "--budget-usd", "1", "--json"], rows=history()) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["price"] == {"instance_type": "m5.xlarge", "usd_per_node_hour": 0.48, "source": "variable",
                             "description": "from the Airflow Variable movielens_hourly_prices"}
    assert plan["predictions"] == plan_run(history(), "ml-1m", price_per_node_hour=0.48)["predictions"]
    monkeypatch.setenv("AIRFLOW_VAR_MOVIELENS_HOURLY_PRICES", '{"m5.xlarge": "cheap"}')
    assert main(["--dataset", "ml-1m", "--budget-usd", "1"], rows=history()) == 2
    assert "advise: the Variable movielens_hourly_prices: m5.xlarge's price 'cheap' is not" in (
        capsys.readouterr().err)


def test_a_run_left_to_the_advisor_gets_the_recommended_count_and_its_prediction():
    advice = run_advice(history(), "ml-1m", "emr", "m5.xlarge", 0.24, 1.0, None, 20, deadline_minutes=20)
    plan = plan_run(history(), "ml-1m", price_per_node_hour=0.24, deadline_minutes=20)
    assert advice["chosen_by"] == "advisor"
    assert advice["node_count"] == plan["recommendation"]["node_count"]
    assert advice["predicted_cluster_seconds"] == plan["recommendation"]["cluster_seconds"]
    assert advice["meets_deadline"] is True and advice["within_budget"] is None


def test_a_chosen_count_with_a_budget_is_checked_against_it():
    advice = run_advice(history(), "ml-1m", "emr", "m5.xlarge", 0.24, 1.0, 8, 20, budget_usd=0.01)
    assert advice["chosen_by"] == "user" and advice["node_count"] == 8
    assert advice["within_budget"] is False


def test_a_run_that_asks_the_advisor_nothing_gets_no_advice():
    assert run_advice(history(), "ml-1m", "emr", "m5.xlarge", 0.24, 1.0, 4, 20) is None


def test_an_impossible_deadline_is_refused_before_the_run_starts():
    with pytest.raises(NoNodeCountFits, match="no node count fits"):
        run_advice(history(), "ml-1m", "emr", "m5.xlarge", 0.24, 1.0, None, 20, deadline_minutes=2)


def one_run_metrics(from_nodes, seconds_by_nodes):
    """A metrics.json holding a one-run prediction from a run on from_nodes nodes."""
    return {"one_run_prediction": {"from_node_count": from_nodes, "from_task_slots": 4 * (from_nodes - 1),
                                   "missing": None, "predictions": [
                                       {"node_count": nodes, "task_slots": 4 * max(nodes - 1, 1),
                                        "cluster_seconds": seconds, "stage_seconds": [], "cost_usd": None}
                                       for nodes, seconds in seconds_by_nodes.items()]}}


def test_a_one_run_prediction_comes_from_a_run_of_the_same_input_on_the_same_instances():
    rows = [history_row(8, run_id="newest-other-type", instance_type="r5.xlarge"),
            history_row(8, run_id="newest-sample", fraction=0.25),
            history_row(4, run_id="failed", outcome="failed"), history_row(4, run_id="match-1"),
            history_row(2, run_id="other-dataset", dataset="ml-100k"), history_row(2, run_id="match-3")]
    assert one_run_candidates(rows, "ml-1m", "emr", "m5.xlarge", 1.0) == ["match-1", "match-3"]
    assert one_run_candidates(rows, "ml-1m", "emr", "m5.xlarge", 0.25) == ["newest-sample"]
    assert one_run_candidates(rows, "ml-1m", "local", "m5.xlarge", 1.0) == []


def test_the_newest_run_with_a_one_run_prediction_is_used_and_only_a_few_are_read():
    stored = {"a": None, "b": {"one_run_prediction": {"missing": "no job history", "predictions": []}},
              "c": one_run_metrics(4, {2: 900.0}), "d": one_run_metrics(8, {2: 800.0})}
    read = []

    def metrics_of(run_id):
        read.append(run_id)
        return stored[run_id]

    assert latest_one_run(["a", "b", "c", "d"], metrics_of)["run_id"] == "c"
    assert read == ["a", "b", "c"]
    assert latest_one_run(["a", "b", "c"], metrics_of, reads=2) is None


def test_the_command_line_shows_the_one_run_prediction_beside_the_fitted_one(capsys):
    rows = history()
    newest = rows[0]["run_id"]
    metrics = {newest: one_run_metrics(2, {1: 1500.0, 2: 1200.0, 3: 900.0})}
    assert main(["--dataset", "ml-1m", "--max-nodes", "4", "--sample-fraction", "0.25"], rows=rows,
                metrics_of=metrics.get) == 0
    out = capsys.readouterr().out.splitlines()
    assert (f"one-run: run {newest} (2 nodes, 4 task slots), its task waves replayed on each count's task "
            "slots") in out
    header = out.index("nodes  minutes  one-run  node-min  cost USD  confidence  note")
    assert [line.split()[2] for line in out[header + 1:header + 5]] == ["25.0", "20.0", "15.0", "-"]
    assert main(["--dataset", "ml-1m", "--json"], rows=rows, metrics_of=metrics.get) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["one_run"] is None  # no full-input run has one
    assert all(option["one_run_cluster_seconds"] is None for option in plan["predictions"])


# The single machine beside the cluster (the COST baseline).
def local_row(nodes, seconds, dataset="ml-1m", fraction=1.0, **changes):
    return history_row(nodes, dataset, fraction, run_id=f"local-{dataset}-{nodes}-{seconds}", target="local",
                       instance_type=None, provisioning_seconds=0.0, cluster_seconds=seconds, **changes)


def test_when_one_machine_is_faster_than_any_cluster_the_plan_says_so_plainly(capsys):
    rows = history() + [local_row(2, 300.0), local_row(1, 450.0)]
    plan = plan_run(rows, "ml-1m", price_per_node_hour=0.24, node_counts=range(1, 21))
    single = plan["single_machine"]
    assert (single["seconds"], single["source"]) == (300.0, "measured")
    assert single["run_id"] == "local-ml-1m-2-300.0"
    assert single["faster_node_counts"] == [] and single["cheaper_node_counts"] == []
    assert "no node count beats it on time" in single["summary"]
    assert "none beats it on cost" in single["summary"]
    assert main(["--dataset", "ml-1m"], rows=rows, price_overrides={}) == 0
    printed = capsys.readouterr().out
    assert "a single machine (this one, 2 parallel tasks) takes 5.0 min, measured by run local-ml-1m" \
        in printed


def test_a_slow_single_machine_is_beaten_by_the_counts_predicted_faster():
    rows = history() + [local_row(2, 3000.0)]
    plan = plan_run(rows, "ml-1m", price_per_node_hour=0.24, node_counts=range(1, 9))
    fastest_cluster = min(option["cluster_seconds"] for option in plan["predictions"])
    assert fastest_cluster < 3000
    assert plan["single_machine"]["faster_node_counts"] == [
        option["node_count"] for option in plan["predictions"] if option["cluster_seconds"] < 3000]
    assert "node counts predicted faster: " in plan["single_machine"]["summary"]


def test_the_single_machine_is_predicted_by_the_local_model_when_this_input_never_ran_locally():
    local_history = [local_row(nodes, 20 + 2e-7 * 2e8 / nodes, dataset="ml-100k") for nodes in (1, 2, 3, 4)]
    rows = history() + [history_row(2, "ml-100k")] + local_history
    single = plan_run(rows, "ml-1m", price_per_node_hour=0.24, node_counts=[4])["single_machine"]
    assert single["source"] == "predicted" and single["run_id"] is None
    assert single["seconds"] == pytest.approx(20 + 2e-7 * 4e9 / 4, rel=0.05)  # its best count, 4 tasks


def test_without_local_runs_there_is_no_single_machine_line_but_a_hint(capsys):
    rows = history() + [local_row(2, 300.0, engine="als")]  # another engine's time says nothing
    assert plan_run(rows, "ml-1m", node_counts=[4])["single_machine"] is None
    assert main(["--dataset", "ml-1m"], rows=rows, price_overrides={}) == 0
    assert "single machine: no local run of ml-1m at this sample fraction" in capsys.readouterr().out


def short_local_history():
    """Local runs of ml-1m of 5-45 s: 5 s fixed, 40 s of work spread over the parallel tasks."""
    return [local_row(nodes, 5 + 1e-8 * 4e9 * fraction / nodes, fraction=fraction)
            for nodes in (1, 2, 4) for fraction in (0.25, 1.0)]


@pytest.mark.parametrize("arguments, rows, unit, recommended", [
    (["--target", "local"], short_local_history(), "seconds", r"recommended: \d+ nodes, \d+ s, "),
    ([], history(), "minutes", r"recommended: \d+ nodes, \d+\.\d min, "),
])
def test_the_text_gives_seconds_when_the_runs_are_short_and_minutes_otherwise(capsys, arguments, rows, unit,
                                                                                recommended):
    assert main(["--dataset", "ml-1m", "--deadline-minutes", "30", "--max-nodes", "4", *arguments], rows=rows,
                price_overrides={}) == 0
    out = capsys.readouterr().out
    assert f"nodes  {unit}  node-min  cost USD  confidence  note" in out.splitlines()
    assert re.search(recommended, out)
    if unit == "seconds":  # each count's time in whole seconds: 45 s on one task, 15 s on four
        times = [line.split()[1] for line in out.splitlines() if re.match(r"^ +[1-4][ *] ", line)]
        assert times == ["45", "25", "18", "15"]

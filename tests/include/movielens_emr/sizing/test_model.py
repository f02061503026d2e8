import math

import pytest

from movielens_emr.sizing.model import (
    NoNodeCountFits,
    NotEnoughHistory,
    Observation,
    extrapolation_notes,
    fit_time_model,
    leave_one_out_errors,
    one_run_predictions,
    pareto_front,
    predict,
    predict_run_seconds,
    predict_stage_seconds,
    predictions,
    recommend,
    resplit_tasks,
    wave_makespan,
)

TRUE = (90.0, 2e-7, 12.0, 3.0)  # a, b, c, d of a made-up cluster


def ernest(nodes, work):
    a, b, c, d = TRUE
    return a + b * work / nodes + c * math.log(nodes) + d * nodes


def runs(node_counts=(2, 4, 8, 16), works=(1e9, 4e9), noise=()):
    observed = []
    for index, (nodes, work) in enumerate((n, w) for n in node_counts for w in works):
        factor = 1 + (noise[index % len(noise)] if noise else 0)
        observed.append(Observation(nodes, work, ernest(nodes, work) * factor, 300.0, f"run-{index}"))
    return observed


def test_the_fit_recovers_a_noise_free_ernest_curve_within_the_measured_range():
    model = fit_time_model(runs())
    for nodes in (2, 3, 5, 8, 12, 16):
        assert model.work_seconds(nodes, 2e9) == pytest.approx(ernest(nodes, 2e9), rel=1e-6)
    assert max(model.loo_errors) < 1e-6
    assert all(value >= 0 for value in model.coefficients)


def test_leave_one_out_error_grows_with_the_noise_in_the_runs():
    quiet = fit_time_model(runs(noise=(0.01, -0.01, 0.0)))
    noisy = fit_time_model(runs(noise=(0.2, -0.2, 0.1)))
    assert quiet.loo_median_error < noisy.loo_median_error
    assert noisy.loo_p90_error > 0.1


def test_leave_one_out_skips_a_run_whose_removal_leaves_one_node_count():
    observed = runs(node_counts=(4,), works=(1e9, 2e9, 3e9)) + runs(node_counts=(8,), works=(1e9,))
    assert len(leave_one_out_errors(observed)) == 3


@pytest.mark.parametrize("observed, words", [
    (runs(node_counts=(4,), works=(1e9, 2e9, 3e9, 4e9)), "at least two counts of machines"),
    (runs(node_counts=(4, 8), works=(1e9,)), "at least 4 successful runs"),
    ([Observation(n, 0, 100.0) for n in (2, 4, 8, 16)], "0 usable runs"),
])
def test_too_little_history_is_refused_by_name(observed, words):
    with pytest.raises(NotEnoughHistory, match=words):
        fit_time_model(observed)


def test_provisioning_is_modelled_apart_as_the_median():
    observed = [Observation(o.node_count, o.pair_work, o.work_seconds, p) for o, p in
                zip(runs(), (200, 250, 300, 310, 320, 330, 900, 340), strict=True)]
    model = fit_time_model(observed)
    assert model.provisioning_seconds == 315
    assert predict(model, 4, 2e9).cluster_seconds == pytest.approx(ernest(4, 2e9) + 315, rel=1e-6)


def test_predictions_outside_the_measured_nodes_or_work_are_flagged_and_low_confidence():
    model = fit_time_model(runs())
    assert extrapolation_notes(model, 8, 2e9) == []
    notes = extrapolation_notes(model, 32, 9e9)
    assert "32 nodes is outside the measured 2-16" in notes[0]
    assert "pair work 9e+09 is outside" in notes[1]
    assert predict(model, 32, 2e9).confidence == "low"
    assert predict(model, 8, 2e9).confidence == "high"


def test_cost_is_node_hours_times_the_price():
    model = fit_time_model(runs())
    prediction = predict(model, 4, 2e9, price_per_node_hour=0.24)
    assert prediction.cost_usd == pytest.approx(4 * prediction.cluster_seconds / 3600 * 0.24)


def candidates():
    return predictions(fit_time_model(runs()), range(2, 17), 4e9, price_per_node_hour=0.24)


def test_a_deadline_gets_the_cheapest_node_count_that_meets_it():
    options = candidates()
    chosen = recommend(options, deadline_minutes=10)
    assert chosen.cluster_seconds <= 600
    assert all(p.cost_usd >= chosen.cost_usd for p in options if p.cluster_seconds <= 600)
    assert any(p.cluster_seconds > 600 for p in options if p.cost_usd < chosen.cost_usd)


def test_a_budget_gets_the_fastest_node_count_within_it():
    options = candidates()
    budget = sorted(p.cost_usd for p in options)[5]
    chosen = recommend(options, budget_usd=budget)
    assert chosen.cost_usd <= budget
    assert all(p.cluster_seconds >= chosen.cluster_seconds for p in options if p.cost_usd <= budget)


def test_an_impossible_deadline_names_the_fastest_option():
    with pytest.raises(NoNodeCountFits, match=r"the fastest, \d+ nodes, takes"):
        recommend(candidates(), deadline_minutes=1)


def test_the_pareto_front_drops_options_slower_and_dearer_than_another():
    front = pareto_front(candidates())
    times = [p.cluster_seconds for p in front]
    costs = [p.cost_usd for p in front]
    assert times == sorted(times) and costs == sorted(costs, reverse=True)
    for option in candidates():
        assert any(p.cluster_seconds <= option.cluster_seconds and p.cost_usd <= option.cost_usd
                   for p in front)


@pytest.mark.parametrize("tasks, slots, makespan", [
    ([], 4, 0.0),
    ([10, 10, 10, 10], 4, 10),
    ([10, 10, 10, 10], 2, 20),
    ([10, 10, 10, 10, 10], 4, 20),   # a second wave of one task
    ([30, 10, 10, 10], 2, 30),       # the short tasks fill the other slot
    ([10, 10, 10, 30], 2, 40),       # in order: the long task starts last, beside one short
])
def test_waves_are_simulated_in_task_order(tasks, slots, makespan):
    assert wave_makespan(tasks, slots) == makespan


def test_a_stage_keeps_its_fixed_part_and_reruns_its_waves_on_other_slots():
    maps, reduces = [20] * 8, [40] * 4
    measured = 15 + wave_makespan(maps, 4) + wave_makespan(reduces, 4)  # 15 s start-up and shuffle
    assert predict_stage_seconds(measured, [maps, reduces], 4, 8) == 15 + 20 + 40
    assert predict_stage_seconds(measured, [maps, reduces], 4, 2) == 15 + 80 + 80


@pytest.mark.parametrize(("tasks", "measured_slots", "slots", "resplit"), [
    ([40, 40, 40, 40], 4, 8, [20] * 8),            # twice the slots: twice the tasks, half as long
    ([40, 40, 40, 40], 4, 2, [80, 80]),            # half the slots: half the tasks, twice as long
    ([60, 20, 20, 20], 4, 8, [30, 30, 10, 10, 10, 10, 10, 10]),  # the skew kept: max / mean 2.0
    ([10, 30], 2, 2, [10, 30]),                    # the measured slots: the measured tasks
    ([10, 30], 2, 1, [40]),                        # never fewer than one task
    ([10, 20, 30], 3, 2, [20, 40]),                # the middle task's input shared by both
    ([], 2, 8, []),
])
def test_a_phase_that_follows_the_slots_is_dealt_again_with_its_total_and_skew(tasks, measured_slots, slots,
                                                                                resplit):
    assert resplit_tasks(tasks, measured_slots, slots) == pytest.approx(resplit)
    assert sum(resplit_tasks(tasks, measured_slots, slots)) == pytest.approx(sum(tasks))


def test_reduce_tasks_that_follow_the_slots_get_faster_where_a_fixed_task_list_would_not():
    maps, reduces = [20] * 8, [40] * 4
    measured = 15 + wave_makespan(maps, 4) + wave_makespan(reduces, 4)
    # EMR: the map tasks follow the input's splits, the reduce tasks the slots.
    assert predict_stage_seconds(measured, [maps, reduces], 4, 8, split_phases=(1,)) == 15 + 20 + 20
    assert predict_stage_seconds(measured, [maps, reduces], 4, 16, split_phases=(1,)) == 15 + 20 + 10
    assert predict_stage_seconds(measured, [maps, reduces], 4, 16, split_phases=(0, 1)) == 15 + 10 + 10


def test_a_run_keeps_its_time_outside_the_stages_and_reruns_each_stages_waves():
    maps, reduces = [10] * 4, [20] * 2
    stage_1 = 3 + wave_makespan(maps, 2) + wave_makespan(reduces, 2)  # 3 + 20 + 20
    cluster, stages = predict_run_seconds(100.0, [stage_1, 5.0], [[maps, reduces], [[5], []]], 2, 4)
    assert stages == [3 + 10 + 20, 5.0]
    assert cluster == 100 - (43 + 5) + (33 + 5)  # provisioning and the gaps between stages kept


def test_one_run_predictions_cover_each_node_count_with_its_slots_and_cost():
    phases = [[[10] * 4, [20] * 2]]
    options = one_run_predictions(70.0, [40.0], phases, 2, {3: 2, 1: 1, 5: 4}, price_per_node_hour=0.24)
    assert [(o["node_count"], o["task_slots"], o["cluster_seconds"]) for o in options] == [
        (1, 1, 30 + 80), (3, 2, 70), (5, 4, 30 + 30)]
    assert options[0]["stage_seconds"] == [80] and options[2]["cost_usd"] == round(5 * 60 / 3600 * 0.24, 4)
    assert one_run_predictions(70.0, [40.0], phases, 2, {3: 2})[0]["cost_usd"] is None


def test_on_emr_the_model_counts_the_core_nodes_that_run_the_tasks():
    def seconds(nodes):
        machines = max(nodes - 1, 1)
        return 30 + 1e-7 * 2e9 / machines + 5 * machines

    observed = [Observation(nodes, 2e9, seconds(nodes)) for nodes in (2, 3, 5, 9)]
    model = fit_time_model(observed, target="emr")
    # 1 node runs its tasks on the master, 2 nodes on one core node: one machine each.
    assert model.work_seconds(1, 2e9) == pytest.approx(model.work_seconds(2, 2e9))
    assert model.work_seconds(17, 2e9) == pytest.approx(seconds(17), rel=1e-6)
    with pytest.raises(NotEnoughHistory, match="1 and 2 nodes both run tasks on one machine"):
        fit_time_model([Observation(nodes, work, 100.0) for nodes in (1, 2) for work in (1e9, 2e9)],
                       target="emr")

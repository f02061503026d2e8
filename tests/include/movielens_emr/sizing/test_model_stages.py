import dataclasses
import math
import pickle

import pytest

from movielens_emr.sizing.model import (
    STAGE_SIZES,
    NotEnoughHistory,
    Observation,
    PlannedWork,
    StagedTimeModel,
    TimeModel,
    extrapolation_notes,
    fit_run_model,
    fit_stage_model,
    predict,
)

# Each stage's true costs on a made-up machine, in stage_term_names' order: fixed, each size / m, log m, m.
TRUE_STAGES = ((2.0, 3e-5, 0.0, 0.1), (1.0, 2e-8, 5e-6, 0.5, 0.2), (1.5, 4e-6, 0.0, 0.05))
OUTSIDE = 0.5
# Datasets of other proportions of ratings to W: (ratings read, W and output pairs of the whole input). Their
# output is the same share of W, so that a dataset's output estimated from the others' is its own.
DATASETS = {"small": (1e5, 1e8, 2e4), "dense": (1e6, 4e8, 8e4), "wide": (3e5, 2e8, 4e4)}


def true_stage_seconds(machines, sizes):
    return tuple(
        costs[0] + sum(cost * sizes[name] / machines for cost, name in zip(costs[1:], names, strict=False))
        + costs[-2] * math.log(machines) + costs[-1] * machines
        for costs, names in zip(TRUE_STAGES, STAGE_SIZES, strict=True))


def sizes_at(dataset, fraction):
    ratings, work, output = DATASETS[dataset]
    # W and the output grow faster than the fraction: heavy users dominate W, pairs need co-raters.
    return {"ratings": ratings, "pair_work": work * fraction ** 1.2, "output_pairs": output * fraction ** 2}


def run(dataset, fraction, nodes, noise=0.0, provisioning=0.0):
    sizes = sizes_at(dataset, fraction)
    stages = tuple(seconds * (1 + noise) for seconds in true_stage_seconds(nodes, sizes))
    return Observation(nodes, sizes["pair_work"], sum(stages) + OUTSIDE, provisioning,
                       f"{dataset}-{fraction}-{nodes}", dataset, sizes["ratings"], sizes["output_pairs"],
                       stages)


def history(datasets=("small", "dense"), fractions=(0.3, 0.6, 1.0), node_counts=(1, 2, 4), noises=(0.0,)):
    runs = [(dataset, fraction, nodes)
            for dataset in datasets for fraction in fractions for nodes in node_counts]
    return [run(*case, noise=noises[index % len(noises)]) for index, case in enumerate(runs)]


def planned(dataset, fraction, output_known=True):
    sizes = sizes_at(dataset, fraction)
    return PlannedWork(sizes["pair_work"], dataset, sizes["ratings"],
                       sizes["output_pairs"] if output_known else None)


def test_the_stage_fit_recovers_each_stages_true_costs_from_noise_free_runs():
    model = fit_stage_model(history())
    for recovered, true in zip(model.stage_coefficients(), TRUE_STAGES, strict=True):
        assert recovered == pytest.approx(true, rel=1e-4, abs=1e-9)
    assert model.outside_stages_seconds == pytest.approx(OUTSIDE)


def test_a_noisy_history_still_predicts_each_stage_within_tolerance():
    model = fit_stage_model(history(noises=(0.05, -0.05, 0.02, -0.03)))
    for nodes in (1, 3, 4):
        work = planned("small", 0.8)
        expected = true_stage_seconds(nodes, sizes_at("small", 0.8))
        assert model.stage_seconds(nodes, work) == pytest.approx(expected, rel=0.1)
        assert model.work_seconds(nodes, work) == pytest.approx(sum(model.stage_seconds(nodes, work))
                                                                + model.outside_stages_seconds)


def test_a_dataset_of_other_proportions_is_predicted_stage_by_stage():
    model = fit_stage_model(history())
    expected = sum(true_stage_seconds(2, sizes_at("wide", 1.0))) + OUTSIDE
    assert model.work_seconds(2, planned("wide", 1.0)) == pytest.approx(expected, rel=1e-4)


def test_a_prediction_gives_its_stages_and_its_total_with_provisioning():
    model = fit_stage_model([dataclasses.replace(o, provisioning_seconds=300.0) for o in history()])
    prediction = predict(model, 2, planned("small", 1.0), price_per_node_hour=0.5)
    assert len(prediction.stage_seconds) == 3
    assert prediction.work_seconds == pytest.approx(sum(prediction.stage_seconds) + OUTSIDE)
    assert prediction.cluster_seconds == pytest.approx(prediction.work_seconds + 300)
    assert prediction.as_dict()["stage_seconds"] == [round(s, 1) for s in prediction.stage_seconds]


def test_held_out_errors_are_small_when_every_dataset_follows_the_same_costs():
    # Three datasets: each one held out, the other two still differ in ratings, which stage 1 follows.
    model = fit_stage_model(history(("small", "dense", "wide"), noises=(0.02, -0.02, 0.0)))
    assert len(model.dataset_errors) == len(model.loo_errors) == 27
    assert model.dataset_p90_error < 0.1 and model.loo_p90_error < 0.1


def test_held_out_error_across_datasets_grows_when_a_dataset_runs_slower_than_its_sizes_say():
    slow = [dataclasses.replace(o, stage_seconds=tuple(3 * s for s in o.stage_seconds),
                                work_seconds=3 * o.work_seconds) for o in history(datasets=("dense",))]
    model = fit_stage_model(history(datasets=("small", "wide")) + slow)
    assert model.dataset_p90_error > 0.5
    alike = fit_stage_model(history(("small", "wide", "dense")))
    assert model.dataset_median_error > alike.dataset_median_error


def test_a_dataset_not_fitted_on_is_noted_and_its_confidence_comes_from_the_error_across_datasets():
    model = fit_stage_model(history(("small", "dense"), fractions=(0.3, 0.6, 1.0, 1.2)))
    prediction = predict(model, 2, planned("wide", 1.0))
    note = prediction.extrapolation[0]
    assert note.startswith("wide is not among the fitted datasets (dense, small): predicted across datasets; "
                           "held-out error across datasets: median")
    assert prediction.confidence_basis.startswith("held-out error across datasets: 90th percentile")
    assert prediction.confidence == "high"  # the made-up datasets share their costs
    assert predict(model, 2, planned("small", 1.0)).extrapolation == ()
    assert predict(model, 2, planned("small", 1.0)).confidence_basis.startswith("leave-one-out error")


def test_a_fit_on_one_dataset_says_its_error_on_another_is_unmeasured_and_is_low_confidence():
    model = fit_stage_model(history(("small",)))
    assert model.dataset_errors == ()
    prediction = predict(model, 2, planned("dense", 0.3))
    notes = prediction.extrapolation
    assert any("its error on a dataset not fitted on is unmeasured" in note for note in notes)
    assert prediction.confidence == "low" and prediction.error_bound is None


def test_sizes_outside_the_measured_ones_are_noted_and_low_confidence():
    model = fit_stage_model(history(("small", "wide")))
    prediction = predict(model, 2, PlannedWork(1.5e8, "small", 1e7, 3e4))
    assert "ratings read 1e+07 is outside the measured 1e+05-3e+05" in prediction.extrapolation
    assert prediction.confidence == "low"
    assert extrapolation_notes(model, 8, planned("small", 1.0)) == ["8 nodes is outside the measured 1-4"]


def test_unknown_output_pairs_are_estimated_from_the_datasets_own_ratio_else_the_fitted_median():
    model = fit_stage_model(history(("small", "dense")))
    own = predict(model, 2, planned("small", 1.0, output_known=False))
    # small's runs' median output / W: that of its median fraction, 0.6 (output / W grows as f ** 0.8).
    ratio = DATASETS["small"][2] / DATASETS["small"][1] * 0.6 ** 0.8
    assert model.sizes_of(planned("small", 1.0, output_known=False))[0]["output_pairs"] == pytest.approx(
        sizes_at("small", 1.0)["pair_work"] * ratio)
    assert "small's measured output pairs per unit of W" in own.extrapolation[0]
    unseen = predict(model, 2, planned("wide", 1.0, output_known=False))
    assert any("the fitted datasets' median output pairs per unit of W" in note
               for note in unseen.extrapolation)


def test_a_plain_number_of_pair_work_is_still_planned_with_its_other_sizes_estimated():
    model = fit_stage_model(history())
    prediction = predict(model, 2, 1e8)
    assert prediction.work_seconds > 0
    estimated = [note.split(" estimated")[0] for note in prediction.extrapolation]
    assert estimated == ["ratings read", "output pairs"]


def test_scaling_every_coefficient_scales_the_prediction_as_a_speed_factor_does():
    model = fit_stage_model(history())
    faster = dataclasses.replace(model, coefficients=tuple(0.5 * value for value in model.coefficients))
    work = planned("dense", 0.6)
    assert faster.work_seconds(3, work) == pytest.approx(0.5 * model.work_seconds(3, work))


def test_the_plan_uses_the_stage_model_when_runs_recorded_their_stages_and_ernests_otherwise():
    assert isinstance(fit_run_model(history()), StagedTimeModel)
    whole_runs = [dataclasses.replace(o, stage_seconds=()) for o in history()]
    assert isinstance(fit_run_model(whole_runs), TimeModel)
    mixed = whole_runs[:10] + history()[10:13]  # three runs with stages: too few for the stage model
    assert isinstance(fit_run_model(mixed), TimeModel)


@pytest.mark.parametrize("runs, words", [
    (history()[:3], "3 runs with their stages' seconds"),
    ([run("small", 0.5, 2), run("dense", 0.5, 2), run("small", 1.0, 2), run("dense", 1.0, 2)],
     "on 1 count"),
    ([dataclasses.replace(o, output_pairs=None) for o in history()], "0 runs with their stages"),
])
def test_a_stage_fit_without_enough_runs_is_refused_by_name(runs, words):
    with pytest.raises(NotEnoughHistory, match=words):
        fit_stage_model(runs)


def test_both_models_describe_their_terms():
    staged = fit_stage_model(history())
    assert list(staged.coefficient_dict())[:4] == ["stage 1 fixed", "stage 1 ratings read/m", "stage 1 log m",
                                                   "stage 1 m"]
    assert staged.formula().startswith(
        "per stage, seconds on m machines: stage 1 = 2 + 3e-05 * ratings read/m")
    whole = fit_run_model([dataclasses.replace(o, stage_seconds=()) for o in history()])
    assert whole.formula().startswith("t(m) = ") and list(whole.coefficient_dict()) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("work", [0, -1.0, float("nan"), float("inf")])
def test_planned_work_must_be_a_positive_number(work):
    with pytest.raises(ValueError, match="pair work must be a positive number"):
        PlannedWork(work)


def test_planned_work_is_its_w_wherever_a_number_is_expected_and_keeps_its_sizes_when_copied():
    work = PlannedWork(2e8, "ml-100k", 1e5, 3e4, "counted")
    assert work == 2e8 and f"{work:.3g}" == "2e+08" and work / 2 == 1e8
    copied = pickle.loads(pickle.dumps(work))
    assert (copied, copied.dataset, copied.ratings, copied.output_pairs, copied.source) == (
        2e8, "ml-100k", 1e5, 3e4, "counted")

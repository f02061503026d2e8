"""The sizing benchmark's measuring and reporting parts, on made-up runs, and one real run of the job."""
import math

import pytest

from benchmarks import sizing_accuracy
from benchmarks.sizing_accuracy import Case, Measured, Sizes
from movielens_emr.data.datasets import SAMPLE_DATA
from movielens_emr.sizing.model import fit_run_model, fit_time_model


def test_each_stage_runs_from_its_steps_start_to_the_next_and_the_last_to_the_end():
    assert sizing_accuracy.stage_spans([1.0, 3.5, 4.0], 0.5, 10.0) == (2.5, 0.5, 6.0)


def test_output_pairs_are_the_lines_of_the_part_files(tmp_path):
    (tmp_path / "part-00000").write_text("a\nb\n")
    (tmp_path / "part-00001").write_text("c\n")
    (tmp_path / "_SUCCESS").write_text("")
    assert sizing_accuracy.count_output_pairs(tmp_path) == 3


def test_a_case_is_measured_by_the_median_of_its_repeats():
    runs = [Measured(9.0, (1.0, 5.0, 3.0), 70), Measured(14.0, (2.0, 9.0, 3.0), 70),
            Measured(10.0, (1.5, 4.0, 4.0), 70)]
    assert sizing_accuracy.median_run(runs) == Measured(10.0, (1.5, 5.0, 3.0), 70)


# Made-up stage costs: stage 1 by ratings, stage 2 by W, stage 3 by output pairs, each over the nodes.
def stage_seconds(case, sizes, output):
    return (1 + 2e-5 * sizes.ratings / case.nodes, 0.5 + 1e-7 * sizes.pair_work / case.nodes,
            1 + 1e-4 * output / case.nodes)


SIZES = {("a", 0.5): Sizes(2_000_000, 100_000), ("a", 1.0): Sizes(5_000_000, 100_000),
         ("b", 0.5): Sizes(8_000_000, 300_000), ("b", 1.0): Sizes(20_000_000, 300_000),
         ("c", 0.5): Sizes(4_000_000, 200_000), ("c", 1.0): Sizes(10_000_000, 200_000)}


def made_up_runs(cases, slower=1.0):
    runs = {}
    for case in cases:
        sizes = SIZES[case.dataset, case.fraction]
        output = sizes.pair_work // 1000
        stages = tuple(slower * seconds for seconds in stage_seconds(case, sizes, output))
        runs[case] = [Measured(sum(stages) * factor + 0.3, tuple(s * factor for s in stages), output)
                      for factor in (0.95, 1.0, 1.1)]
    return runs


def report(held_out_slower=1.0):
    training = made_up_runs([Case(dataset, fraction, nodes) for dataset in "ab" for fraction in (0.5, 1.0)
                             for nodes in (1, 2)])
    fitted = sizing_accuracy.observations(training, SIZES)
    model = fit_run_model(fitted, target="local")
    held_out = made_up_runs([Case("c", 1.0, 1), Case("c", 1.0, 2)], held_out_slower)
    return sizing_accuracy.report_rows(held_out, SIZES, model, fit_time_model(fitted, target="local")), model


def test_the_training_runs_become_observations_with_their_stages_and_sizes():
    training = made_up_runs([Case("a", 0.5, 2)])
    observed = sizing_accuracy.observations(training, SIZES)
    assert len(observed) == 3
    first = observed[0]
    assert (first.pair_work, first.ratings, first.output_pairs) == (2_000_000, 100_000, 2_000)
    assert len(observed[0].stage_seconds) == 3 and observed[0].dataset == "a"


def test_a_dataset_never_fitted_on_is_predicted_and_compared_with_its_median():
    rows, _ = report()
    for row in rows:
        assert row["measured"].seconds == pytest.approx(sum(stage_seconds(row["case"], SIZES["c", 1.0],
                                                                          10_000)) + 0.3)
        assert row["spread"] == pytest.approx(1.1 / 0.95, rel=0.01)
        assert row["prediction"].extrapolation[0].startswith("c is not among the fitted datasets (a, b)")
        assert row["scaled_work"] == 10_000_000


def test_the_summary_says_whether_the_target_was_met(capsys):
    rows, _ = report()
    sizing_accuracy.print_summary(rows)
    assert "(target <= 20%: met)" in capsys.readouterr().out
    slow_rows, _ = report(held_out_slower=2.0)
    sizing_accuracy.print_summary(slow_rows)
    out = capsys.readouterr().out
    assert "(target <= 20%: missed)" in out and "c: median" in out


def test_the_report_prints_every_case_beside_its_measurement(capsys):
    rows, model = report()
    sizing_accuracy.print_report(rows, model, 24, [1.0, 0.5, 1.5], 2.0)
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| c |")]
    assert len(table) == 2 and all(line.count("|") == 15 for line in table)
    assert "load as each run started: median 1.00, largest 1.50" in out and "Model: per stage" in out


def test_a_run_waits_for_a_quiet_machine_but_not_forever():
    loads = iter([3.0, 2.5, 0.8, 0.8])
    slept = []
    assert sizing_accuracy.wait_for_quiet(1.0, 60, sleep=slept.append, load=lambda: (next(loads),)) == 0.8
    assert len(slept) == 2
    assert sizing_accuracy.wait_for_quiet(1.0, 10, sleep=slept.append, load=lambda: (4.0,)) == 4.0
    assert len(slept) == 4


def test_after_one_run_of_a_dataset_its_other_cases_are_planned_from_that_run():
    training = made_up_runs([Case(dataset, fraction, nodes) for dataset in "ab" for fraction in (0.5, 1.0)
                             for nodes in (1, 2)])
    held_out = made_up_runs([Case("c", 0.5, 1), Case("c", 1.0, 1), Case("c", 1.0, 2)])
    results = sizing_accuracy.after_one_run(training, held_out, SIZES)
    assert [case for case, _, _ in results] == [Case("c", 1.0, 1), Case("c", 1.0, 2)]
    for _, predicted, measured in results:
        assert predicted == pytest.approx(measured, rel=0.05)


def test_one_real_run_records_three_stages_and_its_output(tmp_path):
    measured = sizing_accuracy.run_job(SAMPLE_DATA / "ml-latest-small-sample" / "ratings.csv",
                                       Case("sample", 0.5, 1), tmp_path / "run")
    assert len(measured.stage_seconds) == 3 and all(seconds > 0 for seconds in measured.stage_seconds)
    assert math.isclose(sum(measured.stage_seconds), measured.seconds, rel_tol=0.5)
    assert measured.output_pairs >= 0

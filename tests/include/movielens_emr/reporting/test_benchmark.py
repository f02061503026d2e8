"""The benchmark's parameters, member plan and statistics: hand-computed cases and the study's figures."""
import pytest

from movielens_emr.config.params import InvalidParam, validate_run_config
from movielens_emr.reporting import benchmark
from movielens_emr.reporting.benchmark import (
    BenchmarkConfig,
    amdahl_fit,
    amdahl_fraction_relative,
    cli_member_record,
    fit_line,
    parse_listed_runs,
    plan_members,
    schedule_from_env,
    summarize,
    validate_benchmark_config,
)

ENGINES = ("similarity", "als")
# The study: ml-1m on 4 and 8 nodes.
STUDY_WALL = {4: 31 * 60 + 8, 8: 18 * 60 + 2}
STUDY_CLUSTER = {4: 29 * 60 + 33, 8: 16 * 60 + 33}


def member(node_count, wall, cluster, stages=(10.0, 20.0, 30.0), fraction=1.0, state="success", index=0):
    metrics = {"wall_seconds": wall, "cluster_seconds": cluster, "provisioning_seconds": 0.0,
               "stage_seconds": list(stages), "overhead_seconds": wall - cluster,
               "node_minutes": node_count * cluster / 60,
               "estimated_cost_usd": node_count * cluster / 3600 * 0.24}
    succeeded = state == "success"
    return {"index": index, "run_id": f"run-{node_count}-{fraction}-{index}", "state": state,
            "conf": {"node_count": node_count, "sample_fraction": fraction},
            "metrics": metrics if succeeded else None, "error": None if succeeded else "boom"}


def by_nodes(summary):
    return {row["node_count"]: row for row in summary["configurations"]}


def test_the_study_figures_give_its_speedups():
    rows = by_nodes(summarize([member(n, STUDY_WALL[n], STUDY_CLUSTER[n]) for n in (4, 8)]))
    assert round(rows[8]["wall_speedup"], 2) == 1.73
    assert round(rows[8]["cluster_speedup"], 2) == 1.79
    assert rows[8]["efficiency"] == pytest.approx(1773 / 993 / 2, abs=1e-3)
    assert (rows[4]["wall_speedup"], rows[4]["cluster_speedup"], rows[4]["efficiency"]) == (1.0, 1.0, 1.0)


def test_relative_amdahl_on_the_study_figures():
    # p = (1 - 1/1.79) / (1 - 1/2) = 0.88: the study's convention, relative to 4 nodes.
    assert round(amdahl_fraction_relative(1.79, 2), 2) == 0.88
    assert round(amdahl_fraction_relative(STUDY_CLUSTER[4] / STUDY_CLUSTER[8], 2), 2) == 0.88


def test_amdahl_fit_through_the_study_figures_in_both_conventions():
    # a + b/4 = 1773, a + b/8 = 993: b = 6240, a = 213; p = 6240 / 6453 = 0.97 absolute.
    fit = amdahl_fit(STUDY_CLUSTER)
    assert (fit["serial_seconds"], fit["parallel_seconds"]) == pytest.approx((213.0, 6240.0))
    assert round(fit["parallel_fraction_absolute"], 2) == 0.97
    assert round(fit["parallel_fraction_relative"], 2) == 0.88
    assert fit["parallel_fraction_relative"] == pytest.approx(
        amdahl_fraction_relative(STUDY_CLUSTER[4] / STUDY_CLUSTER[8], 2), abs=1e-4)
    assert fit["residual_rms_seconds"] == 0.0 and fit["baseline_node_count"] == 4


def test_amdahl_fit_recovers_an_exact_law_from_four_points():
    fit = amdahl_fit({n: 100 + 800 / n for n in (1, 2, 4, 8)})
    assert (fit["serial_seconds"], fit["parallel_seconds"]) == pytest.approx((100.0, 800.0))
    assert fit["parallel_fraction_absolute"] == pytest.approx(800 / 900, abs=1e-4)
    assert fit["parallel_fraction_relative"] == pytest.approx(800 / 900, abs=1e-4)  # n0 = 1: the same
    assert fit["residual_rms_seconds"] == 0.0


def test_amdahl_least_squares_on_three_points_by_hand():
    # x = 1/n = 1, 1/2, 1/4 and y = 10, 6, 5: slope = 2 / 0.291667 = 48/7, intercept = 7 - 48/7 * 7/12 = 3;
    # residuals 1/7, -3/7, 2/7, so RMS = sqrt((1 + 9 + 4) / 49 / 3) = sqrt(2/21); p = (48/7) / (69/7) = 16/23.
    fit = amdahl_fit({1: 10.0, 2: 6.0, 4: 5.0})
    assert (fit["serial_seconds"], fit["parallel_seconds"]) == pytest.approx((3.0, 48 / 7), abs=1e-3)
    assert fit["residual_rms_seconds"] == pytest.approx((2 / 21) ** 0.5, abs=1e-3)
    assert fit["parallel_fraction_absolute"] == pytest.approx(16 / 23, abs=1e-4)


def test_amdahl_needs_two_node_counts():
    assert amdahl_fit({4: 100.0}) is None
    with pytest.raises(ValueError, match="two distinct"):
        fit_line([0.5, 0.5], [1.0, 2.0])


def test_medians_over_repetitions_per_configuration_and_stage():
    members = [member(2, 100, 90, (10, 20, 30)), member(2, 300, 200, (50, 60, None), index=1),
               member(2, 110, 95, (12, 18, 40), index=2)]
    row = summarize(members)["configurations"][0]
    assert (row["wall_seconds"], row["cluster_seconds"], row["overhead_seconds"]) == (110, 95, 15)
    assert row["stage_seconds"] == [12, 20, 35]  # the third stage's median over the two runs that timed it
    assert row["stages_seconds"] == 67 and row["fixed_seconds"] == 110 - 67
    assert row["node_minutes"] == pytest.approx(2 * 95 / 60, abs=1e-3)
    assert (row["runs"], row["measured"], row["state"]) == (3, 3, "success")


def test_a_failed_member_is_reported_never_averaged_in():
    failed = member(2, 9999, 9999, index=1, state="failed")
    failed["metrics"] = {"wall_seconds": 9999, "cluster_seconds": 9999}  # a partial record counts no more
    summary = summarize([member(2, 100, 90), failed, member(4, 60, 50, index=2)])
    row = by_nodes(summary)[2]
    assert (row["wall_seconds"], row["measured"], row["runs"], row["state"]) == (100, 1, 2, "partial")
    assert row["failed_runs"] == [{"run_id": "run-2-1.0-1", "state": "failed", "error": "boom"}]
    assert (summary["members"], summary["measured_members"], summary["failed_members"]) == (3, 2, 1)


def test_speedups_start_from_the_smallest_measured_node_count():
    summary = summarize([member(1, 500, 400, state="failed"), member(2, 200, 180, index=1),
                         member(4, 100, 90, index=2)])
    rows = by_nodes(summary)
    assert (rows[1]["state"], rows[1]["wall_seconds"], rows[1]["wall_speedup"]) == ("failed", None, None)
    assert rows[4]["baseline_node_count"] == 2
    assert (rows[4]["wall_speedup"], rows[4]["cluster_speedup"], rows[4]["efficiency"]) == (2.0, 2.0, 1.0)


def test_speedups_and_fits_are_per_sample_fraction():
    members = [member(1, 100, 80, (20, 20, 20), fraction=0.5), member(2, 60, 50, (10, 10, 10), fraction=0.5),
               member(1, 200, 160, (40, 40, 40)), member(2, 100, 90, (20, 20, 20))]
    summary = summarize(members)
    speedups = [row["cluster_speedup"] for row in summary["configurations"]]
    assert speedups == pytest.approx([1.0, 1.6, 1.0, 160 / 90])
    fits = {entry["sample_fraction"]: entry["fit"] for entry in summary["amdahl"]}
    # 60 s of stages on 1 node and 30 s on 2: all parallel; 120 s and 60 s likewise.
    assert fits[0.5]["parallel_fraction_absolute"] == fits[1.0]["parallel_fraction_absolute"] == 1.0
    # fixed = wall - stages: 40 and 30 s at half the input, 80 and 40 s at the whole; medians 35 and 60.
    assert [entry["fixed_seconds"] for entry in summary["amdahl"]] == [35.0, 60.0]


def test_cluster_time_growth_with_input_size():
    members = [member(2, 70, 60, fraction=0.5), member(2, 110, 100, fraction=1.0, index=1)]
    growth = summarize(members)["input_growth"]
    assert growth == [{"node_count": 2, "points": [[0.5, 60], [1.0, 100]], "fixed_seconds": 20.0,
                       "seconds_per_full_input": 80.0, "residual_rms_seconds": 0.0,
                       "time_ratio": pytest.approx(100 / 60), "input_ratio": 2.0}]


def test_no_input_growth_from_a_single_fraction():
    assert summarize([member(2, 70, 60), member(4, 50, 40, index=1)])["input_growth"] == []


def test_defaults_are_the_studys_sweep():
    config = validate_benchmark_config({}, max_node_count=20)
    assert config == BenchmarkConfig(node_counts=(4, 8), dataset="ml-1m", target="local", repetitions=1,
                                     sample_fractions=(1.0,), parallel=False, member_runs="trigger",
                                     engine="similarity", instance_type="m5.xlarge")


def test_a_configuration_saved_before_the_engine_field_loads_as_the_similarity_engines():
    old = {"node_counts": [1], "dataset": "ml-100k", "target": "local", "repetitions": 1,
           "sample_fractions": [1.0], "parallel": False, "member_runs": "cli"}
    config = BenchmarkConfig(**old)
    assert (config.engine, config.instance_type) == ("similarity", "m5.xlarge")


def test_default_node_counts_stay_within_a_lower_node_limit():
    assert validate_benchmark_config({}, max_node_count=6).node_counts == (4, 6)


def test_node_counts_and_fractions_are_sorted():
    config = validate_benchmark_config({"node_counts": [8, 2], "sample_fractions": [1, 0.25]},
                                       max_node_count=20)
    assert (config.node_counts, config.sample_fractions) == ((2, 8), (0.25, 1.0))


@pytest.mark.parametrize("params, field", [
    ({"node_counts": []}, "node_counts"), ({"node_counts": [0, 2]}, "node_counts"),
    ({"node_counts": [4, 21]}, "node_counts"), ({"node_counts": [4, 4]}, "node_counts"),
    ({"node_counts": 4}, "node_counts"), ({"sample_fractions": [0]}, "sample_fractions"),
    ({"sample_fractions": [1.5]}, "sample_fractions"), ({"repetitions": 0}, "repetitions"),
    ({"repetitions": 11}, "repetitions"), ({"member_runs": "ssh"}, "member_runs"),
    ({"parallel": "yes"}, "parallel"),
    ({"dataset": "ml-5m"}, "dataset"), ({"target": "gcp"}, "target"), ({"node_count": 4}, "node_count"),
    ({"engine": "spark"}, "engine"), ({"engine": ""}, "engine"),
    ({"instance_type": "m5.huge"}, "instance_type"),
])
def test_bad_params_are_refused_naming_the_field(params, field):
    with pytest.raises(InvalidParam, match=f"^{field}: "):
        validate_benchmark_config(params, max_node_count=20, engines=ENGINES)


def test_the_engine_field_offers_the_registered_engines_only():
    schema = benchmark.benchmark_param_schemas(20, "local", ENGINES)["engine"]
    assert (schema["enum"], schema["default"]) == (list(ENGINES), "similarity")
    assert validate_benchmark_config({"engine": "als"}, max_node_count=20, engines=ENGINES).engine == "als"
    with pytest.raises(InvalidParam, match=r"^engine: 'als' is not one of \['similarity'\]"):
        validate_benchmark_config({"engine": "als"}, max_node_count=20, engines=("similarity",))


def test_an_als_sweep_passes_its_engine_and_instance_type_to_every_member():
    config = validate_benchmark_config(
        {"engine": "als", "instance_type": "r5.xlarge", "target": "emr", "node_counts": [2, 4],
         "repetitions": 2, "dataset": "ml-100k"}, max_node_count=20, engines=ENGINES)
    members = plan_members(config, "scheduled__2026-01-05T00:00:00+00:00")
    assert [m["run_id"] for m in members] == [
        f"benchmark__scheduled__2026-01-05T00:00:00+00:00__als_n{n}_f1_r{r}" for r in (1, 2) for n in (2, 4)]
    for planned in members:
        run_config = validate_run_config(planned["conf"], max_node_count=20, engines=ENGINES)
        assert (run_config.engine, run_config.instance_type, run_config.target) == ("als", "r5.xlarge", "emr")


def test_sweeps_of_each_engine_give_their_members_different_run_ids():
    ids = {engine: {m["run_id"] for m in plan_members(
        validate_benchmark_config({"engine": engine}, max_node_count=20, engines=ENGINES), "manual__x")}
        for engine in ENGINES}
    assert not ids["similarity"] & ids["als"]


def test_plan_has_one_member_per_combination_repetitions_outermost():
    config = validate_benchmark_config(
        {"node_counts": [4, 8], "sample_fractions": [0.5, 1], "repetitions": 2, "dataset": "ml-100k"},
        max_node_count=20)
    members = plan_members(config, "manual__2026-01-05T00:00:00+00:00")
    assert [m["index"] for m in members] == list(range(8))
    assert [(m["conf"]["node_count"], m["conf"]["sample_fraction"]) for m in members] == [
        (4, 0.5), (8, 0.5), (4, 1.0), (8, 1.0)] * 2
    assert members[1]["run_id"] == "benchmark__manual__2026-01-05T00:00:00+00:00__similarity_n8_f0.5_r1"
    assert members[7]["run_id"].endswith("__similarity_n8_f1_r2")
    assert len({m["run_id"] for m in members}) == 8
    for planned in members:  # every conf is a valid movielens_similarity run
        run_config = validate_run_config(planned["conf"], max_node_count=20)
        assert (run_config.dataset, run_config.target, run_config.engine) == (
            "ml-100k", "local", "similarity")


def test_trigger_arguments_of_a_member():
    planned = {"index": 0, "run_id": "benchmark__x__n4_f1_r1", "conf": {"node_count": 4}}
    assert benchmark.trigger_arguments(planned) == {"trigger_run_id": "benchmark__x__n4_f1_r1",
                                                    "conf": {"node_count": 4}}


@pytest.mark.parametrize("environ, schedule", [
    ({}, "@weekly"), ({"MOVIELENS_BENCHMARK_SCHEDULE": "0 3 * * 1"}, "0 3 * * 1"),
    ({"MOVIELENS_BENCHMARK_SCHEDULE": "None"}, None), ({"MOVIELENS_BENCHMARK_SCHEDULE": " "}, "@weekly"),
])
def test_schedule_from_env(environ, schedule):
    assert schedule_from_env(environ) == schedule


LISTED = [{"dag_id": "movielens_similarity", "run_id": "manual__2026-11-22T04:25:21.529916+00:00",
           "state": "success", "logical_date": "2026-11-22T04:25:20.000001+00:00"},
          {"dag_id": "movielens_similarity", "run_id": "manual__2026-11-22T04:27:00.000000+00:00",
           "state": "failed", "logical_date": "2026-11-22T04:26:59.5+00:00"}]


def test_listed_runs_are_read_past_log_lines():
    import json

    stdout = "\n".join(["2026-11-22T04:26:52Z [warning  ] Could not import graphviz", "[not json",
                        json.dumps(LISTED), ""])
    assert parse_listed_runs(stdout) == LISTED
    with pytest.raises(ValueError, match="no JSON list"):
        parse_listed_runs("[warning] nothing listed\n")


@pytest.mark.parametrize("launched, run_id, state, error", [
    ({"logical_date": "2026-11-22T04:25:20.000001+00:00", "exit_status": 0, "error": None},
     "manual__2026-11-22T04:25:21.529916+00:00", "success", None),
    ({"logical_date": "2026-11-22T04:26:59.500000+00:00", "exit_status": 1, "error": "ValueError: boom"},
     "manual__2026-11-22T04:27:00.000000+00:00", "failed", "ValueError: boom"),
    ({"logical_date": "2026-11-22T05:00:00+00:00", "exit_status": 1, "error": None},
     None, "failed", "no movielens_similarity run with logical date 2026-11-22T05:00:00+00:00"),
])
def test_a_cli_member_is_found_by_its_logical_date(launched, run_id, state, error):
    planned = {"index": 3, "run_id": "benchmark__planned", "conf": {"node_count": 2}}
    record = cli_member_record(planned, launched, LISTED)
    assert (record["run_id"], record["state"], record["error"]) == (run_id, state, error)
    assert record["conf"] == {"node_count": 2} and record["logical_date"] == launched["logical_date"]


def scored(entry, als_precision, popularity_precision=0.05, k=10):
    """A member whose run scored its recommendations (evaluation.ranking's figures), popularity first."""
    def figures(precision):
        return {"precision_at_k": precision, "recall_at_k": precision / 2, "ndcg_at_k": precision * 1.5,
                "map_at_k": precision / 3, "coverage": 0.2, "k": k, "users": 100}
    entry["metrics"]["evaluation"] = {"split": {"train_ratings": 80},
                                      "recommenders": {"popularity": figures(popularity_precision),
                                                       "als": figures(als_precision)}}
    return entry


def test_recommendation_quality_is_the_median_per_configuration_and_recommender():
    members = [scored(member(2, 100, 90), 0.10), scored(member(2, 110, 95, index=1), 0.14),
               scored(member(2, 120, 99, index=2), 0.11), scored(member(4, 60, 50, index=3), 0.12)]
    quality = summarize(members)["recommendation_quality"]
    assert [(row["node_count"], row["recommender"]) for row in quality] == [
        (2, "popularity"), (2, "als"), (4, "popularity"), (4, "als")]
    two_als = quality[1]
    assert (two_als["runs"], two_als["measured"], two_als["k"]) == (3, 3, 10)
    assert two_als["precision_at_k"] == 0.11 and two_als["ndcg_at_k"] == pytest.approx(0.165)
    assert two_als["recall_at_k"] == 0.055 and two_als["map_at_k"] == pytest.approx(0.11 / 3)
    assert two_als["coverage"] == 0.2 and quality[0]["precision_at_k"] == 0.05
    assert quality[3]["precision_at_k"] == 0.12 and quality[3]["sample_fraction"] == 1.0


def test_a_failed_or_unscored_member_adds_nothing_to_the_quality():
    failed = scored(member(2, 100, 90, index=1), 0.9)
    failed["state"] = "failed"  # its metrics are a partial record: never counted
    members = [scored(member(2, 100, 90), 0.10), failed, member(2, 100, 90, index=2)]
    [popularity, als] = summarize(members)["recommendation_quality"]
    assert (als["precision_at_k"], als["runs"], als["measured"]) == (0.10, 1, 2)
    assert (popularity["recommender"], popularity["runs"]) == ("popularity", 1)


def test_no_quality_section_without_an_evaluation():
    assert summarize([member(2, 100, 90), member(4, 60, 50, index=1)])["recommendation_quality"] == []


def test_runs_scored_at_another_k_are_never_one_median():
    members = [scored(member(2, 100, 90), 0.10), scored(member(2, 100, 90, index=1), 0.30, k=5)]
    quality = summarize(members)["recommendation_quality"]
    assert sorted((row["recommender"], row["k"], row["precision_at_k"]) for row in quality) == [
        ("als", 5, 0.30), ("als", 10, 0.10), ("popularity", 5, 0.05), ("popularity", 10, 0.05)]

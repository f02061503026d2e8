"""Timing, cost and count figures of a run."""
import datetime

import pytest

from movielens_emr.config.params import validate_run_config
from movielens_emr.reporting.metrics import (
    emr_timings,
    failed_run_metrics,
    flatten_counters,
    metrics_table,
    parse_hadoop_counters,
    records_failure,
    run_metrics,
    run_started_at,
)
from movielens_emr.sizing.prices import hourly_price

T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.timezone.utc)


def at(minutes, seconds=0):
    return T0 + datetime.timedelta(minutes=minutes, seconds=seconds)


def test_emr_timings_from_cluster_and_step_timelines():
    cluster = {"CreationDateTime": at(0), "ReadyDateTime": at(7, 30), "EndDateTime": at(29, 33)}
    steps = [{"StartDateTime": at(8), "EndDateTime": at(10)},
             {"StartDateTime": at(10), "EndDateTime": at(25, 30)},
             {"StartDateTime": at(25, 30)}]
    assert emr_timings(cluster, steps) == {
        "cluster_seconds": 1773.0, "provisioning_seconds": 450.0, "stage_seconds": [120.0, 930.0, None]}


def test_run_metrics_on_the_reference_study_figures():
    # 4 nodes, 31 m 8 s wall, 29 m 33 s of cluster time: 118.2 node-minutes of cluster time.
    config = validate_run_config({"node_count": 4, "target": "emr"}, max_node_count=20)
    timings = {"cluster_seconds": 1773.0, "provisioning_seconds": 450.0,
               "stage_seconds": [120.0, 930.0, 600.0]}
    counters = {"input: ratings read": 1_000_209, "input: bad lines skipped": 3}
    metrics = run_metrics(config, timings, 1868.0, counters, hourly_price("m5.xlarge"),
                          engine_figures={"output_pairs": 52})
    assert metrics["overhead_seconds"] == 95.0
    assert metrics["node_minutes"] == 118.2
    assert metrics["estimated_cost_usd"] == pytest.approx(118.2 / 60 * 0.24)
    assert (metrics["input_ratings"], metrics["bad_lines"], metrics["output_pairs"]) == (1_000_209, 3, 52)


def test_unknown_cluster_time_leaves_derived_figures_empty():
    config = validate_run_config({}, max_node_count=20)
    unknown = {"cluster_seconds": None, "provisioning_seconds": None, "stage_seconds": []}
    metrics = run_metrics(config, unknown, 10.0, {}, None)
    assert metrics["node_minutes"] is None and metrics["estimated_cost_usd"] is None
    assert metrics["bad_lines"] is None and metrics["input_ratings"] is None


def test_prices_can_be_overridden_per_instance_type():
    assert hourly_price("m5.xlarge") == pytest.approx(0.24)
    assert hourly_price("m5.xlarge", {"m5.xlarge": 0.3}) == 0.3
    assert hourly_price("x9.unknown") is None


def test_parse_hadoop_counters_reads_the_indented_counter_block():
    syslog = ("2026-01-01 INFO org.apache.hadoop.mapreduce.Job (main): Counters: 3\n"
              "\tFile System Counters\n\t\tFILE: Number of bytes read=120\n"
              "\tinput\n\t\tratings read=100836\n\t\theader or blank lines skipped=1\n"
              "2026-01-01 INFO streaming.StreamJob (main): Output directory: s3://b/o\n")
    assert parse_hadoop_counters(syslog) == {
        "File System Counters: FILE: Number of bytes read": 120,
        "input: ratings read": 100836, "input: header or blank lines skipped": 1}


def test_parse_hadoop_counters_reads_only_the_block_of_the_job_clients_console_log():
    stderr = ("2026-12-02 13:00:09,000 INFO mapreduce.Job: Task Id : attempt_1_0001_m_000000_0, Status : X\n"
              "Error: java.lang.RuntimeException: PipeMapRed.waitOutputThreads(): subprocess failed\n"
              "\tat org.apache.hadoop.streaming.PipeMapRed.waitOutputThreads(PipeMapRed.java:326)\n"
              "\t\tnot=1\n"
              "2026-12-02 13:00:10,000 INFO mapreduce.Job: Counters: 3\n"
              "\tJob Counters \n\t\tLaunched map tasks=2\n"
              "\tFile System Counters\n\t\tS3: Number of bytes read=120\n"
              "\tinput\n\t\tratings read=100836\n"
              "2026-12-02 13:00:10,001 INFO streaming.StreamJob: Output directory: s3://b/o\n"
              "\t\tafter=1\n")
    assert parse_hadoop_counters(stderr) == {
        "Job Counters: Launched map tasks": 2, "File System Counters: S3: Number of bytes read": 120,
        "input: ratings read": 100836}
    assert parse_hadoop_counters("no block here\n\tinput\n\t\tratings read=1\n") == {}


def test_missing_first_stage_counters_leave_the_counts_empty_and_are_named():
    config = validate_run_config({"node_count": 4, "target": "emr"}, max_node_count=20)
    timings = {"cluster_seconds": 60.0, "provisioning_seconds": 10.0, "stage_seconds": [10.0, 10.0, 10.0]}
    read_from = [None, "s3://b/logs/j-1/steps/s-2/stderr.gz", "s3://b/logs/j-1/steps/s-3/stderr.gz"]
    metrics = run_metrics(config, timings, 70.0, {"output: ordered pairs": 52}, 0.24, read_from)
    assert (metrics["input_ratings"], metrics["bad_lines"]) == (None, None)  # not 0: stage 1's are unknown
    assert metrics["counters_missing_stages"] == [1] and metrics["counters_read_from"] == read_from
    complete = run_metrics(config, timings, 70.0, {"input: ratings read": 9}, 0.24, read_from[1:] * 2)
    assert (complete["input_ratings"], complete["bad_lines"]) == (9, 0)
    assert complete["counters_missing_stages"] == []
    assert "counters_missing_stages  none" in metrics_table(complete)


def test_flatten_counters_sums_over_steps():
    steps = [{"input": {"ratings read": 5}}, {"pairs": {"kept": 2}}, {"input": {"ratings read": 1}}]
    assert flatten_counters(steps) == {"input: ratings read": 6, "pairs: kept": 2}


def test_metrics_table_lists_every_figure():
    table = metrics_table(
        {"wall_seconds": 1868.0, "stage_seconds": [1.5, 2.0], "cluster_id": None, "output_pairs": 1234})
    assert table.splitlines() == ["wall_seconds      1,868.000", "stage_seconds[1]  1.500",
                                  "stage_seconds[2]  2.000", "cluster_id        -", "output_pairs      1,234"]


def test_a_local_runs_table_leaves_out_the_figures_only_a_cluster_has():
    config = validate_run_config({"target": "local", "node_count": 2}, max_node_count=20)
    timings = {"cluster_seconds": 20.0, "provisioning_seconds": 0.0, "stage_seconds": [5.0, 10.0, 5.0]}
    metrics = {"target": "local", "instance_type": "m5.xlarge", "cluster_id": None,
               **run_metrics(config, timings, 30.0, {"input: ratings read": 9}, 0.0)}
    names = {line.split()[0].split("[")[0] for line in metrics_table(metrics).splitlines()}
    assert {"wall_seconds", "cluster_seconds", "overhead_seconds", "input_ratings"} <= names
    assert not names & {"cluster_id", "instance_type", "provisioning_seconds", "estimated_cost_usd",
                        "price_per_node_hour_usd", "counters_missing_stages"}
    on_emr = {line.split()[0] for line in metrics_table({**metrics, "target": "emr"}).splitlines()}
    assert {"cluster_id", "provisioning_seconds", "estimated_cost_usd"} <= on_emr


def test_a_run_dated_in_the_past_started_when_it_was_made():
    import datetime

    logical = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    made = datetime.datetime(2026, 12, 2, 13, 0, tzinfo=datetime.timezone.utc)
    assert run_started_at(logical, made) == made
    assert run_started_at(made, logical) == made  # a backfill: made after the logical date it covers
    assert run_started_at(made, None) == made


def test_a_failed_runs_metrics_hold_the_run_its_config_and_the_failure_and_no_figures():
    failure = {"stage": 2, "report": "stage 2 of 3 ended FAILED"}
    metrics = failed_run_metrics("r1", {"target": "emr", "node_count": 3}, "j-1", failure)
    assert metrics == {"run_id": "r1", "target": "emr", "node_count": 3, "cluster_id": "j-1",
                       "failure": failure}
    assert records_failure(metrics)
    assert failed_run_metrics("r1", None, "j-1", failure)["run_id"] == "r1"  # validate_config failed


@pytest.mark.parametrize("metrics", [None, {}, {"run_id": "r1", "output_pairs": 3, "wall_seconds": 9.0}])
def test_a_successs_metrics_record_no_failure(metrics):
    assert not records_failure(metrics)


def test_an_als_runs_evaluation_and_spark_task_times_read_as_a_few_rows():
    scores = {"k": 10, "precision_at_k": 0.1134, "recall_at_k": 0.1294, "ndcg_at_k": 0.1509,
              "map_at_k": 0.0798, "coverage": 0.2885}
    times = {"source": "spark event log", "jobs": 12, "stages": 30, "executors": 1, "failed_tasks": 0,
             "task_types": {"ResultTask": {"tasks": 40, "total_seconds": 12.5, "max_seconds": 1.25}}}
    lines = metrics_table({"evaluation": {"recommenders": {"als": scores}}, "spark_task_times": times})
    assert "k = 10: P@k 0.1134, R@k 0.1294, NDCG@k 0.1509, MAP@k 0.0798, coverage 0.2885" in lines
    assert lines.startswith("evaluation[als] ")
    assert "12 jobs, 30 stages, 1 executors, 0 failed tasks" in lines
    assert "spark_task_times[ResultTask]" in lines and "40 tasks, 12.5 s in all, the longest 1.2 s" in lines
    assert "unknown: no event log" in metrics_table({"spark_task_times": {"source": None,
                                                                          "missing": "no event log"}})


def test_an_als_runs_loss_per_iteration_reads_as_a_row_per_iteration():
    steps = [{"iteration": 1, "training_loss": 57626.2015, "fit_seconds": 1.782},
             {"iteration": 2, "training_loss": 42715.5571, "fit_seconds": 3.01}]
    lines = metrics_table({"als_per_iteration": steps}).splitlines()
    assert lines == ["als_per_iteration[1]  training loss 57,626.2 after a fit of 1.8 s",
                     "als_per_iteration[2]  training loss 42,715.6 after a fit of 3.0 s"]
    assert metrics_table({"als_per_iteration": None}) == "als_per_iteration  -"


# Spot task nodes -------------------------------------------------------------------------------------
TIMINGS = {"cluster_seconds": 3600.0, "provisioning_seconds": 300.0, "stage_seconds": [600.0, 1800.0, 600.0]}


def spot_config(node_count=5, spot=3):
    return validate_run_config({"node_count": node_count, "target": "emr", "spot_task_nodes": spot},
                               max_node_count=20)


def test_a_run_without_spot_nodes_is_priced_as_before_and_says_so():
    metrics = run_metrics(spot_config(4, 0), TIMINGS, 3700.0, {}, 0.24)
    assert (metrics["node_minutes"], metrics["estimated_cost_usd"]) == (240.0, 0.96)
    assert (metrics["spot_task_nodes"], metrics["on_demand_nodes"]) == (0, 4)
    assert "spot_usd_per_node_hour" not in metrics and metrics["killed_task_attempts"] is None


def test_spot_node_minutes_are_charged_at_the_spot_price_and_the_rest_at_on_demand():
    # 2 on-demand nodes for the hour; 3 Spot nodes, one lost after 20 minutes: 2 x 60 + 20 Spot minutes
    market = {"spot_instances": 3, "spot_node_seconds": 2 * 3600.0 + 1200.0, "availability_zone": "1a",
              "lost_instances": [{"instance_id": "i-1", "ended": None, "reason": "reclaimed"}],
              "history_ec2_usd_per_hour": 0.07, "why": "EC2's Spot price history of m5.xlarge in us-east-1a"}
    times = {"killed_attempts": [0, 4, 0]}
    metrics = run_metrics(spot_config(), TIMINGS, 3700.0, {}, 0.24, spot_market=market, task_times=times)
    spot_price = 0.07 + 0.048  # the EC2 Spot price and EMR's charge in full
    assert metrics["spot_usd_per_node_hour"] == pytest.approx(spot_price)
    assert (metrics["spot_ec2_usd_per_hour"], metrics["spot_price_source"]) == (0.07, "spot price history")
    assert metrics["spot_price_description"] == market["why"]
    assert (metrics["on_demand_node_minutes"], metrics["spot_node_minutes"]) == (120.0, 140.0)
    assert metrics["node_minutes"] == 260.0
    assert metrics["estimated_cost_usd"] == pytest.approx(round(2 * 0.24 + 140 / 60 * spot_price, 4))
    assert (metrics["spot_interruptions"], metrics["killed_task_attempts"]) == (1, 4)
    assert metrics["price_per_node_hour_usd"] == 0.24  # the on-demand price, as before


def test_without_the_spot_price_history_the_assumed_price_is_charged_and_said():
    market = {"spot_instances": 3, "spot_node_seconds": 3 * 3600.0, "lost_instances": [],
              "history_ec2_usd_per_hour": None, "why": "DescribeSpotPriceHistory failed: AccessDenied"}
    metrics = run_metrics(spot_config(), TIMINGS, 3700.0, {}, 0.24, spot_market=market)
    assumed = (0.24 - 0.048) * 0.4 + 0.048
    assert metrics["spot_price_source"] == "assumed"
    assert metrics["spot_usd_per_node_hour"] == pytest.approx(assumed)
    assert "AccessDenied" in metrics["spot_price_description"]
    assert metrics["estimated_cost_usd"] == pytest.approx(round(2 * 0.24 + 3 * assumed, 4))
    assert metrics["spot_interruptions"] == 0


def test_unknown_spot_instances_are_billed_for_the_clusters_span_and_say_why():
    market = {"spot_instances": None, "why": "ListInstances failed: AccessDeniedException"}
    metrics = run_metrics(spot_config(), TIMINGS, 3700.0, {}, 0.24, spot_market=market)
    assert metrics["spot_node_minutes"] == 180.0
    assert metrics["spot_node_minutes_from"] == (
        "the cluster's span x 3 Spot task nodes (ListInstances failed: AccessDeniedException)")
    assert metrics["spot_interruptions"] is None and metrics["spot_price_source"] == "assumed"


def test_the_metrics_table_shows_the_spot_figures_on_emr_only():
    market = {"spot_instances": 3, "spot_node_seconds": 3 * 3600.0, "lost_instances": [],
              "history_ec2_usd_per_hour": 0.07, "why": "history"}
    metrics = {"target": "emr", **run_metrics(spot_config(), TIMINGS, 3700.0, {}, 0.24, spot_market=market)}
    table = metrics_table(metrics)
    assert "spot_price_source" in table
    assert any(line.split()[:2] == ["spot_interruptions", "0"] for line in table.splitlines())
    assert "spot_" not in metrics_table({**metrics, "target": "local"})

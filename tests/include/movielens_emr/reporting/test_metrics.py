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

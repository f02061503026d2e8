"""movielens_benchmark: its wiring, its guards, and the cli path end to end on the local target."""
import datetime
import json
import os
from pathlib import Path

import pytest

from movielens_emr.airflow import benchmark_tasks
from movielens_emr.data.datasets import CATALOGUE
from movielens_emr.data.storage import run_folder
from movielens_emr.reporting.benchmark import SIMILARITY_DAG_ID
from movielens_emr.reporting.benchmark_report import report_folder

from tests.conftest import REPO

DAG_ID = "movielens_benchmark"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SAMPLE = CATALOGUE["ml-latest-small-sample"]  # bundled and small: the cheapest real runs
MEMBER_TASKS = {"trigger_members_one_at_a_time", "trigger_members_in_parallel", "run_members_by_cli"}


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.get_dag(DAG_ID)


def task_states(run):
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_task_graph(dag):
    downstream = {task.task_id: set(task.downstream_task_ids) for task in dag.tasks}
    assert set(downstream) == {"validate_benchmark", "plan_member_runs", "choose_member_runs",
                               "report_benchmark", "check_member_runs", *MEMBER_TASKS}
    assert downstream["choose_member_runs"] == MEMBER_TASKS
    assert downstream["plan_member_runs"] >= MEMBER_TASKS | {"choose_member_runs"}
    for task_id in MEMBER_TASKS:
        assert downstream[task_id] == {"report_benchmark"}, task_id
    assert downstream["report_benchmark"] == {"check_member_runs"}


def test_the_report_runs_whatever_the_member_runs_did(dag):
    assert dag.get_task("report_benchmark").trigger_rule == "all_done"
    assert dag.get_task("check_member_runs").trigger_rule == "all_success"


@pytest.mark.parametrize("task_id, one_at_a_time", [
    ("trigger_members_one_at_a_time", 1), ("trigger_members_in_parallel", None)])
def test_trigger_tasks_map_one_waited_run_per_member(dag, task_id, one_at_a_time):
    trigger = dag.get_task(task_id)
    assert type(trigger).__name__ == "MappedOperator" and trigger.operator_name == "TriggerDagRunOperator"
    kwargs = trigger.partial_kwargs
    assert (kwargs["trigger_dag_id"], kwargs["wait_for_completion"], kwargs["reset_dag_run"]) == (
        SIMILARITY_DAG_ID, True, True)
    assert kwargs["fail_when_dag_is_paused"] and trigger.retries == 0
    assert trigger.max_active_tis_per_dag == one_at_a_time
    mapped_over = trigger.expand_input.value
    assert mapped_over.arg.operator.task_id == "plan_member_runs"
    assert [function.__name__ for function in mapped_over.callables] == ["trigger_arguments"]


@pytest.mark.parametrize("config, task_id", [
    ({"member_runs": "trigger", "parallel": False}, "trigger_members_one_at_a_time"),
    ({"member_runs": "trigger", "parallel": True}, "trigger_members_in_parallel"),
    ({"member_runs": "cli", "parallel": False}, "run_members_by_cli"),
    ({"member_runs": "cli", "parallel": True}, "run_members_by_cli"),
])
def test_choose_member_runs(dag, config, task_id):
    assert benchmark_tasks.choose_member_runs(config) == task_id
    assert task_id in dag.task_ids


def test_weekly_by_default(dag):
    assert "MOVIELENS_BENCHMARK_SCHEDULE" not in os.environ
    assert dag.timetable.expression == "0 0 * * 0"
    assert dag.max_active_runs == 1 and not dag.catchup


def test_every_param_has_a_title_a_description_and_the_issue_s_default(dag):
    for name, param in dag.params.items():
        assert param.schema.get("title") and param.description, name
    defaults = {name: dag.params[name] for name in dag.params}
    assert defaults == {"node_counts": [4, 8], "engine": "similarity", "dataset": "ml-1m", "target": "local",
                        "instance_type": "m5.xlarge", "repetitions": 1, "sample_fractions": [1.0],
                        "parallel": False, "member_runs": "trigger"}


def test_the_engine_field_offers_every_registered_engine(dag):
    from movielens_emr.engine.registry import engine_names

    engine = dag.params.get_param("engine")
    assert engine.schema["enum"] == list(engine_names()) and {"similarity", "als"} <= set(engine_names())
    assert "als" in engine.description


@pytest.mark.parametrize("conf, field", [
    ({"node_counts": [0]}, "node_counts"), ({"sample_fractions": [2]}, "sample_fractions"),
    ({"member_runs": "ssh"}, "member_runs"), ({"engine": "spark"}, "engine"),
    ({"instance_type": "m5.huge"}, "instance_type"),
])
def test_the_form_schema_refuses_bad_values(dag, conf, field):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=field):
        dag.test(run_conf=conf)


def test_cli_members_get_this_environment_with_the_package_importable():
    env = benchmark_tasks.cli_environment({"AIRFLOW_HOME": "/x", "PYTHONPATH": "/elsewhere"})
    assert env["AIRFLOW_HOME"] == "/x"
    assert env["PYTHONPATH"] == os.pathsep.join([str(REPO / "include"), "/elsewhere"])
    assert Path(benchmark_tasks.airflow_command("dags")[0]).name == "airflow"


def test_launch_clock_never_repeats_a_logical_date():
    clock = benchmark_tasks.launch_clock()
    stamps = [clock() for _ in range(2000)]
    assert all(earlier < later for earlier, later in zip(stamps, stamps[1:], strict=False))
    assert stamps[0].tzinfo == datetime.timezone.utc


def test_check_member_runs_fails_naming_the_failed_runs():
    benchmark_tasks.check_member_runs(
        {"report": "r.md", "members": 2, "failed_members": 0, "failed_run_ids": []})
    with pytest.raises(RuntimeError, match=r"1 of 2 member runs failed \(manual__x\); see r.md"):
        benchmark_tasks.check_member_runs(
            {"report": "r.md", "members": 2, "failed_members": 1, "failed_run_ids": ["manual__x"]})


@pytest.mark.parametrize("metrics, state, error", [
    ({"output_pairs": 3}, "success", None),
    ({"run_id": "manual__m", "failure": {"stage": 2}}, "failed",
     "runs/manual__m/metrics.json holds a failure"),
    (None, "failed", "no metrics at "),
])
def test_a_member_is_measured_only_by_a_successs_metrics(tmp_path, metrics, state, error):
    from movielens_emr.data.storage import LocalStorage

    storage = LocalStorage(tmp_path)
    if metrics is not None:
        storage.put_bytes(json.dumps(metrics).encode(), f"{run_folder('manual__m')}/metrics.json")
    record = benchmark_tasks.with_metrics(storage, {"run_id": "manual__m", "state": "success", "error": None})
    assert record["state"] == state and record["metrics"] == (metrics if state == "success" else None)
    assert (error is None and record["error"] is None) or error in record["error"]


def similarity_runs():
    from airflow.models.dagrun import DagRun

    return {run.run_id for run in DagRun.find(dag_id=SIMILARITY_DAG_ID)}


def test_trigger_under_dag_test_fails_at_once_instead_of_waiting_forever(dag, storage_root):
    before = similarity_runs()
    run = dag.test(run_conf={"target": "local", "dataset": "ml-latest-small", "node_counts": [1]})
    states = task_states(run)
    assert run.state == "failed"
    assert states["validate_benchmark"] == "failed"
    assert states["trigger_members_one_at_a_time"] == "upstream_failed"
    assert similarity_runs() == before
    assert not (storage_root / report_folder(run.run_id)).exists()


def test_failed_member_runs_are_reported_and_fail_the_benchmark(dag, storage_root):
    # ml-1m has no ratings file in MOVIELENS_SOURCE_DIR: the member fails in stage_dataset.
    run = dag.test(run_conf={"target": "local", "dataset": "ml-1m", "node_counts": [1], "member_runs": "cli"})
    states = task_states(run)
    assert run.state == "failed"
    assert (states["run_members_by_cli"], states["report_benchmark"], states["check_member_runs"]) == (
        "success", "success", "failed")
    folder = storage_root / report_folder(run.run_id)
    summary = json.loads((folder / "summary.json").read_text())
    assert (summary["members"], summary["measured_members"], summary["failed_members"]) == (1, 0, 1)
    member = summary["member_runs"][0]
    assert member["state"] == "failed" and member["run_id"].startswith("manual__")
    assert "ratings.dat not found" in member["error"] and member["metrics"] is None
    configuration = summary["configurations"][0]
    assert configuration["state"] == "failed" and configuration["wall_seconds"] is None
    assert "**0 of 1 member runs measured; 1 failed" in (folder / "report.md").read_text()
    assert (folder / "members" / "member-0.log").stat().st_size > 0


def test_cli_member_runs_end_to_end_on_the_local_target(dag, storage_root):
    run = dag.test(run_conf={"target": "local", "dataset": SAMPLE.name, "node_counts": [1, 2],
                             "member_runs": "cli"})
    states = task_states(run)
    assert run.state == "success", states
    assert states["run_members_by_cli"] == "success" and states["check_member_runs"] == "success"
    assert states["trigger_members_one_at_a_time"] == states["trigger_members_in_parallel"] == "skipped"
    folder = storage_root / report_folder(run.run_id)
    for plot in ("time_vs_nodes.png", "time_breakdown.png", "cost_vs_time.png"):
        assert (folder / plot).read_bytes().startswith(PNG_SIGNATURE), plot
    assert not (folder / "time_vs_input.png").exists()
    summary = json.loads((folder / "summary.json").read_text())
    members = summary["member_runs"]
    assert [(m["conf"]["node_count"], m["state"]) for m in members] == [(1, "success"), (2, "success")]
    assert len({m["run_id"] for m in members}) == 2
    for member in members:  # each member's own metrics.json, read back through its run id
        metrics = json.loads((storage_root / run_folder(member["run_id"]) / "metrics.json").read_text())
        assert metrics == member["metrics"]
        assert (metrics["dataset"], metrics["node_count"], metrics["input_ratings"]) == (
            SAMPLE.name, member["conf"]["node_count"], SAMPLE.ratings)
    one, two = summary["configurations"]
    assert two["cluster_speedup"] == pytest.approx(members[0]["metrics"]["cluster_seconds"]
                                                   / members[1]["metrics"]["cluster_seconds"])
    assert two["efficiency"] == pytest.approx(two["cluster_speedup"] / 2)
    assert summary["amdahl"][0]["fit"]["node_counts"] == [1, 2]
    report_text = (folder / "report.md").read_text()
    assert "| 1 | 100 % | 1/1 | success |" in report_text and "| 2 | 100 % | 1/1 | success |" in report_text
    assert "![time_vs_nodes.png](time_vs_nodes.png)" in report_text


def test_an_als_sweep_end_to_end_on_the_local_target(dag, storage_root):
    """One als member run (about a minute): the engine reaches the member, the report names it and shows the
    run's own evaluation, and the run's history row holds its P@10 and NDCG@10."""
    from movielens_emr.reporting.history import engine_for_url, fetch_runs

    run = dag.test(run_conf={"target": "local", "engine": "als", "dataset": SAMPLE.name, "node_counts": [2],
                             "member_runs": "cli"})
    assert run.state == "success", task_states(run)
    folder = storage_root / report_folder(run.run_id)
    summary = json.loads((folder / "summary.json").read_text())
    [member] = summary["member_runs"]
    assert summary["params"]["engine"] == member["conf"]["engine"] == member["metrics"]["engine"] == "als"
    scores = member["metrics"]["evaluation"]["recommenders"]
    assert [(row["recommender"], row["runs"], row["precision_at_k"], row["ndcg_at_k"])
            for row in summary["recommendation_quality"]] == [
        (name, 1, scores[name]["precision_at_k"], scores[name]["ndcg_at_k"])
        for name in ("popularity", "als")]
    assert 0 < scores["als"]["precision_at_k"] < 1
    report_text = (folder / "report.md").read_text()
    assert report_text.startswith(f"# movielens_similarity benchmark `{run.run_id}`: the als engine\n")
    assert f"| 2 | 100 % | als | 10 | 1/1 | {scores['als']['precision_at_k']:.4f} |" in report_text
    [row] = [row for row in fetch_runs(engine_for_url(f"sqlite:///{storage_root}/history.sqlite"))
             if row["run_id"] == member["run_id"]]
    assert (row["engine"], row["precision_at_10"], row["ndcg_at_10"]) == (
        "als", scores["als"]["precision_at_k"], scores["als"]["ndcg_at_k"])
    assert row["popularity_precision_at_10"] == scores["popularity"]["precision_at_k"]

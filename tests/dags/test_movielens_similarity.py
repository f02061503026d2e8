"""movielens_similarity: DAG integrity, the trigger form's rules, and the local target end to end."""
import copy
import csv
import datetime
import io
import json

import pytest

from movielens_emr.data.storage import RUN_OWNER_MARKER, run_folder
from movielens_emr.engine.similarity import results
from movielens_emr.engine.similarity.job import TASK_WORK_PREFIX, job_class

from conftest import MOVIELENS

DAG_ID = "movielens_similarity"
PAST = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)  # the DAG starts 2026-01-01
EXPECTED_TASKS = {
    "validate_config", "stage_dataset", "choose_target", "plan_emr_run", "create_cluster", "submit_stages",
    "prepare_stage_wait", "wait_for_stages", "terminate_cluster", "wait_for_termination", "run_local_job",
    "collect_results", "record_metrics", "diagnose_failure", "record_run_history",
}


@pytest.fixture
def dag(dagbag):
    """A copy per test: dag.test writes each run's conf into the DAG's params, which would leak."""
    return copy.deepcopy(dagbag.get_dag(DAG_ID))


def test_every_dag_imports_and_is_documented(dagbag):
    assert dagbag.import_errors == {}
    assert dagbag.dags
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.doc_md and len(dag.doc_md) > 100, dag_id
        for task in dag.tasks:
            assert task.owner not in ("", "airflow"), (dag_id, task.task_id)
            assert task.retries is not None, (dag_id, task.task_id)


def test_task_graph(dag):
    assert set(dag.task_ids) == EXPECTED_TASKS
    downstream = {task.task_id: set(task.downstream_task_ids) for task in dag.tasks}
    assert downstream["validate_config"] >= {"stage_dataset"}
    assert downstream["choose_target"] == {"plan_emr_run", "run_local_job"}
    assert downstream["create_cluster"] >= {"submit_stages", "terminate_cluster"}
    assert downstream["wait_for_stages"] >= {"terminate_cluster", "collect_results"}
    assert downstream["terminate_cluster"] == {"wait_for_termination"}
    assert downstream["run_local_job"] == {"collect_results"}
    assert downstream["collect_results"] == {"record_metrics"}
    assert dag.get_task("record_run_history").is_teardown
    assert downstream["wait_for_termination"] == {"record_metrics", "diagnose_failure", "record_run_history"}
    assert downstream["record_metrics"] == {"record_run_history"}
    assert downstream["diagnose_failure"] == {"record_run_history"}


def test_the_diagnosis_runs_whatever_happened_once_the_cluster_has_ended(dag):
    from airflow.sdk import TriggerRule

    diagnosis = dag.get_task("diagnose_failure")
    assert diagnosis.trigger_rule == TriggerRule.ALL_DONE
    assert "wait_for_termination" in diagnosis.upstream_task_ids and not diagnosis.is_teardown


def test_terminate_cluster_is_the_teardown_of_create_cluster(dag):
    terminate, create = dag.get_task("terminate_cluster"), dag.get_task("create_cluster")
    assert terminate.is_teardown and create.is_setup
    assert create.task_id in terminate.upstream_task_ids


def test_validation_does_not_retry(dag):
    assert dag.get_task("validate_config").retries == 0
    assert dag.get_task("create_cluster").retries == 0


def test_every_param_has_a_title_and_description(dag):
    for name, param in dag.params.items():
        assert param.schema.get("title") and param.description, name


@pytest.mark.parametrize("conf, message", [
    ({"node_count": 0}, "node_count"), ({"node_count": 21}, "node_count"),
    ({"node_count": 2.5}, "node_count"), ({"dataset": "ml-5m"}, "dataset"), ({"target": "gcp"}, "target"),
    ({"sample_fraction": 0}, "sample_fraction"),
    ({"security_configuration": "at rest"}, "security_configuration"),
])
def test_the_form_schema_refuses_bad_values(dag, conf, message):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match=message):
        dag.test(run_conf=conf)


@pytest.mark.parametrize("value", ["", None, "at-rest-kms"])
def test_the_form_schema_takes_an_empty_cleared_or_named_security_configuration(dag, value):
    # The form sends null for a text field typed in and then cleared.
    assert dag.params.get_param("security_configuration").resolve(value) == value


def task_states(run):
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def test_a_bad_field_that_reaches_a_run_fails_its_first_task(dag, storage_root):
    run = dag.test(run_conf={"target": "local", "nodes": 3})
    states = task_states(run)
    assert run.state == "failed"
    assert states["validate_config"] == "failed"
    assert states["stage_dataset"] == "upstream_failed"
    assert states["record_run_history"] == "success"
    assert [(row["outcome"], row["failed_tasks"]) for row in history_rows(storage_root)] == [
        ("failed", "validate_config")]
    assert not (storage_root / "runs").exists()


def history_rows(storage_root):
    from movielens_emr.reporting.history import engine_for_url, fetch_runs

    return fetch_runs(engine_for_url(f"sqlite:///{storage_root}/history.sqlite"))


def direct_job_csv(dataset, ratings_files, movies_file):
    """similarities.csv made from the job run directly (inline runner), not through the DAG."""
    paths = [str(MOVIELENS / dataset / name) for name in ratings_files]
    job = job_class()(
        ["-r", "inline", "--no-conf", "--items", str(MOVIELENS / dataset / movies_file), *paths])
    with job.make_runner() as runner:
        runner.run()
        lines = [line.decode("utf-8") for line in runner.cat_output()]
    rows = results.sorted_rows(results.parse_output_line(line) for line in lines if line.strip())
    return results.similarities_csv(rows)


# ml-100k's own file formats through the DAG; ml-latest-small's local results are checked against the
# EMR target's in test_movielens_similarity_emr.py, and the job against scipy on both in tests/jobs/.
@pytest.mark.parametrize("dataset, ratings_files, movies_file, ratings", [
    ("ml-100k", ["u.data"], "u.item", 100_000),
])
def test_local_target_end_to_end(dag, storage_root, dataset, ratings_files, movies_file, ratings):
    seed_history_for_the_advisor(storage_root, dataset)
    # The node count is left to the sizing advisor: in the seeded history 1 node takes 45 s, 2 take
    # 25 s and 3 take 18 s, so 2 is the fewest node-minutes within a 30 s deadline. Dated months back,
    # as `airflow dags test -e 2026-01-02` runs it: the wall time still counts from now.
    run = dag.test(logical_date=PAST, run_conf={"target": "local", "dataset": dataset, "node_count": None,
                                                "deadline_minutes": 0.5})
    states = task_states(run)
    assert run.state == "success", states
    assert states["run_local_job"] == "success" and states["create_cluster"] == "skipped"
    assert states["terminate_cluster"] == "skipped" and states["diagnose_failure"] == "skipped"
    folder = storage_root / run_folder(run.run_id)
    similarities = (folder / "results" / "similarities.csv").read_text()
    assert similarities == direct_job_csv(dataset, ratings_files, movies_file)
    rows = list(csv.DictReader(io.StringIO(similarities)))
    neighbours = json.loads((folder / "results" / "top_neighbours.json").read_text())
    assert len(neighbours) == len({row["movie_id"] for row in rows})
    assert all(len(movie["neighbours"]) <= 10 for movie in neighbours.values())
    metrics = json.loads((folder / "metrics.json").read_text())
    assert (metrics["target"], metrics["dataset"], metrics["node_count"]) == ("local", dataset, 2)
    assert metrics["input_ratings"] == ratings and metrics["bad_lines"] == 0
    assert metrics["output_pairs"] == len(rows) > 1000
    assert len(metrics["stage_seconds"]) == 3 and all(s > 0 for s in metrics["stage_seconds"])
    assert metrics["provisioning_seconds"] == 0.0
    assert metrics["cluster_security_configuration"] is None
    # each figure is rounded to the millisecond: three stage roundings and the total's may add 2 ms
    assert sum(metrics["stage_seconds"]) <= metrics["cluster_seconds"] + 0.002
    assert metrics["cluster_seconds"] <= metrics["wall_seconds"] < 3600
    assert metrics["overhead_seconds"] == pytest.approx(
        metrics["wall_seconds"] - metrics["cluster_seconds"], abs=1e-3)
    assert metrics["node_minutes"] == pytest.approx(2 * metrics["cluster_seconds"] / 60, abs=1e-3)
    assert metrics["advice"]["chosen_by"] == "advisor" and metrics["advice"]["node_count"] == 2
    # every map and reduce task of the local runner timed, and their waves replayed on other node counts
    times, prediction = metrics["task_times"], metrics["one_run_prediction"]
    assert (times["source"], times["missing"]) == ("local task times", None)
    assert all(stage["mapper"]["tasks"] >= 1 and stage["reducer"]["tasks"] >= 1 for stage in times["stages"])
    assert prediction["missing"] is None
    assert (prediction["from_node_count"], prediction["from_task_slots"]) == (2, 2)
    by_nodes = {option["node_count"]: option for option in prediction["predictions"]}
    assert by_nodes[2]["cluster_seconds"] == pytest.approx(metrics["cluster_seconds"], rel=0.05)
    assert by_nodes[1]["task_slots"] == 1 and by_nodes[1]["cluster_seconds"] > by_nodes[2]["cluster_seconds"]
    # the run's block plan, made for its 4 blocks and 2 reducers: stage 2's tasks did the work it
    # measured, which they would not on blocks hashed by movie id
    plan = json.loads((folder / "job" / "block_plan.json").read_text())
    assert metrics["block_plan"] == str(folder / "job" / "block_plan.json")
    assert metrics["block_plan_skipped"] is None and metrics["stage2_planned_skew"] >= 1
    assert (plan["movie_blocks"], plan["reduce_tasks"]) == (4, 2)
    counters = run.get_task_instance("run_local_job").xcom_pull(task_ids="run_local_job")["counters"]
    task_work = [amount for name, amount in counters.items() if name.startswith(TASK_WORK_PREFIX)]
    assert sum(task_work) == sum(plan["pair_work"].values())
    assert metrics["advice"]["predicted_cluster_seconds"] == pytest.approx(25, abs=0.1)
    [row] = [row for row in history_rows(storage_root) if row["run_id"] == run.run_id]
    assert (row["outcome"], row["output_pairs"]) == ("success", len(rows))
    assert row["prediction_error"] == pytest.approx((metrics["cluster_seconds"] - 25) / 25, abs=0.01)
    assert (folder / RUN_OWNER_MARKER).read_text() == run.run_id
    # the job's scratch copies of the input and its process record are gone once it has ended
    assert sorted(path.name for path in (folder / "local-job").iterdir()) == ["result.json"]


def seed_history_for_the_advisor(storage_root, dataset):
    """Four earlier local runs of the dataset, at 1 and 2 nodes and two sample fractions, with the pair work
    the advisor counts on the dataset's own ratings: the whole input's takes 40 s of work on one node."""
    from movielens_emr.engine.similarity.block_plan import pair_work_of_files
    from movielens_emr.reporting.history import engine_for_url, ensure_schema, run_record, upsert_run

    engine = engine_for_url(f"sqlite:///{storage_root}/history.sqlite")
    ensure_schema(engine)
    ratings = [MOVIELENS / dataset / "u.data"]
    whole = pair_work_of_files(ratings)
    for nodes in (1, 2):
        for fraction in (0.5, 1.0):
            work = pair_work_of_files(ratings, fraction)
            metrics = {"target": "local", "dataset": dataset, "node_count": nodes,
                       "sample_fraction": fraction, "pair_work": work, "provisioning_seconds": 0.0,
                       "cluster_seconds": 5 + 40 * work / whole / nodes}
            upsert_run(engine, run_record("movielens_similarity", f"seed-{nodes}-{fraction}", {}, metrics,
                                          {"record_metrics": "success"}, None, None))

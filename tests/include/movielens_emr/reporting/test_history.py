"""Run history on SQLite and PostgreSQL: migrations, upsert, queries; its teardown task in a real run."""
import concurrent.futures
import datetime
import json
import sqlite3
import threading
import uuid

import pytest
from sqlalchemy import Column, Float, create_engine, inspect, select, text
from sqlalchemy.exc import OperationalError

from movielens_emr.config.settings import Settings
from movielens_emr.data.storage import run_folder
from movielens_emr.reporting import history
from movielens_emr.reporting.history import (
    HISTORY,
    MIGRATIONS,
    TABLE_NAME,
    VERSION_TABLE_NAME,
    VERSIONS,
    WRITE_ATTEMPTS,
    Migration,
    add_column,
    connection_url,
    default_history_url,
    engine_for_url,
    ensure_schema,
    fetch_runs,
    history_url,
    make_engine,
    run_record,
    upsert_run,
)

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
PARAMS = {"node_count": 4, "target": "emr", "dataset": "ml-1m", "metric": "cosine", "min_score": 0.95,
          "min_co_ratings": 10, "instance_type": "m5.xlarge", "release_label": "emr-7.9.0",
          "sample_fraction": 1.0}


def metrics_of(run_id, **changes):
    """A metrics.json as record_metrics writes it."""
    return {"run_id": run_id, **PARAMS, "cluster_id": "j-ABC123", "wall_seconds": 1868.0,
            "cluster_seconds": 1773.0, "provisioning_seconds": 450.0, "stage_seconds": [120.0, 930.0, 600.0],
            "overhead_seconds": 95.0, "node_minutes": 118.2, "price_per_node_hour_usd": 0.24,
            "estimated_cost_usd": 0.4728, "input_ratings": 1_000_209, "bad_lines": 3, "output_pairs": 52,
            **changes}


def record(run_id, minutes=0, states=None, metrics="default", **params):
    metrics = metrics_of(run_id, **params) if metrics == "default" else metrics
    return run_record("movielens_similarity", run_id, {**PARAMS, **params}, metrics,
                      states or {"record_metrics": "success"}, T0 + datetime.timedelta(minutes=minutes),
                      T0 + datetime.timedelta(minutes=minutes + 31))


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = engine_for_url(f"sqlite:///{tmp_path / 'history.sqlite'}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgresql_engine():
    """An engine whose tables live in a fresh schema, dropped afterwards; fails, never skips, without it."""
    schema = f"movielens_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:  # noqa: BLE001 - any reason the database is unusable fails the test
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is needed by this test and is not usable: {error}")
    engine = engine_for_url(f"{POSTGRES_URL}?options=-csearch_path%3D{schema}")
    yield engine
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request):
    return request.getfixturevalue(f"{request.param}_engine")


def versions(engine):
    with engine.connect() as connection:
        return connection.execute(select(VERSIONS.c.version).order_by(VERSIONS.c.version)).scalars().all()


def test_ensure_schema_creates_the_table_at_the_newest_version(engine):
    assert ensure_schema(engine) == MIGRATIONS[-1].version
    columns = {column["name"] for column in inspect(engine).get_columns(TABLE_NAME)}
    assert columns == set(HISTORY.c.keys())
    assert {"stage_1_seconds", "stage_2_seconds", "stage_3_seconds", "outcome", "failed_tasks"} <= columns
    assert versions(engine) == [migration.version for migration in MIGRATIONS]


def test_ensure_schema_twice_changes_nothing(engine):
    ensure_schema(engine)
    upsert_run(engine, record("run-1"))
    assert ensure_schema(engine) == ensure_schema(engine) == MIGRATIONS[-1].version
    assert versions(engine) == [migration.version for migration in MIGRATIONS]
    assert [row["run_id"] for row in fetch_runs(engine)] == ["run-1"]


def test_concurrent_first_migrations_apply_each_migration_once(engine):
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert set(pool.map(lambda _: ensure_schema(engine), range(4))) == {MIGRATIONS[-1].version}
    assert versions(engine) == [migration.version for migration in MIGRATIONS]


def test_a_later_migration_adds_a_column_and_keeps_the_rows(engine):
    ensure_schema(engine)
    upsert_run(engine, record("run-1"))
    spot = Migration(MIGRATIONS[-1].version + 1, "add spot_price_usd",
                     lambda connection: add_column(connection, TABLE_NAME, Column("spot_price_usd", Float)))
    assert ensure_schema(engine, [*MIGRATIONS, spot]) == spot.version
    assert ensure_schema(engine, [*MIGRATIONS, spot]) == spot.version
    assert "spot_price_usd" in {column["name"] for column in inspect(engine).get_columns(TABLE_NAME)}
    assert versions(engine)[-1] == spot.version
    with engine.connect() as connection:
        rows = connection.execute(text(f"SELECT run_id, spot_price_usd FROM {TABLE_NAME}")).all()
    assert rows == [("run-1", None)]


def test_a_version_1_table_gains_the_sizing_columns_and_keeps_its_rows(engine):
    ensure_schema(engine, MIGRATIONS[:1])
    with engine.begin() as connection:
        connection.execute(text(f"INSERT INTO {TABLE_NAME} "
                                "(dag_id, run_id, run_folder, outcome, recorded_at) "
                                "VALUES ('movielens_similarity', 'old-run', 'runs/old-run', 'success', "
                                "CURRENT_TIMESTAMP)"))
    assert ensure_schema(engine) == MIGRATIONS[-1].version
    upsert_run(engine, record("new-run", metrics={**metrics_of("new-run"), "pair_work": 4_000_000_000,
                                                  "advice": {"predicted_cluster_seconds": 800.0}}))
    rows = {row["run_id"]: row for row in fetch_runs(engine)}
    assert rows["old-run"]["pair_work"] is None
    assert rows["new-run"]["pair_work"] == 4_000_000_000
    assert rows["new-run"]["predicted_cluster_seconds"] == 800.0
    measured = rows["new-run"]["cluster_seconds"]
    assert rows["new-run"]["prediction_error"] == pytest.approx((measured - 800) / 800, abs=1e-4)


def test_runs_recorded_before_engines_were_named_read_as_the_similarity_engines(engine):
    ensure_schema(engine, MIGRATIONS[:2])
    version_2_row = text(f"INSERT INTO {TABLE_NAME} (dag_id, run_id, run_folder, outcome, recorded_at) "
                                "VALUES ('movielens_similarity', 'old-run', 'runs/old-run', 'success', "
                                "CURRENT_TIMESTAMP)")
    with engine.begin() as connection:
        connection.execute(version_2_row)
    # read before the migration: the engine is the default, and no other engine has runs
    assert [row["engine"] for row in fetch_runs(engine)] == ["similarity"]
    assert fetch_runs(engine, run_engine="similarity")[0]["run_id"] == "old-run"
    assert fetch_runs(engine, run_engine="als") == []
    assert ensure_schema(engine) == MIGRATIONS[-1].version
    with engine.connect() as connection:
        stored = connection.execute(text(f"SELECT engine FROM {TABLE_NAME}")).scalars().all()
    assert stored == ["similarity"]
    upsert_run(engine, record("new-run", metrics={**metrics_of("new-run"), "engine": "als"}))
    assert [row["run_id"] for row in fetch_runs(engine, run_engine="als")] == ["new-run"]
    assert [row["run_id"] for row in fetch_runs(engine, run_engine="similarity")] == ["old-run"]


def als_evaluation(als_precision=0.1134, k=10):
    """An als run's metrics.json evaluation, as evaluation.ranking.evaluate scores each recommender."""
    def figures(precision, ndcg, coverage):
        return {"precision_at_k": precision, "recall_at_k": precision * 1.1, "ndcg_at_k": ndcg,
                "map_at_k": precision / 2, "k": k, "users": 904, "users_with_fewer_than_k": 0,
                "coverage": coverage}
    return {"split": {"train_ratings": 80_367, "held_out_ratings": 19_633},
            "recommenders": {"popularity": figures(0.0715, 0.0905, 0.0447),
                             "als": figures(als_precision, 0.1509, 0.2885)}}


def test_a_version_3_table_gains_the_evaluation_columns_and_keeps_its_rows(engine):
    ensure_schema(engine, MIGRATIONS[:3])
    with engine.begin() as connection:
        connection.execute(text(
            f"INSERT INTO {TABLE_NAME} (dag_id, run_id, run_folder, outcome, recorded_at, engine) VALUES "
            "('movielens_similarity', 'old-als', 'runs/old-als', 'success', CURRENT_TIMESTAMP, 'als')"))
    [before] = fetch_runs(engine)  # read before the migration: the columns it adds read as None
    assert (before["precision_at_10"], before["evaluation"]) == (None, None)
    assert ensure_schema(engine) == MIGRATIONS[-1].version
    upsert_run(engine, record("new-als", engine="als", evaluation=als_evaluation()))
    rows = {row["run_id"]: row for row in fetch_runs(engine, run_engine="als")}
    assert (rows["old-als"]["precision_at_10"], rows["old-als"]["evaluation"]) == (None, None)
    new = rows["new-als"]
    assert (new["precision_at_10"], new["ndcg_at_10"]) == (0.1134, 0.1509)
    assert (new["popularity_precision_at_10"], new["popularity_ndcg_at_10"]) == (0.0715, 0.0905)
    assert list(new["evaluation"]) == ["popularity", "als"]
    assert new["evaluation"]["als"] == {
        "k": 10, "precision_at_k": 0.1134, "recall_at_k": pytest.approx(0.12474), "ndcg_at_k": 0.1509,
        "map_at_k": 0.0567, "coverage": 0.2885}


def test_a_run_without_an_evaluation_has_none_in_its_columns(engine):
    ensure_schema(engine)
    upsert_run(engine, record("similarity-run"))
    [row] = fetch_runs(engine)
    assert [row[name] for name in ("precision_at_10", "ndcg_at_10", "popularity_precision_at_10",
                                   "popularity_ndcg_at_10", "evaluation")] == [None] * 5


def test_the_headline_columns_are_the_run_engines_own_recommender_and_popularity():
    # A similarity run scored as "item-item" has no recommender named as its engine: no headline of its own.
    evaluation = {"recommenders": {"popularity": als_evaluation()["recommenders"]["popularity"],
                                   "item-item": als_evaluation()["recommenders"]["als"]}}
    columns = history.evaluation_columns(evaluation, "similarity")
    assert (columns["precision_at_10"], columns["popularity_precision_at_10"]) == (None, 0.0715)
    assert set(json.loads(columns["evaluation"])) == {"popularity", "item-item"}
    assert history.evaluation_columns(als_evaluation(), "als")["ndcg_at_10"] == 0.1509


def test_figures_at_another_k_stay_out_of_the_at_10_columns_but_are_kept():
    columns = history.evaluation_columns(als_evaluation(k=5), "als")
    assert [columns[name] for name in ("precision_at_10", "ndcg_at_10", "popularity_precision_at_10",
                                       "popularity_ndcg_at_10")] == [None] * 4
    assert json.loads(columns["evaluation"])["als"]["k"] == 5


@pytest.mark.parametrize("evaluation", [None, {}, {"split": {}, "recommenders": {}}])
def test_no_evaluation_columns_without_scored_recommenders(evaluation):
    assert set(history.evaluation_columns(evaluation, "als").values()) == {None}


def test_upsert_inserts_a_new_run_with_every_metric(engine):
    ensure_schema(engine)
    upsert_run(engine, record("run-1"))
    [row] = fetch_runs(engine)
    assert row["dag_id"] == "movielens_similarity" and row["run_folder"] == "runs/run-1"
    assert (row["outcome"], row["failed_tasks"]) == ("success", None)
    assert (row["started_at"], row["finished_at"]) == (T0, T0 + datetime.timedelta(minutes=31))
    assert row["recorded_at"].tzinfo is not None
    assert {name: row[name] for name in PARAMS} == PARAMS
    assert (row["stage_1_seconds"], row["stage_2_seconds"], row["stage_3_seconds"]) == (120.0, 930.0, 600.0)
    assert (row["cluster_id"], row["wall_seconds"], row["estimated_cost_usd"]) == ("j-ABC123", 1868.0, 0.4728)
    assert (row["input_ratings"], row["bad_lines"], row["output_pairs"]) == (1_000_209, 3, 52)


def test_upsert_of_the_same_run_id_replaces_its_row(engine):
    ensure_schema(engine)
    upsert_run(engine, record("run-1", states={"collect_results": "failed"}, metrics=None))
    upsert_run(engine, record("run-1", wall_seconds=1900.0))
    [row] = fetch_runs(engine)
    assert (row["outcome"], row["failed_tasks"], row["wall_seconds"]) == ("success", None, 1900.0)


def test_fetch_runs_filters_and_puts_the_newest_first(engine):
    ensure_schema(engine)
    upsert_run(engine, record("old-emr", minutes=0))
    upsert_run(engine, record("new-emr", minutes=60))
    upsert_run(engine, record("local", minutes=30, target="local", dataset="ml-100k"))
    upsert_run(engine, record("failed", minutes=90, states={"run_local_job": "failed"}, metrics=None))
    assert [row["run_id"] for row in fetch_runs(engine)] == ["failed", "new-emr", "local", "old-emr"]
    assert [row["run_id"] for row in fetch_runs(engine, dataset="ml-1m", target="emr")] == [
        "failed", "new-emr", "old-emr"]
    assert [row["run_id"] for row in fetch_runs(engine, target="local")] == ["local"]
    newest_success = fetch_runs(engine, dataset="ml-1m", outcome="success", limit=1)
    assert [row["run_id"] for row in newest_success] == ["new-emr"]
    assert fetch_runs(engine, dataset="ml-25m") == []


def test_a_failed_run_keeps_its_params_and_failed_tasks(engine):
    ensure_schema(engine)
    states = {"validate_config": "success", "run_local_job": "failed", "collect_results": "upstream_failed",
              "record_metrics": "upstream_failed"}
    upsert_run(engine, record("run-1", states=states, metrics=None, target="local", node_count="junk"))
    [row] = fetch_runs(engine)
    assert (row["outcome"], row["failed_tasks"]) == ("failed", "run_local_job")
    assert (row["target"], row["dataset"], row["node_count"]) == ("local", "ml-1m", None)
    assert row["wall_seconds"] is None and row["stage_1_seconds"] is None and row["cluster_id"] is None


def test_fetch_runs_before_the_first_write_is_empty_and_creates_nothing(engine):
    assert fetch_runs(engine) == [] and fetch_runs(engine, dataset="ml-1m", limit=1) == []
    assert not {TABLE_NAME, VERSION_TABLE_NAME} & set(inspect(engine).get_table_names())


def test_fetch_runs_reads_a_table_that_a_newer_migration_has_not_reached(engine):
    ensure_schema(engine)
    upsert_run(engine, record("run-1"))
    with engine.begin() as connection:  # as if the table were one version older than this code
        connection.execute(text(f"ALTER TABLE {TABLE_NAME} DROP COLUMN output_pairs"))
    [row] = fetch_runs(engine)
    assert (row["run_id"], row["wall_seconds"], row["output_pairs"]) == ("run-1", 1868.0, None)


def test_reads_run_in_read_only_transactions_on_postgresql(postgresql_engine):
    ensure_schema(postgresql_engine)
    with history.read_connection(postgresql_engine) as connection:
        assert connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "on"
    with postgresql_engine.connect() as connection:  # the pooled connection is writable again
        assert connection.exec_driver_sql("SHOW transaction_read_only").scalar() == "off"


def hold_write_lock(path):
    """A raw SQLite connection holding the write lock of the file at `path`, as a writer mid-transaction."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_fetch_runs_reads_while_a_writer_holds_the_lock(tmp_path):
    path = tmp_path / "history.sqlite"
    engine = make_engine(f"sqlite:///{path}?timeout=0.2")
    ensure_schema(engine)
    upsert_run(engine, record("run-1"))
    holder = hold_write_lock(path)
    try:
        assert [row["run_id"] for row in fetch_runs(engine)] == ["run-1"]
    finally:
        holder.close()
        engine.dispose()


def test_a_write_meeting_a_lock_retries_until_the_lock_is_released(tmp_path):
    path = tmp_path / "history.sqlite"
    engine = make_engine(f"sqlite:///{path}?timeout=0.05")
    ensure_schema(engine)
    holder = hold_write_lock(path)
    release = threading.Timer(0.5, holder.rollback)
    release.start()
    try:
        upsert_run(engine, record("run-1"))  # fails after 0.05 s on each try until the release
    finally:
        release.join()
        holder.close()
    assert [row["run_id"] for row in fetch_runs(engine)] == ["run-1"]
    engine.dispose()


def test_a_write_gives_up_after_a_bounded_number_of_growing_pauses(tmp_path, monkeypatch):
    path = tmp_path / "history.sqlite"
    engine = make_engine(f"sqlite:///{path}?timeout=0.01")
    ensure_schema(engine)
    pauses = []
    monkeypatch.setattr(history.time, "sleep", pauses.append)
    holder = hold_write_lock(path)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            upsert_run(engine, record("run-1"))
    finally:
        holder.close()
        engine.dispose()
    assert len(pauses) == WRITE_ATTEMPTS - 1
    for attempt, pause in enumerate(pauses):  # doubling, each with up to 50 % of jitter
        assert 0.5 <= pause / (history.RETRY_FIRST_DELAY_SECONDS * 2 ** attempt) <= 1.5


def test_a_write_failing_for_another_reason_is_not_retried(monkeypatch):
    calls = []

    def broken_write(engine):
        calls.append(engine)
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("disk I/O error"))

    with pytest.raises(OperationalError, match="disk I/O error"):
        history.retried_when_locked(broken_write)("engine")
    assert calls == ["engine"]


def test_sixteen_concurrent_writers_and_readers_all_succeed(engine):
    """Sixteen runs recording at once on a fresh database, each with its own engine (as each task has its
    own process), while readers read: every write lands, no read fails."""
    url, writing = engine.url.render_as_string(hide_password=False), threading.Event()
    start = threading.Barrier(16 + 4)

    def write(number):
        own = make_engine(url)
        start.wait()
        try:
            ensure_schema(own)
            upsert_run(own, record(f"run-{number:02d}", minutes=number))
        finally:
            own.dispose()

    def read():
        own, reads = make_engine(url), 0
        start.wait()
        while writing.is_set() or reads == 0:
            fetch_runs(own, limit=5)
            reads += 1
        own.dispose()
        return reads

    writing.set()
    with concurrent.futures.ThreadPoolExecutor(16 + 4) as pool:
        readers = [pool.submit(read) for _ in range(4)]
        for writer in [pool.submit(write, number) for number in range(16)]:
            writer.result()  # raises what the writer raised
        writing.clear()
        assert all(reader.result() > 0 for reader in readers)
    newest_first = [f"run-{number:02d}" for number in range(15, -1, -1)]
    assert [row["run_id"] for row in fetch_runs(engine, limit=100)] == newest_first


def test_upsert_refuses_unknown_columns(sqlite_engine):
    ensure_schema(sqlite_engine)
    with pytest.raises(ValueError, match="not columns of movielens_run_history: colour"):
        upsert_run(sqlite_engine, {**record("run-1"), "colour": "red"})


@pytest.mark.parametrize("states, metrics, outcome, failed", [
    ({"record_metrics": "success", "terminate_cluster": "skipped"}, metrics_of("r"), "success", None),
    ({"record_metrics": "success"}, None, "failed", None),
    ({"terminate_cluster": "failed", "wait_for_termination": "upstream_failed"}, None, "failed",
     "terminate_cluster"),
    ({"wait_for_stages_0": "failed", "submit_stages": "failed"}, None, "failed",
     "submit_stages,wait_for_stages_0"),
    # diagnose_failure's metrics.json: a failure, however the states read
    ({"record_metrics": "success"}, {**metrics_of("r"), "failure": {"stage": 2}}, "failed", None),
])
def test_run_record_outcome(states, metrics, outcome, failed):
    row = run_record("d", "r", PARAMS, metrics, states, T0, T0)
    assert (row["outcome"], row["failed_tasks"]) == (outcome, failed)


def test_run_record_takes_params_when_there_are_no_metrics():
    run_id = "manual__2026-01-01T00:00:00+00:00"
    row = run_record("d", run_id, {**PARAMS, "dataset": "ml-100k"}, None, {}, T0, T0)
    assert row["run_folder"] == run_folder(run_id)
    assert (row["dataset"], row["node_count"], row["wall_seconds"]) == ("ml-100k", 4, None)


def test_connection_url_from_a_postgres_connection():
    from airflow.sdk import Connection

    connection = Connection(conn_id="h", conn_type="postgres", host="db", login="u", password="p@ss/w:rd",
                            schema="history", port=5432, extra=json.dumps({"sslmode": "require"}))
    url = connection_url(connection)
    assert url.render_as_string(hide_password=False) == (
        "postgresql://u:p%40ss%2Fw%3Ard@db:5432/history?sslmode=require")


def test_connection_url_from_a_sqlite_connection_uri():
    from airflow.sdk import Connection

    url = connection_url(Connection.from_uri("sqlite:////tmp/a b/history.sqlite", conn_id="h"))
    assert (url.get_backend_name(), url.database) == ("sqlite", "/tmp/a b/history.sqlite")


@pytest.mark.parametrize("root, home, path", [
    ("/data/movielens", "/opt/airflow", "/data/movielens/history.sqlite"),
    ("s3://bucket/movielens", "/opt/airflow", "/opt/airflow/movielens_history.sqlite"),
])
def test_default_history_url(root, home, path):
    assert default_history_url(root, home).render_as_string() == f"sqlite:///{path}"


def test_history_url_without_the_connection_is_the_default_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    url = history_url(Settings(storage_root=str(tmp_path)))
    assert url.database == str(tmp_path / "history.sqlite")


def test_history_url_from_the_airflow_connection(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY", POSTGRES_URL)
    assert history_url(Settings(storage_root=str(tmp_path))).render_as_string() == POSTGRES_URL


# The wiring the pipeline uses: record_run_history as a teardown after the run's last task. The DAGs live in a
# bundle of their own, since dag.test() runs only DAGs that a bundle holds.
WIRING_DAGS = """
import json

import pendulum
from airflow.sdk import dag, task

from movielens_emr.reporting.history import record_run_history
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import open_storage, run_folder

PARAMS = {params!r}
METRICS = {metrics!r}


def write_metrics(run_id):
    open_storage(settings_from_env().storage_root).put_bytes(
        json.dumps({{**METRICS, "run_id": run_id}}).encode(), run_folder(run_id) + "/metrics.json")


def fail():
    raise RuntimeError("the job broke")


for name, job in (("succeeds", lambda: None), ("fails", fail)):
    @dag(dag_id="history_wiring_" + name, schedule=None, params=PARAMS,
         start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
    def wiring():
        ran = task(task_id="run_local_job")(job)()
        metrics = task(task_id="record_metrics")(write_metrics)()
        ran >> metrics >> task(task_id="record_run_history")(record_run_history)().as_teardown()

    wiring()
"""


@pytest.fixture
def wiring_dags(airflow_db, tmp_path, monkeypatch):
    """The wiring DAGs, parsed from a bundle beside the project's dags folder."""
    from airflow.dag_processing.dagbag import DagBag

    folder = tmp_path / "wiring_dags"
    folder.mkdir()
    local = {**PARAMS, "target": "local"}
    dags = WIRING_DAGS.format(params=local, metrics=metrics_of("", **local))
    (folder / "history_wiring.py").write_text(dags)
    bundles = [{"name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {}},
               {"name": "history-wiring", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder)}}]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    monkeypatch.delenv("AIRFLOW_CONN_MOVIELENS_HISTORY", raising=False)
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    return bag


@pytest.mark.parametrize("dag_id, run_state, outcome, failed, wall_seconds", [
    ("history_wiring_succeeds", "success", "success", None, 1868.0),
    ("history_wiring_fails", "failed", "failed", "run_local_job", None),
])
def test_record_run_history_as_the_teardown_of_a_real_run(wiring_dags, storage_root, dag_id, run_state,
                                                          outcome, failed, wall_seconds):
    run = wiring_dags.get_dag(dag_id).test()
    assert run.state == run_state  # the teardown's own success does not hide a failed run
    [row] = fetch_runs(engine_for_url(f"sqlite:///{storage_root / 'history.sqlite'}"))
    assert (row["run_id"], row["outcome"], row["failed_tasks"]) == (run.run_id, outcome, failed)
    assert (row["target"], row["dataset"], row["node_count"]) == ("local", "ml-1m", 4)
    # counted from when the run was made, not from a logical date in the past (dags test -e)
    assert row["started_at"] == max(run.start_date, run.run_after) and row["finished_at"] >= row["started_at"]
    assert row["wall_seconds"] == wall_seconds


def test_record_run_history_writes_through_the_airflow_connection(wiring_dags, storage_root, tmp_path,
                                                                   monkeypatch):
    database = tmp_path / "elsewhere" / "history.sqlite"
    monkeypatch.setenv("AIRFLOW_CONN_MOVIELENS_HISTORY", f"sqlite:///{database}")
    run = wiring_dags.get_dag("history_wiring_fails").test()
    assert [row["run_id"] for row in fetch_runs(engine_for_url(f"sqlite:///{database}"))] == [run.run_id]
    assert not (storage_root / "history.sqlite").exists()

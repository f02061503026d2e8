"""The run history table: one row per movielens_similarity run, its schema migrations, upsert and queries."""
import contextlib
import datetime
import functools
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateColumn

from movielens_emr.config.params import DEFAULT_ENGINE
from movielens_emr.config.settings import settings_from_env
from movielens_emr.data.storage import open_storage, run_folder
from movielens_emr.reporting.benchmark import QUALITY_FIELDS
from movielens_emr.reporting.metrics import records_failure, run_started_at

log = logging.getLogger(__name__)
HISTORY_CONN_ID = "movielens_history"
TABLE_NAME = "movielens_run_history"
VERSION_TABLE_NAME = "movielens_run_history_schema"
RUN_PARAMS = ("node_count", "target", "dataset", "metric", "min_score", "min_co_ratings", "instance_type",
              "release_label", "sample_fraction")
METRICS = ("cluster_id", "wall_seconds", "cluster_seconds", "provisioning_seconds", "overhead_seconds",
           "node_minutes", "price_per_node_hour_usd", "estimated_cost_usd", "input_ratings", "bad_lines",
           "output_pairs", "pair_work", "stage2_work_skew", "security_configuration")
STAGES = 3
# The evaluation's headline columns hold figures at this k (evaluation.ranking.K); the evaluation column
# keeps every recommender's figures with their own k.
HEADLINE_K = 10
BASELINE_RECOMMENDER = "popularity"
FAILED_STATES = frozenset({"failed", "upstream_failed"})
METRICS_TASK_ID = "record_metrics"
CLUSTER_TASK_ID = "create_cluster"
# Any constant will do: it names the lock that serialises concurrent migrations on PostgreSQL.
MIGRATION_LOCK_KEY = 4_242_001
# How long a SQLite statement waits for another connection's lock before "database is locked".
SQLITE_BUSY_SECONDS = 30
# A write that still meets a lock is retried, after 0.2, 0.4, 0.8, 1.6 s (each +-50 %), then fails.
WRITE_ATTEMPTS = 5
RETRY_FIRST_DELAY_SECONDS = 0.2
# PostgreSQL's codes of a transaction that lost to another: deadlock, serialization failure, lock timeout.
RETRIED_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
READ_ONLY_OPTION = "movielens_read_only"


def _columns_v1():
    return [
        Column("dag_id", String(250), primary_key=True),
        Column("run_id", String(250), primary_key=True),
        Column("run_folder", Text, nullable=False),
        Column("outcome", String(16), nullable=False),
        Column("failed_tasks", Text),
        Column("started_at", DateTime(timezone=True)),
        Column("finished_at", DateTime(timezone=True)),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("node_count", Integer), Column("target", String(16)), Column("dataset", String(64)),
        Column("metric", String(16)), Column("min_score", Float), Column("min_co_ratings", Integer),
        Column("instance_type", String(64)), Column("release_label", String(32)),
        Column("sample_fraction", Float), Column("cluster_id", String(64)),
        Column("wall_seconds", Float), Column("cluster_seconds", Float),
        Column("provisioning_seconds", Float),
        *(Column(f"stage_{number}_seconds", Float) for number in range(1, STAGES + 1)),
        Column("overhead_seconds", Float), Column("node_minutes", Float),
        Column("price_per_node_hour_usd", Float), Column("estimated_cost_usd", Float),
        Column("input_ratings", BigInteger), Column("bad_lines", BigInteger),
        Column("output_pairs", BigInteger),
    ]


def _columns_v3():
    """The engine that computed the run (engine.registry's name)."""
    return [Column("engine", String(32))]


def _columns_v2():
    """The sizing advisor's figures: the run's pair work and stage 2 skew, the prediction and its error."""
    return [
        Column("pair_work", BigInteger), Column("stage2_work_skew", Float),
        Column("security_configuration", String(256)),
        Column("predicted_cluster_seconds", Float), Column("prediction_error", Float),
    ]


def _columns_v4():
    """The run's evaluation: its own recommendations' and popularity's P@10 and NDCG@10, and every
    recommender's figures as JSON."""
    return [
        Column("precision_at_10", Float), Column("ndcg_at_10", Float),
        Column("popularity_precision_at_10", Float), Column("popularity_ndcg_at_10", Float),
        Column("evaluation", Text),
    ]


# The table as the newest migration leaves it: a migration that adds a column adds it here too.
HISTORY = Table(TABLE_NAME, MetaData(), *_columns_v1(), *_columns_v2(), *_columns_v3(), *_columns_v4())
VERSIONS = Table(
    VERSION_TABLE_NAME, MetaData(),
    Column("version", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Migration:
    """One schema change; `apply(connection)` runs inside the transaction that records `version`."""

    version: int
    description: str
    apply: Callable


def _create_history_v1(connection):
    # Frozen at version 1, not HISTORY: later columns arrive by their own migrations.
    table = Table(TABLE_NAME, MetaData(), *_columns_v1())
    Index(f"ix_{TABLE_NAME}_started_at", table.c.started_at)
    table.create(connection)


def _add_sizing_columns_v2(connection):
    for column in _columns_v2():
        add_column(connection, TABLE_NAME, column)


def _add_engine_column_v3(connection):
    # Every run recorded before engines were named was the similarity engine's.
    for column in _columns_v3():
        add_column(connection, TABLE_NAME, column)
    connection.execute(text(f"UPDATE {connection.dialect.identifier_preparer.quote(TABLE_NAME)} "
                            "SET engine = :engine").bindparams(engine=DEFAULT_ENGINE))


def _add_evaluation_columns_v4(connection):
    # Runs recorded before keep None: an als run's evaluation is still in its metrics.json.
    for column in _columns_v4():
        add_column(connection, TABLE_NAME, column)


MIGRATIONS = (
    Migration(1, f"create {TABLE_NAME}", _create_history_v1),
    Migration(2, "add pair_work, stage2_work_skew, security_configuration and the sizing prediction",
              _add_sizing_columns_v2),
    Migration(3, "add engine (existing runs: the similarity engine)", _add_engine_column_v3),
    Migration(4, "add the evaluation: precision_at_10, ndcg_at_10, popularity_precision_at_10, "
                 "popularity_ndcg_at_10 and every recommender's figures", _add_evaluation_columns_v4),
)


def add_column(connection, table_name, column):
    """ALTER TABLE ... ADD COLUMN, for migrations after the first."""
    preparer = connection.dialect.identifier_preparer
    ddl = CreateColumn(column).compile(dialect=connection.dialect)
    connection.execute(text(f"ALTER TABLE {preparer.quote(table_name)} ADD COLUMN {ddl}"))


def is_lock_conflict(error):
    """Whether an OperationalError means another connection held a lock: worth retrying, not a real fault."""
    # SQLite's SQLITE_BUSY and SQLITE_LOCKED messages.
    reason = str(error.orig).lower()
    return ("database is locked" in reason or "database table is locked" in reason
            or getattr(error.orig, "sqlstate", None) in RETRIED_SQLSTATES)


def retried_when_locked(write):
    """`write(engine, ...)` run again, after a growing pause, while the database answers that it is locked."""
    @functools.wraps(write)
    def retried(engine, *args, **kwargs):
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                return write(engine, *args, **kwargs)
            except OperationalError as error:
                if attempt == WRITE_ATTEMPTS or not is_lock_conflict(error):
                    raise
                delay = RETRY_FIRST_DELAY_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5)
                log.warning("history database locked (%s): %s again in %.2f s, attempt %d of %d",
                            str(error.orig).splitlines()[0], write.__name__, delay, attempt + 1,
                            WRITE_ATTEMPTS)
                time.sleep(delay)
    return retried


@retried_when_locked
def ensure_schema(engine, migrations=MIGRATIONS):
    """Apply the missing migrations in order, in one locked transaction; return the schema version.
    Only writers call this (record_run_history); readers never migrate."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        VERSIONS.create(connection, checkfirst=True)
        version = connection.scalar(select(func.max(VERSIONS.c.version))) or 0
        for migration in sorted(migrations, key=lambda migration: migration.version):
            if migration.version > version:
                log.info("history schema: applying %d (%s)", migration.version, migration.description)
                migration.apply(connection)
                connection.execute(insert(VERSIONS).values(
                    version=migration.version, description=migration.description, applied_at=_now()))
                version = migration.version
        return version


@retried_when_locked
def upsert_run(engine, record):
    """Insert a run's row, or replace every field of the row already there for its (dag_id, run_id)."""
    unknown = set(record) - set(HISTORY.c.keys())
    if unknown:
        raise ValueError(f"not columns of {TABLE_NAME}: {', '.join(sorted(unknown))}")
    row = {column.name: _coerce(column, record.get(column.name)) for column in HISTORY.columns}
    dialect_insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(engine.dialect.name)
    if dialect_insert is None:
        raise NotImplementedError(f"history upsert supports PostgreSQL and SQLite, not {engine.dialect.name}")
    statement = dialect_insert(HISTORY).values(row)
    keys = [column.name for column in HISTORY.primary_key]
    statement = statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in row if name not in keys})
    with engine.begin() as connection:
        connection.execute(statement)


def fetch_runs(engine, dataset=None, target=None, outcome=None, limit=100, run_engine=None):
    """Rows as dicts, newest start first, optionally only one dataset, target, outcome or run_engine (the
    engine that computed the run; `engine` is the database's); [] while the table does not exist. Reads
    only: no DDL, no migration, no write lock; a column that a migration not yet applied would add reads
    as None, but for the engine, which reads as the similarity engine's, as the migration would set it."""
    with read_connection(engine) as connection:
        stored = stored_columns(connection)
        if not stored or (run_engine and run_engine != DEFAULT_ENGINE and "engine" not in stored):
            return []
        query = select(*(column for column in HISTORY.columns if column.name in stored)).order_by(
            HISTORY.c.started_at.desc().nulls_last(), HISTORY.c.recorded_at.desc())
        filters = [("dataset", dataset), ("target", target), ("outcome", outcome)]
        if "engine" in stored:
            filters.append(("engine", run_engine))
        for name, value in filters:
            if value:
                query = query.where(HISTORY.c[name] == value)
        rows = connection.execute(query.limit(limit)).mappings().all()
    return [{**{name: _utc(row.get(name)) for name in HISTORY.c.keys()},
             "engine": row.get("engine") or DEFAULT_ENGINE,
             "evaluation": json.loads(row["evaluation"]) if row.get("evaluation") else None} for row in rows]


@contextlib.contextmanager
def read_connection(engine):
    """A connection for reading: PostgreSQL READ ONLY transactions; SQLite deferred ones, which take no
    write lock (engine_for_url's writers begin IMMEDIATE)."""
    with engine.connect() as connection:
        options = {READ_ONLY_OPTION: True}
        if connection.dialect.name == "postgresql":
            options["postgresql_readonly"] = True
        yield connection.execution_options(**options)


def stored_columns(connection):
    """The history table's column names as the database has them; empty when the table does not exist."""
    inspector = inspect(connection)
    if not inspector.has_table(TABLE_NAME):
        return set()
    return {column["name"] for column in inspector.get_columns(TABLE_NAME)}


def run_record(dag_id, run_id, params, metrics, task_states, started_at, finished_at):
    """A history row from the run's params, its metrics.json (None if not written) and its task states.

    A metrics.json holding a failure (diagnose_failure's) makes the run failed, whatever the states say.
    """
    metrics = metrics or {}
    failed = sorted(task_id for task_id, state in task_states.items() if state == "failed")
    broken = any(state in FAILED_STATES for state in task_states.values()) or records_failure(metrics)
    stages = list(metrics.get("stage_seconds") or [])[:STAGES]
    predicted = (metrics.get("advice") or {}).get("predicted_cluster_seconds")
    # A conf from before engines were named ran the similarity engine.
    engine = metrics.get("engine", params.get("engine")) or DEFAULT_ENGINE
    return {
        "dag_id": dag_id, "run_id": run_id, "run_folder": run_folder(run_id),
        "outcome": "failed" if broken or not metrics else "success",
        "failed_tasks": ",".join(failed) or None,
        "started_at": started_at, "finished_at": finished_at, "recorded_at": _now(),
        **{name: metrics.get(name, params.get(name)) for name in RUN_PARAMS},
        **{name: metrics.get(name) for name in METRICS},
        **{f"stage_{number}_seconds": seconds for number, seconds in enumerate(stages, start=1)},
        "engine": engine,
        "predicted_cluster_seconds": predicted,
        "prediction_error": prediction_error(metrics.get("cluster_seconds"), predicted),
        **evaluation_columns(metrics.get("evaluation"), engine),
    }


def evaluation_columns(evaluation, engine):
    """The history's evaluation columns of a metrics.json's evaluation (evaluation.ranking's figures per
    recommender; None when the run scored none): P@10 and NDCG@10 of the recommender named as the run's
    engine (its own recommendations) and of popularity, and every recommender's QUALITY_FIELDS and k as
    JSON. A headline column is None when its recommender is not there or was scored at another k."""
    recommenders = (evaluation or {}).get("recommenders") or {}
    kept = {name: {field: scores.get(field) for field in ("k", *QUALITY_FIELDS)}
            for name, scores in recommenders.items()}
    columns = {"evaluation": json.dumps(kept) if kept else None}
    for prefix, name in (("", engine), (f"{BASELINE_RECOMMENDER}_", BASELINE_RECOMMENDER)):
        scores = kept.get(name) or {}
        at_headline_k = scores.get("k") == HEADLINE_K
        columns[f"{prefix}precision_at_10"] = scores.get("precision_at_k") if at_headline_k else None
        columns[f"{prefix}ndcg_at_10"] = scores.get("ndcg_at_k") if at_headline_k else None
    return columns


def prediction_error(measured, predicted):
    """(measured - predicted) / predicted: how far the advisor's cluster time was off; None without both."""
    if measured is None or not predicted:
        return None
    return round((measured - predicted) / predicted, 4)


def connection_url(connection):
    """A SQLAlchemy URL from an Airflow connection's fields; extras become URL query parameters."""
    # Not get_uri(): it says postgres://, which SQLAlchemy refuses, and percent-encodes SQLite paths.
    driver = "postgresql" if connection.conn_type in ("postgres", "postgresql") else connection.conn_type
    query = {key: str(value) for key, value in (connection.extra_dejson or {}).items()}
    return URL.create(driver, username=connection.login or None, password=connection.password or None,
                      host=connection.host or None, port=connection.port or None,
                      database=connection.schema or None, query=query)


def default_history_url(storage_root, airflow_home):
    """SQLite beside the runs when the storage root is a local folder, else in the Airflow home."""
    if storage_root.startswith("s3://"):
        path = Path(airflow_home).expanduser() / "movielens_history.sqlite"
    else:
        path = Path(storage_root).expanduser() / "history.sqlite"
    return URL.create("sqlite", database=str(path.resolve()))


def history_url(settings, conn_id=HISTORY_CONN_ID):
    """The Airflow connection `conn_id` as a SQLAlchemy URL; the default SQLite file if it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return connection_url(BaseHook.get_connection(conn_id))
    except AirflowNotFoundException:
        return default_history_url(settings.storage_root, os.environ.get("AIRFLOW_HOME", "~/airflow"))


def history_engine(settings, conn_id=HISTORY_CONN_ID):
    """The engine of the run history database (see history_url); one per database and process."""
    return engine_for_url(history_url(settings, conn_id).render_as_string(hide_password=False))


@functools.lru_cache(maxsize=8)
def engine_for_url(url):
    """make_engine(url), one per URL and process."""
    return make_engine(url)


def make_engine(url):
    """A new engine. SQLite files get their folder created, a busy timeout (SQLITE_BUSY_SECONDS unless the URL
    sets ?timeout=) and write-locking transactions (BEGIN IMMEDIATE), but for read_connection's."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    busy_timeout = {} if "timeout" in url.query else {"timeout": SQLITE_BUSY_SECONDS}
    engine = create_engine(url, connect_args=busy_timeout)
    # pysqlite would start transactions lazily and not before DDL; two runs migrating at once would collide.
    event.listen(engine, "connect", lambda dbapi, _: setattr(dbapi, "isolation_level", None))
    event.listen(engine, "begin", _begin_sqlite)
    return engine


def _begin_sqlite(connection):
    # A deferred transaction takes a shared lock only when it reads, so readers never queue behind writers.
    read_only = connection.get_execution_options().get(READ_ONLY_OPTION)
    connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def read_metrics(storage, run_id):
    """The run's metrics.json as a dict, or None when it was not written."""
    key = f"{run_folder(run_id)}/metrics.json"
    return json.loads(storage.get_bytes(key)) if storage.exists(key) else None


def record_run_history(run_id, dag_run, ti, params):
    """Task callable, wired as a teardown: upsert this run's row, its outcome from the run's other tasks."""
    settings = settings_from_env()
    states = dict(ti.get_task_states(dag_id=ti.dag_id, run_ids=[run_id]).get(run_id, {}))
    states.pop(ti.task_id, None)
    # A metrics.json left by an earlier try of this run id is stale unless record_metrics succeeded this time.
    metrics = None
    if states.get(METRICS_TASK_ID) == "success":
        metrics = read_metrics(open_storage(settings.storage_root, settings.aws_conn_id), run_id)
    started_at = run_started_at(dag_run.start_date, dag_run.run_after)
    record = run_record(ti.dag_id, run_id, dict(params), metrics, states, started_at, _now())
    record["cluster_id"] = record["cluster_id"] or ti.xcom_pull(task_ids=CLUSTER_TASK_ID)
    engine = history_engine(settings)
    ensure_schema(engine)
    upsert_run(engine, record)
    log.info("run history (%s): %s is %s%s", engine.url.render_as_string(), run_id, record["outcome"],
             f"; failed tasks: {record['failed_tasks']}" if record["failed_tasks"] else "")
    return {"outcome": record["outcome"], "failed_tasks": record["failed_tasks"]}


def _coerce(column, value):
    """A value the column's type accepts, or None: a failed run's raw params may hold anything."""
    if value is None:
        return None
    if isinstance(column.type, DateTime):
        return value.astimezone(datetime.timezone.utc)
    try:
        return column.type.python_type(value)
    except (TypeError, ValueError):
        return None


def _utc(value):
    # SQLite hands datetimes back without their zone; they were stored as UTC.
    if isinstance(value, datetime.datetime):
        return value.replace(tzinfo=datetime.timezone.utc) if value.tzinfo is None else value
    return value


def _now():
    return datetime.datetime.now(datetime.timezone.utc)

"""Search at scale: MLflow-shaped rows generated in PostgreSQL, then MLflow's own searches timed with
the stock schema and again after the index migration, on the same data.

The rows are MLflow's exactly (the columns `mlflow db upgrade` creates, values as the store writes
them: 32-hex run ids, millisecond timestamps, the system tags the client sets); they are computed
from generate_series, deterministic, with no temporary tables. Each run belongs to one of
`experiments` experiments and starts after the previous one, so the heap is in arrival order as in
production. The load is made fast the ways that leave the result unchanged: synchronous_commit off
and a large max_wal_size for the load only, FK triggers skipped (the generated keys are consistent),
MLflow's secondary indexes and the primary keys nobody references dropped and rebuilt after the
load with their exact definitions, two tables loading at once; then VACUUM ANALYZE.
"""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from .stats import median

METRIC_KEYS = ("acc", "loss", "f1", "precision", "recall")
LR_VALUES = ("0.01", "0.001", "0.1", "0.0001", "0.05", "0.005", "0.0005", "0.2", "0.02", "0.002",
             "0.3", "0.03", "0.003", "0.4", "0.04", "0.004", "0.5", "0.06", "0.006", "0.7")
TEAMS = tuple("xabcdefghijklmnopqrs")   # 20 teams: tags.team = 'x' matches 1 run in 20
SYSTEM_TAGS = ("mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.runName")
# 2026-01-01T00:00:00Z in ms; runs start a minute apart from there on (deterministic data)
EPOCH_MS = 1_767_225_600_000
RUN_SPACING_MS = 60_000
# tables whose primary key no foreign key references, so it may be dropped and rebuilt after the load
REBUILT_TABLES = ("params", "tags", "metrics", "latest_metrics")
SEARCH_REPEATS = 5


@dataclass(frozen=True)
class Shape:
    runs: int
    metric_rows_wanted: int
    experiments: int = 10
    params_per_run: int = 10

    @property
    def steps(self) -> int:
        """Steps per metric key per run, so that runs x keys x steps is as close to the wanted rows as whole steps allow."""
        return max(1, round(self.metric_rows_wanted / (self.runs * len(METRIC_KEYS))))

    @property
    def metric_rows(self) -> int:
        return self.runs * len(METRIC_KEYS) * self.steps

    @property
    def tags_per_run(self) -> int:
        return 1 + len(SYSTEM_TAGS)


def _sql_list(values) -> str:
    return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"


def run_uuid_sql(i: str) -> str:
    # MLflow's run ids are uuid4().hex: 32 lowercase hex characters, as md5 gives
    return f"md5('run-' || {i})"


def value_sql(i: str, k: str, s: str) -> str:
    """A deterministic value in [0, 1) from run, key and step: the same expression feeds metrics and latest_metrics."""
    return f"(({i}::bigint * 7919 + {k} * 104729 + {s}::bigint * 15485863) % 1000003) / 1000003.0"


def experiments_sql(shape: Shape) -> str:
    return (f"INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time,"
            f" last_update_time, workspace) SELECT e, 'bench-' || e, 'mlflow-artifacts:/' || e, 'active',"
            f" {EPOCH_MS}, {EPOCH_MS}, 'default' FROM generate_series(1, {shape.experiments}) e")


def experiment_sequence_sql(shape: Shape) -> str:
    # the next experiment MLflow creates must not collide with the generated ids
    return f"SELECT setval('experiments_experiment_id_seq', {shape.experiments})"


def runs_sql(shape: Shape) -> str:
    uuid = run_uuid_sql("i")
    start = f"({EPOCH_MS}::bigint + i::bigint * {RUN_SPACING_MS})"
    return ("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time,"
            " end_time, source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time)"
            f" SELECT {uuid}, 'run-' || i, 'LOCAL', 'train.py', '', 'user' || (i % 50), 'FINISHED', {start},"
            f" {start} + 60000 + (i % 3600) * 1000, '', 'active',"
            f" 'mlflow-artifacts:/' || (1 + i % {shape.experiments}) || '/' || {uuid} || '/artifacts',"
            f" 1 + i % {shape.experiments}, NULL FROM generate_series(0, {shape.runs - 1}) i")


def params_sql(shape: Shape) -> str:
    # 'lr' takes 20 values (a filter matches 1 run in 20); param_k spreads over more values per key
    return ("INSERT INTO params (key, value, run_uuid)"
            " SELECT CASE WHEN k = 0 THEN 'lr' ELSE 'param_' || k END,"
            f" CASE WHEN k = 0 THEN ({_sql_list(LR_VALUES)})[1 + (i * 7) % 20]"
            "  ELSE 'v' || ((i * (k + 3)) % (10 + k * 50)) END,"
            f" {run_uuid_sql('i')}"
            f" FROM generate_series(0, {shape.runs - 1}) i CROSS JOIN generate_series(0, {shape.params_per_run - 1}) k")


def tags_sql(shape: Shape) -> str:
    keys = ("team",) + SYSTEM_TAGS
    return ("INSERT INTO tags (key, value, run_uuid)"
            " SELECT t.key, CASE t.key"
            f"  WHEN 'team' THEN ({_sql_list(TEAMS)})[1 + (i * 13) % 20]"
            "  WHEN 'mlflow.user' THEN 'user' || (i % 50)"
            "  WHEN 'mlflow.source.name' THEN 'train.py'"
            "  WHEN 'mlflow.source.type' THEN 'LOCAL'"
            "  ELSE 'run-' || i END,"
            f" {run_uuid_sql('i')}"
            f" FROM generate_series(0, {shape.runs - 1}) i CROSS JOIN unnest({_sql_list(keys)}) t(key)")


def metrics_sql(shape: Shape) -> str:
    start = f"({EPOCH_MS}::bigint + i::bigint * {RUN_SPACING_MS})"
    return ('INSERT INTO metrics (key, value, "timestamp", run_uuid, step, is_nan)'
            f" SELECT m.key, {value_sql('i', 'm.k', 's')}, {start} + s * 1000, {run_uuid_sql('i')}, s, false"
            f" FROM generate_series(0, {shape.steps - 1}) s CROSS JOIN generate_series(0, {shape.runs - 1}) i"
            f" CROSS JOIN unnest({_sql_list(METRIC_KEYS)}) WITH ORDINALITY m(key, k)")


def latest_metrics_sql(shape: Shape) -> str:
    last = shape.steps - 1
    start = f"({EPOCH_MS}::bigint + i::bigint * {RUN_SPACING_MS})"
    return ('INSERT INTO latest_metrics (key, value, "timestamp", step, is_nan, run_uuid)'
            f" SELECT m.key, {value_sql('i', 'm.k', str(last))}, {start} + {last * 1000}, {last}, false, {run_uuid_sql('i')}"
            f" FROM generate_series(0, {shape.runs - 1}) i CROSS JOIN unnest({_sql_list(METRIC_KEYS)}) WITH ORDINALITY m(key, k)")


def load_plan(shape: Shape) -> list[list[tuple[str, str]]]:
    """Two lists of (table, statement) that two connections run side by side, about equal in rows."""
    return [[("experiments", experiments_sql(shape)), ("experiments", experiment_sequence_sql(shape)), ("runs", runs_sql(shape)), ("params", params_sql(shape)),
             ("latest_metrics", latest_metrics_sql(shape))],
            [("metrics", metrics_sql(shape)), ("tags", tags_sql(shape))]]


# ---------------------------------------------------------------------------------------------
# against a real PostgreSQL

LOAD_SESSION = ("SET synchronous_commit = off", "SET session_replication_role = replica",
                "SET maintenance_work_mem = '1GB'", "SET max_parallel_maintenance_workers = 1")
LOAD_SYSTEM = {"max_wal_size": "16GB", "checkpoint_timeout": "30min"}


def schema_upgrade(uri: str) -> None:
    """`mlflow db upgrade`: MLflow creates its own schema."""
    done = subprocess.run([sys.executable, "-m", "mlflow", "db", "upgrade", uri], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"mlflow db upgrade failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")


def rebuildable_ddl(conn) -> list[tuple[str, str, str]]:
    """(table, drop, create) for the secondary indexes and unreferenced primary keys of REBUILT_TABLES."""
    rows = conn.execute(
        """SELECT c.relname, i.relname, pg_get_indexdef(i.oid), con.conname, pg_get_constraintdef(con.oid)
           FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
           LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = c.oid
           WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid) ORDER BY c.relname, i.relname""",
        (list(REBUILT_TABLES),)).fetchall()
    ddl = []
    for table, index, indexdef, constraint, constraintdef in rows:
        if constraint:
            ddl.append((table, f"ALTER TABLE {table} DROP CONSTRAINT {constraint}",
                        f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {constraintdef}"))
        else:
            ddl.append((table, f"DROP INDEX {index}", indexdef))
    return ddl


def _run_lists(uri: str, lists: list[list[tuple[str, str]]], timings: dict) -> None:
    """Each list on its own connection, side by side; the first error is raised once all have stopped."""
    import psycopg

    errors: list[BaseException] = []

    def work(items):
        try:
            with psycopg.connect(uri, autocommit=True) as conn:
                for setting in LOAD_SESSION:
                    conn.execute(setting)
                for label, statement in items:
                    t0 = time.perf_counter()
                    conn.execute(statement)
                    timings[label] = timings.get(label, 0.0) + time.perf_counter() - t0
        except BaseException as exc:  # noqa: BLE001 (re-raised below, in the calling thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(items,)) for items in lists if items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def split_even(items: list, parts: int = 2) -> list[list]:
    """Round-robin `items` into `parts` lists (work for parallel connections)."""
    return [items[i::parts] for i in range(parts)]


def generate(uri: str, shape: Shape, progress=print) -> dict:
    """Load the rows into an upgraded, empty MLflow schema at `uri`; returns timings and row counts."""
    import psycopg

    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    with psycopg.connect(uri, autocommit=True) as conn:
        for name, value in LOAD_SYSTEM.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        ddl = rebuildable_ddl(conn)
        for _, drop, _ in ddl:
            conn.execute(drop)
    try:
        progress(f"  loading {shape.runs:,} runs, {shape.runs * shape.params_per_run:,} params,"
                 f" {shape.runs * shape.tags_per_run:,} tags, {shape.metric_rows:,} metric rows")
        _run_lists(uri, load_plan(shape), timings)
        progress(f"  rebuilding {len(ddl)} indexes and keys")
        t0 = time.perf_counter()
        _run_lists(uri, split_even([(f"index:{table}", create) for table, _, create in ddl]), timings)
        timings["rebuild_indexes"] = time.perf_counter() - t0
    finally:
        with psycopg.connect(uri, autocommit=True) as conn:
            for name in LOAD_SYSTEM:
                conn.execute(f"ALTER SYSTEM RESET {name}")
            conn.execute("SELECT pg_reload_conf()")
    progress("  VACUUM ANALYZE")
    t0 = time.perf_counter()
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE experiments, runs, params, tags, metrics, latest_metrics")
        timings["vacuum_analyze"] = time.perf_counter() - t0
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("runs", "params", "tags", "metrics", "latest_metrics")}
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    timings["total"] = time.perf_counter() - t_all
    return {"rows": counts, "database_gib": size / 1024**3, "seconds": {k: round(v, 1) for k, v in timings.items()}}


# ---------------------------------------------------------------------------------------------
# the searches, through MLflow's own store

def searches(client, experiment_id: str) -> dict:
    """name -> zero-argument call: the UI's searches and a chart's metric history, as MlflowClient makes them."""
    newest = client.search_runs([experiment_id], max_results=1)[0].info.run_id
    return {
        "newest runs (100)": lambda: client.search_runs([experiment_id], max_results=100),
        "filter by param (params.lr = '0.01')": lambda: client.search_runs([experiment_id], "params.lr = '0.01'", max_results=100),
        "filter by tag (tags.team = 'x')": lambda: client.search_runs([experiment_id], "tags.team = 'x'", max_results=100),
        "filter by metric (metrics.acc > 0.9)": lambda: client.search_runs([experiment_id], "metrics.acc > 0.9", max_results=100),
        "order by metric (metrics.acc DESC)": lambda: client.search_runs([experiment_id], order_by=["metrics.acc DESC"], max_results=100),
        "get_metric_history (one run, acc)": lambda: client.get_metric_history(newest, "acc"),
    }


def time_searches(calls: dict, repeats: int = SEARCH_REPEATS) -> dict:
    """Median and min ms of each call after one warm-up call (warm cache, as a UI user sees it)."""
    out = {}
    for name, call in calls.items():
        rows = len(call())
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {"median_ms": median(times), "min_ms": min(times), "rows": rows}
    return out


def sqlalchemy_uri(uri: str) -> str:
    """The psycopg 3 dialect for MLflow's store (the wheel's psycopg2 works too; one driver everywhere)."""
    return "postgresql+psycopg://" + uri.split("://", 1)[1]


def before_after(uri: str, shape: Shape, progress=print) -> dict:
    """Time the searches on the stock schema, apply the index migration, time them again."""
    from mlflow.tracking import MlflowClient

    from ..runtime.migrate import run_index_migration

    experiment = "1"
    client = MlflowClient(sqlalchemy_uri(uri))
    calls = searches(client, experiment)
    progress("  timing searches on the stock schema")
    stock = time_searches(calls)
    progress("  applying the index migration")
    t0 = time.perf_counter()
    statements = run_index_migration(uri)
    migrate_s = time.perf_counter() - t0
    progress("  timing searches after the index migration")
    migrated = time_searches(calls)
    runs_in_experiment = math.ceil(shape.runs / shape.experiments)
    return {"experiment_runs": runs_in_experiment, "stock": stock, "migrated": migrated,
            "migration_seconds": round(migrate_s, 1), "migration_statements": len(statements)}

"""The database source of `mlflow-infra doctor`: what PostgreSQL itself says, against the plan.

Each check is a query and a pure function from its rows to findings, so the thresholds can be read
(and tested) without a database. A check reads catalog views only: nothing here writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from .findings import Finding

# MLflow's tables that grow with logging and are searched by the UI (README bottleneck 7).
HOT_TABLES = ("runs", "metrics", "latest_metrics", "params", "tags")
# A sequential scan of a table this large is a search the index migration should have served.
SEQ_SCAN_MIN_ROWS = 100_000
# Dead rows above this share of live rows (and this many) mean autovacuum is not keeping up.
DEAD_SHARE = 0.2
DEAD_MIN_ROWS = 10_000
# A session idle inside a transaction this long holds its locks, a connection slot and the oldest
# snapshot (vacuum cannot remove rows behind it); MLflow's own requests finish in milliseconds.
IDLE_IN_TRANSACTION_S = 30
# Client connections above this share of max_connections: the pools are outgrowing the budget.
CONNECTIONS_SHARE = 0.8
# A replica further behind than this shows the UI stale runs.
REPLICA_LAG_S = 60
# Block reads served from shared_buffers below this share, over enough reads to judge: the hot set
# (latest_metrics, the runs the UI lists, their indexes) no longer fits the instance's memory.
CACHE_HIT_SHARE = 0.99
CACHE_MIN_BLOCKS = 1_000_000
# Settings that are lists: the plan's items must be in effect, others may be added (RDS's own).
LIST_SETTINGS = ("shared_preload_libraries",)

INDEX_SQL = """
SELECT c.relname, i.indisvalid
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = ANY(%s) AND pg_table_is_visible(c.oid)
"""
SETTINGS_SQL = "SELECT name, setting, coalesce(unit, ''), pending_restart FROM pg_settings WHERE name = ANY(%s)"
ACTIVITY_SQL = """
SELECT state, count(*), coalesce(max(extract(epoch FROM now() - state_change)), 0)
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
GROUP BY state
"""
IDLE_IN_TRANSACTION_SQL = """
SELECT count(*) FROM pg_stat_activity
WHERE state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND now() - state_change > make_interval(secs => %s)
"""
TABLES_SQL = """
SELECT relname, seq_scan, coalesce(idx_scan, 0), n_live_tup, n_dead_tup
FROM pg_stat_user_tables WHERE relname = ANY(%s)
"""
CACHE_SQL = "SELECT blks_hit, blks_read FROM pg_stat_database WHERE datname = current_database()"
REPLICATION_SQL = "SELECT state, coalesce(extract(epoch FROM replay_lag), 0) FROM pg_stat_replication"
# MLflow's own work only (no catalog reads, this command's among them): utility statements are not
# normalised by pg_stat_statements, and one of them (the migrate step's ALTER ROLE ... PASSWORD)
# carries a password verifier that must not be shown
STATEMENTS_SQL = """
SELECT query, calls, total_exec_time, mean_exec_time FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query ~* '^\\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\\s' AND query !~* 'PASSWORD' AND query !~* '\\mpg_'
ORDER BY total_exec_time DESC LIMIT %s
"""
# What MLflow operation a statement belongs to, recognised by its text (SQLAlchemy's, MLflow 3.17).
OPERATIONS = (
    (re.compile(r"^INSERT INTO metrics\b", re.I), "log_metric / log_batch (metric rows)"),
    (re.compile(r"^(INSERT INTO|UPDATE) latest_metrics\b", re.I), "log_metric / log_batch (latest values)"),
    (re.compile(r"^INSERT INTO params\b", re.I), "log_param / log_batch"),
    (re.compile(r"^INSERT INTO tags\b", re.I), "set_tag / log_batch"),
    (re.compile(r"^INSERT INTO runs\b", re.I), "create_run"),
    (re.compile(r"\bFROM runs\b.*\bORDER BY\b", re.I | re.S), "search_runs"),
    (re.compile(r"\bFROM metrics\b", re.I), "get_metric_history"),
    (re.compile(r"\bFROM experiments\b", re.I), "search_experiments / get_experiment"),
)


def normalise(value: str) -> str:
    """pg_settings spells booleans on/off; the plan 1/0 (as RDS parameter groups do)."""
    return {"on": "1", "off": "0", "true": "1", "false": "0"}.get(str(value).lower(), str(value))


def matches(name: str, setting: str, planned: str) -> bool:
    """A setting in effect is the plan's. RDS adds its own libraries (rdsutils, ...) to
    shared_preload_libraries: there the plan's libraries must be among those loaded."""
    if name in LIST_SETTINGS:
        return set(split_list(planned)) <= set(split_list(setting))
    return normalise(setting) == normalise(planned)


def split_list(value: str) -> list[str]:
    return [item.strip().strip('"') for item in str(value).split(",") if item.strip()]


def index_findings(rows: Iterable[tuple[str, bool]], planned: Sequence[tuple[str, str]], node: str, remedy: str) -> list[Finding]:
    """`rows`: (index, valid) found; `planned`: (index, table). A missing or INVALID planned index."""
    found = dict(rows)
    findings = []
    for name, table in planned:
        if name not in found:
            findings.append(Finding("indexes", "high", f"planned index {name} on {table} is missing on the {node}", remedy, node))
        elif not found[name]:
            findings.append(Finding("indexes", "high", f"planned index {name} on {table} is INVALID on the {node}"
                                    " (an interrupted CREATE INDEX CONCURRENTLY)", remedy, node))
    return findings


def parameter_findings(rows: Iterable[tuple[str, str, str, bool]], planned: Mapping[str, str], node: str,
                       remedy: str, restart_remedy: str) -> list[Finding]:
    """`rows`: (name, setting, unit, pending_restart) in effect; `planned`: the plan's value by name,
    in the same unit (pg_settings' own, as the parameter groups take them)."""
    findings = []
    for name, setting, unit, pending in rows:
        if name not in planned:
            continue
        if not matches(name, setting, planned[name]):
            in_unit = f" (unit {unit})" if unit else ""
            findings.append(Finding("parameters", "medium", f"{name} is {setting} on the {node}; the plan sets"
                                    f" {planned[name]}{in_unit}", remedy.format(name=name), node))
        if pending:
            findings.append(Finding("parameters", "medium", f"{name} waits for a restart of the {node} to take its new value",
                                    restart_remedy, node))
    return findings


def connection_findings(activity: Iterable[tuple[str | None, int, float]], idle_in_transaction: int,
                        max_connections: int, node: str) -> list[Finding]:
    """`activity`: (state, sessions, longest in that state, s) of client backends."""
    rows = list(activity)
    total = sum(count for _, count, _ in rows)
    findings = []
    if total > max_connections * CONNECTIONS_SHARE:
        findings.append(Finding("connections", "high", f"{total} client connections on the {node}, over"
                                f" {CONNECTIONS_SHARE:.0%} of max_connections {max_connections}",
                                "lower tracking.*.max_count or workers, or database.rds_proxy: on", node))
    if idle_in_transaction:
        findings.append(Finding("connections", "medium", f"{idle_in_transaction} session(s) idle in a transaction for more"
                                f" than {IDLE_IN_TRANSACTION_S} s on the {node} (they hold locks, a slot and the vacuum horizon)",
                                "find them in pg_stat_activity (state 'idle in transaction') and end them with"
                                " pg_terminate_backend(pid); MLflow's own sessions never stay idle in a transaction",
                                node))
    return findings


def table_findings(rows: Iterable[tuple[str, int, int, int, int]], node: str) -> list[Finding]:
    """`rows`: (table, seq_scan, idx_scan, live rows, dead rows) of MLflow's hot tables."""
    findings = []
    for table, seq_scan, idx_scan, live, dead in rows:
        if live >= SEQ_SCAN_MIN_ROWS and seq_scan > idx_scan:
            findings.append(Finding("indexes", "medium", f"{table} ({live:,} rows) was read by {seq_scan:,} sequential scans"
                                    f" and {idx_scan:,} index scans on the {node}",
                                    "look up its statements in pg_stat_statements; the index migration"
                                    " (infra/data/mlflow_indexes.yaml) may lack the index they need", node))
        if dead >= DEAD_MIN_ROWS and dead > live * DEAD_SHARE:
            findings.append(Finding("parameters", "medium", f"{table} has {dead:,} dead rows for {live:,} live ones on the {node}:"
                                    " autovacuum is not keeping up", "check for long transactions (they hold the vacuum"
                                    " horizon) and the table's autovacuum settings from the index migration", node))
    return findings


def cache_findings(hit: int, read: int, node: str) -> list[Finding]:
    total = hit + read
    if total < CACHE_MIN_BLOCKS or hit >= total * CACHE_HIT_SHARE:
        return []
    return [Finding("instance", "medium", f"{hit / total:.1%} of {total:,} block reads on the {node} were served by"
                    f" shared_buffers (under {CACHE_HIT_SHARE:.0%}): the hot set does not fit its memory",
                    "a class with more memory (database.instance_class), after checking the top statements for"
                    " sequential scans", node)]


def replication_findings(rows: Iterable[tuple[str, float]], planned_replicas: int, node: str) -> list[Finding]:
    """`rows`: (state, replay lag s) of the primary's walsenders."""
    rows = list(rows)
    streaming = [lag for state, lag in rows if state == "streaming"]
    findings = []
    if len(streaming) < planned_replicas:
        findings.append(Finding("replicas", "high", f"{len(streaming)} of {planned_replicas} planned replica(s) stream from"
                                f" the {node}: UI reads of a missing replica fall back to the primary or fail",
                                "start the replica again (mlflow-infra local up; on AWS see the replica's RDS events)", node))
    for lag in streaming:
        if lag > REPLICA_LAG_S:
            findings.append(Finding("replicas", "medium", f"a replica replays {lag:.0f} s behind the {node}: the UI shows stale runs",
                                    "look for long queries on the replica (hot_standby_feedback holds vacuum) or a"
                                    " write burst; a larger replica class if it persists", node))
    return findings


def operation(query: str) -> str:
    """The MLflow operation a statement belongs to, where its text says so."""
    text = query.strip()
    return next((name for pattern, name in OPERATIONS if pattern.search(text)), "")


def top_statements(rows: Iterable[tuple[str, int, float, float]]) -> list[dict]:
    return [{"operation": operation(q), "calls": calls, "total_ms": round(total, 1), "mean_ms": round(mean, 2),
             "query": " ".join(q.split())[:160]} for q, calls, total, mean in rows]


def check_primary(conn, planned_settings: Mapping[str, str], planned_indexes: Sequence[tuple[str, str]], replicas: int,
                  remedies: Mapping[str, str], node: str = "primary") -> tuple[list[Finding], dict]:
    """Every check of the primary; returns the findings and the facts (top statements)."""
    findings = index_findings(conn.execute(INDEX_SQL, ([n for n, _ in planned_indexes],)).fetchall(), planned_indexes,
                              node, remedies["index"])
    findings += check_node(conn, planned_settings, remedies, node)
    findings += table_findings(conn.execute(TABLES_SQL, (list(HOT_TABLES),)).fetchall(), node)
    findings += replication_findings(conn.execute(REPLICATION_SQL).fetchall(), replicas, node)
    facts = {"max_connections": int(conn.execute("SHOW max_connections").fetchone()[0])}
    if conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()[0]:
        facts["top_statements"] = top_statements(conn.execute(STATEMENTS_SQL, (5,)).fetchall())
    else:
        facts["top_statements"] = "pg_stat_statements is loaded but not created in this database: CREATE EXTENSION pg_stat_statements"
    return findings, facts


def check_node(conn, planned_settings: Mapping[str, str], remedies: Mapping[str, str], node: str) -> list[Finding]:
    """What every node is checked for: its parameters against its planned set, and its connections."""
    findings = parameter_findings(conn.execute(SETTINGS_SQL, (list(planned_settings),)).fetchall(), planned_settings, node,
                                  remedies["parameter"], remedies["restart"])
    max_connections = int(conn.execute("SHOW max_connections").fetchone()[0])
    idle = conn.execute(IDLE_IN_TRANSACTION_SQL, (IDLE_IN_TRANSACTION_S,)).fetchone()[0]
    findings += cache_findings(*conn.execute(CACHE_SQL).fetchone(), node)
    return findings + connection_findings(conn.execute(ACTIVITY_SQL).fetchall(), idle, max_connections, node)

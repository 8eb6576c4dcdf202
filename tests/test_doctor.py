"""`mlflow-infra doctor --local`: a healthy topology reports nothing; a dropped planned index, a
parameter changed with ALTER SYSTEM, a session idle in a transaction are each found and named.
The findings' thresholds are tables of rows in, findings out."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest

from infra.cli import main
from infra.doctor import database
from infra.doctor.findings import BOTTLENECKS, EXIT_CLEAN, EXIT_FINDINGS, EXIT_UNREACHABLE, Finding
from infra.planning.indexes import index_migration
from local_services import running_topology

REMEDIES = {"index": "migrate", "parameter": "reset {name}", "restart": "restart"}


# ---------------------------------------------------------------------------------------------
# the rules, as tables

def test_a_missing_or_invalid_planned_index_is_a_finding():
    planned = [("idx_a", "runs"), ("idx_b", "metrics"), ("idx_c", "tags")]
    found = database.index_findings([("idx_a", True), ("idx_b", False)], planned, "primary", "migrate")
    assert [(f.bottleneck, f.severity, f.evidence) for f in found] == [
        ("indexes", "high", "planned index idx_b on metrics is INVALID on the primary (an interrupted CREATE INDEX CONCURRENTLY)"),
        ("indexes", "high", "planned index idx_c on tags is missing on the primary")]


@pytest.mark.parametrize("rows, planned, expected", [
    ([("work_mem", "4096", "kB", False)], {"work_mem": "4096"}, []),
    ([("synchronous_commit", "on", "", False)], {"synchronous_commit": "1"}, []),            # on == 1, as RDS spells it
    ([("work_mem", "64", "kB", False)], {"work_mem": "4096"}, ["work_mem is 64 on the primary; the plan sets 4096 (unit kB)"]),
    ([("shared_buffers", "16384", "8kB", True)], {"shared_buffers": "16384"},
     ["shared_buffers waits for a restart of the primary to take its new value"]),
    ([("unplanned", "1", "", False)], {}, []),
    ([("shared_preload_libraries", "rdsutils,pg_stat_statements", "", False)],           # RDS adds its own
     {"shared_preload_libraries": "pg_stat_statements"}, []),
    ([("shared_preload_libraries", "rdsutils", "", False)], {"shared_preload_libraries": "pg_stat_statements"},
     ["shared_preload_libraries is rdsutils on the primary; the plan sets pg_stat_statements"]),
])
def test_parameters_differ_from_the_plan_or_wait_for_a_restart(rows, planned, expected):
    assert [f.evidence for f in database.parameter_findings(rows, planned, "primary", "reset {name}", "restart")] == expected


@pytest.mark.parametrize("activity, idle, max_connections, expected", [
    ([("active", 5, 0.1), ("idle", 30, 50.0)], 0, 100, []),
    ([("idle", 81, 10.0)], 0, 100, ["81 client connections on the primary, over 80% of max_connections 100"]),
    ([("idle in transaction", 2, 90.0)], 2, 100,
     ["2 session(s) idle in a transaction for more than 30 s on the primary (they hold locks, a slot and the vacuum horizon)"]),
])
def test_connections_near_the_budget_or_idle_in_a_transaction(activity, idle, max_connections, expected):
    assert [f.evidence for f in database.connection_findings(activity, idle, max_connections, "primary")] == expected


@pytest.mark.parametrize("rows, expected", [
    ([("metrics", 10, 500, 2_000_000, 1_000)], []),
    ([("metrics", 900, 10, 2_000_000, 1_000)], [("indexes", "metrics (2,000,000 rows) was read by 900 sequential scans and 10 index scans on the primary")]),
    ([("runs", 900, 10, 50_000, 0)], []),                                        # small: a sequential scan is right
    ([("latest_metrics", 0, 9, 40_000, 20_000)], [("parameters", "latest_metrics has 20,000 dead rows for 40,000 live ones on the primary: autovacuum is not keeping up")]),
])
def test_sequential_scans_of_large_tables_and_dead_rows(rows, expected):
    assert [(f.bottleneck, f.evidence) for f in database.table_findings(rows, "primary")] == expected


@pytest.mark.parametrize("hit, read, expected", [
    (999_000, 1_000, []),
    (900, 100, []),                                                              # too few reads to judge
    (950_000, 50_000, ["95.0% of 1,000,000 block reads on the primary were served by shared_buffers (under 99%):"
                       " the hot set does not fit its memory"]),
])
def test_a_cache_hit_ratio_under_the_hot_set(hit, read, expected):
    assert [f.evidence for f in database.cache_findings(hit, read, "primary")] == expected


@pytest.mark.parametrize("rows, planned, expected", [
    ([("streaming", 0.2)], 1, []),
    ([], 1, ["0 of 1 planned replica(s) stream from the primary: UI reads of a missing replica fall back to the primary or fail"]),
    ([("streaming", 300.0)], 1, ["a replica replays 300 s behind the primary: the UI shows stale runs"]),
])
def test_replicas_streaming_and_their_lag(rows, planned, expected):
    assert [f.evidence for f in database.replication_findings(rows, planned, "primary")] == expected


@pytest.mark.parametrize("query, name", [
    ("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES ($1, ...)", "log_metric / log_batch (metric rows)"),
    ("SELECT runs.run_uuid FROM runs WHERE runs.experiment_id IN ($1) ORDER BY runs.start_time DESC", "search_runs"),
    ("SELECT 1", ""),
])
def test_statements_are_named_as_mlflow_operations(query, name):
    assert database.operation(query) == name


def test_a_finding_names_a_known_bottleneck_and_severity():
    with pytest.raises(ValueError, match="finding bottleneck 'disk' is not one of instance, replicas"):
        Finding("disk", "high", "e", "r", "primary")
    assert len(BOTTLENECKS) == 9


def test_no_topology_is_unreachable(tmp_path, capsys):
    assert main(["doctor", "--local", "--root", str(tmp_path / "none"), "--json"]) == EXIT_UNREACHABLE
    report = json.loads(capsys.readouterr().out)
    assert report["sources"][0]["reached"] is False and "mlflow-infra local up" in report["sources"][0]["detail"]


# ---------------------------------------------------------------------------------------------
# a real topology

@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    with running_topology(tmp_path_factory.mktemp("doctor") / ".mlflow-local") as running:
        yield running


def doctor(topo, capsys) -> tuple[int, dict]:
    code = main(["doctor", "--local", "--root", str(topo.root), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.postgres
def test_a_fresh_topology_has_no_finding_then_each_provoked_one_is_named(topology, capsys):
    topo, state = topology
    code, report = doctor(topo, capsys)
    assert (code, report["findings"]) == (EXIT_CLEAN, []), report
    assert {s["name"]: s["reached"] for s in report["sources"]} == {
        "aws": True, "primary": True, "replica-1": True, "servers": True, "prometheus:api": True, "prometheus:ui": True,
        "access-log:api": True, "access-log:ui": True}
    statements = report["facts"]["top_statements"]
    assert isinstance(statements, list) and statements, "the migrate step created pg_stat_statements"
    assert not any("password" in s["query"].lower() or s["query"].upper().startswith(("CREATE", "ALTER")) for s in statements)

    index = index_migration().indexes[0]
    with psycopg.connect(state.primary_uri, autocommit=True) as conn:
        conn.execute(f"DROP INDEX {index.name}")
        conn.execute("ALTER SYSTEM SET work_mem = '64kB'")
        conn.execute("SELECT pg_reload_conf()")
    idle = psycopg.connect(state.primary_uri)   # a transaction left open, as a stuck client would
    try:
        idle.execute("SELECT 1")
        time.sleep(database.IDLE_IN_TRANSACTION_S + 2)
        code, report = doctor(topo, capsys)
    finally:
        idle.close()
        with psycopg.connect(state.primary_uri, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET work_mem")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute(index.create_sql)
    found = {(f["bottleneck"], f["source"]): f for f in report["findings"]}
    assert code == EXIT_FINDINGS
    assert index.name in found[("indexes", "primary")]["evidence"]
    assert found[("parameters", "primary")]["evidence"].startswith("work_mem is 64 on the primary; the plan sets ")
    assert found[("parameters", "primary")]["evidence"].endswith(" (unit kB)")
    assert "idle in a transaction" in found[("connections", "primary")]["evidence"]
    assert set(found) == {("indexes", "primary"), ("parameters", "primary"), ("connections", "primary")}, report["findings"]

    code, report = doctor(topo, capsys)
    assert (code, report["findings"]) == (EXIT_CLEAN, []), "remedied: nothing left"


@pytest.mark.postgres
def test_a_server_process_near_its_open_files_limit_is_found(topology, capsys):
    """A worker's soft limit lowered to just above what it holds open, as a small `ulimit -n` would."""
    import resource

    from infra.doctor.processes import open_files
    from infra.local.processes import group_pids

    topo, _ = topology
    api = next(s for s in topo.read_state()["servers"] if s["role"] == "api")
    pid = group_pids(api["pid"])[-1]
    count, _ = open_files(pid)
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (count + 1, before[1]))
    try:
        code, report = doctor(topo, capsys)
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, before)
    [finding] = [f for f in report["findings"] if f["bottleneck"] == "open-files"]
    assert finding["source"] == "api" and f"process {pid} has " in finding["evidence"]
    assert f" files open of its limit {count + 1:,} (" in finding["evidence"]
    # a worker at its limit cannot accept a connection: the scrape of /metrics fails when it lands there
    unreached = {s["name"] for s in report["sources"] if not s["reached"]}
    assert (code, unreached) in ((EXIT_FINDINGS, set()), (EXIT_UNREACHABLE, {"prometheus:api"})), report["sources"]
    code, report = doctor(topo, capsys)
    assert not [f for f in report["findings"] if f["bottleneck"] == "open-files"], "the limit restored: nothing left"


@pytest.mark.postgres
def test_a_stopped_replica_is_found_and_a_stopped_primary_is_unreachable(topology, capsys):
    topo, state = topology
    from infra.local.postgres import LocalPostgres

    entries = {d["name"]: d for d in topo.read_state()["databases"]}
    replica = LocalPostgres(Path(entries["replica-1"]["data_dir"]), entries["replica-1"]["port"])
    replica.stop()
    try:
        code, report = doctor(topo, capsys)
        assert code == EXIT_UNREACHABLE, "a database of the deployment did not answer"
        assert [f["evidence"] for f in report["findings"] if f["bottleneck"] == "replicas"] == [
            "0 of 1 planned replica(s) stream from the primary: UI reads of a missing replica fall back to the primary or fail"]
        assert {s["name"]: s["reached"] for s in report["sources"]}["replica-1"] is False
    finally:
        topo.up()


@pytest.mark.postgres
def test_a_standby_started_below_its_primarys_max_connections_does_not_serve(topology):
    """Why `db apply-pending` reboots the replicas first when a change raises max_connections (and
    takes --primary-first for one that lowers it): a hot standby started with a smaller value than
    its primary runs does not serve reads (docs/aws-constraints.md)."""
    from infra.local.postgres import LocalPostgres

    topo, state = topology
    entries = {d["name"]: d for d in topo.read_state()["databases"]}
    with psycopg.connect(state.primary_uri, autocommit=True) as conn:
        primary_max = int(conn.execute("SHOW max_connections").fetchone()[0])
    replica = LocalPostgres(Path(entries["replica-1"]["data_dir"]), entries["replica-1"]["port"])
    auto = replica.data_dir / "postgresql.auto.conf"   # read after every other file: it wins
    original = auto.read_text()
    replica.stop()
    try:
        auto.write_text(original + f"\nmax_connections = {primary_max - 10}\n")
        try:
            replica.start(timeout_s=20)
            started = True
        except Exception:  # noqa: BLE001 (pg_ctl gives up waiting for a standby that cannot serve)
            started = False
        if started:
            with pytest.raises(psycopg.Error):
                psycopg.connect(replica.uri(), connect_timeout=5).close()
        assert "insufficient parameter settings" in replica.log_tail(200)
    finally:
        replica.stop()
        auto.write_text(original)
        topo.up()
    with psycopg.connect(replica.uri(), autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0], "restored: the replica serves again"

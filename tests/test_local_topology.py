"""The local topology of stacks/local.yaml, brought up once for the module: a real PostgreSQL
primary and streaming replica and the real MLflow API and UI servers, started as `local up` starts
them. Writes land on the primary, UI reads on the replica, and nothing acknowledged is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from helpers import ROOT
from infra import load_environment, plan
from infra.cli import main
from infra.planning.indexes import index_migration
from infra.local import LocalTopology, LocalTopologyError
from infra.local import processes
from infra.local.processes import free_port, free_port_block
from local_services import eventually, server_workers
from infra.local.postgres import build_has_lz4
from infra.planning.parameters import primary_parameters, replica_parameters, scaled_to, server_settings

pytestmark = pytest.mark.postgres

LOCAL_YAML = ROOT / "stacks" / "local.yaml"
CLI = Path(sys.executable).parent / "mlflow-infra"


def normalise(value: str) -> str:
    return {"on": "1", "off": "0", "true": "1", "false": "0"}.get(value, value)


def new_topology(root: Path) -> LocalTopology:
    return LocalTopology.from_environment(str(LOCAL_YAML), root=root, base_port=free_port_block(2),
                                          api_port=free_port(), ui_port=free_port())


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    topology = new_topology(tmp_path_factory.mktemp("local") / ".mlflow-local")
    try:
        state = topology.up()
        yield topology, state
    finally:
        topology.down(purge=True)


def query(uri: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def new_experiment(client: MlflowClient, prefix: str) -> str:
    return client.create_experiment(f"{prefix}-{uuid.uuid4().hex[:8]}")


# ---------------------------------------------------------------------------------------------

def test_state_names_every_component_and_the_skipped_parameters(topology):
    topo, state = topology
    status = topo.status()
    assert list(status["components"]) == ["primary", "replica-1", "api", "ui"]
    assert all(c["up"] for c in status["components"].values()), status
    assert state.primary_uri == f"postgresql://postgres@127.0.0.1:{topo.base_port}/mlflow"
    assert state.replica_uris == [f"postgresql://postgres@127.0.0.1:{topo.base_port + 1}/mlflow"]
    assert (state.api_url, state.ui_url) == (f"http://127.0.0.1:{topo.api_port}", f"http://127.0.0.1:{topo.ui_port}")
    assert state.skipped_parameters == ["rds.force_ssl"]
    assert state.adapted_parameters == ([] if build_has_lz4() else ["wal_compression lz4 -> pglz (this PostgreSQL build has no lz4)"])
    assert query(state.replica_uris[0], "SELECT pg_is_in_recovery()") == [(True,)]
    assert query(state.primary_uri, "SELECT state FROM pg_stat_replication") == [("streaming",)]


def test_a_run_logged_through_the_api_is_visible_through_the_ui(topology):
    _, state = topology
    api, ui = MlflowClient(state.api_url), MlflowClient(state.ui_url)
    experiment_id = new_experiment(api, "visible")
    run_id = api.create_run(experiment_id).info.run_id
    api.log_batch(run_id, metrics=[Metric("loss", 0.5, int(time.time() * 1000), 0)])

    def seen_by_ui():
        found = ui.search_runs([experiment_id])
        return [r.info.run_id for r in found] if found and found[0].data.metrics else None

    assert eventually(seen_by_ui) == [run_id]
    assert ui.get_run(run_id).data.metrics == {"loss": 0.5}


def test_ui_searches_are_served_by_the_replica_and_writes_by_the_primary(topology):
    _, state = topology
    primary, replica = state.primary_uri, state.replica_uris[0]
    api, ui = MlflowClient(state.api_url), MlflowClient(state.ui_url)
    experiment_id = new_experiment(api, "routing")
    run_id = api.create_run(experiment_id).info.run_id
    stats = "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE query ILIKE %s"
    runs_select, metrics_insert = ("SELECT%FROM runs%",), ("INSERT INTO metrics%",)

    def reset_statistics():
        for uri in (primary, replica):
            query(uri, "SELECT pg_stat_statements_reset()")

    reset_statistics()
    api.log_batch(run_id, metrics=[Metric(f"m{i}", float(i), int(time.time() * 1000), 0) for i in range(10)])
    assert query(primary, stats, metrics_insert)[0][0] >= 1, "the logged metrics were inserted on the primary"
    assert query(replica, stats, metrics_insert)[0][0] == 0
    replayed = "SELECT count(*) FROM metrics WHERE run_uuid = %s"
    assert eventually(lambda: query(replica, replayed, (run_id,))[0][0] == 10), "the replica replays the metrics"

    reset_statistics()  # the API's own run lookups (log_batch checks the run is active) are on the primary
    assert [r.info.run_id for r in ui.search_runs([experiment_id], "metrics.m9 = 9")] == [run_id]
    assert query(replica, stats, runs_select)[0][0] >= 1, "the UI's run search ran on the replica"
    assert query(primary, stats, runs_select)[0][0] == 0, "no run search reached the primary"


def test_the_planned_indexes_exist_on_the_replica(topology):
    _, state = topology
    names = [index.name for index in index_migration().indexes]
    rows = query(state.replica_uris[0], "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                                        " WHERE c.relname = ANY(%s) ORDER BY c.relname", (names,))
    assert rows == [(name, True) for name in sorted(names)]


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_parameters_in_effect_are_the_scaled_plans(topology, role):
    _, state = topology
    p = plan(load_environment(LOCAL_YAML))
    nodes = 1 + p.database.replicas.count
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 // nodes
    inputs = scaled_to(p.database.parameter_inputs, memory_bytes=memory, vcpu=os.cpu_count())
    params = (primary_parameters if role == "primary" else replica_parameters)(inputs)
    expected, _, _ = server_settings(params, lz4=build_has_lz4())
    uri = state.primary_uri if role == "primary" else state.replica_uris[0]
    in_effect = dict(query(uri, "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(expected),)))
    assert set(in_effect) == set(expected)
    mismatches = {name: (value, in_effect[name]) for name, value in expected.items() if normalise(in_effect[name]) != normalise(value)}
    assert not mismatches, f"planned vs in effect: {mismatches}"
    assert int(in_effect["shared_buffers"]) == memory // 4 // 8192, "a quarter of this node's share of the machine, in 8 kB pages"
    replication = dict(query(uri, "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'hot_standby')"))
    assert replication == {"wal_level": "replica", "hot_standby": "on"}


def test_killing_an_api_worker_mid_burst_loses_no_acknowledged_write(topology, monkeypatch):
    # a call cut off by the kill is retried on another worker; bound the client's patience
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    topo, state = topology
    api_pid = topo.read_state()["servers"][0]["pid"]
    workers = server_workers(api_pid)
    planned = int(topo.plan.tracking.api.server.command[topo.plan.tracking.api.server.command.index("--workers") + 1])
    assert len(workers) == planned, f"the API runs the planned {planned} workers: {workers}"

    client = MlflowClient(state.api_url)
    experiment_id = new_experiment(client, "burst")
    run_ids = [client.create_run(experiment_id).info.run_id for _ in range(4)]
    acknowledged: list[tuple[str, int]] = []
    errors: list[str] = []
    lock = threading.Lock()
    now = int(time.time() * 1000)

    def burst(run_id: str) -> None:
        for step in range(50):
            try:
                client.log_batch(run_id, metrics=[Metric(f"k{i}", float(step), now + step, step) for i in range(5)])
            except Exception as exc:  # noqa: BLE001 - an unacknowledged call may fail; it is only counted
                errors.append(type(exc).__name__)
                continue
            with lock:
                acknowledged.append((run_id, step))

    threads = [threading.Thread(target=burst, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    assert eventually(lambda: len(acknowledged) >= 20, timeout_s=30), "the burst did not get going"
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    acknowledged_at_kill = len(acknowledged)
    for thread in threads:
        thread.join(timeout=120)
    assert acknowledged_at_kill < 200, "the worker died while the burst was still running"

    rows = query(state.primary_uri, "SELECT run_uuid, step, count(*) FROM metrics WHERE run_uuid = ANY(%s)"
                                    " GROUP BY run_uuid, step", (run_ids,))
    in_primary = {(run_uuid, step): count for run_uuid, step, count in rows}
    lost = [call for call in acknowledged if in_primary.get(call) != 5]
    assert not lost, f"acknowledged log_batch calls missing from the primary: {lost[:5]}"
    assert len(acknowledged) > acknowledged_at_kill + 50, f"the other workers kept serving (errors: {errors[:5]})"

    # gunicorn's master replaces the dead worker
    def replaced():
        now_running = server_workers(api_pid)
        return len(now_running) == planned and victim not in now_running
    assert eventually(replaced, timeout_s=30), f"workers after the kill: {server_workers(api_pid)}"
    assert client.get_run(run_ids[0]).data.metrics["k0"] == 49.0


def test_a_port_taken_while_starting_stops_what_was_started(tmp_path):
    topology = new_topology(tmp_path / "root")
    replica_port = topology.base_port + 1
    squatter = socket.socket()

    def take_the_replica_port(line: str) -> None:
        if line.startswith("cloning replica-1"):
            squatter.bind(("127.0.0.1", replica_port))
            squatter.listen()

    try:
        with pytest.raises(LocalTopologyError) as err:
            topology.up(progress=take_the_replica_port)
        assert err.value.code == 2
        assert f"port {replica_port}" in str(err.value) and "\n" not in str(err.value)
        status = topology.status()["components"]
        assert not any(c["up"] for c in status.values()), status
        assert not processes.port_in_use(topology.base_port), "the primary this call started is stopped again"
    finally:
        squatter.close()
        topology.down(purge=True)


def test_a_busy_port_exits_2_with_one_line_and_starts_nothing(tmp_path):
    root, base = tmp_path / "root", free_port_block(2)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        result = subprocess.run([str(CLI), "local", "up", "--root", str(root), "--base-port", str(base),
                                 "--api-port", str(busy), "--ui-port", str(free_port())],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"port {busy} for api is already in use by another process; stop it or choose another port (--base-port, --api-port, --ui-port)"]
    assert not (root / "data").exists() and not processes.port_in_use(base)


def test_data_survives_down_and_up(topology, capsys):
    topo, state = topology
    client = MlflowClient(state.api_url)
    run_id = client.create_run(new_experiment(client, "survives")).info.run_id
    client.log_param(run_id, "kept", "yes")
    root = str(topo.root)

    assert main(["local", "down", "--root", root]) == 0
    assert main(["local", "status", "--root", root]) == 3, "status exits 3 while components are down"
    out = capsys.readouterr().out
    assert "data kept" in out and " down " in out and " up " not in out
    assert not any(processes.port_in_use(port) for port in topo.ports.values()), "every port is free after down"

    # `local up` brings it back and prints what training jobs set to batch their logging calls
    assert main(["local", "up", "--root", root, "--base-port", str(topo.base_port), "--api-port", str(topo.api_port),
                 "--ui-port", str(topo.ui_port)]) == 0
    out = capsys.readouterr().out
    assert f"export MLFLOW_TRACKING_URI={state.api_url}" in out
    for name, value in topo.plan.client_environment.items():
        assert f"export {name}={value}" in out
    again = topo.up()   # already up: the same state
    assert again == state
    assert MlflowClient(again.api_url).get_run(run_id).data.params == {"kept": "yes"}
    assert eventually(lambda: MlflowClient(again.ui_url).get_run(run_id).data.params) == {"kept": "yes"}
    assert main(["local", "status", "--root", root]) == 0

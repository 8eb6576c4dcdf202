"""Every replica serves UI reads, and losing one does not take the UI down: on the local topology,
with real PostgreSQL replicas and real MLflow UI servers started as `local up` starts them.

- One replica (stacks/local.yaml): the UI's read URI lists the replica, then the primary. Stop the
  replica: searches keep answering (from the primary) and readiness stays 200; start it again: within
  the read pool's recycle time the UI's reads are back on the replica.
- Two replicas: one UI server per replica behind the local load balancer (the target group's
  health-check semantics). Stop replica 1: its UI server's readiness answers 503, the balancer takes
  it out of the rotation and searches through the balancer keep answering from the other; start it
  again: the server is healthy again and the balancer sends it requests.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from helpers import ROOT
from infra.endpoints import APP_DATABASE_USERNAME, READY_PATH
from infra.local.postgres import LocalPostgres
from infra.local.processes import http_status
from infra.local.topology import BALANCER_CHECK
from infra.planning.connections import READ_FALLBACK_RECYCLE_S
from local_services import eventually, http_get, running_topology

pytestmark = pytest.mark.postgres

SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"
# Generous for a loaded two-core box: a health-check round is BALANCER_CHECK interval x threshold.
OUT_OF_ROTATION_S = 30


def ready(server: dict) -> tuple[int | None, str]:
    try:
        return http_get(f"http://127.0.0.1:{server['ready_port']}{READY_PATH}", timeout=10)
    except OSError as exc:
        return None, str(exc)


def app_backends(uri: str) -> int:
    """Sessions of the servers' role on one database: where the UI's read engines are connected."""
    with psycopg.connect(uri, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
                            (APP_DATABASE_USERNAME,)).fetchone()[0]


def searches_answer(url: str, times: int = 10) -> bool:
    return all(http_status(url + SEARCH, timeout=10) == 200 for _ in range(times))


def database(state: dict, name: str) -> dict:
    return next(d for d in state["databases"] if d["name"] == name)


def stop_database(entry: dict) -> None:
    LocalPostgres(Path(entry["data_dir"]), entry["port"]).stop()


@pytest.fixture(scope="module")
def one_replica(tmp_path_factory):
    with running_topology(tmp_path_factory.mktemp("one") / ".mlflow-local") as (topology, _):
        yield topology


@pytest.fixture(scope="module")
def two_replicas(tmp_path_factory):
    stacks = tmp_path_factory.mktemp("stacks")
    for name in ("base.yaml", "local.yaml"):
        (stacks / name).write_text((ROOT / "stacks" / name).read_text())
    env_file = stacks / "local2.yaml"
    env_file.write_text("extends: local\ndatabase:\n  read_replicas: 2\n")
    with running_topology(tmp_path_factory.mktemp("two") / ".mlflow-local", env_file, replicas=2) as (topology, _):
        yield topology


def test_a_single_replicas_ui_reads_fall_back_to_the_primary_and_return(one_replica):
    topo = one_replica
    state = topo.read_state()
    ui = next(s for s in state["servers"] if s["name"] == "ui")
    primary, replica = database(state, "primary"), database(state, "replica-1")
    assert ui["reads_from"] == "replica-1" and state["balancer"] is None
    status, text = ready(ui)
    assert status == 200 and f":{replica['port']} (replica)" in text, text
    assert searches_answer(ui["url"])
    assert app_backends(replica["uri"]) > 0, "the UI's read engines are connected to the replica"

    stop_database(replica)
    try:
        # pre-ping finds the dead connections; the read URI's second host is the primary
        eventually(lambda: searches_answer(ui["url"], 3), OUT_OF_ROTATION_S, "UI searches to answer from the primary")
        status, text = ready(ui)
        assert status == 200 and f":{primary['port']} (primary)" in text, text
    finally:
        topo.up()  # starts the stopped replica again (and nothing else: the rest runs)

    def back_on_the_replica() -> bool:
        searches_answer(ui["url"], 3)
        return ready(ui)[1].count("(replica)") == 1 and app_backends(replica["uri"]) > 0

    eventually(back_on_the_replica, READ_FALLBACK_RECYCLE_S + 60, "the UI's reads to return to the replica")


def balancer_view(state: dict) -> dict:
    path = Path(state["balancer"]["state_file"])
    return json.loads(path.read_text()) if path.exists() else {}


def test_each_replica_has_its_own_ui_server_behind_the_balancer(two_replicas):
    state = two_replicas.read_state()
    ui_servers = [s for s in state["servers"] if s["role"] == "ui"]
    assert [(s["name"], s["reads_from"]) for s in ui_servers] == [("ui-1", "replica-1"), ("ui-2", "replica-2")]
    for server in ui_servers:
        status, text = ready(server)
        port = database(state, server["reads_from"])["port"]
        assert status == 200 and f":{port} (replica)" in text, text
    assert list(two_replicas.status()["components"]) == ["primary", "replica-1", "replica-2", "api", "ui-1", "ui-2", "ui"]
    eventually(lambda: set(balancer_view(state).values()) == {"healthy"}, OUT_OF_ROTATION_S, "both UI servers healthy")
    assert searches_answer(state["balancer"]["url"])
    for server in ui_servers:
        assert app_backends(database(state, server["reads_from"])["uri"]) > 0, f"{server['name']} reads its replica"


def test_losing_a_replica_leaves_the_ui_served_by_the_other(two_replicas):
    topo = two_replicas
    state = topo.read_state()
    lost, kept = (s for s in state["servers"] if s["role"] == "ui")
    balancer = state["balancer"]
    name = f"ui-lost-{uuid.uuid4().hex[:6]}"
    eventually(lambda: set(balancer_view(state).values()) == {"healthy"}, OUT_OF_ROTATION_S, "both UI servers healthy")

    stop_database(database(state, "replica-1"))
    try:
        status, text = ready(lost)
        assert status == 503 and "did not answer" in text, text
        assert ready(kept)[0] == 200
        eventually(lambda: balancer_view(state).get(lost["url"]) == "unhealthy",
                   OUT_OF_ROTATION_S, f"the balancer to take {lost['name']} out of the rotation")
        # out of the rotation: every search through the balancer is answered by the other replica's server
        assert searches_answer(balancer["url"], 20), f"UI searches after {lost['name']} left the rotation"
        assert http_status(balancer["url"] + f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}") == 404
    finally:
        topo.up()

    eventually(lambda: ready(lost)[0] == 200, OUT_OF_ROTATION_S, f"{lost['name']} ready again")
    eventually(lambda: balancer_view(state).get(lost["url"]) == "healthy", OUT_OF_ROTATION_S,
               f"the balancer to send {lost['name']} requests again")
    assert searches_answer(balancer["url"])
    assert float(BALANCER_CHECK["interval"]) * int(BALANCER_CHECK["unhealthy-threshold"]) < OUT_OF_ROTATION_S

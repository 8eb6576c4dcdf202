"""The local topology's pure parts: ports, settings, server command and environment; the CLI's
refusals of bad input, which must come before anything starts; and the process toolkit's wait and
stop, which the topology, the benchmark and the server tests share."""

from __future__ import annotations

import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from helpers import ROOT
from infra import load_environment, plan
from infra.cli import main
from infra.endpoints import auth_variables as auth_env
from infra.runtime.entrypoint import compose_uris
from infra.local import LocalTopology, LocalTopologyError
from infra.local.processes import group_pids, nofile_soft_limit, stop_group, wait_until
from infra.local.topology import (
    HBA,
    base_environment,
    check_ports,
    component_ports,
    database_env,
    local_command,
    node_memory_bytes,
    node_settings,
    replication_settings,
    server_environment,
)
from infra.planning.parameters import Parameter
from infra.planning.server_command import PRIMARY_URI_ENV, REPLICA_URI_ENV

GIB = 1024**3


@pytest.fixture(scope="module")
def local_plan():
    return plan(load_environment(ROOT / "stacks" / "local.yaml"))


def test_the_local_environment_plans_one_replica_for_the_ui(local_plan):
    assert local_plan.tier == "development"
    assert local_plan.database.replicas.count == 1
    assert REPLICA_URI_ENV in local_plan.tracking.ui.server.uri_environment


def test_ports_are_the_base_then_one_per_replica_then_the_servers():
    # two replicas: one UI server each, behind the UI's balancer on --ui-port
    assert component_ports(2, 15432, 5080, 5081) == {"primary": 15432, "replica-1": 15433, "replica-2": 15434,
                                                     "api": 5080, "ui": 5081, "ui-1": 5082, "ui-2": 5083}
    assert component_ports(1, 15432, 5080, 5081) == {"primary": 15432, "replica-1": 15433, "api": 5080, "ui": 5081}


@pytest.mark.parametrize("ports, message", [
    ({"primary": 15432, "replica-1": 15433, "api": 15433, "ui": 5081},
     "port 15433 is given to both replica-1 and api; give each its own port (replicas use --base-port + 1, + 2, ...)"),
    ({"primary": 65535, "replica-1": 65536, "api": 5080, "ui": 5081},
     "port 65536 for replica-1 is not allowed; expected an integer from 1 to 65535 (replicas use --base-port + 1, + 2, ...)"),
])
def test_bad_ports_are_one_line_errors(ports, message):
    with pytest.raises(LocalTopologyError) as err:
        check_ports(ports)
    assert str(err.value) == message and err.value.code == 2


def test_a_quarter_of_the_machine_is_shared_by_the_databases():
    assert node_memory_bytes(32 * GIB, 2) == 4 * GIB
    assert node_memory_bytes(32 * GIB, 1) == 8 * GIB


def test_node_settings_are_the_plans_plus_replication(local_plan):
    params = list(local_plan.database.primary_parameters)
    settings, skipped, adapted = node_settings(params, replicas=1, lz4=False)
    planned = {p.name: p.value for p in params if not p.rds_only}
    assert {k: v for k, v in settings.items() if k in planned} == {**planned, "wal_compression": "pglz"}
    assert set(settings) - set(planned) == {"wal_level", "max_wal_senders", "max_replication_slots", "hot_standby"}
    assert skipped == ["rds.force_ssl"] and adapted == ["wal_compression lz4 -> pglz (this PostgreSQL build has no lz4)"]


def test_replication_settings_leave_room_for_every_replica_and_a_clone():
    assert replication_settings(1)["max_wal_senders"] == "10"  # PostgreSQL's default
    assert int(replication_settings(12)["max_wal_senders"]) >= 12 + 2
    assert int(replication_settings(12)["max_replication_slots"]) >= 12


def test_a_plan_setting_replication_itself_is_refused():
    clash = Parameter("wal_level", "logical", "", "immediate", "test")
    with pytest.raises(ValueError, match="wal_level"):
        node_settings([clash], replicas=1, lz4=True)


def test_hba_trusts_only_the_superuser_from_this_machine():
    rules = [line.split() for line in HBA.splitlines() if line and not line.startswith("#")]
    assert all(rule[2] == "postgres" for rule in rules if rule[-1] == "trust")
    assert all(rule[0] == "local" or rule[3] == "127.0.0.1/32" for rule in rules)
    assert ["host", "replication", "postgres", "127.0.0.1/32", "trust"] in rules
    # the servers' application role: its password, only to the mlflow database (README "Rotating database passwords")
    assert ["host", "mlflow", "mlflow_app", "127.0.0.1/32", "scram-sha-256"] in rules and len(rules) == 4


def test_the_planned_command_runs_on_127_0_0_1_and_the_local_port(local_plan):
    planned = local_plan.tracking.api.server.command
    command = local_command(planned, 5080, Path("/r/prometheus/api"))
    at = {flag: command[command.index(flag) + 1] for flag in ("--host", "--port", "--expose-prometheus", "--workers")}
    assert at == {"--host": "127.0.0.1", "--port": "5080", "--expose-prometheus": "/r/prometheus/api",
                  "--workers": planned[planned.index("--workers") + 1]}
    assert len(command) == len(planned) and "0.0.0.0" not in command
    with pytest.raises(ValueError, match="--host"):
        local_command(["mlflow", "server", "--port", "5000"], 5080, Path("/r"))


def test_the_ui_reads_the_replica_on_its_own_port_through_the_entrypoint(local_plan):
    settings = local_plan.tracking.ui.server
    env = server_environment(settings, {"PATH": "/bin"}, database_env(15432, 15433), Path("/r/artifacts"), Path("/r/prom"))
    uris = compose_uris(env)  # what the entrypoint hands `mlflow server`
    assert (make_url(uris[PRIMARY_URI_ENV]).port, make_url(uris[REPLICA_URI_ENV]).port) == (15432, 15433)
    assert make_url(uris[PRIMARY_URI_ENV]).query == {"sslmode": "disable"}
    assert env["PROMETHEUS_MULTIPROC_DIR"] == "/r/prom" and env["MLFLOW_LOAD_BALANCER_HOST"] == "127.0.0.1"
    assert env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == settings.environment["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]
    assert list(compose_uris(database_env(15432, None))) == [PRIMARY_URI_ENV], "the API writes to the primary only"


def test_the_callers_store_uris_never_reach_the_servers():
    env = base_environment({"PATH": "/usr/bin", "HOME": "/h", PRIMARY_URI_ENV: "sqlite:///x", REPLICA_URI_ENV: "sqlite:///y"},
                           Path("/venv/bin"))
    assert env == {"PATH": "/venv/bin:/usr/bin", "HOME": "/h"}


def test_the_open_files_limit_is_the_plans_unless_the_hard_limit_is_lower():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert nofile_soft_limit(64) == 64
    assert nofile_soft_limit(10**9) == (10**9 if hard == resource.RLIM_INFINITY else hard)


# ---------------------------------------------------------------------------------------------
# tracking.auth basic: the topology's secret key and admin user

@pytest.fixture(scope="module")
def auth_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("env") / "local-auth.yaml"
    path.write_text(f"extends: {ROOT / 'stacks' / 'local.yaml'}\ntracking:\n  auth: basic\n")
    return plan(load_environment(path))


def test_auth_credentials_are_generated_once_private_and_then_reused(auth_plan, tmp_path):
    topology = LocalTopology(tmp_path / "root", auth_plan)
    assert topology.basic_auth and not topology.auth_file.exists()
    first = topology.auth_credentials()
    assert oct(topology.auth_file.stat().st_mode & 0o777) == "0o600"
    assert set(first) == {"secret_key", "admin_username", "admin_password"}
    assert len(first["admin_password"]) >= 12, "MLflow refuses a shorter admin password"
    assert LocalTopology(tmp_path / "root", auth_plan).auth_credentials() == first, "a later run reuses them"
    assert LocalTopology(tmp_path / "other", auth_plan).auth_credentials() != first, "each topology has its own"


def test_the_servers_get_the_auth_values_the_entrypoint_expects(auth_plan, tmp_path):
    credentials = LocalTopology(tmp_path / "root", auth_plan).auth_credentials()
    settings = auth_plan.tracking.ui.server
    assert set(auth_env(credentials)) == set(settings.auth_secret_environment)
    assert auth_env(credentials)["AUTH_ADMIN_PASSWORD"] == credentials["admin_password"]
    assert auth_env(credentials)["MLFLOW_FLASK_SERVER_SECRET_KEY"] == credentials["secret_key"]
    assert settings.command[settings.command.index("--app-name") + 1] == "basic-auth"


def test_a_broken_auth_file_is_one_sentence(auth_plan, tmp_path):
    topology = LocalTopology(tmp_path / "root", auth_plan)
    topology.root.mkdir()
    topology.auth_file.write_text('{"secret_key": "k"}')
    with pytest.raises(LocalTopologyError, match=r"auth.json lacks secret_key, admin_username, admin_password; remove it"):
        topology.auth_credentials()
    topology.auth_file.write_text("{not json")
    with pytest.raises(LocalTopologyError, match=r"auth.json is unreadable"):
        topology.auth_credentials()


def test_a_topology_without_auth_makes_no_credentials(local_plan, tmp_path):
    topology = LocalTopology(tmp_path / "root", local_plan)
    assert not topology.basic_auth and topology.authorization() is None
    assert not topology.auth_file.exists()


# ---------------------------------------------------------------------------------------------
# the CLI: bad input is one line and exit 2, before anything starts

@pytest.mark.parametrize("args, message", [
    (["nope"], "stacks/nope.yaml: file not found"),
    (["--api-port", "15433"], "port 15433 is given to both replica-1 and api; give each its own port"
                              " (replicas use --base-port + 1, + 2, ...)"),
    (["--base-port", "65535"], "port 65536 for replica-1 is not allowed; expected an integer from 1 to 65535"
                               " (replicas use --base-port + 1, + 2, ...)"),
])
def test_local_up_refuses_bad_input_in_one_line(tmp_path, capsys, args, message):
    root = tmp_path / "root"
    assert main(["local", "up", *args, "--root", str(root)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [message]
    assert not root.exists(), "nothing was created"


def test_status_and_down_without_a_topology(tmp_path, capsys):
    root = tmp_path / "none"
    assert main(["local", "status", "--root", str(root)]) == 3
    assert main(["local", "down", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"no local topology under {root}; start one with: mlflow-infra local up" in out
    assert "nothing to stop" in out


def test_purge_refuses_a_directory_that_is_not_a_topology(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["local", "down", "--purge", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"{tmp_path} has no state.json, so it is not a local topology; not removing it"
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_a_topology_without_an_environment_cannot_come_up(tmp_path):
    with pytest.raises(LocalTopologyError, match="build it with LocalTopology.from_environment"):
        LocalTopology.at(tmp_path).up()


# ---------------------------------------------------------------------------------------------
# the process toolkit: one wait loop, one stop

def test_wait_until_returns_the_first_truthy_result_at_once():
    calls = []

    def third_call() -> str:
        calls.append(time.monotonic())
        return "ready" if len(calls) == 3 else ""

    started = time.monotonic()
    assert wait_until(third_call, timeout_s=60, interval_s=0.01, what="the third call") == "ready"
    assert len(calls) == 3, "no call after the predicate held"
    assert time.monotonic() - started < 30, "it did not wait out the timeout"


def test_wait_until_names_what_it_waited_for_when_it_times_out():
    calls = []
    with pytest.raises(TimeoutError, match=r"^timed out after 0\.3 s waiting for the replica to replay the WAL$"):
        wait_until(lambda: calls.append(1), timeout_s=0.3, interval_s=0.05, what="the replica to replay the WAL")
    assert len(calls) >= 2, "polled until the deadline"


def test_wait_until_checks_once_even_with_no_time_left():
    assert wait_until(lambda: 42, timeout_s=0, interval_s=1, what="an answer") == 42


def test_wait_until_lets_the_predicate_give_up_early():
    def exited():
        raise RuntimeError("the server exited")

    with pytest.raises(RuntimeError, match="the server exited"):
        wait_until(exited, timeout_s=60, interval_s=1, what="the server")


@pytest.fixture
def process_group():
    """A real process group: `sh` and a `sleep 60` it forked, in their own session; always ended."""
    started = []

    def start(script: str) -> subprocess.Popen:
        process = subprocess.Popen(["sh", "-c", script], start_new_session=True)
        started.append(process)
        # both are up (and the shell's traps set) once the shell has forked its sleep
        wait_until(lambda: len(group_pids(process.pid)) >= 2, timeout_s=60, interval_s=0.05, what="the group to start")
        return process

    yield start
    for process in started:  # stop_group never raises, so this cleanup cannot hide a failure
        stop_group(process, grace_s=1)


def test_stop_group_ends_the_whole_group_and_may_be_called_again(process_group):
    process = process_group("sleep 60 & wait")
    stop_group(process)
    assert group_pids(process.pid) == [], "the leader and the sleep it forked are gone"
    assert process.returncode == -signal.SIGTERM, "the leader was reaped"
    stop_group(process)      # again, and by pgid: a group already gone is a no-op
    stop_group(process.pid)


def test_stop_group_kills_what_ignores_sigterm(process_group):
    # an ignored signal stays ignored across exec, so the sleep ignores SIGTERM too
    process = process_group("trap '' TERM; sleep 60 & wait")
    started = time.monotonic()
    stop_group(process, grace_s=0.5)
    assert group_pids(process.pid) == []
    assert process.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 40, "SIGKILL followed the grace period"

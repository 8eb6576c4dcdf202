"""The planned API and UI servers start through the entrypoint exactly as ECS starts them, on a real
PostgreSQL and a real MLflow, and what is logged through them is in the database."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from helpers import ROOT
from infra import load_environment, plan
from infra.bench.procs import DEFAULT_INSTALL_UVICORN
from infra.local.processes import process_environment
from infra.planning.server_command import PORT, PRIMARY_URI_ENV, PROMETHEUS_DIR, REPLICA_URI_ENV
from local_services import (
    APP_PASSWORD,
    base_env,
    db_env,
    entrypoint_server,
    free_port,
    http_get,
    mlflow_database,
    parent_pid,
    require_entrypoint,
    run_entrypoint,
    server_nodelay,
    wait_or_fail,
    wait_until_healthy,
)
from infra.local.processes import group_pids, stop_group
from infra.local.processes import http_status
from infra.local.topology import WARM_UP_PATH, basic_auth_header

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def tracking():
    return plan(load_environment(ROOT / "stacks" / "prod.yaml")).tracking


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    """The `mlflow` database after `mlflow-infra-entrypoint migrate`, as the deploy runs it first."""
    home = tmp_path_factory.mktemp("home")
    with mlflow_database(tmp_path_factory.mktemp("pg") / "data") as server:
        result = run_entrypoint(["migrate"], {**base_env(home), **db_env(server)})
        assert result.returncode == 0, f"migrate failed:\n{result.stderr[-3000:]}"
        yield server


def local_command(command: tuple[str, ...], port: int, prometheus_dir: Path) -> list[str]:
    """The planned command on 127.0.0.1 and a free port; metrics in this test's own directory."""
    replaced = {"--host": ("0.0.0.0", "127.0.0.1"), "--port": (str(PORT), str(port)),
                "--expose-prometheus": (PROMETHEUS_DIR, str(prometheus_dir))}
    local = list(command)
    for flag, (planned, here) in replaced.items():
        at = local.index(flag) + 1
        assert local[at] == planned, f"the plan's {flag} is {local[at]!r}, not {planned!r}"
        local[at] = here
    return local


def server_env(settings, database, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**base_env(tmp_path), **settings.environment, **db_env(database),
           "MLFLOW_ARTIFACTS_DESTINATION": str(tmp_path / "artifacts"), "MLFLOW_LOAD_BALANCER_HOST": "127.0.0.1", **extra}
    # concurrent test runs must not share (and wipe) one metrics directory; the entrypoint creates it
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
    return env


def group_command_lines(pgid: int) -> list[str]:
    lines = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                lines.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):  # a process that ended while we looked
            continue
    return lines


def test_api_server_logs_runs_through_the_planned_command(tracking, database, tmp_path):
    settings = tracking.api.server
    port = free_port()
    command = local_command(settings.command, port, tmp_path / "prometheus")
    env = server_env(settings, database, tmp_path)
    with entrypoint_server(command, env, port, tmp_path / "api.log") as server:
        url = f"http://127.0.0.1:{port}"
        client = MlflowClient(tracking_uri=url)
        experiment_id = client.create_experiment(f"entrypoint-{uuid.uuid4().hex[:8]}")
        run_id = client.create_run(experiment_id).info.run_id
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric("loss", 1.0 / (step + 1), now + step, step) for step in range(50)],
                         params=[Param("lr", "0.01"), Param("batch_size", "64")], tags=[RunTag("team", "infra")])
        client.log_text(run_id, "proxied", "notes/hello.txt")  # through --serve-artifacts to the destination

        run = client.get_run(run_id)
        assert run.data.params == {"lr": "0.01", "batch_size": "64"}
        assert run.data.metrics == {"loss": pytest.approx(1.0 / 50)}
        assert len(client.get_metric_history(run_id, "loss")) == 50
        found = client.search_runs([experiment_id], filter_string="params.lr = '0.01' and tags.team = 'infra'")
        assert [r.info.run_id for r in found] == [run_id]

        with psycopg.connect(database.uri("mlflow")) as conn:
            in_db = conn.execute("SELECT experiment_id::text, status FROM runs WHERE run_uuid = %s", (run_id,)).fetchone()
            metric_rows = conn.execute("SELECT count(*), min(value) FROM metrics WHERE run_uuid = %s AND key = 'loss'",
                                       (run_id,)).fetchone()
            params = dict(conn.execute("SELECT key, value FROM params WHERE run_uuid = %s", (run_id,)).fetchall())
        assert in_db == (experiment_id, "RUNNING")
        assert metric_rows == (50, pytest.approx(1.0 / 50))
        assert params == {"lr": "0.01", "batch_size": "64"}
        assert [p.read_text() for p in (tmp_path / "artifacts").rglob("hello.txt")] == ["proxied"]

        # --allowed-hosts took the load balancer's host (with any port) and nothing else
        assert http_get(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", host="evil.example.com")[0] == 403
        # --expose-prometheus works with the multiprocess directory the entrypoint created
        status, metrics = http_get(f"{url}/metrics")
        assert status == 200 and "mlflow_http_request_total" in metrics

        environment = process_environment(server.pid)  # the entrypoint exec'd mlflow: same pid
        assert environment[PRIMARY_URI_ENV].startswith("postgresql+psycopg://mlflow_app:")
        assert REPLICA_URI_ENV not in environment
        assert environment["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == settings.environment["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"]
        lines = group_command_lines(server.pid)
        assert any("gunicorn" in line and "--worker-class sync" in line for line in lines), lines
        # gunicorn sets TCP_NODELAY on its listening socket; every accepted one inherits it
        assert server_nodelay(server.pid, port) == 1
        assert not any(APP_PASSWORD in line or "p%40ss" in line for line in lines), "no password on a command line"


def test_ui_server_reads_through_the_replica_uri(tracking, database, tmp_path):
    settings = tracking.ui.server
    assert REPLICA_URI_ENV in settings.uri_environment, "prod's UI reads from a replica"
    port = free_port()
    command = local_command(settings.command, port, tmp_path / "prometheus")
    # no real replica here: the replica host is the primary itself
    ready_port = free_port()
    env = server_env(settings, database, tmp_path, DB_REPLICA_HOST="127.0.0.1",
                     MLFLOW_INFRA_READY_PORT=str(ready_port), MLFLOW_INFRA_READY_HOST="127.0.0.1")
    with entrypoint_server(command, env, port, tmp_path / "ui.log") as server:
        # the entrypoint stays as the parent (it answers readiness): MLflow is its child
        mlflow = next(pid for pid in group_pids(server.pid) if parent_pid(pid) == server.pid)
        environment = process_environment(mlflow)
        assert environment[REPLICA_URI_ENV] == environment[PRIMARY_URI_ENV] + "&connect_timeout=3"
        status, text = http_get(f"http://127.0.0.1:{ready_port}/ready")
        assert status == 200 and "MLflow /health answered 200; reads from 127.0.0.1:" in text, text
        client = MlflowClient(tracking_uri=f"http://127.0.0.1:{port}")
        experiment_id = client.create_experiment(f"ui-{uuid.uuid4().hex[:8]}")  # writes go to the primary
        run_id = client.create_run(experiment_id).info.run_id
        client.log_param(run_id, "model", "resnet")
        found = client.search_runs([experiment_id], filter_string="params.model = 'resnet'")  # reads via the replica URI
        assert [r.info.run_id for r in found] == [run_id]
        status, _ = http_get(f"http://127.0.0.1:{port}/")  # the UI's own page
        assert status == 200
        # uvicorn with two workers and the planned loop: TCP_NODELAY on every accepted connection
        assert any("uvicorn" in line and "--workers 2" in line for line in group_command_lines(server.pid))
        assert server_nodelay(server.pid, port) == 1


def test_stock_uvicorn_with_workers_leaves_nagle_on(tmp_path):
    """Why the UI's command names a loop: stock `mlflow server --workers 2` on asyncio's loop (uvicorn's
    unless uvloop is installed, which MLflow does not require) accepts connections without
    TCP_NODELAY: uvicorn binds the socket itself with protocol 0, and asyncio sets the option only on
    sockets of protocol IPPROTO_TCP. Then a keep-alive response waits on the client's delayed ACK."""
    import sys

    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
               "--host", "127.0.0.1", "--port", str(port), "--workers", "2", *DEFAULT_INSTALL_UVICORN]
    log = tmp_path / "stock.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=tmp_path, env=base_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        wait_until_healthy(process, port, log)
        assert server_nodelay(process.pid, port) == 0
    finally:
        stop_group(process)


def test_api_server_with_basic_auth_keeps_its_users_on_the_primary(database, tmp_path):
    """prod with tracking.auth basic, as ECS starts it: the secret key and admin pair injected, the
    database password full of URI delimiters (the ini must escape its '%'), a stray
    MLFLOW_AUTH_ADMIN_PASSWORD that must not win over the secret."""
    spec = load_environment(ROOT / "stacks" / "prod.yaml")
    spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"auth": "basic"})})
    settings = plan(spec).tracking.api.server
    port = free_port()
    admin_password = f"admin-{uuid.uuid4().hex}"
    command = local_command(settings.command, port, tmp_path / "prometheus")
    env = server_env(settings, database, tmp_path, MLFLOW_FLASK_SERVER_SECRET_KEY=uuid.uuid4().hex,
                     AUTH_ADMIN_USERNAME="platform-admin", AUTH_ADMIN_PASSWORD=admin_password,
                     MLFLOW_AUTH_ADMIN_PASSWORD="stray-value-ignored", MLFLOW_INFRA_AUTH_DIR=str(tmp_path / "run"))
    log = tmp_path / "api.log"
    url = f"http://127.0.0.1:{port}"
    admin = basic_auth_header("platform-admin", admin_password)
    workdir = tmp_path / "cwd"  # MLflow's default user store is sqlite:///basic_auth.db, relative to here
    workdir.mkdir()
    with log.open("wb") as out:
        process = subprocess.Popen([str(require_entrypoint()), "server", "--", *command], env=env, cwd=workdir,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_healthy(process, port, log)  # /health needs no credentials
        wait_or_fail(lambda: http_status(url + WARM_UP_PATH, timeout=5, authorization=admin) == 200, 60,
                     "experiments/search to answer 200 to the admin", log)
        assert http_status(url + WARM_UP_PATH) == 401
        assert http_status(url + WARM_UP_PATH, authorization=basic_auth_header("platform-admin", "stray-value-ignored")) == 401
        with psycopg.connect(database.uri("mlflow")) as conn:
            users = conn.execute("SELECT username, is_admin FROM users").fetchall()
        assert users == [("platform-admin", True)], "the admin was bootstrapped into PostgreSQL from the secret"
        environment = process_environment(process.pid)
        ini = Path(environment["MLFLOW_AUTH_CONFIG_PATH"])
        assert ini.is_relative_to(tmp_path / "run") and oct(ini.stat().st_mode & 0o777) == "0o600"
        assert not {"AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"} & set(environment)
        assert not list(workdir.iterdir()), "no SQLite user store next to the server"
        lines = group_command_lines(process.pid)
        assert not any(admin_password in line or APP_PASSWORD in line for line in lines), "no password on a command line"
    finally:
        stop_group(process)

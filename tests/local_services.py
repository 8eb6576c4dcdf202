"""Real services for the entrypoint tests: PostgreSQL with an MLflow database owned by a
password-protected role (as on RDS), and `mlflow-infra-entrypoint` run the way ECS runs it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from psycopg import sql

from infra.bench.procs import stop_group  # noqa: F401  (tests stop servers the way the benchmark does)
from infra.local.postgres import LocalPostgres

APP_USER = "mlflow_app"
# every character that splits an unquoted URI: '@' ends the user info, ':' the user, '/' the host,
# '%' starts an escape, '#' a fragment and '?' the query
APP_PASSWORD = "p@ss:w/rd%41#?x"
BIN_DIR = Path(sys.executable).parent
ENTRYPOINT = BIN_DIR / "mlflow-infra-entrypoint"
# only the superuser may skip the password, so the application role proves the URI's quoting
HBA = f"""local all all trust
host all postgres 127.0.0.1/32 trust
host all {APP_USER} 127.0.0.1/32 scram-sha-256
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_entrypoint() -> Path:
    if not ENTRYPOINT.exists():
        pytest.fail(f"{ENTRYPOINT} is missing; reinstall the package so its console scripts exist: pip install -e '.[test]'")
    return ENTRYPOINT


@contextmanager
def mlflow_database(data_dir: Path):
    """A running PostgreSQL with an empty `mlflow` database owned by APP_USER (password required)."""
    server = LocalPostgres(data_dir, free_port())
    server.init()
    (server.data_dir / "pg_hba.conf").write_text(HBA)
    try:
        server.start()
    except Exception:
        pytest.fail(f"PostgreSQL did not start:\n{server.log_tail()}")
    try:
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(APP_USER), sql.Literal(APP_PASSWORD)))
            conn.execute(sql.SQL("CREATE DATABASE mlflow OWNER {}").format(sql.Identifier(APP_USER)))
        yield server
    finally:
        server.stop()


def db_env(server: LocalPostgres) -> dict[str, str]:
    # the local server has no certificate, so no TLS; DB_NAME is left to its default (mlflow)
    return {"DB_HOST": "127.0.0.1", "DB_PORT": str(server.port), "DB_USERNAME": APP_USER,
            "DB_PASSWORD": APP_PASSWORD, "DB_SSLMODE": "disable"}


def base_env(home: Path) -> dict[str, str]:
    """What a container starts with: a PATH that has mlflow, a HOME, and no telemetry calls out."""
    return {"PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", "HOME": str(home),
            "MLFLOW_DISABLE_TELEMETRY": "true", "LANG": "C.UTF-8"}


def run_entrypoint(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(require_entrypoint()), *args], env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# a server process group, always stopped

def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def http_get(url: str, host: str | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_until_healthy(process: subprocess.Popen, port: int, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with code {process.returncode} before /health answered:\n{tail(log)}")
        try:
            if http_get(f"http://127.0.0.1:{port}/health", timeout=2)[0] == 200:
                return
        except OSError:  # not listening yet
            pass
        time.sleep(0.25)
    pytest.fail(f"/health did not answer 200 within {timeout_s} s:\n{tail(log)}")


def warm_up(port: int, log: Path, timeout_s: float = 20) -> None:
    """MLflow's first requests after start can answer 500 (an import race in its workers)."""
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        try:
            status, body = http_get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1")
        except OSError:  # a worker restarting
            status, body = 0, ""
        if status == 200:
            return
        if 400 <= status < 500:  # a refusal (host check, auth) will not heal by waiting
            pytest.fail(f"experiments/search answers {status}: {body.strip()[:200]}\n{tail(log)}")
        time.sleep(0.25)
    pytest.fail(f"experiments/search still answers {status} after {timeout_s} s:\n{tail(log)}")




@contextmanager
def entrypoint_server(command: list[str], env: dict[str, str], port: int, log: Path):
    """`mlflow-infra-entrypoint server -- COMMAND` in its own session, healthy and warmed up."""
    with log.open("wb") as out:
        process = subprocess.Popen([str(require_entrypoint()), "server", "--", *command], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_healthy(process, port, log)
        warm_up(port, log)
        yield process
    finally:
        stop_group(process)

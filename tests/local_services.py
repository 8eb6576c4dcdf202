"""Real services for the entrypoint tests: PostgreSQL with an MLflow database owned by a
password-protected role (as on RDS), and `mlflow-infra-entrypoint` run the way ECS runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from psycopg import sql

from infra.local.postgres import LocalPostgres
# the topology's and the benchmark's own toolkit; the test modules take free_port from here
from infra.local.processes import _stat_fields, command_line, free_port, group_pids, http_status, log_tail, stop_group, wait_until
from infra.local.topology import WARM_UP_PATH
from infra.planning.server_command import HEALTH_PATH

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
# generous: on a loaded 2 vCPU machine the workers' MLflow imports alone take tens of seconds
HEALTHY_TIMEOUT_S = 180
WARM_UP_TIMEOUT_S = 60
LOG_LINES = 40


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
    try:  # a start that times out may still leave a postmaster behind: stop it either way
        try:
            server.start()
        except Exception:
            pytest.fail(f"PostgreSQL did not start:\n{server.log_tail()}")
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

def http_get(url: str, host: str | None = None, timeout: float = 5) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def wait_or_fail(predicate, timeout_s: float, what: str, log: Path) -> None:
    """wait_until, a timeout failing the test with the server's log."""
    try:
        wait_until(predicate, timeout_s, 0.25, what)
    except TimeoutError as exc:
        pytest.fail(f"{exc}:\n{log_tail(log, LOG_LINES)}")


def wait_until_healthy(process: subprocess.Popen, port: int, log: Path, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
    def healthy() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the server exited with code {process.returncode} before /health answered:\n{log_tail(log, LOG_LINES)}")
        return http_status(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=2) == 200

    wait_or_fail(healthy, timeout_s, f"{HEALTH_PATH} to answer 200", log)


def warm_up(port: int, log: Path, timeout_s: float = WARM_UP_TIMEOUT_S) -> None:
    """MLflow's first requests after start can answer 500 (an import race in its workers)."""
    url = f"http://127.0.0.1:{port}{WARM_UP_PATH}"

    def answered() -> bool:
        status = http_status(url, timeout=5)
        if status is not None and 400 <= status < 500:  # a refusal (host check, auth) will not heal by waiting
            pytest.fail(f"experiments/search answers {status}: {http_get(url)[1].strip()[:200]}\n{log_tail(log, LOG_LINES)}")
        return status == 200

    wait_or_fail(answered, timeout_s, "experiments/search to answer 200", log)


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


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def server_workers(pgid: int) -> list[int]:
    """The worker processes of a server's group (what --workers counts): uvicorn's spawned children of
    its supervisor, or gunicorn's forked children of its master (the same command line as the master)."""
    members = group_pids(pgid)
    uvicorn = {pid for pid in members if "uvicorn" in command_line(pid)}
    gunicorn = {pid for pid in members if " -m gunicorn " in command_line(pid)}  # not mlflow, whose options name it
    return [pid for pid in members
            if (parent_pid(pid) in uvicorn and "spawn_main" in command_line(pid)) or (pid in gunicorn and parent_pid(pid) in gunicorn)]


def _tcp_inode(local_port: int, remote_port: int) -> str | None:
    """The socket inode of the TCP connection from local_port to remote_port (/proc/net/tcp, tcp6)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == local_port and int(fields[2].rsplit(":", 1)[1], 16) == remote_port:
                return fields[9]
    return None


def accepted_socket_option(pgid: int, server_port: int, client_port: int, level: int, option: int) -> int:
    """getsockopt on the server's end of one client connection: the process of group `pgid` holding it
    lends us a duplicate of its descriptor (pidfd_getfd, Linux 5.6+; root, or the server our child)."""
    import ctypes
    import socket

    inode = _tcp_inode(server_port, client_port)
    assert inode, f"no connection from 127.0.0.1:{client_port} to :{server_port} in /proc/net/tcp"
    libc = ctypes.CDLL(None, use_errno=True)
    for pid in group_pids(pgid):
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) != f"socket:[{inode}]":
                    continue
            except OSError:  # closed while we looked
                continue
            pidfd = os.pidfd_open(pid)
            try:
                borrowed = libc.syscall(438, pidfd, int(fd.name), 0)  # SYS_pidfd_getfd, the same number on x86-64 and arm64
            finally:
                os.close(pidfd)
            if borrowed < 0:
                raise OSError(ctypes.get_errno(), f"pidfd_getfd({pid}, {fd.name})")
            with socket.socket(fileno=borrowed) as sock:
                return sock.getsockopt(level, option)
    raise AssertionError(f"no process of group {pgid} holds the connection's socket {inode}")


def server_nodelay(pgid: int, port: int) -> int:
    """TCP_NODELAY on the server's end of a connection, read while a worker holds it: the request's
    body is left unfinished, so the worker that accepted it waits for the rest (a sync worker that
    answered would close the connection at once)."""
    import socket

    body = b'{"max_results": 1}'
    with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
        client.sendall(b"POST /api/2.0/mlflow/experiments/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:1])
        client_port = client.getsockname()[1]

        found: list[int] = []

        def accepted() -> bool:
            try:
                found.append(accepted_socket_option(pgid, port, client_port, socket.IPPROTO_TCP, socket.TCP_NODELAY))
                return True
            except AssertionError:  # not accepted by a worker yet
                return False

        wait_until(accepted, 30, 0.1, f"a worker to accept the connection on {port}")
        return found[-1]


def eventually(check, timeout_s: float = 10, what: str = "the check to hold"):
    """The first truthy result of `check()` within `timeout_s` (replication lag, a restarted worker)."""
    return wait_until(check, timeout_s, 0.2, what)


@contextmanager
def running_topology(root: Path, environment_file: Path | None = None, replicas: int = 1):
    """`environment_file` (default stacks/local.yaml) brought up under `root` on free ports, yielding
    (topology, state); always brought down with its data, even when the test fails."""
    from helpers import ROOT
    from infra.local import LocalTopology
    from infra.local.processes import free_port_block

    topology = LocalTopology.from_environment(str(environment_file or ROOT / "stacks" / "local.yaml"), root=root,
                                              base_port=free_port_block(replicas + 1), api_port=free_port(),
                                              ui_port=free_port_block(replicas + 1))
    try:
        yield topology, topology.up()
    finally:
        topology.down(purge=True)

"""What only the benchmark needs of processes: stock `mlflow server` in its own session, always
stopped, and the CPU time of whatever listens on a port (the server's workers), read from /proc via
psutil. Ports, probes, waits and stopping come from infra.local.processes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import psutil

from ..local.processes import HOST, free_port, http_ok, log_tail, stop_group, wait_until
from ..local.topology import WARM_UP_PATH
from ..planning.server_command import HEALTH_PATH

# the benchmark must send nothing off this machine: MLflow's usage telemetry is on by default
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
SERVER_START_TIMEOUT_S = 120
LOG_LINES = 30


def wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
    """/health answers 200 and experiments/search answers 200 (the first requests after start can 500)."""
    def serving() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with code {process.returncode} before serving:\n{log_tail(log, LOG_LINES)}")
        return all(http_ok(url + path, timeout=5) for path in (HEALTH_PATH, WARM_UP_PATH))

    try:
        wait_until(serving, timeout_s, 0.3, f"the server at {url} to serve")
    except TimeoutError as exc:
        raise RuntimeError(f"{exc}:\n{log_tail(log, LOG_LINES)}") from None


# uvicorn picks uvloop and httptools when they are installed (the benchmark installs them for its
# server-stack comparison); MLflow does not require them, so a stock server runs as a default install
# of MLflow does: asyncio's loop and h11
DEFAULT_INSTALL_UVICORN = ("--uvicorn-opts", "--loop asyncio --http h11")


def mlflow_command(backend_uri: str, port: int) -> list[str]:
    """Stock `mlflow server`: default workers, default everything, bound to 127.0.0.1."""
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--host", HOST, "--port", str(port)]
    if importlib.util.find_spec("uvloop") or importlib.util.find_spec("httptools"):
        command += DEFAULT_INSTALL_UVICORN
    return command


@contextmanager
def mlflow_server(backend_uri: str, workdir: Path, extra_env: dict[str, str] | None = None):
    """A stock `mlflow server` on a free port, serving; yields its URL; stopped on exit."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "mlflow-server.log"
    env = {**os.environ, **QUIET_ENV, **(extra_env or {})}
    with log.open("wb") as out:
        # cwd: the default artifact root ./mlartifacts lands in the scratch folder
        process = subprocess.Popen(mlflow_command(backend_uri, port), cwd=workdir, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://{HOST}:{port}"
        wait_until_serving(url, process, log)
        yield url
    finally:
        stop_group(process)


# ---------------------------------------------------------------------------------------------
# CPU time of a server

def listening_pids(port: int) -> set[int]:
    """Processes holding a listening socket on `port` (uvicorn's supervisor and the workers sharing it)."""
    return {c.pid for c in psutil.net_connections(kind="tcp")
            if c.pid and c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port}


def process_tree(pids: set[int]) -> set[int]:
    """`pids` and all their descendants that are alive now."""
    found = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            found.add(pid)
            found.update(child.pid for child in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return found


SUPERVISORS = ("uvicorn", "gunicorn")


def supervisor(pid: int) -> int:
    """The uvicorn/gunicorn supervisor above a listening process (a worker's parent), or the process itself."""
    proc = psutil.Process(pid)
    while True:
        parent = proc.parent()
        if parent is None or not any(word in " ".join(parent.cmdline()) for word in SUPERVISORS):
            return proc.pid
        proc = parent


def server_pids(port: int) -> set[int]:
    """The processes that serve `port`: the supervisor of its listener and all its workers. Not the
    supervisor's parent: in a topology one parent may run both the API and the UI server."""
    roots = set()
    for pid in listening_pids(port):
        try:
            roots.add(supervisor(pid))
        except psutil.NoSuchProcess:
            continue
    return process_tree(roots)


def cpu_seconds(pids: set[int]) -> float:
    """User + system CPU seconds used so far by `pids` (processes that ended count as zero)."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total

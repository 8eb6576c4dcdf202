"""Server processes for the benchmark: stock `mlflow server` in its own session, always stopped,
and the CPU time of whatever listens on a port (the server's workers), read from /proc via psutil."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import psutil

HOST = "127.0.0.1"
# the benchmark must send nothing off this machine: MLflow's usage telemetry is on by default
QUIET_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def free_port_block(count: int, start: int = 21000, stop: int = 40000) -> int:
    """The first port of `count` consecutive free ports (the local topology numbers its servers from a base)."""
    for base in range(start, stop, count):
        if all(_port_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError(f"no {count} consecutive free ports between {start} and {stop}")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def http_status(url: str, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # not listening yet, or a worker restarting
        return 0


def wait_until_serving(url: str, process: subprocess.Popen | None, log: Path | None, timeout_s: float = 120) -> None:
    """/health answers 200 and experiments/search answers 200 (the first requests after start can 500)."""
    deadline = time.monotonic() + timeout_s
    probes = [f"{url}/health", f"{url}/api/2.0/mlflow/experiments/search?max_results=1"]
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with code {process.returncode} before serving:\n{tail(log) if log else ''}")
        if all(http_status(p) == 200 for p in probes):
            return
        time.sleep(0.3)
    raise RuntimeError(f"the server at {url} did not serve within {timeout_s:.0f} s:\n{tail(log) if log else ''}")


def stop_group(process: subprocess.Popen, grace_s: float = 15) -> None:
    """SIGTERM the process group (mlflow, uvicorn, its workers, the job runner), SIGKILL what remains."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # workers may outlive the parent by a moment
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process.poll() is None:
        process.wait(timeout=5)


def mlflow_command(backend_uri: str, port: int) -> list[str]:
    """Stock `mlflow server`: default workers, default everything, bound to 127.0.0.1."""
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri, "--host", HOST, "--port", str(port)]


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

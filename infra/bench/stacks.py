"""Server stacks side by side on the planned topology: the API server's own environment (its
database URIs, pools and settings, read from the planned API process) under each candidate server,
one after another in every cell, so noise hits them alike. What the plan's SERVER_STACK follows.
Each stack gets the connection pool the planner gives a server that runs as many requests per worker
at once (planning/connections.py pool_for), so none waits on a pool sized for another.

  uvicorn                      MLflow's default as a default install runs it (asyncio loop, h11)
  uvicorn + TCP_NODELAY        the same with infra.runtime.nodelay's loop
  uvicorn + uvloop/httptools   uvicorn[standard]'s loop and parser
  gunicorn sync                the planned API: MLflow's Flask app, one request per worker
  gunicorn gthread             4 threads per worker
  gunicorn sync, no /metrics   --expose-prometheus off: what it costs per request
  gunicorn sync, 1 and 4 workers per vCPU (the plan runs 2)
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..local.processes import free_port, process_environment, stop_group
from ..planning.connections import pool_for
from ..planning.server_command import GUNICORN_OPTIONS, REQUESTS_PER_WORKER, SERVER_STACK, server_options
from ..planning.sizing import WORKERS_PER_VCPU
from .procs import DEFAULT_INSTALL_UVICORN, wait_until_serving

PLANNED = "gunicorn sync (planned)"
GTHREAD_THREADS = 4


@dataclass(frozen=True)
class Stack:
    name: str
    options: tuple[str, ...]
    workers_per_vcpu: float = WORKERS_PER_VCPU
    prometheus: bool = True
    requests_per_worker: int = REQUESTS_PER_WORKER["gunicorn-sync"]


def stacks() -> list[Stack]:
    assert SERVER_STACK["api"] == "gunicorn-sync", "the comparison names the planned API stack"
    planned = tuple(server_options("gunicorn-sync"))
    uvicorn = REQUESTS_PER_WORKER["uvicorn"]
    return [
        Stack("uvicorn (MLflow default)", DEFAULT_INSTALL_UVICORN, requests_per_worker=uvicorn),
        Stack("uvicorn + TCP_NODELAY", tuple(server_options("uvicorn")), requests_per_worker=uvicorn),
        Stack("uvicorn + uvloop/httptools", ("--uvicorn-opts", "--loop uvloop --http httptools"), requests_per_worker=uvicorn),
        Stack(PLANNED, planned),
        Stack(f"gunicorn gthread x{GTHREAD_THREADS}", ("--gunicorn-opts", f"--worker-class gthread --threads {GTHREAD_THREADS} {GUNICORN_OPTIONS}"),
              requests_per_worker=GTHREAD_THREADS),
        Stack("gunicorn sync, no /metrics", planned, prometheus=False),
        Stack("gunicorn sync, 1 worker/vCPU", planned, workers_per_vcpu=1),
        Stack("gunicorn sync, 4 workers/vCPU", planned, workers_per_vcpu=4),
    ]


def pool_environment(stack: Stack, jobs: int, workers: int) -> dict[str, str]:
    """The planned API pool for `jobs` clients over `workers`, if each ran as `stack` does."""
    pool = pool_for("api", jobs, workers, requests_per_worker=stack.requests_per_worker)
    return {"MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool.pool_size), "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(pool.max_overflow)}


@contextmanager
def stack_server(stack: Stack, env: dict[str, str], jobs: int, workdir: Path):
    """One API server of `stack` on a free port with the planned API's environment; yields its URL."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    workers = max(1, round(stack.workers_per_vcpu * (os.cpu_count() or 1)))
    env = {**env, **pool_environment(stack, jobs, workers)}
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               *stack.options, "--serve-artifacts", "--artifacts-destination", str(workdir / "artifacts")]
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if stack.prometheus:
        metrics = workdir / "prometheus"
        metrics.mkdir(exist_ok=True)
        command += ["--expose-prometheus", str(metrics)]
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
    log = workdir / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, process, log)
        yield url
    finally:
        stop_group(process)


@contextmanager
def stack_servers(api_pid: int, jobs: int, root: Path, progress=print):
    """Every stack's server, up at once (idle ones cost next to nothing); yields {name: url}."""
    env = process_environment(api_pid)
    with ExitStack() as servers:
        urls = {}
        for i, stack in enumerate(stacks()):
            progress(f"  starting the API server as {stack.name}")
            urls[stack.name] = servers.enter_context(stack_server(stack, env, jobs, root / f"stack-{i}"))
        yield urls

"""The `mlflow server` command line and environment for the API and UI tiers, and their open-files limit.

Credentials never appear here: the database URIs are composed at container start from Secrets
Manager values (see `secret_environment`), so they are on neither the command line nor in plain
environment variables of the task definition. README bottleneck 5 and its "Too many open files".
"""

from __future__ import annotations

from dataclasses import dataclass

from .connections import Pool
from ..endpoints import (AUTH_APP, AUTH_ENV, AUTH_SECRET_ENV, HEALTH_PATH, READY_PATH, READY_PORT, READY_PORT_ENV,
                         SCHEMA_WAIT_ENV, TRACKING_PORT as PORT)
from .sizing import FleetPlan

PROMETHEUS_DIR = "/tmp/mlflow-prometheus"  # --expose-prometheus needs a writable directory for multiprocess metrics
# The floor that keeps "Too many open files" away (README bottleneck table); Fargate allows up to 1,048,576.
MIN_NOFILE = 65_536
MAX_NOFILE = 1_048_576
# Per worker, beside its requests' own sockets: boto3's S3 pool (10) and files a request may open
# (artifact uploads, static files).
SOCKETS_PER_WORKER = 10 + 64
# The server each tier runs, chosen by measurement (`mlflow-infra bench`, "Server stack", on the
# planned topology): the API serves MLflow's Flask app with gunicorn's sync workers, one request at
# a time per worker process (the kernel queues the rest on the shared socket, so no worker takes
# more than it can serve); the UI keeps MLflow's default, uvicorn serving the FastAPI app, which is
# the only one with the endpoints MLflow adds beside its REST API (OpenTelemetry's /v1/traces, the
# jobs, gateway and assistant APIs the UI calls).
SERVER_STACK = {"api": "gunicorn-sync", "ui": "uvicorn"}
# Requests one worker runs at once: gunicorn's sync worker one; uvicorn's as many as anyio's
# thread pool holds (40), which MLflow's Flask app runs in.
REQUESTS_PER_WORKER = {"gunicorn-sync": 1, "uvicorn": 40}
# gunicorn kills a sync worker silent this long; a proxied artifact upload or download keeps its
# worker silent for the whole transfer (10 min: ~6 GB at 10 MB/s). After SIGTERM a worker gets
# GRACEFUL_S to finish its request, within ECS's 30 s stopTimeout before SIGKILL.
GUNICORN_TIMEOUT_S = 600
GUNICORN_GRACEFUL_S = 25
# beside the worker class; --access-logfile -: a line per request on stderr (the task's log), as
# uvicorn writes by default
GUNICORN_OPTIONS = f"--timeout {GUNICORN_TIMEOUT_S} --graceful-timeout {GUNICORN_GRACEFUL_S} --access-logfile -"
# uvicorn's loop with TCP_NODELAY on every accepted connection (infra/runtime/nodelay.py): with
# --workers N uvicorn never sets it, and a keep-alive response then waits up to 40 ms on the
# client's delayed ACK (Nagle). gunicorn sets it on its listening socket, which accepted ones inherit.
NODELAY_LOOP = "infra.runtime.nodelay:event_loop"
# MLflow's host check takes its list from this variable (`--allowed-hosts` only sets it, and MLflow
# refuses that flag with gunicorn): the entrypoint fills {load_balancer_host} in it.
ALLOWED_HOSTS_ENV = "MLFLOW_SERVER_ALLOWED_HOSTS"
# `mlflow server` reads both URIs from these variables (mlflow/cli/__init__.py, MLflow 3.17), so the
# entrypoint composes them from Secrets Manager values and no password reaches the command line.
PRIMARY_URI_ENV = "MLFLOW_BACKEND_STORE_URI"
REPLICA_URI_ENV = "MLFLOW_READ_REPLICA_BACKEND_STORE_URI"
# Placeholders the realization fills in: the S3 destination, and the load balancer's host name,
# which MLflow's host check (localhost and private IPs only by default) must accept or answer 403.
ARTIFACTS_PLACEHOLDER = "{artifacts_destination}"
LOAD_BALANCER_HOST_PLACEHOLDER = "{load_balancer_host}"
SECRET_ENV = ("DB_USERNAME", "DB_PASSWORD")
# A server whose database is behind its MLflow waits this long for its deploy's migrate step (the API
# tasks run it as they start) before it gives up; ECS replaces a task that gives up, and it waits again.
SCHEMA_WAIT_S = 300


STACK_REASON = {
    "gunicorn-sync": "gunicorn sync workers, one request per worker at a time: 1,623 metrics/s at p99 256 ms against"
                     " uvicorn's 887 at p99 1,167 ms, 32 clients x 10 metrics a log_batch on the planned topology"
                     " (bench/results 2026-11-28, Server stack); CPU 5.25 ms + 0.1215 ms per metric a request",
    "uvicorn": "uvicorn (MLflow's default) with TCP_NODELAY: serves the UI and the FastAPI-only endpoints",
}


@dataclass(frozen=True)
class ServerSettings:
    role: str
    stack: str
    """`gunicorn-sync` or `uvicorn` (SERVER_STACK)."""
    command: tuple[str, ...]
    environment: dict[str, str]
    secret_environment: tuple[str, ...]
    uri_environment: tuple[str, ...]   # composed at start from DB_HOST/DB_PORT/DB_NAME + secrets
    port: int
    health_path: str
    nofile: int
    reason: str
    auth_secret_environment: tuple[str, ...] = ()  # AUTH_SECRET_ENV with tracking.auth basic, else empty
    # a server that reads a replica: its load balancer checks readiness here (replica answering), not /health
    ready_port: int | None = None
    ready_path: str | None = None

    @property
    def load_balancer_health(self) -> tuple[int, str]:
        """The port and path the load balancer's health check asks."""
        return (self.ready_port, self.ready_path) if self.ready_port else (self.port, self.health_path)


def server_options(stack: str) -> list[str]:
    """`mlflow server`'s options that pick and tune the server of `stack`."""
    if stack == "gunicorn-sync":
        return ["--gunicorn-opts", f"--worker-class sync {GUNICORN_OPTIONS}"]
    # h11 named too: uvicorn would take httptools when it happens to be installed
    return ["--uvicorn-opts", f"--loop {NODELAY_LOOP} --http h11"]


def nofile_limit(workers: int, connections_per_worker: int, requests_per_worker: int = REQUESTS_PER_WORKER["uvicorn"]) -> int:
    """At least 65,536, and at least four times the sockets the plan itself opens (rounded to a power of two)."""
    need = workers * (connections_per_worker + requests_per_worker + SOCKETS_PER_WORKER) * 4
    limit = MIN_NOFILE
    while limit < need and limit < MAX_NOFILE:
        limit *= 2
    return limit


def server_settings(role: str, spec, fleet: FleetPlan, pool: Pool, engines_per_worker: int,
                    reads_from_replica: bool) -> ServerSettings:
    """The `mlflow server` command line and environment of one tier; `reads_from_replica` adds the
    replica URI (the UI tier, when the plan has a replica)."""
    stack = SERVER_STACK[role]
    command = ["mlflow", "server", "--host", "0.0.0.0", "--port", str(PORT), "--workers", str(fleet.workers),
               *server_options(stack), "--expose-prometheus", PROMETHEUS_DIR]
    # proxied artifacts: clients never hold S3 credentials; the API's task role may write the
    # bucket, the UI's may only read it (the UI shows artifacts through its own server)
    command += ["--serve-artifacts", "--artifacts-destination", ARTIFACTS_PLACEHOLDER]
    basic_auth = spec.tracking.auth == "basic"
    if basic_auth:
        command += ["--app-name", AUTH_APP]
    uri_env = [PRIMARY_URI_ENV]
    if reads_from_replica:
        uri_env.append(REPLICA_URI_ENV)
    environment = {
        "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(pool.pool_size),
        "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(pool.max_overflow),
        "MLFLOW_SQLALCHEMYSTORE_POOL_RECYCLE": str(pool.recycle_seconds),
        "PROMETHEUS_MULTIPROC_DIR": PROMETHEUS_DIR,
        # the server's job runner starts 7 huey worker processes by default; tracking needs none
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        # private subnets have no business calling MLflow's usage telemetry endpoint
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # never serve against a schema other than this MLflow's (the entrypoint waits, or fails if newer)
        SCHEMA_WAIT_ENV: str(SCHEMA_WAIT_S),
        ALLOWED_HOSTS_ENV: ",".join([LOAD_BALANCER_HOST_PLACEHOLDER, *spec.tracking.allowed_hosts]),
    }
    if basic_auth:
        environment[AUTH_ENV] = "basic"
    if reads_from_replica:
        environment[READY_PORT_ENV] = str(READY_PORT)
    nofile = nofile_limit(fleet.workers, pool.per_worker * engines_per_worker * len(uri_env), REQUESTS_PER_WORKER[stack])
    reason = (f"{STACK_REASON[stack]}; {fleet.workers} workers x pool {pool.pool_size}+{pool.max_overflow}; open files {nofile:,}"
              + ("; reads from the replica" if reads_from_replica else "")
              + ("; basic-auth users on the primary" if basic_auth else ""))
    return ServerSettings(role, stack, tuple(command), environment, SECRET_ENV, tuple(uri_env), PORT, HEALTH_PATH, nofile, reason,
                          auth_secret_environment=AUTH_SECRET_ENV if basic_auth else (),
                          ready_port=READY_PORT if reads_from_replica else None,
                          ready_path=READY_PATH if reads_from_replica else None)

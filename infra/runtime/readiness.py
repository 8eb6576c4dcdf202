"""Readiness for a UI server that reads a replica: what its load balancer's health check asks.

MLflow's own /health answers 200 without touching a database, so a UI server whose replica is gone
keeps looking healthy while every search fails. The entrypoint therefore keeps `mlflow server` as a
child and answers GET /ready on its own port: 200 only while MLflow answers /health and the read
database answers a query, connected exactly as MLflow's read engine connects (the replica, then the
fallback when the plan has one). The load balancer then takes a task whose replica is lost out of
its rotation and keeps serving from the tasks of the other replicas; with a single replica the read
URI falls back to the primary, so the check (like the reads) keeps passing until the replica returns.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..local.processes import http_status

# MLflow's /health on the server's own port, and the read database, each must answer within this:
# the load balancer's health-check timeout (5 s) bounds the whole check
HEALTH_TIMEOUT_S = 2
Check = Callable[[], tuple[bool, str]]


def mlflow_health(url: str, timeout: float = HEALTH_TIMEOUT_S) -> tuple[bool, str]:
    status = http_status(url, timeout)
    if status is None:
        return False, f"MLflow /health did not answer within {timeout:g} s"
    return status == 200, f"MLflow /health answered {status}"


def database_answers(conninfo: Mapping[str, str]) -> tuple[bool, str]:
    """One short connection, as the read engine makes it (libpq tries the hosts in order), and a query."""
    import psycopg

    try:
        with psycopg.connect(**conninfo, autocommit=True) as conn:
            in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
            host = f"{conn.info.host}:{conn.info.port}"
    except psycopg.Error as exc:
        text = str(exc).strip().splitlines()
        return False, f"the read database did not answer: {text[0] if text else type(exc).__name__}"
    return True, f"reads from {host} ({'replica' if in_recovery else 'primary'})"


def ready(checks: Sequence[Check]) -> tuple[bool, str]:
    """Every check in order; the first failure is the answer."""
    said = []
    for check in checks:
        ok, message = check()
        said.append(message)
        if not ok:
            return False, message
    return True, "; ".join(said)


def readiness_server(host: str, port: int, path: str, check: Check) -> ThreadingHTTPServer:
    """GET `path`: 200 with what was checked, or 503 with the first failure; anything else 404."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0] != path:
                self._answer(404, "not found")
                return
            ok, message = check()
            self._answer(200 if ok else 503, message)

        def _answer(self, status: int, message: str) -> None:
            body = (message + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # health checks every few seconds would drown the server's log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def run_with_readiness(argv: Sequence[str], env: Mapping[str, str], server: ThreadingHTTPServer) -> int:
    """Run the server command as a child, answer readiness beside it, pass SIGTERM/SIGINT on (ECS stops
    a task with SIGTERM to PID 1) and exit with the child's code."""
    try:
        child = subprocess.Popen(list(argv), env=dict(env))
    except OSError:
        server.server_close()
        raise

    def forward(signum, _frame):
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    thread = threading.Thread(target=server.serve_forever, name="readiness", daemon=True)
    thread.start()
    try:
        return child.wait()
    finally:
        server.shutdown()
        server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

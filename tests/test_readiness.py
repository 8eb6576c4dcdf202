"""The readiness a UI server's load balancer asks: the checks in order, and the HTTP answer."""

from __future__ import annotations

import threading

import pytest

from infra.local.processes import free_port
from infra.runtime.readiness import database_answers, mlflow_health, ready, readiness_server
from local_services import http_get


def passing(message):
    return lambda: (True, message)


def failing(message):
    return lambda: (False, message)


@pytest.mark.parametrize("checks, expected", [
    ([passing("MLflow /health answered 200"), passing("reads from r:5432 (replica)")],
     (True, "MLflow /health answered 200; reads from r:5432 (replica)")),
    ([failing("MLflow /health did not answer"), passing("never asked")], (False, "MLflow /health did not answer")),
    ([passing("MLflow /health answered 200"), failing("the read database did not answer: refused")],
     (False, "the read database did not answer: refused")),
])
def test_the_first_failing_check_is_the_answer(checks, expected):
    assert ready(checks) == expected


@pytest.fixture
def serve():
    servers = []

    def start(check):
        server = readiness_server("127.0.0.1", free_port(), "/ready", check)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_readiness_port_answers_200_503_and_404(serve):
    state = {"ok": True}
    port = serve(lambda: (state["ok"], "reads from r (replica)" if state["ok"] else "the read database did not answer"))
    assert http_get(f"http://127.0.0.1:{port}/ready") == (200, "reads from r (replica)\n")
    state["ok"] = False
    assert http_get(f"http://127.0.0.1:{port}/ready?from=alb") == (503, "the read database did not answer\n")
    assert http_get(f"http://127.0.0.1:{port}/health")[0] == 404, "only the readiness path"


def test_unreachable_mlflow_and_database_fail_with_a_reason():
    port = free_port()  # nothing listens there
    ok, message = mlflow_health(f"http://127.0.0.1:{port}/health", timeout=2)
    assert not ok and message.startswith("MLflow /health did not answer")
    ok, message = database_answers({"host": "127.0.0.1", "port": str(port), "dbname": "mlflow", "user": "u",
                                    "password": "s3cret-pw", "sslmode": "disable", "connect_timeout": "2"})
    assert not ok and message.startswith("the read database did not answer: ") and "s3cret-pw" not in message

"""The local ALB stand-in (infra/local/balancer.py): the threshold and round-robin core as tables, then
the balancer as a subprocess in front of in-process backends whose /ready can be switched off."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.local import balancer
from infra.local.balancer import HEALTHY, UNHEALTHY, Target, TargetHealth, TargetPool
from infra.local.processes import free_port, wait_until

HOST = "127.0.0.1"
INTERVAL = "0.5"   # short, to keep the tests fast; the deadlines below are what absorbs a loaded machine
TIMEOUT = "0.4"
THRESHOLD = 2
DEADLINE_S = 30
REQUEST_TIMEOUT_S = 30


# ---------------------------------------------------------------------------------------------
# the pure core: thresholds

# (case, healthy threshold, unhealthy threshold, checks: + passed / - failed, health after each: H / U)
HEALTH_CASES = [
    ("one pass is not enough", 2, 2, "+", "U"),
    ("two passes make it healthy", 2, 2, "++", "UH"),
    ("a failure resets the passes", 2, 2, "+-+", "UUU"),
    ("threshold three", 3, 2, "+++", "UUH"),
    ("threshold ten", 10, 2, "+" * 10, "U" * 9 + "H"),
    ("failures while unhealthy change nothing", 2, 2, "---", "UUU"),
    ("two failures make it unhealthy", 2, 2, "++--", "UHHU"),
    ("a pass resets the failures", 2, 3, "++--+---", "UHHHHHHU"),
    ("one failure is tolerated", 2, 2, "++-+-+", "UHHHHH"),
    ("it recovers", 2, 2, "++--++", "UHHUUH"),
    ("flapping never settles", 3, 3, "++-++-", "UUUUUU"),
]


@pytest.mark.parametrize("case, healthy_threshold, unhealthy_threshold, checks, expected", HEALTH_CASES,
                         ids=[c[0] for c in HEALTH_CASES])
def test_thresholds(case, healthy_threshold, unhealthy_threshold, checks, expected):
    health = TargetHealth(healthy_threshold, unhealthy_threshold)
    seen, changes = "", []
    for check in checks:
        before = health.healthy
        changes.append(health.observe(check == "+"))
        assert changes[-1] == (health.healthy != before)  # observe reports exactly the flips
        seen += "H" if health.healthy else "U"
    assert seen == expected


def test_a_new_target_starts_unhealthy():
    health = TargetHealth(2, 2)
    assert (health.healthy, health.state) == (False, UNHEALTHY)


# ---------------------------------------------------------------------------------------------
# the pure core: round robin and fail-open

def _pool(healthy: list[bool]) -> TargetPool:
    targets = [Target(f"http://{HOST}:{5001 + i}", f"http://{HOST}:{6001 + i}/ready") for i in range(len(healthy))]
    pool = TargetPool(targets, healthy_threshold=2, unhealthy_threshold=2)
    for target, ok in zip(targets, healthy):
        for _ in range(2 if ok else 0):
            pool.observe(target, True)
    return pool


def _picks(pool: TargetPool, count: int) -> list[int]:
    return [pool.targets.index(pool.pick()) for _ in range(count)]


# (case, each target healthy?, picks in order by target index)
PICK_CASES = [
    ("all healthy: in turn", [True, True, True], [0, 1, 2, 0, 1, 2]),
    ("an unhealthy one is skipped", [True, False, True], [0, 2, 0, 2]),
    ("only one healthy", [False, True, False], [1, 1, 1]),
    ("none healthy: fail open to all", [False, False], [0, 1, 0, 1]),
    ("a single unhealthy target still gets traffic", [False], [0, 0]),
]


@pytest.mark.parametrize("case, healthy, expected", PICK_CASES, ids=[c[0] for c in PICK_CASES])
def test_pick(case, healthy, expected):
    pool = _pool(healthy)
    assert pool.status() == {t.traffic_url: HEALTHY if ok else UNHEALTHY for t, ok in zip(pool.targets, healthy)}
    assert _picks(pool, len(expected)) == expected


def test_pick_keeps_its_turn_when_health_changes():
    pool = _pool([True, True, True])
    assert _picks(pool, 1) == [0]
    for _ in range(2):
        pool.observe(pool.targets[1], False)  # target 1 leaves the rotation: 2 is next, not 0
    assert _picks(pool, 3) == [2, 0, 2]
    for _ in range(2):
        pool.observe(pool.targets[1], True)
    assert _picks(pool, 3) == [0, 1, 2]


def test_a_pool_needs_a_target():
    with pytest.raises(ValueError, match="at least one target"):
        TargetPool([])


# ---------------------------------------------------------------------------------------------
# the pure core: headers

def test_forwarded_request_headers():
    headers = [("Host", "mlflow.internal:5081"), ("Authorization", "Basic YWRtaW46cw=="), ("Connection", "keep-alive, X-Trace"),
               ("Keep-Alive", "timeout=5"), ("X-Trace", "1"), ("Transfer-Encoding", "chunked"), ("Content-Length", "12"),
               ("X-Forwarded-For", "10.0.0.9"), ("X-Forwarded-Proto", "https"), ("Cookie", "a=1"), ("Cookie", "b=2")]
    assert balancer.forward_headers(headers, "127.0.0.1", 5081) == [
        ("Host", "mlflow.internal:5081"), ("Authorization", "Basic YWRtaW46cw=="), ("Cookie", "a=1"), ("Cookie", "b=2"),
        ("X-Forwarded-For", "10.0.0.9, 127.0.0.1"), ("X-Forwarded-Proto", "http"), ("X-Forwarded-Port", "5081")]


# (case, method, status, target's headers, body read, headers the client gets)
RESPONSE_CASES = [
    ("chunked becomes a length", "GET", 200, [("Transfer-Encoding", "chunked"), ("X-A", "1")], b"abc",
     [("X-A", "1"), ("Content-Length", "3")]),
    ("a wrong length is replaced", "GET", 200, [("Content-Length", "99"), ("Connection", "close")], b"ab",
     [("Content-Length", "2")]),
    ("no content, no length", "DELETE", 204, [("Content-Length", "0"), ("X-A", "1")], b"", [("X-A", "1")]),
    ("HEAD keeps the GET's length", "HEAD", 200, [("Content-Length", "42")], b"", [("Content-Length", "42")]),
    ("cookies stay apart", "GET", 200, [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Keep-Alive", "timeout=5")], b"",
     [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Length", "0")]),
]


@pytest.mark.parametrize("case, method, status, headers, body, expected", RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES])
def test_response_headers(case, method, status, headers, body, expected):
    assert balancer.response_headers(headers, method, status, body) == expected


# ---------------------------------------------------------------------------------------------
# bad command lines

GOOD_TARGET = "http://127.0.0.1:5001=http://127.0.0.1:6001/ready"

# (case, arguments besides a good --listen and --target unless given, fragments the one line must hold)
BAD_ARGS = [
    ("listen text", ["--listen", "http", "--target", GOOD_TARGET], ["--listen", "'http'", "1 to 65535"]),
    ("listen too high", ["--listen", "70000", "--target", GOOD_TARGET], ["--listen", "'70000'", "1 to 65535"]),
    ("interval zero", ["--interval", "0"], ["--interval", "'0'", "above 0"]),
    ("interval text", ["--interval", "fast"], ["--interval", "'fast'", "seconds"]),
    ("interval infinite", ["--interval", "inf"], ["--interval", "'inf'", "above 0"]),
    ("timeout not below interval", ["--interval", "2", "--timeout", "2"], ["--timeout", "'2'", "less than --interval"]),
    ("healthy threshold one", ["--healthy-threshold", "1"], ["--healthy-threshold", "'1'", "2 to 10"]),
    ("unhealthy threshold eleven", ["--unhealthy-threshold", "11"], ["--unhealthy-threshold", "'11'", "2 to 10"]),
    ("threshold text", ["--unhealthy-threshold", "two"], ["--unhealthy-threshold", "'two'", "an integer"]),
    ("target without =", ["--listen", "5081", "--target", "http://127.0.0.1:5001"],
     ["--target", "'http://127.0.0.1:5001'", "TRAFFIC_URL=HEALTH_URL"]),
    ("target over TLS", ["--listen", "5081", "--target", "https://127.0.0.1:5001=http://127.0.0.1:6001/ready"],
     ["--target", "https://127.0.0.1:5001", "http://HOST:PORT"]),
    ("target without port", ["--listen", "5081", "--target", "http://127.0.0.1=http://127.0.0.1:6001/ready"],
     ["--target", "'http://127.0.0.1'", "http://HOST:PORT"]),
    ("traffic URL with a path", ["--listen", "5081", "--target", "http://127.0.0.1:5001/api=http://127.0.0.1:6001/ready"],
     ["--target", "http://127.0.0.1:5001/api", "has a path"]),
    ("target twice", ["--listen", "5081", "--target", GOOD_TARGET, "--target", GOOD_TARGET],
     ["--target", "'http://127.0.0.1:5001'", "given twice"]),
    ("state file in no directory", ["--state-file", "/nonexistent-dir/state.json"],
     ["--state-file", "'/nonexistent-dir/state.json'", "existing directory"]),
    ("no target", ["--listen", "5081"], ["--target", "required"]),
    ("unknown option", ["--stickiness", "on"], ["--stickiness"]),
]


def _run_main(argv: list[str]) -> int:
    try:
        return balancer.main(argv)
    except SystemExit as exc:  # argparse's own errors exit from parse_args
        return exc.code


@pytest.mark.parametrize("case, args, fragments", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments(case, args, fragments, capsys):
    argv = args if "--listen" in args else ["--listen", "5081", "--target", GOOD_TARGET, *args]
    assert _run_main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err


def _run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "infra.local.balancer", *args], check=False, capture_output=True,
                          text=True, timeout=DEADLINE_S)


def test_bad_argument_exits_2_with_one_line():
    result = _run_cli(["--listen", "5081", "--target", GOOD_TARGET, "--interval", "fast"])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "balancer: --interval 'fast' is not allowed; expected a number of seconds above 0, e.g. 0.5"]


def test_a_taken_port_exits_2_with_one_line():
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run_cli(["--listen", str(port), "--target", GOOD_TARGET])
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"--listen {port}" in result.stderr and "in use" in result.stderr


# ---------------------------------------------------------------------------------------------
# backends: a target's traffic on one port, its /ready on another (the target group's health_check.port)

@dataclass
class Backend:
    name: str
    ready: bool = True
    requests: list[dict] = field(default_factory=list)
    health_checks: int = 0
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)

    def start(self) -> Backend:
        self._servers = [ThreadingHTTPServer((HOST, 0), _traffic_handler(self)),
                         ThreadingHTTPServer((HOST, 0), _health_handler(self))]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def traffic_url(self) -> str:
        return f"http://{HOST}:{self._servers[0].server_address[1]}"

    @property
    def health_url(self) -> str:
        return f"http://{HOST}:{self._servers[1].server_address[1]}/ready"

    @property
    def target(self) -> str:
        return f"{self.traffic_url}={self.health_url}"


def _traffic_handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Traffic(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # so /chunked can answer chunked

        def answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen = {"backend": backend.name, "method": self.command, "path": self.path, "body": body.hex(),
                    "headers": [[k.lower(), v] for k, v in self.headers.items()]}
            backend.requests.append(seen)
            payload = json.dumps(seen).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Backend", backend.name)
            self.send_header("Keep-Alive", "timeout=5")
            if self.path == "/chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(payload), 100):
                    piece = payload[start:start + 100]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = answer

        def log_message(self, *args) -> None:
            pass

    return Traffic


def _health_handler(backend: Backend) -> type[BaseHTTPRequestHandler]:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            backend.health_checks += 1
            self.send_response(200 if backend.ready and self.path == "/ready" else 503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    return Health


@pytest.fixture
def backends() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def start(name: str) -> Backend:
        started.append(Backend(name).start())
        return started[-1]

    try:
        yield start
    finally:
        for backend in started:
            backend.close()


# ---------------------------------------------------------------------------------------------
# the balancer as a subprocess

@dataclass
class Running:
    process: subprocess.Popen
    port: int
    state_file: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def state(self) -> dict[str, str] | None:
        """The state file, or None before the balancer wrote it; fails at once if the balancer died."""
        if self.process.poll() is not None:
            raise AssertionError(f"the balancer exited with {self.process.returncode}: {self.log.read_text()}")
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None

    def wait_for(self, expected: dict[str, str]) -> None:
        wait_until(lambda: self.state() == expected, DEADLINE_S, 0.05, f"the balancer's state to be {expected}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=DEADLINE_S)


@pytest.fixture
def run_balancer(tmp_path) -> Iterator[Callable[..., Running]]:
    started: list[subprocess.Popen] = []

    def run(targets: list[str]) -> Running:
        index = len(started)
        port, state_file, log = free_port(), tmp_path / f"state-{index}.json", tmp_path / f"balancer-{index}.log"
        argv = [sys.executable, "-m", "infra.local.balancer", "--listen", str(port), "--interval", INTERVAL,
                "--timeout", TIMEOUT, "--healthy-threshold", str(THRESHOLD), "--unhealthy-threshold", str(THRESHOLD),
                "--state-file", str(state_file)]
        for target in targets:
            argv += ["--target", target]
        with log.open("wb") as out:  # a file, not a pipe: a pipe nobody reads could block the balancer
            started.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out))
        running = Running(started[-1], port, state_file, log)
        wait_until(running.state, DEADLINE_S, 0.05, "the balancer to write its state file")
        return running

    try:
        yield run
    finally:
        for process in started:
            _stop(process)


def ask(running: Running, method: str = "GET", path: str = "/", body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """One request through the balancer (http.client: no proxy from the environment in between)."""
    connection = http.client.HTTPConnection(HOST, running.port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


def served_by(running: Running, count: int) -> list[str]:
    """Which backend answered each of `count` GETs, in order."""
    names = []
    for _ in range(count):
        status, _, body = ask(running)
        assert status == 200, body
        names.append(json.loads(body)["backend"])
    return names


def test_an_unhealthy_target_leaves_the_rotation_and_returns(backends, run_balancer):
    a, b = backends("a"), backends("b")
    running = run_balancer([a.target, b.target])
    running.wait_for({a.traffic_url: HEALTHY, b.traffic_url: HEALTHY})
    wait_until(lambda: set(served_by(running, 4)) == {"a", "b"}, DEADLINE_S, 0.05, "requests to reach both targets")

    a.ready = False  # within unhealthy_threshold x interval (1 s) plus the deadline's slack
    wait_until(lambda: served_by(running, 4) == ["b"] * 4, DEADLINE_S, 0.05, "every request to go to b")
    running.wait_for({a.traffic_url: UNHEALTHY, b.traffic_url: HEALTHY})
    assert "balancer: target " + a.traffic_url + " is now unhealthy" in running.log.read_text()

    a.ready = True
    wait_until(lambda: set(served_by(running, 4)) == {"a", "b"}, DEADLINE_S, 0.05, "requests to reach both again")
    running.wait_for({a.traffic_url: HEALTHY, b.traffic_url: HEALTHY})


def test_with_no_healthy_target_traffic_goes_to_all(backends, run_balancer):
    a, b = backends("a"), backends("b")
    a.ready = b.ready = False
    running = run_balancer([a.target, b.target])
    # checked often enough to be judged, not merely "initial"
    wait_until(lambda: a.health_checks > THRESHOLD and b.health_checks > THRESHOLD, DEADLINE_S, 0.05, "health checks")
    assert running.state() == {a.traffic_url: UNHEALTHY, b.traffic_url: UNHEALTHY}
    assert sorted(served_by(running, 4)) == ["a", "a", "b", "b"]

    a.ready = True  # one healthy target: fail-open ends, it takes everything
    running.wait_for({a.traffic_url: HEALTHY, b.traffic_url: UNHEALTHY})
    wait_until(lambda: served_by(running, 4) == ["a"] * 4, DEADLINE_S, 0.05, "every request to go to a")


def test_post_body_and_authorization_arrive_intact(backends, run_balancer):
    a = backends("a")
    running = run_balancer([a.target])
    running.wait_for({a.traffic_url: HEALTHY})
    body = bytes(range(256)) * 400  # 100 KiB, not UTF-8
    headers = {"Host": "mlflow.internal:5081", "Authorization": "Basic YWRtaW46c2VjcmV0LXBhc3N3b3Jk",
               "Content-Type": "application/octet-stream", "X-Forwarded-For": "10.0.0.9", "Keep-Alive": "timeout=5"}
    status, response_headers, answer = ask(running, "POST", "/api/2.0/mlflow/runs/log-batch?run_id=r1&x=%20y", body,
                                           headers)
    assert status == 200, answer
    seen = json.loads(answer)
    received = dict(seen["headers"])
    assert (seen["method"], seen["path"]) == ("POST", "/api/2.0/mlflow/runs/log-batch?run_id=r1&x=%20y")
    assert bytes.fromhex(seen["body"]) == body
    assert received["authorization"] == headers["Authorization"]
    assert received["host"] == "mlflow.internal:5081"
    assert received["content-length"] == str(len(body))
    assert received["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert (received["x-forwarded-proto"], received["x-forwarded-port"]) == ("http", str(running.port))
    assert "keep-alive" not in received
    assert dict(response_headers)["X-Backend"] == "a"


def test_a_chunked_answer_comes_back_with_its_length(backends, run_balancer):
    a = backends("a")
    running = run_balancer([a.target])
    status, headers, answer = ask(running, "GET", "/chunked")
    names = {k.lower(): v for k, v in headers}
    assert status == 200
    assert json.loads(answer)["path"] == "/chunked"
    assert names["content-length"] == str(len(answer))
    assert "transfer-encoding" not in names and "keep-alive" not in names
    assert names["x-backend"] == "a"
    assert [k.lower() for k, _ in headers].count("date") == 1  # the target's, not the balancer's as well


def test_a_refused_connection_is_answered_502_without_retry(backends, run_balancer):
    a = backends("a")
    dead = f"http://{HOST}:{free_port()}={a.health_url}"  # its health check passes, its traffic port is closed
    running = run_balancer([dead, a.target])
    running.wait_for({dead.split("=")[0]: HEALTHY, a.traffic_url: HEALTHY})
    # polled, in case a slow check briefly took a target out: then all 4 go to the same one
    # a retry on the other target would make every answer 200, and this never hold
    wait_until(lambda: sorted(ask(running)[0] for _ in range(4)) == [200, 200, 502, 502], DEADLINE_S, 0.05,
               "alternate answers 200 and 502")


def test_sigterm_stops_it_cleanly(backends, run_balancer):
    a = backends("a")
    running = run_balancer([a.target])
    running.wait_for({a.traffic_url: HEALTHY})
    os.kill(running.process.pid, signal.SIGTERM)
    assert running.process.wait(timeout=DEADLINE_S) == 0
    assert "Traceback" not in running.log.read_text()

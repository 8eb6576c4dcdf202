"""A local stand-in for the Application Load Balancer in front of the UI (and API) servers: an HTTP
reverse proxy on 127.0.0.1 that behaves like an ALB target group.

What it mirrors (infra/aws/service.py sets these on the target group):
- active health checks: every `interval` seconds a GET of each target's health URL, which may be on
  another port than its traffic (the target group's health_check.port), given up after `timeout`;
- thresholds: a target becomes healthy after `healthy_threshold` consecutive 200s and unhealthy after
  `unhealthy_threshold` consecutive failures (another status, a refused connection, a timeout);
- targets start unhealthy, as a newly registered target in state "initial";
- round robin over the healthy targets, and fail-open: with no healthy target, traffic goes to all;
- a target that refuses the connection gets its request answered 502 Bad Gateway, one that does not
  answer within the idle timeout 504; neither is retried on another target;
- X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Port added, Host passed through unchanged.

What it does not: TLS or HTTP to HTTPS redirects, stickiness, slow start, deregistration delay,
listener rules, HTTP/2 or WebSockets, access logs. Bodies are read whole before being passed on,
in both directions, so the Content-Length sent is that of the body actually read.

  python -m infra.local.balancer --listen 5081 --target http://127.0.0.1:5001=http://127.0.0.1:5001/health \\
      [--target ...] [--interval 2] [--timeout 1] [--healthy-threshold 2] [--unhealthy-threshold 2] \\
      [--state-file PATH]

With --state-file, the targets' health is written there as JSON {traffic URL: "healthy" | "unhealthy"}
when the balancer starts and whenever a target's health changes (written then renamed into place).
Exit codes: 0 after SIGTERM or SIGINT, 2 bad input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit

from .processes import http_status

HOST = "127.0.0.1"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"
EXIT_BAD_INPUT = 2
# the ALB's idle_timeout in infra/aws/service.py: how long a target may take to answer
IDLE_TIMEOUT_S = 120
# what the target group accepts for thresholds; interval and timeout go below ALB's 5 s and 2 s here
THRESHOLDS = range(2, 11)
# RFC 9110 7.6.1: meaningful for one connection only, never forwarded
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "trailers", "transfer-encoding", "upgrade"})
FORWARDED_HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-port"})
# what the balancer itself settles with the client: the body's framing, and 100-continue it already sent
SETTLED_HERE = FORWARDED_HEADERS | {"content-length", "expect"}


# ---------------------------------------------------------------------------------------------
# pure: targets, thresholds, whose turn it is

@dataclass(frozen=True)
class Target:
    """One registered target: where its traffic goes, and where its health is checked."""

    traffic_url: str   # http://HOST:PORT
    health_url: str    # http://HOST:PORT/PATH

    @property
    def address(self) -> tuple[str, int]:
        return _address(self.traffic_url)


@dataclass(frozen=True)
class HealthCheck:
    """The target group's health_check block, in seconds and consecutive results."""

    interval: float = 2.0
    timeout: float = 1.0
    healthy_threshold: int = 2
    unhealthy_threshold: int = 2


@dataclass
class TargetHealth:
    """One target's health under ALB's thresholds: `streak` counts consecutive results that
    contradict the current state; reaching the threshold flips it, an agreeing result resets it."""

    healthy_threshold: int
    unhealthy_threshold: int
    healthy: bool = False   # a newly registered target is "initial": not sent traffic until it passes
    streak: int = 0

    def observe(self, ok: bool) -> bool:
        """Record one health check result; True when it changed the target's health."""
        if ok == self.healthy:
            self.streak = 0
            return False
        self.streak += 1
        if self.streak < (self.healthy_threshold if ok else self.unhealthy_threshold):
            return False
        self.healthy, self.streak = ok, 0
        return True

    @property
    def state(self) -> str:
        return HEALTHY if self.healthy else UNHEALTHY


class TargetPool:
    """The target group: its targets' health, and round robin over the healthy ones, or over all
    of them when none is healthy (fail-open). Safe to use from the checkers' and requests' threads."""

    def __init__(self, targets: Sequence[Target], healthy_threshold: int = 2, unhealthy_threshold: int = 2):
        if not targets:
            raise ValueError("a target pool needs at least one target")
        self.targets = list(targets)
        self._health = [TargetHealth(healthy_threshold, unhealthy_threshold) for _ in self.targets]
        self._next = 0
        self._lock = threading.Lock()

    def observe(self, target: Target, ok: bool) -> bool:
        """Record a health check of `target`; True when its health changed."""
        with self._lock:
            return self._health[self.targets.index(target)].observe(ok)

    def pick(self) -> Target:
        """The next target in turn: the first eligible one at or after the last pick's successor."""
        with self._lock:
            eligible = [h.healthy for h in self._health]
            if not any(eligible):  # fail open, as ALB does: better a sick target than no answer
                eligible = [True] * len(eligible)
            count = len(self.targets)
            for step in range(count):
                index = (self._next + step) % count
                if eligible[index]:
                    self._next = index + 1
                    return self.targets[index]
        raise AssertionError("unreachable: fail-open makes every target eligible")

    def status(self) -> dict[str, str]:
        """{traffic URL: "healthy" | "unhealthy"}, in registration order."""
        with self._lock:
            return {t.traffic_url: h.state for t, h in zip(self.targets, self._health)}


def forward_headers(headers: Iterable[tuple[str, str]], client_ip: str, listen_port: int) -> list[tuple[str, str]]:
    """The request's headers as a target gets them: hop-by-hop ones dropped, Host kept as the client
    sent it (MLflow checks allowed hosts), X-Forwarded-* set as ALB sets them."""
    headers = list(headers)
    prior_for = [v for k, v in headers if k.lower() == "x-forwarded-for"]
    kept = [(k, v) for k, v in _end_to_end(headers) if k.lower() not in SETTLED_HERE]
    # ALB appends the client's address to whatever chain earlier proxies built
    return [*kept, ("X-Forwarded-For", ", ".join([*prior_for, client_ip])), ("X-Forwarded-Proto", "http"),
            ("X-Forwarded-Port", str(listen_port))]


def response_headers(headers: Iterable[tuple[str, str]], method: str, status: int, body: bytes) -> list[tuple[str, str]]:
    """The target's response headers as the client gets them: hop-by-hop ones dropped, Content-Length
    that of the body read (the target may have sent it chunked)."""
    headers = list(headers)
    kept = [(k, v) for k, v in _end_to_end(headers) if k.lower() != "content-length"]
    if status < 200 or status == 204:  # RFC 9110 8.6: no Content-Length on these
        return kept
    if method == "HEAD" or status == 304:  # no body read; the length is that of the GET's body
        return kept + [(k, v) for k, v in headers if k.lower() == "content-length"][:1]
    return [*kept, ("Content-Length", str(len(body)))]


def _end_to_end(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Connection may name further headers that are hop-by-hop for this one message
    named = {token.strip().lower() for k, v in headers if k.lower() == "connection" for token in v.split(",")}
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP | named]


# ---------------------------------------------------------------------------------------------
# checking input

class BadInput(Exception):
    """One line for the user: the option, the value, and what is allowed."""


def parse_target(value: str) -> Target:
    """TRAFFIC_URL=HEALTH_URL, e.g. http://127.0.0.1:5001=http://127.0.0.1:6001/ready."""
    traffic, sep, health = value.partition("=")  # the first '=': a health URL's query may hold more
    expected = "expected TRAFFIC_URL=HEALTH_URL, e.g. http://127.0.0.1:5001=http://127.0.0.1:6001/ready"
    if not sep:
        raise BadInput(f"--target {value!r} is not allowed; {expected}")
    for url, path_allowed in ((traffic, False), (health, True)):
        problem = _url_problem(url, path_allowed)
        if problem:
            raise BadInput(f"--target {value!r} is not allowed: {problem}; {expected}")
    return Target(traffic.rstrip("/"), health if urlsplit(health).path else health + "/")


def _url_problem(url: str, path_allowed: bool) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"{url!r} {exc}"
    if parts.scheme != "http" or not parts.hostname or port is None:
        return f"{url!r} is not http://HOST:PORT (no TLS here)"
    if not path_allowed and (parts.path not in ("", "/") or parts.query):
        return f"{url!r} has a path; the traffic URL is http://HOST:PORT, requests keep their own paths"
    return None


def parse_seconds(option: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise BadInput(f"{option} {value!r} is not allowed; expected a number of seconds above 0, e.g. 0.5")
    return seconds


def parse_threshold(option: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count not in THRESHOLDS:
        raise BadInput(f"{option} {value!r} is not allowed; expected an integer from {THRESHOLDS.start}"
                       f" to {THRESHOLDS.stop - 1}, as on the ALB target group")
    return count


def parse_port(option: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise BadInput(f"{option} {value!r} is not allowed; expected an integer from 1 to 65535")
    return port


def health_check(interval: str, timeout: str, healthy_threshold: str, unhealthy_threshold: str) -> HealthCheck:
    check = HealthCheck(parse_seconds("--interval", interval), parse_seconds("--timeout", timeout),
                        parse_threshold("--healthy-threshold", healthy_threshold),
                        parse_threshold("--unhealthy-threshold", unhealthy_threshold))
    if check.timeout >= check.interval:  # as on ALB: one check at a time per target
        raise BadInput(f"--timeout {timeout!r} is not allowed; expected less than --interval ({interval})")
    return check


def unique_targets(targets: Sequence[Target]) -> list[Target]:
    seen: set[str] = set()
    for target in targets:
        if target.traffic_url in seen:
            raise BadInput(f"--target {target.traffic_url!r} is given twice; expected each traffic URL once")
        seen.add(target.traffic_url)
    return list(targets)


# ---------------------------------------------------------------------------------------------
# I/O: health checks, the state file, the proxy

def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or HOST, parts.port or 80


def probe(url: str, timeout: float) -> bool:
    """One health check: GET `url` answers 200 within `timeout` seconds (refused, reset, timed out,
    garbled: all failures), as ALB's checker asks."""
    return http_status(url, timeout, headers={"User-Agent": "ELB-HealthChecker/2.0"}) == 200


def write_state(path: Path, status: dict[str, str]) -> None:
    """`status` as JSON in `path`, written to a temporary file beside it then renamed over it, so a
    reader never sees half a file."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(status, out, indent=2)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    pool: TargetPool
    listen_port: int

    def handle_error(self, request, client_address) -> None:
        # a client that hangs up mid-answer is routine for a proxy, not worth a traceback
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ProxyHandler(BaseHTTPRequestHandler):
    """Forwards each request to the pool's next target, whatever its method."""

    protocol_version = "HTTP/1.1"   # keep-alive with clients, as ALB offers
    server: _ProxyServer

    def do_request(self) -> None:
        try:
            body = self._request_body()
        except ValueError:
            self.send_error(400, "Bad Request", "unreadable request body")
            return
        target = self.server.pool.pick()
        try:
            status, reason, headers, answer = self._ask(target, body)
        except TimeoutError:
            self.send_error(504, "Gateway Timeout", f"{target.traffic_url} did not answer within {IDLE_TIMEOUT_S} s")
            return
        except (OSError, http.client.HTTPException):  # refused, reset, garbled: ALB answers 502, no retry
            self.send_error(502, "Bad Gateway", f"{target.traffic_url} could not be reached")
            return
        self.log_request(status)
        self.send_response_only(status, reason)  # the target's own Server and Date headers follow, not ours too
        for name, value in response_headers(headers, self.command, status, answer):
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_request

    def _request_body(self) -> bytes:
        """The whole body: Content-Length bytes, or a chunked body decoded; ValueError when malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            raise ValueError(f"Content-Length {length!r}")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise ValueError("body shorter than its Content-Length")
        return body

    def _ask(self, target: Target, body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """The target's status, reason, headers and whole body for this request."""
        connection = http.client.HTTPConnection(*target.address, timeout=IDLE_TIMEOUT_S)
        try:
            headers = forward_headers(self.headers.items(), self.client_address[0], self.server.listen_port)
            connection.putrequest(self.command, self.path, skip_host="host" in {k.lower() for k, _ in headers},
                                  skip_accept_encoding=True)
            for name, value in headers:
                connection.putheader(name, value)
            if body or self._has_body():
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            connection.close()

    def _has_body(self) -> bool:
        return "Content-Length" in self.headers or "Transfer-Encoding" in self.headers

    def log_message(self, format: str, *args) -> None:
        pass  # no access log (ALB's is off by default); health changes are logged instead


def _read_chunked(stream) -> bytes:
    chunks = []
    while True:
        size_line = stream.readline(1024).split(b";", 1)[0].strip()
        size = int(size_line, 16)  # ValueError on garbage, reported as 400
        if size == 0:
            while stream.readline(1024).strip():  # trailers, then the blank line
                pass
            return b"".join(chunks)
        chunk = stream.read(size)
        if len(chunk) != size or stream.readline(1024).strip():
            raise ValueError("truncated chunk")
        chunks.append(chunk)


@dataclass
class Balancer:
    """The balancer on 127.0.0.1:`port`: a health checker thread per target and the proxy's thread.
    `start` binds (OSError when the port is taken), `stop` ends every thread it started."""

    targets: Sequence[Target]
    check: HealthCheck
    port: int
    state_file: Path | None = None
    on_change: Callable[[Target, str], None] = lambda target, state: None
    pool: TargetPool = field(init=False)
    _stopping: threading.Event = field(init=False, default_factory=threading.Event)
    _threads: list[threading.Thread] = field(init=False, default_factory=list)
    _server: _ProxyServer | None = field(init=False, default=None)
    _state_lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.pool = TargetPool(self.targets, self.check.healthy_threshold, self.check.unhealthy_threshold)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def status(self) -> dict[str, str]:
        """{traffic URL: "healthy" | "unhealthy"} now."""
        return self.pool.status()

    def start(self) -> None:
        server = _ProxyServer((HOST, self.port), ProxyHandler)
        server.pool, server.listen_port = self.pool, self.port
        try:
            self._save_state()  # before any check: readers learn the balancer is up, every target "initial"
        except OSError:
            server.server_close()
            raise
        self._server = server
        for target in self.pool.targets:
            self._spawn(lambda target=target: self._check_forever(target), f"health check {target.traffic_url}")
        self._spawn(server.serve_forever, f"balancer {self.url}")

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:  # set only once serving: shutdown() waits for serve_forever
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join()

    def _spawn(self, run: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _check_forever(self, target: Target) -> None:
        """A check every interval from the start of the last one, the first at once, as ALB does."""
        while not self._stopping.is_set():
            started = time.monotonic()
            ok = probe(target.health_url, self.check.timeout)
            if self.pool.observe(target, ok) and not self._stopping.is_set():
                self.on_change(target, self.pool.status()[target.traffic_url])
                self._save_state()
            self._stopping.wait(max(0.0, started + self.check.interval - time.monotonic()))

    def _save_state(self) -> None:
        if self.state_file is not None:
            with self._state_lock:  # two targets changing at once: the file shows the later status
                write_state(self.state_file, self.pool.status())


# ---------------------------------------------------------------------------------------------
# command line

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, as every mlflow-infra command reports bad input; argparse would add its usage
        self.exit(EXIT_BAD_INPUT, f"balancer: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    defaults = HealthCheck()
    parser = _Parser(prog="python -m infra.local.balancer",
                     description="An ALB target group on 127.0.0.1: health-checked round robin over targets.")
    parser.add_argument("--listen", required=True, metavar="PORT", help="the port on 127.0.0.1 to take requests on")
    parser.add_argument("--target", action="append", required=True, metavar="TRAFFIC_URL=HEALTH_URL",
                        help="a target, e.g. http://127.0.0.1:5001=http://127.0.0.1:6001/ready; repeat for more")
    parser.add_argument("--interval", default=str(defaults.interval), help="seconds between checks of a target")
    parser.add_argument("--timeout", default=str(defaults.timeout), help="seconds a check may take; below --interval")
    parser.add_argument("--healthy-threshold", default=str(defaults.healthy_threshold),
                        help="consecutive 200s that make a target healthy (2-10)")
    parser.add_argument("--unhealthy-threshold", default=str(defaults.unhealthy_threshold),
                        help="consecutive failed checks that make a target unhealthy (2-10)")
    parser.add_argument("--state-file", metavar="PATH",
                        help="where to write {traffic URL: healthy|unhealthy} as JSON on every change")
    return parser


def balancer_from_args(argv: Sequence[str] | None) -> Balancer:
    """The balancer the command line asks for; BadInput naming the first wrong option."""
    args = build_parser().parse_args(argv)
    port = parse_port("--listen", args.listen)
    check = health_check(args.interval, args.timeout, args.healthy_threshold, args.unhealthy_threshold)
    targets = unique_targets([parse_target(value) for value in args.target])
    state_file = Path(args.state_file).absolute() if args.state_file else None
    if state_file is not None and not state_file.parent.is_dir():
        raise BadInput(f"--state-file {args.state_file!r} is not allowed; expected a file in an existing directory")
    return Balancer(targets, check, port, state_file, on_change=_log_change)


def _log_change(target: Target, state: str) -> None:
    print(f"balancer: target {target.traffic_url} is now {state}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        balancer = balancer_from_args(argv)
    except BadInput as exc:
        print(f"balancer: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        balancer.start()
    except OSError as exc:  # the port is taken, or the state file cannot be written
        print(f"balancer: cannot start on --listen {balancer.port}"
              f"{f' with --state-file {balancer.state_file}' if balancer.state_file else ''}: {exc.strerror or exc}",
              file=sys.stderr)
        balancer.stop()
        return EXIT_BAD_INPUT
    print(f"balancer: listening on {balancer.url} for {', '.join(t.traffic_url for t in balancer.targets)}",
          file=sys.stderr, flush=True)
    stop.wait()  # the main thread only waits: signal handlers run here, the work in other threads
    balancer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

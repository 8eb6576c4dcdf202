"""The doctor's Prometheus source: what an MLflow server's /metrics holds (by method and status, no
path), the rules over it as tables, and a real topology whose one-metric-per-call clients are found
as `batching` in the api server's access log while /metrics, which cannot tell, stays clean."""

from __future__ import annotations

import json

import math
import re
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from infra.doctor import prometheus
from infra.doctor.prometheus import Requests
from infra.local.processes import free_port
from local_services import running_topology

# trimmed from a real `mlflow server --expose-prometheus` (MLflow 3.17.2) after a few calls
MLFLOW_EXPOSITION = """\
# HELP mlflow_otlp_request_duration_seconds Multiprocess metric
# TYPE mlflow_otlp_request_duration_seconds histogram
mlflow_otlp_request_duration_seconds_bucket{le="0.005"} 0.0
mlflow_otlp_request_duration_seconds_bucket{le="+Inf"} 7.0
mlflow_otlp_request_duration_seconds_sum 0.0
mlflow_otlp_request_duration_seconds_count 7.0
# HELP mlflow_exporter_info Multiprocess metric
# TYPE mlflow_exporter_info gauge
mlflow_exporter_info{version="0.23.2"} 1.0
# HELP mlflow_http_request_duration_seconds Multiprocess metric
# TYPE mlflow_http_request_duration_seconds histogram
mlflow_http_request_duration_seconds_sum{method="POST",mlflow_version="3.17.2",status="200"} 0.24
mlflow_http_request_duration_seconds_count{method="POST",mlflow_version="3.17.2",status="200"} 24.0
mlflow_http_request_duration_seconds_bucket{le="0.01",method="POST",mlflow_version="3.17.2",status="200"} 20.0
mlflow_http_request_duration_seconds_bucket{le="0.1",method="POST",mlflow_version="3.17.2",status="200"} 24.0
mlflow_http_request_duration_seconds_bucket{le="+Inf",method="POST",mlflow_version="3.17.2",status="200"} 24.0
mlflow_http_request_duration_seconds_sum{method="POST",mlflow_version="3.17.2",status="500"} 0.5
mlflow_http_request_duration_seconds_count{method="POST",mlflow_version="3.17.2",status="500"} 2.0
mlflow_http_request_duration_seconds_bucket{le="0.01",method="POST",mlflow_version="3.17.2",status="500"} 0.0
mlflow_http_request_duration_seconds_bucket{le="0.1",method="POST",mlflow_version="3.17.2",status="500"} 1.0
mlflow_http_request_duration_seconds_bucket{le="+Inf",method="POST",mlflow_version="3.17.2",status="500"} 2.0
mlflow_http_request_duration_seconds_sum{method="GET",mlflow_version="3.17.2",status="404"} 0.003
mlflow_http_request_duration_seconds_count{method="GET",mlflow_version="3.17.2",status="404"} 1.0
mlflow_http_request_duration_seconds_bucket{le="0.01",method="GET",mlflow_version="3.17.2",status="404"} 1.0
mlflow_http_request_duration_seconds_bucket{le="0.1",method="GET",mlflow_version="3.17.2",status="404"} 1.0
mlflow_http_request_duration_seconds_bucket{le="+Inf",method="GET",mlflow_version="3.17.2",status="404"} 1.0
# HELP mlflow_http_request_total Multiprocess metric
# TYPE mlflow_http_request_total counter
mlflow_http_request_total{method="POST",status="200"} 24.0
mlflow_http_request_total{method="POST",status="500"} 2.0
mlflow_http_request_total{method="GET",status="404"} 1.0
"""
# MLflow before its first request: the families are declared, with no series
MLFLOW_IDLE = """\
# HELP mlflow_http_request_duration_seconds Multiprocess metric
# TYPE mlflow_http_request_duration_seconds histogram
# HELP mlflow_http_request_total Multiprocess metric
# TYPE mlflow_http_request_total counter
"""
LOG_METRIC = "/api/2.0/mlflow/runs/log-metric"
LOG_BATCH = "/api/2.0/mlflow/runs/log-batch"


def exposition(series, prefix: str = "flask") -> str:
    """Prometheus text of the request histogram with a path label (prometheus_flask_exporter's default):
    `series`: (method, path, status, {upper bound: observations in that bucket alone})."""
    lines = [f"# TYPE {prefix}_http_request_duration_seconds histogram"]
    for method, path, status, observed in series:
        labels = f'method="{method}",path="{path}",status="{status}"'
        cumulative = 0
        for upper in sorted(observed):
            cumulative += observed[upper]
            le = "+Inf" if math.isinf(upper) else repr(upper)
            lines.append(f'{prefix}_http_request_duration_seconds_bucket{{le="{le}",{labels}}} {cumulative}')
        lines.append(f"{prefix}_http_request_duration_seconds_count{{{labels}}} {cumulative}")
        lines.append(f"{prefix}_http_request_duration_seconds_sum{{{labels}}} 1.0")
    return "\n".join(lines) + "\n"


def fast(n: int) -> dict[float, int]:
    return {0.01: n, math.inf: 0}


# ---------------------------------------------------------------------------------------------
# parsing

def test_mlflow_exposition_is_read_by_method_and_status_class_without_a_path():
    parsed = prometheus.parse(MLFLOW_EXPOSITION)
    assert set(parsed) == {("POST", None), ("GET", None)}, "the otlp histogram and the counters are not requests"
    post = parsed[("POST", None)]
    assert (post.by_class, post.total, post.name) == ({"2xx": 24, "5xx": 2}, 26, "POST requests")
    assert post.buckets == ((0.01, 20.0), (0.1, 25.0), (math.inf, 26.0)), "statuses summed bucket by bucket"
    assert parsed[("GET", None)].by_class == {"4xx": 1}


def test_a_path_label_keys_the_requests_by_endpoint():
    text = exposition([("POST", LOG_METRIC, "200", fast(5)), ("POST", LOG_METRIC, "503", fast(1)),
                       ("POST", LOG_BATCH, "200", fast(2))])
    parsed = prometheus.parse(text)
    assert {k: r.by_class for k, r in parsed.items()} == {("POST", LOG_METRIC): {"2xx": 5, "5xx": 1},
                                                          ("POST", LOG_BATCH): {"2xx": 2}}
    assert prometheus.path_counts(parsed.values()) == {LOG_METRIC: 6, LOG_BATCH: 2}
    assert parsed[("POST", LOG_METRIC)].name == f"POST {LOG_METRIC}"


@pytest.mark.parametrize("text, declared", [(MLFLOW_EXPOSITION, True), (MLFLOW_IDLE, True), ("# TYPE up gauge\nup 1\n", False),
                                            ("", False)])
def test_the_request_histogram_is_declared_before_any_request(text, declared):
    assert prometheus.has_request_histogram(text) is declared


def test_text_that_is_not_prometheus_is_a_value_error():
    with pytest.raises(ValueError):
        prometheus.parse("<html><body>MLflow</body></html>")


@pytest.mark.parametrize("buckets, q, expected", [
    (((0.1, 0.0), (1.0, 100.0), (math.inf, 100.0)), 0.99, 0.1 + 0.9 * 0.99),   # inside (0.1, 1]: interpolated
    (((0.1, 50.0), (1.0, 100.0), (math.inf, 100.0)), 0.5, 0.1),                 # exactly at a bound
    (((0.1, 100.0), (math.inf, 100.0)), 0.99, 0.099),                           # first bucket starts at 0
    (((2.5, 99.0), (5.0, 99.0), (math.inf, 100.0)), 0.99, 2.5),                 # 1% slower than 2.5 s: not above it
    (((2.5, 98.0), (5.0, 100.0), (math.inf, 100.0)), 0.99, 3.75),
    (((10.0, 90.0), (math.inf, 100.0)), 0.99, math.inf),                        # beyond the last finite bound
    (((0.1, 0.0), (math.inf, 0.0)), 0.99, None),                                # no observations
    ((), 0.99, None),
])
def test_quantile_from_cumulative_buckets(buckets, q, expected):
    found = prometheus.quantile(buckets, q)
    if expected is None:
        assert found is None
    else:
        assert found == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# the rules, as tables

def requests(method="POST", path=None, ok=0, errors=0, buckets=None) -> Requests:
    total = ok + errors
    return Requests(method, path, {"2xx": ok, "5xx": errors}, buckets or ((0.01, float(total)), (math.inf, float(total))))


@pytest.mark.parametrize("series, expected", [
    ([requests(ok=990, errors=10)], []),                                          # exactly 1%: not above it
    ([requests(ok=989, errors=11)], ["11 of 1,000 requests on the api server answered 5xx (1.1%)"]),
    ([requests(ok=50, errors=49)], []),                                           # too few requests to judge
    ([requests(ok=90, errors=5), requests("GET", ok=5)], ["5 of 100 requests on the api server answered 5xx (5.0%)"]),
    ([requests(path=LOG_BATCH, ok=90, errors=8), requests(path=LOG_METRIC, ok=100, errors=2)],
     [f"10 of 200 requests on the api server answered 5xx (5.0%), most on POST {LOG_BATCH} (8)"]),
])
def test_server_errors_above_one_percent_of_a_hundred_requests(series, expected):
    found = prometheus.server_error_findings(series, "api", "prometheus:api")
    assert [f.evidence for f in found] == expected
    assert all((f.bottleneck, f.severity, f.source) == ("server", "high", "prometheus:api") for f in found)


SLOW = ((1.0, 97.0), (2.5, 98.0), (5.0, 100.0), (math.inf, 100.0))        # p99 3.75 s
SLOWEST = ((1.0, 90.0), (10.0, 98.0), (math.inf, 100.0))                  # p99 beyond 10 s
QUICK = ((1.0, 99.0), (2.5, 100.0), (math.inf, 100.0))                    # p99 1.0 s


@pytest.mark.parametrize("series, expected", [
    ([requests(ok=100, buckets=QUICK)], []),
    ([requests(ok=100, buckets=SLOW)],
     ["p99 latency of POST requests on the api server is 3.75 s over 100 requests (more than 1% took over 2.5 s)"]),
    ([requests(ok=100, buckets=SLOWEST)],
     ["p99 latency of POST requests on the api server is over 10 s over 100 requests (more than 1% took over 2.5 s)"]),
    ([requests(ok=99, buckets=((5.0, 99.0), (math.inf, 99.0)))], []),                      # too few to judge
    ([requests("GET", ok=100, buckets=SLOW), requests("PUT", ok=100, buckets=SLOW)], []),  # artifact transfers
    ([requests(path=LOG_BATCH, ok=100, buckets=SLOW), requests(path="/static-files/app.js", ok=100, buckets=SLOW)],
     [f"p99 latency of POST {LOG_BATCH} on the api server is 3.75 s over 100 requests (more than 1% took over 2.5 s)"]),
    ([requests("GET", path="/ajax-api/2.0/mlflow/metrics/get-history", ok=100, buckets=SLOW)],
     ["p99 latency of GET /ajax-api/2.0/mlflow/metrics/get-history on the api server is 3.75 s over 100 requests"
      " (more than 1% took over 2.5 s)"]),
])
def test_p99_of_logging_and_search_above_two_and_a_half_seconds(series, expected):
    found = prometheus.latency_findings(series, "api", "prometheus:api")
    assert [f.evidence for f in found] == expected
    assert all((f.bottleneck, f.severity) == ("server", "medium") for f in found)


@pytest.mark.parametrize("counts, expected", [
    ({}, []),
    ({LOG_METRIC: 150}, []),                                                           # under the minimum
    ({LOG_METRIC: 1200, LOG_BATCH: 50}, [f"1,200 of 1,250 logging requests on the api server were {LOG_METRIC}:"
                                         " one metric per call"]),
    ({LOG_METRIC: 300, LOG_BATCH: 300}, []),                                           # half: not most
    ({LOG_METRIC: 300, "/api/2.0/mlflow/runs/log-parameter": 200, "/api/2.0/mlflow/runs/set-tag": 200}, []),
    ({LOG_METRIC: 300, "/ajax-api/2.0/mlflow/runs/log-metric": 20, "/api/2.0/mlflow/runs/search": 5000},
     [f"320 of 320 logging requests on the api server were /ajax-api/2.0/mlflow/runs/log-metric and {LOG_METRIC}:"
      " one metric per call"]),                                                        # searches are not logging
])
def test_one_metric_per_call_is_batching_past_two_hundred_calls_and_half_the_logging(counts, expected):
    found = prometheus.batching_findings(counts, "api", "access-log:api")
    assert [f.evidence for f in found] == expected
    assert all(f.bottleneck == "batching" and "log_batch" in f.remedy and "MLFLOW_ENABLE_ASYNC_LOGGING=true" in f.remedy
               for f in found)


def test_a_path_labelled_exposition_judges_batching_from_metrics_alone():
    text = exposition([("POST", LOG_METRIC, "200", fast(400)), ("POST", LOG_BATCH, "200", fast(10))])
    assert [(f.bottleneck, f.source) for f in prometheus.check_server(text, "api", "prometheus:api")] == [
        ("batching", "prometheus:api")]
    assert prometheus.check_server(MLFLOW_EXPOSITION, "api", "prometheus:api") == [], "MLflow's: no path, no batching"


ACCESS = '2026/11/27 22:03:31 INFO:     127.0.0.1:51140 - "{} {} HTTP/1.1" {} OK'


@pytest.mark.parametrize("lines, expected", [
    ([ACCESS.format("POST", LOG_METRIC, 200), ACCESS.format("POST", LOG_METRIC, 500)], {LOG_METRIC: 2}),
    ([ACCESS.format("GET", "/ajax-api/2.0/mlflow/metrics/get-history?run_id=1&metric_key=a", 200)],
     {"/ajax-api/2.0/mlflow/metrics/get-history": 1}),                            # the query string dropped
    ([ACCESS.format("POST", LOG_METRIC, 200), "2026/11/27 22:04:00 INFO:     Uvicorn running on http://127.0.0.1:5000"
      " (Press CTRL+C to quit)", ACCESS.format("POST", LOG_BATCH, 200)], {LOG_BATCH: 1}),   # since the last start
    (["2026/11/27 22:04:01 INFO:     Started server process [42]", "Traceback (most recent call last):"], {}),
    # gunicorn's default access format (the API: --access-logfile -) and its start line
    (['127.0.0.1 - - [27/Nov/2026:22:03:31 +0000] "POST %s HTTP/1.1" 200 2 "-" "python-requests/2.32.5"' % LOG_METRIC,
      "[2026-11-27 22:04:00 +0000] [41] [INFO] Listening at: http://127.0.0.1:5000 (41)",
      '127.0.0.1 - - [27/Nov/2026:22:04:02 +0000] "POST %s HTTP/1.1" 200 2 "-" "python-requests/2.32.5"' % LOG_BATCH],
     {LOG_BATCH: 1}),
])
def test_access_log_lines_count_requests_by_path_since_the_last_start(lines, expected):
    assert prometheus.access_counts(lines) == expected


def test_an_unreadable_access_log_is_a_source_not_reached(tmp_path):
    findings, sources = prometheus.check_access_logs([("api", tmp_path / "missing.log")])
    assert findings == [] and [(s.name, s.reached) for s in sources] == [("access-log:api", False)]
    assert "missing.log" in sources[0].detail


# ---------------------------------------------------------------------------------------------
# scraping, against a stand-in HTTP server

class StandIn(BaseHTTPRequestHandler):
    AUTHORIZATION = "Basic YWRtaW46c2VjcmV0"
    BODIES = {"/mlflow/metrics": MLFLOW_EXPOSITION, "/idle/metrics": MLFLOW_IDLE,
              "/html/metrics": "<html><body>MLflow</body></html>", "/bare/metrics": "# TYPE up gauge\nup 1\n"}

    def do_GET(self):
        if self.path == "/auth/metrics" and self.headers.get("Authorization") != self.AUTHORIZATION:
            self.send_error(401, "Unauthorized")
            return
        body = self.BODIES.get(self.path, MLFLOW_EXPOSITION if self.path == "/auth/metrics" else None)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@contextmanager
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_each_server_is_a_source_reached_or_said_why_not(monkeypatch):
    # an HTTP proxy in the environment must not carry the scrape (it would fail: nothing listens there)
    for name in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{free_port()}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    nothing = f"http://127.0.0.1:{free_port()}"
    with stand_in() as base:
        servers = [("api", f"{base}/mlflow/"), ("ui", f"{base}/idle"), ("locked", f"{base}/auth"),
                   ("page", f"{base}/html"), ("other", f"{base}/bare"), ("gone", nothing)]
        findings, sources = prometheus.check_servers(servers, {}, timeout=5)
        _, with_header = prometheus.check_servers([("locked", f"{base}/auth")], {"Authorization": StandIn.AUTHORIZATION})
    assert findings == []
    by_name = {s.name: s for s in sources}
    assert {n: s.reached for n, s in by_name.items()} == {
        "prometheus:api": True, "prometheus:ui": True, "prometheus:locked": False, "prometheus:page": False,
        "prometheus:other": False, "prometheus:gone": False}
    assert by_name["prometheus:api"].detail == (
        f"{base}/mlflow/metrics: 27 requests since the server started (totals, no window), by method and status only"
        " (MLflow labels no path: batching is judged from the access log)")
    assert by_name["prometheus:ui"].detail.startswith(f"{base}/idle/metrics: 0 requests since the server started")
    assert by_name["prometheus:locked"].detail.startswith(f"{base}/auth/metrics answered 401 ")
    assert "Authorization header" in by_name["prometheus:locked"].detail
    assert [s.reached for s in with_header] == [True]
    assert "not in Prometheus' text format" in by_name["prometheus:page"].detail
    assert "--expose-prometheus" in by_name["prometheus:other"].detail
    assert by_name["prometheus:gone"].detail.startswith(f"{nothing}/metrics did not answer: ")
    assert "Traceback" not in " ".join(s.detail for s in sources)


def test_scrape_raises_its_own_error():
    with pytest.raises(prometheus.ScrapeError, match=r"did not answer"):
        prometheus.scrape(f"http://127.0.0.1:{free_port()}/metrics", {}, timeout=2)


# ---------------------------------------------------------------------------------------------
# a real topology

CALLERS = 8
CALLS_EACH = 30          # 240 single-metric calls: past BATCHING_MIN_CALLS
assert CALLERS * CALLS_EACH > prometheus.BATCHING_MIN_CALLS


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    with running_topology(tmp_path_factory.mktemp("prometheus") / ".mlflow-local") as running:
        yield running


def post_total(url: str, headers: dict) -> int:
    parsed = prometheus.parse(prometheus.scrape(url + prometheus.METRICS_PATH, headers, 10))
    return parsed[("POST", None)].total if ("POST", None) in parsed else 0


@pytest.mark.postgres
def test_a_fresh_topology_is_clean_then_one_metric_per_call_is_batching(topology, monkeypatch, capsys):
    import mlflow

    topo, state = topology
    entries = topo.read_state()["servers"]
    servers = [(s["name"], s["url"]) for s in entries]
    logs = [(s["name"], Path(s["log"])) for s in entries]
    authorization = topo.authorization()
    headers = {"Authorization": authorization} if authorization else {}
    assert {name for name, _ in servers} >= {"api", "ui"}

    findings, sources = prometheus.check_servers(servers, headers)
    log_findings, log_sources = prometheus.check_access_logs(logs)
    assert (findings, log_findings) == ([], []), "a fresh topology: only its warm-up requests"
    assert all(s.reached for s in sources + log_sources), sources + log_sources
    assert {s.name for s in sources} == {f"prometheus:{name}" for name, _ in servers}
    assert all("MLflow labels no path" in s.detail for s in sources), "MLflow 3.17's exposition: method and status only"
    api_log = dict(logs)["api"]
    assert any(prometheus.START_LINE.search(line) for line in prometheus.read_tail(api_log)), \
        f"the server's start line, which the access counts restart from, is not in {api_log}"

    if authorization:  # tracking.auth basic: the client logs in as the admin, as the topology's own checks do
        credentials = json.loads(topo.auth_file.read_text())
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", credentials["admin_username"])
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", credentials["admin_password"])
    api = dict(servers)["api"]
    before = post_total(api, headers)
    client = mlflow.MlflowClient(tracking_uri=state.api_url)
    run_id = client.create_run("0").info.run_id
    failures: list[BaseException] = []

    def chatty(caller: int) -> None:
        try:
            for step in range(CALLS_EACH):
                client.log_metric(run_id, f"loss_{caller}", 1.0 / (step + 1), step=step)
        except BaseException as exc:  # noqa: BLE001 (reported by the test's thread, not lost in this one)
            failures.append(exc)

    threads = [threading.Thread(target=chatty, args=(k,)) for k in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures

    findings, sources = prometheus.check_servers(servers, headers)
    assert all(s.reached for s in sources)
    assert [f for f in findings if f.bottleneck == "batching"] == [], "/metrics has no path: it cannot tell log-metric"
    assert post_total(api, headers) - before >= CALLERS * CALLS_EACH + 1, "each call one POST, counted on the api server"

    log_findings, _ = prometheus.check_access_logs(logs)
    assert [(f.bottleneck, f.source) for f in log_findings] == [("batching", "access-log:api")], log_findings
    match = re.fullmatch(rf"([\d,]+) of ([\d,]+) logging requests on the api server were {LOG_METRIC}: one metric per call",
                         log_findings[0].evidence)
    assert match and match[1] == match[2], log_findings[0].evidence
    assert int(match[1].replace(",", "")) >= CALLERS * CALLS_EACH

    # the command: the same load is the one finding of `doctor --local`
    from infra.cli import main

    assert main(["doctor", "--local", "--root", str(topo.root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(f["bottleneck"], f["source"]) for f in report["findings"]] == [("batching", "access-log:api")], report

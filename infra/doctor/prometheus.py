"""The Prometheus source of `mlflow-infra doctor`: what each MLflow server's /metrics says about the
requests it answered.

What MLflow 3.17 serves on /metrics (`mlflow server --expose-prometheus DIR`: prometheus_flask_exporter
0.23 in multiprocess mode, summing the files every uvicorn worker writes under PROMETHEUS_MULTIPROC_DIR):

    mlflow_http_request_duration_seconds{method, status, mlflow_version}  histogram, buckets 5 ms .. 10 s
    mlflow_http_request_total{method, status}                             counter
    mlflow_http_request_exceptions_total{method, status}                  counter
    mlflow_exporter_info{version}; mlflow_otlp_* and mlflow_spans_*       trace ingestion, not read here

MLflow groups the histogram by its own version (`group_by=mlflow_version` in
mlflow/server/prometheus_exporter.py), not by path: the exposition cannot tell a log-metric call from
a log-batch one. So from /metrics come the `server` findings (5xx share, p99 latency of POSTs, which
MLflow's logging and search calls all are); the `batching` rule needs per-path counts, which it takes
from a path label when an exporter has one (prometheus_flask_exporter's default `path`) and otherwise
from the server's access log (uvicorn's lines in the server's log), read by `check_access_logs`.

The numbers are totals since the server started (the entrypoint empties the multiprocess directory
at start): there is no window, so a burst an hour ago weighs as much as one now. /health and /version
are not counted; every scrape of /metrics is (a GET answered 200). With tracking.auth basic, /metrics
asks for the admin's basic-auth header like any other path (401 without it).
"""

from __future__ import annotations

import http.client
import math
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .findings import Finding, Source

METRICS_PATH = "/metrics"
# the exporter's prefix is `mlflow` under MLflow, `flask` by default, none with NO_PREFIX
DURATION_FAMILY = re.compile(r"^(\w+_)?http_request_duration_seconds$")
# the labels prometheus_flask_exporter's `group_by` can name that identify an endpoint; MLflow's
# `mlflow_version` is not one of them, so under MLflow every series is "all paths" (path None)
PATH_LABELS = ("path", "url_rule", "rule", "endpoint")
SCRAPE_TIMEOUT_S = 10

# 5xx above this share of at least this many requests: MLflow answers 5xx for database errors and
# unhandled exceptions, never for a client's mistake (those are 4xx), so a healthy server has next to
# none; the minimum keeps the 500s MLflow's workers can answer right after start from counting.
ERROR_SHARE = 0.01
ERROR_MIN_REQUESTS = 100
# p99 above this over at least this many requests. MLflow's logging and search calls take
# milliseconds to a few hundred; 2.5 s is one of the exporter's bucket bounds, so the rule reads
# exactly "more than 1% of the requests took over 2.5 s" whatever the interpolation inside a bucket.
P99_S = 2.5
LATENCY_MIN_REQUESTS = 100
# Without a path label, the latency rule reads POSTs only: MLflow's logging and search calls are
# POSTs, while GETs and PUTs include artifact downloads and uploads, legitimately as slow as they are large.
LATENCY_METHODS = ("POST",)
# With one, it reads MLflow's REST API (and the UI's ajax-api), not artifact transfers or static files.
API_PATH = re.compile(r"^/(ajax-)?api/2\.0/mlflow/")

# Logging calls, and those that carry a single metric. With batched logging (log_batch, mlflow.log_metrics,
# asynchronous logging) log-metric calls are rare; when they are most of the logging calls, clients pay
# an HTTP round trip and a database transaction per metric (README bottleneck "batching").
LOG_METRIC_PATH = re.compile(r"^/(ajax-)?api/2\.0/mlflow/runs/log-metric$")
LOGGING_PATH = re.compile(r"^/(ajax-)?api/2\.0/mlflow/runs/(log-metric|log-batch|log-parameter|set-tag)$")
BATCHING_SHARE = 0.5
# A fresh topology's warm-up sends none, and a job logging a few metrics once per epoch stays below
# it for a while; past it, the per-call overhead is worth changing the client for.
BATCHING_MIN_CALLS = 200
BATCHING_REMEDY = ("log metrics in batches: MlflowClient.log_batch or mlflow.log_metrics, or MLflow's asynchronous"
                   " logging (MLFLOW_ENABLE_ASYNC_LOGGING=true) in the training jobs' environment")
SERVER_ERROR_REMEDY = ("read the tracebacks in the {server} server's log: database errors point at the connections or"
                       " instance bottleneck, worker timeouts at too few workers (tracking.*.workers)")
LATENCY_REMEDY = ("compare with the database's top statements (pg_stat_statements) and its CPU: slow statements point at"
                  " indexes or the instance; otherwise the server's workers or tasks are saturated (tracking.*)")

# an access line, as uvicorn writes it under MLflow's log config (the UI) and as gunicorn's default
# access format has it (the API, --access-logfile -):
#   2026/11/27 22:03:31 INFO:     127.0.0.1:51140 - "POST /api/2.0/mlflow/runs/log-metric HTTP/1.1" 200 OK
#   127.0.0.1 - - [27/Nov/2026:22:03:31 +0000] "POST /api/2.0/mlflow/runs/log-metric HTTP/1.1" 200 2 "-" "python-requests/2.32.5"
ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>[^ ?"]*)(?:\?[^ "]*)? HTTP/[0-9.]+" (?P<status>\d{3})\b')
# what uvicorn or gunicorn says as it starts listening: the log is appended across restarts, and
# counters are read since the server's last start, as /metrics has them
START_LINE = re.compile(r"Uvicorn running on |Listening at: ")
# the log's tail read: enough for a day of heavy logging, bounded for a log never rotated locally
ACCESS_LOG_MAX_BYTES = 64 * 1024 * 1024


class ScrapeError(Exception):
    """/metrics could not be read: refused, timed out, or answered other than 200."""


@dataclass(frozen=True)
class Requests:
    """The requests a server answered for one method and path (path None: the exposition has no
    path label, as under MLflow), by status class, with the latency histogram's cumulative buckets."""
    method: str
    path: str | None
    by_class: Mapping[str, int]
    """"2xx", "4xx", "5xx", ...: requests answered with that class."""
    buckets: tuple[tuple[float, float], ...]
    """(upper bound s, cumulative count), ascending, +Inf last."""

    @property
    def total(self) -> int:
        return sum(self.by_class.values())

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}" if self.path else f"{self.method} requests"


# ---------------------------------------------------------------------------------------------
# reading

def scrape(url: str, headers: Mapping[str, str], timeout: float) -> str:
    """The text at `url`, never through an HTTP proxy (the servers are on the deployment's own network)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers=dict(headers))
    try:
        with opener.open(request, timeout=timeout) as response:
            return response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        hint = " (MLflow's basic auth: /metrics needs the admin's Authorization header)" if exc.code == 401 else ""
        raise ScrapeError(f"{url} answered {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        raise ScrapeError(f"{url} did not answer: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:   # timed out or reset while reading
        raise ScrapeError(f"{url} did not answer: {exc or type(exc).__name__}") from None


def status_class(status: str) -> str:
    return f"{status[:1]}xx" if status[:1].isdigit() else "other"


def parse(text: str) -> dict[tuple[str, str | None], Requests]:
    """The HTTP request histogram of an exposition, by (method, path); statuses summed into classes.
    A ValueError when `text` is not Prometheus text; an empty result when it has no such histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[tuple[str, str | None], Counter] = {}
    buckets: dict[tuple[str, str | None], Counter] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram" or not DURATION_FAMILY.match(family.name):
            continue
        for sample in family.samples:
            labels = sample.labels
            path = next((labels[name] for name in PATH_LABELS if name in labels), None)
            key = (labels.get("method", "?"), path)
            if sample.name.endswith("_count"):
                counts.setdefault(key, Counter())[status_class(labels.get("status", ""))] += int(sample.value)
            elif sample.name.endswith("_bucket"):
                buckets.setdefault(key, Counter())[float(labels["le"])] += sample.value
    return {key: Requests(key[0], key[1], dict(by_class), tuple(sorted(buckets.get(key, Counter()).items())))
            for key, by_class in counts.items()}


def has_request_histogram(text: str) -> bool:
    """Whether the exposition declares the HTTP request histogram (a server that answered nothing yet
    still declares it): without it, --expose-prometheus is not in effect."""
    from prometheus_client.parser import text_string_to_metric_families

    return any(f.type == "histogram" and DURATION_FAMILY.match(f.name) for f in text_string_to_metric_families(text))


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The q-quantile from cumulative buckets, interpolated linearly inside its bucket as PromQL's
    histogram_quantile does (the first bucket starts at 0); inf when it lies beyond the last finite
    bound; None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank and cumulative > below:
            if math.isinf(upper):
                return math.inf
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return math.inf


def seconds(value: float, buckets: Sequence[tuple[float, float]]) -> str:
    if math.isinf(value):
        finite = [upper for upper, _ in buckets if not math.isinf(upper)]
        return f"over {finite[-1]:g} s" if finite else "unbounded"
    return f"{value:.2f} s"


# ---------------------------------------------------------------------------------------------
# the rules

def server_error_findings(requests: Iterable[Requests], server: str, source: str) -> list[Finding]:
    """5xx above ERROR_SHARE of at least ERROR_MIN_REQUESTS of a server's requests."""
    requests = list(requests)
    total = sum(r.total for r in requests)
    errors = sum(r.by_class.get("5xx", 0) for r in requests)
    if total < ERROR_MIN_REQUESTS or errors <= total * ERROR_SHARE:
        return []
    worst = max(requests, key=lambda r: r.by_class.get("5xx", 0))
    where = f", most on {worst.name} ({worst.by_class['5xx']:,})" if worst.path else ""
    return [Finding("server", "high", f"{errors:,} of {total:,} requests on the {server} server answered 5xx"
                    f" ({errors / total:.1%}){where}", SERVER_ERROR_REMEDY.format(server=server), source)]


def latency_scope(r: Requests) -> bool:
    """MLflow's logging and search calls: its REST API when paths are known, else its POSTs."""
    return bool(API_PATH.match(r.path)) if r.path else r.method in LATENCY_METHODS


def latency_findings(requests: Iterable[Requests], server: str, source: str) -> list[Finding]:
    """A p99 above P99_S over at least LATENCY_MIN_REQUESTS, for each endpoint (or method) in scope."""
    findings = []
    for r in requests:
        if not latency_scope(r) or r.total < LATENCY_MIN_REQUESTS:
            continue
        p99 = quantile(r.buckets, 0.99)
        if p99 is not None and p99 > P99_S:
            findings.append(Finding("server", "medium", f"p99 latency of {r.name} on the {server} server is"
                                    f" {seconds(p99, r.buckets)} over {r.total:,} requests (more than 1% took over"
                                    f" {P99_S:g} s)", LATENCY_REMEDY, source))
    return findings


def path_counts(requests: Iterable[Requests]) -> Counter:
    """Requests by path, where the exposition has paths."""
    counts: Counter = Counter()
    for r in requests:
        if r.path:
            counts[r.path] += r.total
    return counts


def batching_findings(counts: Mapping[str, int], server: str, source: str) -> list[Finding]:
    """`counts`: requests by path. log-metric calls above BATCHING_SHARE of the logging calls, and at
    least BATCHING_MIN_CALLS of them: clients send one metric per call."""
    logging = {path: n for path, n in counts.items() if LOGGING_PATH.match(path)}
    single = {path: n for path, n in logging.items() if LOG_METRIC_PATH.match(path) and n}
    calls, total = sum(single.values()), sum(logging.values())
    if calls < BATCHING_MIN_CALLS or calls <= total * BATCHING_SHARE:
        return []
    endpoints = " and ".join(sorted(single))
    return [Finding("batching", "medium", f"{calls:,} of {total:,} logging requests on the {server} server were"
                    f" {endpoints}: one metric per call", BATCHING_REMEDY, source)]


# ---------------------------------------------------------------------------------------------
# the servers

def check_server(text: str, server: str, source: str) -> list[Finding]:
    """Every rule over one server's exposition."""
    requests = list(parse(text).values())
    return (server_error_findings(requests, server, source) + latency_findings(requests, server, source)
            + batching_findings(path_counts(requests), server, source))


def check_servers(servers: Sequence[tuple[str, str]], headers: Mapping[str, str],
                  timeout: float = SCRAPE_TIMEOUT_S) -> tuple[list[Finding], list[Source]]:
    """`servers`: (name, base URL) of the MLflow servers (not a load balancer: it has no /metrics);
    `headers`: the Authorization header when the servers run MLflow's basic auth. A server that does
    not answer, or serves no request histogram, is a source not reached."""
    findings: list[Finding] = []
    sources: list[Source] = []
    for server, base in servers:
        name, url = f"prometheus:{server}", base.rstrip("/") + METRICS_PATH
        try:
            text = scrape(url, headers, timeout)
            requests = list(parse(text).values())
            declared = bool(requests) or has_request_histogram(text)
        except ScrapeError as exc:
            sources.append(Source(name, False, str(exc)))
            continue
        except ValueError as exc:
            sources.append(Source(name, False, f"{url} answered, but not in Prometheus' text format: {str(exc)[:120]}"))
            continue
        if not declared:
            sources.append(Source(name, False, f"{url} serves no HTTP request histogram: is the server started"
                                  " with --expose-prometheus?"))
            continue
        findings += check_server(text, server, name)
        total = sum(r.total for r in requests)
        scope = ("per path" if any(r.path for r in requests) else
                 "by method and status only (MLflow labels no path: batching is judged from the access log)")
        sources.append(Source(name, True, f"{url}: {total:,} requests since the server started (totals, no window),"
                              f" {scope}"))
    return findings, sources


# ---------------------------------------------------------------------------------------------
# per-path counts where /metrics has none: the server's access log

def access_counts(lines: Iterable[str]) -> Counter:
    """Requests by path in uvicorn's access lines after the log's last start (query strings dropped)."""
    counts: Counter = Counter()
    for line in lines:
        if START_LINE.search(line):
            counts = Counter()
            continue
        match = ACCESS_LINE.search(line)
        if match:
            counts[match["path"]] += 1
    return counts


def read_tail(path: Path, max_bytes: int = ACCESS_LOG_MAX_BYTES) -> list[str]:
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - max_bytes))
        return log.read().decode("utf-8", errors="replace").splitlines()


def check_access_logs(logs: Sequence[tuple[str, Path]]) -> tuple[list[Finding], list[Source]]:
    """`logs`: (server name, its log file: state.json's servers' "log"). The batching rule over the
    requests since each server's last start; a log that cannot be read is a source not reached."""
    findings: list[Finding] = []
    sources: list[Source] = []
    for server, path in logs:
        name = f"access-log:{server}"
        try:
            counts = access_counts(read_tail(Path(path)))
        except OSError as exc:
            sources.append(Source(name, False, f"cannot read {path}: {exc.strerror or exc}"))
            continue
        findings += batching_findings(counts, server, name)
        sources.append(Source(name, True, f"{path}: {sum(counts.values()):,} requests since the server's last start"
                              " (uvicorn's access lines)"))
    return findings, sources

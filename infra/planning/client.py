"""The environment the plan recommends for training jobs: the reference text's fix 4, "batch the
logging calls", done for jobs that call `mlflow.log_metric` one metric at a time.

MLflow's own asynchronous logging (`MLFLOW_ENABLE_ASYNC_LOGGING`) queues the fluent API's calls
(`mlflow.log_metric`, `log_param`, `set_tag`, ...) and a background thread sends them; with
`MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS` it waits that long and merges what a run queued into
`log_batch` requests of up to 1,000 items (mlflow/utils/async_logging/async_logging_queue.py). A
job then sends about one request per buffering interval however often it logs, and `mlflow.end_run()`
(or `mlflow.flush_async_logging()`) waits until every queued item is acknowledged. The request
timeout and retries are sized to the fleet: long enough for the slowest planned request, retried
across the longest planned interruption.
"""

from __future__ import annotations

import math

from .sizing import FleetPlan

# Buffered clients may use at most this share of the API's requests/s at its minimum task count,
# leaving the rest for the jobs that already batch, run creation and bursts.
CLIENT_SHARE_OF_API = 0.5
# A flush interval in whole seconds (MLflow reads an integer), at most this long: metrics show in
# the UI at most that late, and a crashed job loses at most that much.
MAX_FLUSH_S = 10
# The longest interruption a client should ride out by retrying: a Multi-AZ failover (60-120 s,
# RDS User Guide "Multi-AZ DB instance deployments") or an ECS task replaced after its health
# check grace (120 s) and a new task's start.
INTERRUPTION_S = 180
# MLflow's default backoff factor: urllib3 sleeps factor * 2^(n-1) s before the n-th retry.
BACKOFF_FACTOR = 2
# A request may take at most this many times the API's p99 alarm threshold before the client gives
# up on it and retries; at least MIN_TIMEOUT_S, at most the load balancer's idle timeout (after it
# the load balancer has closed the connection anyway).
TIMEOUT_P99_MULTIPLE = 10
MIN_TIMEOUT_S = 30


def flush_seconds(jobs: int, api: FleetPlan) -> int:
    """The shortest interval at which every job's one request per interval fits the API's share."""
    capacity = api.min_count * api.requests_per_s_per_unit * CLIENT_SHARE_OF_API
    return next((s for s in range(1, MAX_FLUSH_S + 1) if jobs / s <= capacity), MAX_FLUSH_S)


def retries_for(interruption_s: float, factor: float = BACKOFF_FACTOR) -> int:
    """The fewest retries whose backoff sleeps add up to `interruption_s`."""
    return max(1, math.ceil(math.log2(interruption_s / factor + 1)))


def request_timeout_s(p99_ms: int, idle_timeout_s: int) -> int:
    return min(idle_timeout_s, max(MIN_TIMEOUT_S, math.ceil(TIMEOUT_P99_MULTIPLE * p99_ms / 1000)))


def client_environment(jobs: int, api: FleetPlan, p99_ms: int, idle_timeout_s: int) -> tuple[dict[str, str], str]:
    """(variables, reason): the training jobs' MLflow client settings for this plan."""
    flush = flush_seconds(jobs, api)
    retries = retries_for(INTERRUPTION_S)
    timeout = request_timeout_s(p99_ms, idle_timeout_s)
    variables = {
        "MLFLOW_ENABLE_ASYNC_LOGGING": "true",
        "MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS": str(flush),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(BACKOFF_FACTOR),
    }
    capacity = api.min_count * api.requests_per_s_per_unit
    reason = (f"fluent logging calls queue and go out as log_batch every {flush} s: {jobs:,} jobs send about"
              f" {jobs / flush:,.1f} requests/s, at most {CLIENT_SHARE_OF_API:.0%} of the {capacity:,.0f} the API serves at"
              f" its minimum of {api.min_count} task(s); a request gets {timeout} s ({TIMEOUT_P99_MULTIPLE}x the"
              f" p99 alarm, at most the load balancer's idle timeout), and {retries} retries back off"
              f" {BACKOFF_FACTOR * (2 ** retries - 1)} s in all, past a {INTERRUPTION_S} s failover or task replacement")
    return variables, reason

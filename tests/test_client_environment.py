"""The plan's client_environment: what training jobs set so that one-metric-per-call logging goes out
in batches (MLflow's asynchronous logging, buffered), with a timeout and retries sized to the fleet."""

from __future__ import annotations

import json

import pytest

from helpers import environment, render
from infra import plan
from infra.cli import main
from infra.planning import client
from infra.planning.sizing import FleetPlan


def fleet(min_count: int, rps: float) -> FleetPlan:
    return FleetPlan("api", "ecs", 1.0, 2.0, 2, min_count, min_count * 2, rps, None, "")


@pytest.mark.parametrize("jobs, min_count, rps, flush", [
    (32, 1, 132, 1),        # 32 requests/s fit in half of 132
    (300, 2, 120, 3),       # 300 / 2 = 150 > half of 240, 300 / 3 = 100 fits
    (10_000, 1, 100, 10),   # never longer than MAX_FLUSH_S: the UI would show metrics too late
])
def test_the_flush_interval_keeps_the_fleet_within_half_the_api(jobs, min_count, rps, flush):
    assert client.flush_seconds(jobs, fleet(min_count, rps)) == flush


def test_the_flush_interval_is_the_shortest_that_fits():
    api = fleet(2, 120)      # half: 120 requests/s
    assert [client.flush_seconds(jobs, api) for jobs in (120, 121, 240, 241, 360)] == [1, 2, 2, 3, 3]


@pytest.mark.parametrize("interruption, retries", [(180, 7), (254, 7), (255, 8), (2, 1), (6, 2)])
def test_retries_back_off_past_the_interruption(interruption, retries):
    assert client.retries_for(interruption) == retries
    # urllib3 sleeps factor * 2^(n-1) before the n-th retry: together at least the interruption
    assert sum(client.BACKOFF_FACTOR * 2 ** (n - 1) for n in range(1, retries + 1)) >= interruption


@pytest.mark.parametrize("p99_ms, idle, timeout", [(1_000, 120, 30), (5_000, 120, 50), (60_000, 120, 120)])
def test_the_request_timeout_follows_the_p99_alarm_within_the_load_balancer(p99_ms, idle, timeout):
    assert client.request_timeout_s(p99_ms, idle) == timeout


def test_plan_json_has_a_top_level_client_environment_of_strings(capsys):
    assert main(["plan", "prod", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    variables = document["client_environment"]
    assert variables["MLFLOW_ENABLE_ASYNC_LOGGING"] == "true"
    assert int(variables["MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS"]) >= 1
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items())
    assert "log_batch every" in document["client_environment_reason"]


def test_the_stack_exports_it_with_the_tracking_uri():
    tracking_uri, *_, exported = render("prod")[3]
    assert tracking_uri.startswith("http://")
    assert exported == {**plan(environment("prod")).client_environment, "MLFLOW_TRACKING_URI": tracking_uri}

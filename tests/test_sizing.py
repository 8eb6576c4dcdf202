"""Sizing, storage, replicas, fleets, connection budget and cost: tables of inputs and expected decisions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.planning import catalogue
from infra.planning.connections import pool_for, memory_ceiling, plan_connection_budget
from infra.planning.cost import instance_hourly
from infra.planning.demand import Coefficients, coefficients, demand
from infra.spec import SpecInvalid
from infra.planning.server_command import SERVER_STACK, STACK_REASON, nofile_limit
from infra.planning.sizing import (
    DatabaseNeed,
    choose_database_class,
    plan_fleet,
    plan_replicas,
    plan_storage,
)
from infra.spec.model import Fleet, Workload

ROOT = Path(__file__).resolve().parent.parent

K = coefficients()
PRICES = instance_hourly("us-east-1")


def need(vcpu=0.1, memory=4.0, write=0.1):
    return DatabaseNeed(vcpu, memory, write, "test need")


@pytest.mark.parametrize("tier,vcpu,memory,write,expected", [
    ("development", 0.1, 4, 0.1, "db.t4g.medium"),     # under the 20% burst baseline of 2 vCPU
    ("development", 0.5, 4, 0.1, "db.t4g.large"),      # above t4g.medium's 20% baseline, under t4g.large's 30%
    ("development", 0.7, 4, 0.1, "db.m7g.large"),      # above every 2-vCPU burst baseline: it would throttle
    ("development", 0.5, 10, 0.1, "db.r7g.large"),
    ("staging", 0.1, 4, 0.1, "db.m7g.large"),          # no burstable outside development
    ("staging", 3.0, 20, 0.1, "db.r7g.xlarge"),        # 4 vCPU first; then the memory: r7g beats m7g.2xlarge
    ("production", 0.1, 4, 0.1, "db.r7g.large"),       # production is memory optimised
    ("production", 0.1, 40, 0.1, "db.r7g.2xlarge"),
    ("production", 5.0, 4, 0.1, "db.r7g.2xlarge"),     # 8 vCPU for 5 needed
    ("production", 0.1, 4, 60, "db.r7g.xlarge"),       # 60 MiB/s fits in half of a 1,250 Mbps EBS baseline
    ("production", 0.1, 4, 100, "db.r7g.2xlarge"),     # 100 MiB/s needs half of a 2,500 Mbps baseline
])
def test_database_class_choice(tier, vcpu, memory, write, expected):
    chosen = choose_database_class(need(vcpu, memory, write), tier, None, PRICES, "f.yaml")
    assert chosen.instance_class == expected
    assert tier in chosen.reason and "test need" in chosen.reason


def test_burstable_reason_names_its_baseline():
    chosen = choose_database_class(need(0.1, 4), "development", None, PRICES, "f.yaml")
    assert "20% CPU baseline" in chosen.reason


def test_override_class_is_used_and_warned_when_too_small():
    chosen = choose_database_class(need(10, 100), "production", "db.r7g.large", PRICES, "f.yaml")
    assert chosen.instance_class == "db.r7g.large" and chosen.overridden
    assert chosen.warnings and "below the planned need" in chosen.warnings[0]


def test_load_beyond_the_catalogue_is_an_error():
    with pytest.raises(SpecInvalid) as exc:
        choose_database_class(need(100, 100), "production", None, PRICES, "stacks/x.yaml")
    assert str(exc.value).startswith("stacks/x.yaml: workload: needs 100.0 vCPU")


def workload(**kw):
    base = dict(concurrent_training_jobs=20, logging_calls_per_job_per_minute=10, metrics_per_call=10,
                params_per_run=20, tags_per_run=5, runs_per_day=500, retention_days=30, concurrent_ui_users=5)
    return Workload(**{**base, **kw})


def test_demand_arithmetic():
    d = demand(workload(), K)
    assert d.logging_requests_per_s == pytest.approx(20 * 10 / 60)
    assert d.metric_rows_per_s == pytest.approx(20 * 10 / 60 * 10)
    assert d.run_requests_per_s == pytest.approx(500 / 86_400 * 3)
    assert d.param_tag_rows_per_s == pytest.approx(500 / 86_400 * 25)
    assert d.metric_rows_per_day == pytest.approx(20 * 10 / 60 * 10 * 86_400)
    per_run = K.run_row_bytes + 20 * K.param_row_bytes + 5 * K.tag_row_bytes + 10 * K.latest_metric_row_bytes
    growth = (d.metric_rows_per_day * K.metric_row_bytes + 500 * per_run) / 1024**3
    assert d.storage_growth_gib_per_day == pytest.approx(growth)
    assert d.storage_at_retention_gib == pytest.approx(growth * 30)


def test_logging_hours_spread_runs_and_cut_daily_rows():
    full, half = demand(workload(), K), demand(workload(logging_hours_per_day=12), K)
    assert half.metric_rows_per_day == pytest.approx(full.metric_rows_per_day / 2)
    assert half.run_requests_per_s == pytest.approx(full.run_requests_per_s * 2)


@pytest.mark.parametrize("jobs,calls,metrics,retention,allocated,iops,provisioned", [
    (10, 6, 10, 30, 20, 3_000, False),          # tiny: the 20 GiB gp3 minimum
    (300, 12, 20, 180, 1_596, 12_000, True),    # prod-like: 30 days of growth + 25% free is above 400 GiB anyway
    (2_000, 60, 1, 1, 400, 12_000, True),       # many small commits: raised to 400 GiB to get more than 3,000 IOPS
])
def test_storage(jobs, calls, metrics, retention, allocated, iops, provisioned):
    d = demand(workload(concurrent_training_jobs=jobs, logging_calls_per_job_per_minute=calls,
                        metrics_per_call=metrics, retention_days=retention, runs_per_day=8000), K)
    s = plan_storage(d, retention, None, None, "f.yaml")
    assert (s.allocated_gib, s.iops, s.iops_provisioned) == (allocated, iops, provisioned)
    assert (s.allocated_gib >= 400) == provisioned
    assert s.max_allocated_gib >= max(s.allocated_gib, d.storage_at_retention_gib)
    if allocated == 400:
        assert "raised to 400 GiB" in s.reason


def test_storage_override_and_ceiling():
    d = demand(workload(), K)
    s = plan_storage(d, 30, 100, 300, "f.yaml")
    assert (s.allocated_gib, s.max_allocated_gib) == (100, 300)
    assert "set in the environment file" in s.reason


@pytest.mark.parametrize("ui_rps,tier,override,count", [
    (2, "development", None, 0),
    (2, "staging", None, 1),
    (2, "production", None, 1),
    (0, "production", None, 1),
    (250, "production", None, 3),     # 120 req/s per replica -> 3
    (10_000, "production", None, 5),  # capped
    (2, "production", 0, 0),
    (2, "development", 4, 4),
])
def test_replicas(ui_rps, tier, override, count):
    assert plan_replicas(ui_rps, tier, override, K).count == count


@pytest.mark.parametrize("role,rps,tier,compute,vcpu,memory,workers,min_count,max_count", [
    ("api", 1, "development", "ecs", 2, 4, 4, 1, 2),
    ("api", 60, "production", "ecs", 2, 4, 4, 2, 3),
    # 156 req/s per task at 7.68 ms (5.25 ms + 20 x 0.1215 ms, gunicorn sync calibrated by mlflow-infra bench;
    # was 9 -> 18 at 10.0 ms under uvicorn, 5 -> 10 at an estimated 5.4 ms)
    ("api", 1_000, "production", "ecs", 2, 4, 4, 7, 14),
    ("ui", 16, "production", "ecs", 1, 2, 2, 2, 3),
    ("ui", 100, "staging", "ecs", 1, 2, 2, 5, 10),            # 20 req/s per task at 30 ms
    ("ui", 16, "production", "ec2", 2, 4, 4, 2, 3),           # EC2: at least 2 vCPU (c7g.large)
])
def test_fleets(role, rps, tier, compute, vcpu, memory, workers, min_count, max_count):
    f = plan_fleet(role, rps, 20, tier, compute, Fleet(), K)
    assert (f.vcpu, f.memory_gib, f.workers, f.min_count, f.max_count) == (vcpu, memory, workers, min_count, max_count)
    assert (f.instance_type is not None) == (compute == "ec2")


def test_fleet_overrides():
    f = plan_fleet("api", 60, 20, "production", "ecs", Fleet(vcpu=4, memory_gib=8, workers=6, min_count=3, max_count=9), K)
    assert (f.vcpu, f.memory_gib, f.workers, f.min_count, f.max_count) == (4, 8, 6, 3, 9)


# no burst known: the minimum overflow (see test_overflow_covers_a_burst_of_every_client)
API_POOL, UI_POOL = pool_for("api"), pool_for("ui")


@pytest.mark.parametrize("api_max,ui_max,replicas,memory_gib,mode,proxy,max_connections", [
    # per task its workers' engines plus the server process's own 2: 3x(4x2x3 + 2) = 78 + 3x(2x2x4 + 2) = 54
    # + the single replica's UI reads falling back, 3 x (2x2x4 + 2 + 1 readiness) = 57 + reserve 17 = 206, x1.2
    (3, 3, 1, 32, "auto", False, 248),
    # two replicas: no fallback; 78 + 4x(2x2x4 + 2) = 72 + reserve 18 = 168, x1.2
    (3, 4, 2, 32, "auto", False, 202),
    (2, 2, 0, 4, "auto", False, 125),       # 52 + 36 + reserve 16 = 104, x1.2
    (1, 1, 0, 4, "auto", False, 100),       # floor of 100
    (40, 2, 0, 4, "auto", True, 450),       # 1,040 API connections > 450 the class holds
    (2, 2, 0, 4, "on", True, 450),          # asked for
])
def test_connection_budget(api_max, ui_max, replicas, memory_gib, mode, proxy, max_connections):
    b = plan_connection_budget(api_max=api_max, api_workers=4, api_pool=API_POOL, ui_max=ui_max, ui_workers=2, ui_pool=UI_POOL, replicas=replicas,
                               memory_bytes=memory_gib * 1024**3, proxy_mode=mode)
    assert b.rds_proxy == proxy
    assert b.max_connections == max_connections
    # two engines (tracking and model registry stores) per worker process
    assert b.engines_per_worker == 2
    assert b.api_connections == api_max * (4 * 2 * API_POOL.per_worker + 2)
    assert b.ui_fallback_connections == (b.ui_replica_connections if replicas == 1 else 0)
    if proxy:
        assert b.max_connections * b.proxy.max_connections_percent // 100 + b.reserve <= b.max_connections
    else:
        assert b.fleet_connections + b.reserve <= b.max_connections


@pytest.mark.parametrize("role,clients,workers,at_once,overflow", [
    ("api", 0, 4, 1, 1),        # no burst known: the minimum (the margin above log_batch's two)
    ("api", 32, 4, 1, 1),       # gunicorn sync: one request per worker whatever the clients, two connections
    ("api", 32, 4, 40, 14),     # a worker that runs 40 at once: 8 clients per worker, two connections each
    ("api", 300, 8, 40, 74),    # 38 per worker: 76 connections
    ("api", 2000, 8, 40, 78),   # capped at the worker's 40 request threads x 2
    ("ui", 40, 4, 40, 5),       # people, not a sweep: a lower cap
    ("ui", 3, 2, 40, 2),
])
def test_overflow_covers_a_burst_of_every_client(role, clients, workers, at_once, overflow):
    from infra.planning.connections import pool_for

    pool = pool_for(role, clients, workers, requests_per_worker=at_once)
    assert (pool.pool_size, pool.max_overflow) == (2, overflow)


def test_basic_auth_adds_an_engine_per_worker_on_the_primary_only():
    b = plan_connection_budget(api_max=2, api_workers=4, api_pool=API_POOL, ui_max=2, ui_workers=2, ui_pool=UI_POOL, replicas=1,
                               memory_bytes=32 * 1024**3, proxy_mode="auto", auth="basic")
    assert b.engines_per_worker == 3
    # 3 engines per worker on the primary, plus the server process's 2 store engines and the one its admin
    # bootstrap keeps; the auth store opens nothing on the replica, so replicas see 2 engines per worker,
    # the process's 2 and a readiness check per task
    assert b.api_connections == 2 * (4 * 3 * 3 + 2 + 1) and b.ui_replica_connections == 2 * (2 * 2 * 4 + 2 + 1)


def test_budget_refuses_proxy_off_when_it_cannot_fit():
    with pytest.raises(SpecInvalid) as exc:
        plan_connection_budget(api_max=40, api_workers=4, api_pool=API_POOL, ui_max=2, ui_workers=2, ui_pool=UI_POOL, replicas=0,
                               memory_bytes=4 * 1024**3, proxy_mode="off", source_file="s.yaml", instance_class="db.t4g.medium")
    assert str(exc.value).startswith("s.yaml: database.rds_proxy: 'off' is not allowed for this plan")


@pytest.mark.parametrize("memory_gib,ceiling", [(1, 112), (4, 450), (32, 3_604), (512, 5_000)])
def test_memory_ceiling_matches_rds_default(memory_gib, ceiling):
    assert memory_ceiling(memory_gib * 1024**3) == ceiling


@pytest.mark.parametrize("workers,per_worker,limit", [(4, 5, 65_536), (64, 20, 65_536), (200, 100, 262_144)])
def test_nofile(workers, per_worker, limit):
    assert nofile_limit(workers, per_worker) == limit


def test_catalogue_data_is_consistent():
    prices = instance_hourly("us-east-1")
    for cls in catalogue.instance_classes():
        assert cls.name in prices, f"{cls.name} has no price"
        assert (cls.baseline_cpu_percent is not None) == cls.burstable
    for row in catalogue.ec2_instance_types():
        assert row["name"] in catalogue.price_table()["regions"]["us-east-1"]["ec2_hourly"]


def test_server_cpu_coefficients_are_the_committed_bench_calibration():
    # the planner sizes the API fleet from the calibration the committed bench measured on the planned
    # API server stack; a re-run of the bench that moves it must move measurements.yaml too
    fit = json.loads((ROOT / "bench" / "results" / "results.json").read_text())["calibration"]
    k = coefficients()
    assert k.server_cpu_s_per_logging_request == pytest.approx(fit["fixed_ms"] / 1000, rel=0.005)
    assert k.server_cpu_s_per_metric == pytest.approx(fit["per_metric_ms"] / 1000, rel=0.005)
    assert fit["variant"] == "planned-local" and fit["points"] == 16


def test_the_api_stack_reason_quotes_the_committed_server_stack_cell():
    results = json.loads((ROOT / "bench" / "results" / "results.json").read_text())
    cell = {r["variant"]: r for r in results["stacks"] if (r["clients"], r["metrics_per_call"]) == (32, 10)}
    planned, stock = cell["gunicorn sync (planned)"], cell["uvicorn (MLflow default)"]
    reason = STACK_REASON[SERVER_STACK["api"]]
    assert SERVER_STACK["api"] == "gunicorn-sync" and planned["errors"] == 0
    assert (f"{planned['metrics_per_s']:,.0f} metrics/s at p99 {planned['p99_ms']:,.0f} ms against uvicorn's "
            f"{stock['metrics_per_s']:,.0f} at p99 {stock['p99_ms']:,.0f} ms") in reason
    assert f"bench/results {results['meta']['date'][:10]}" in reason
    fit = results["calibration"]
    assert f"{fit['fixed_ms']:.2f} ms + {fit['per_metric_ms']:.4f} ms per metric" in reason


def test_coefficients_record_their_source():
    k: Coefficients = coefficients()
    assert k.source and k.recorded
    assert k.metric_row_bytes > 0 and k.db_cpu_s_per_metric_row > 0

"""Properties over random valid workloads: the budget always fits, more load never plans less, plans are deterministic."""

from __future__ import annotations

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from infra.spec import SpecInvalid
from infra.planning.plan import plan
from infra.spec.model import EnvironmentSpec

FIELDS = {
    # wide enough to cross every class, storage and fleet boundary; heavier loads are refused
    # with a message (beyond the catalogue or RDS's 64 TiB) and are filtered out below
    "concurrent_training_jobs": st.integers(1, 1_000),
    "logging_calls_per_job_per_minute": st.floats(0.1, 30, allow_nan=False),
    "metrics_per_call": st.integers(1, 200),
    "params_per_run": st.integers(0, 300),
    "tags_per_run": st.integers(0, 50),
    "runs_per_day": st.integers(1, 100_000),
    "retention_days": st.integers(1, 365),
    "concurrent_ui_users": st.integers(0, 2_000),
    "logging_hours_per_day": st.floats(1, 24, allow_nan=False),
}
workloads = st.fixed_dictionaries(FIELDS)
tiers = st.sampled_from(["development", "staging", "production"])
proxy_modes = st.sampled_from(["auto", "on"])


def spec_for(workload: dict, tier: str, proxy: str = "auto") -> EnvironmentSpec:
    return EnvironmentSpec.model_validate({
        "name": "prop", "tier": tier, "region": "us-east-1", "workload": workload,
        "placement": {"tracking_vpc": "new", "new_vpc": {"cidr": "10.60.0.0/20", "availability_zones": ["us-east-1a", "us-east-1b"]}},
        "database": {"rds_proxy": proxy}, "tags": {"owner": "t"}, "source_file": "prop.yaml",
    })


def try_plan(spec):
    try:
        return plan(spec)
    except SpecInvalid:
        return None  # beyond the catalogue or RDS's storage limit: refused with a message, never a bad plan


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workload=workloads, tier=tiers, proxy=proxy_modes)
def test_connection_budget_always_fits(workload, tier, proxy):
    p = try_plan(spec_for(workload, tier, proxy))
    assume(p is not None)
    b = p.connection_budget
    params = {x.name: x.value for x in p.database.primary_parameters}
    assert int(params["max_connections"]) == b.max_connections
    if b.rds_proxy:
        assert b.max_connections * b.proxy.max_connections_percent // 100 + b.reserve <= b.max_connections
    else:
        assert b.fleet_connections + b.reserve <= b.max_connections
    assert b.ui_replica_connections + b.reserve <= b.max_connections
    assert b.max_connections <= b.memory_ceiling
    assert b.headroom >= 0


@st.composite
def more_load(draw):
    """A workload and a second one with every load field at least as large. The logging hours stay
    equal: more hours spread the same runs thinner (less peak) but log more rows per day (more storage)."""
    small = draw(workloads)
    large = {}
    for key, value in small.items():
        if key == "logging_hours_per_day":
            large[key] = value
        elif isinstance(value, int):
            upper = {"metrics_per_call": 200, "retention_days": 365}.get(key, value * 3 + 10)
            large[key] = draw(st.integers(value, max(value, upper)))
        else:
            large[key] = draw(st.floats(value, value * 3, allow_nan=False))
    return small, large


def _fleet(f):
    return (f.min_count, f.max_count)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(pair=more_load(), tier=tiers)
def test_more_load_never_plans_less(pair, tier):
    small, large = pair
    p_small, p_large = try_plan(spec_for(small, tier)), try_plan(spec_for(large, tier))
    assume(p_large is not None)
    assert p_small is not None, "a lighter workload was refused while a heavier one was planned"
    a, b = p_small.database.instance, p_large.database.instance
    assert b.vcpu >= a.vcpu and b.memory_gib >= a.memory_gib, (a.instance_class, b.instance_class)
    assert p_large.database.replicas.count >= p_small.database.replicas.count
    assert p_large.database.storage.max_allocated_gib >= p_small.database.storage.max_allocated_gib
    engines = (p_small.database.engine.engine, p_large.database.engine.engine)
    assert engines != ("aurora", "rds"), "more load went back from Aurora to RDS"
    for role in ("api", "ui"):
        fs, fl = getattr(p_small.tracking, role), getattr(p_large.tracking, role)
        if role == "ui" and engines == ("rds", "aurora"):
            continue  # RDS rounds the UI up to a multiple of its replicas (one service each); Aurora has one service
        assert fl.min_count >= fs.min_count and fl.max_count >= fs.max_count, role


@settings(max_examples=60, deadline=None)
@given(workload=workloads, tier=tiers)
def test_plan_is_deterministic(workload, tier):
    first = try_plan(spec_for(workload, tier))
    assume(first is not None)
    assert first.to_json() == plan(spec_for(workload, tier)).to_json()

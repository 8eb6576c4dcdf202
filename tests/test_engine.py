"""The engine decision: RDS for PostgreSQL with instance replicas until the workload outgrows them,
then Aurora PostgreSQL; each trigger on its own, the explicit choices, the cheaper Aurora storage
configuration, and what the plan does with an Aurora cluster (one UI service on the reader endpoint)."""

from __future__ import annotations

import json

import pytest

from infra.cli import main
from infra.planning import catalogue
from infra.planning.engine import (EngineCosts, aurora_class, aurora_io_per_month, aurora_readers, decide, engine_costs,
                                   triggers)
from infra.planning.plan import plan
from infra.planning.sizing import StoragePlan
from helpers import SHIPPED, environment, variant

QUIET = {"readers_by_load": 2, "need_iops": 32_000, "need_mibps": 2_000, "storage_at_retention_gib": 21_845,
         "max_failover_s": 120}
COSTS = EngineCosts(rds=1_000, aurora_standard=900, aurora_io_optimized=950, aurora_io_requests_per_month=1e8, detail="")


def test_at_each_limit_nothing_outgrows_rds():
    assert triggers(**QUIET) == ()
    assert triggers(**{**QUIET, "max_failover_s": None}) == ()


@pytest.mark.parametrize("change, fragment", [
    ({"readers_by_load": 3}, "the UI's reads need 3 readers: more than 2 instance replicas"),
    ({"need_iops": 32_001}, "writes need 32,001 IOPS"),
    ({"need_mibps": 2_001}, "2,001 MiB/s, more than half of gp3's 64,000 IOPS / 4,000 MiB/s"),
    ({"storage_at_retention_gib": 21_846}, "21,846 GiB at retention (x1.5 headroom) is more than half of RDS's 65,536 GiB"),
    ({"max_failover_s": 119}, "database.max_failover_seconds 119 is below RDS Multi-AZ's documented 60-120 s"),
])
def test_each_trigger_alone_outgrows_rds(change, fragment):
    found = triggers(**{**QUIET, **change})
    assert len(found) == 1 and fragment in found[0]


@pytest.mark.parametrize("requested, found, engine, warned", [
    ("auto", (), "rds", False),
    ("auto", ("readers",), "aurora", False),
    ("rds", ("readers",), "rds", True),     # kept, and warned about what outgrows it
    ("rds", (), "rds", False),
    ("aurora", (), "aurora", False),
])
def test_the_decision(requested, found, engine, warned):
    d = decide(requested, found, COSTS, "db.r7g.large", (1, 2))
    assert (d.engine, bool(d.warnings)) == (engine, warned)
    assert "RDS $1,000/month, Aurora Standard $900, I/O-Optimized $950" in d.reason
    assert (d.readers_min, d.readers_max, d.aurora_instance_class) == (1, 2, "db.r7g.large")


def test_auto_names_what_decided_and_an_explicit_choice_says_so():
    assert decide("auto", ("the UI's reads need 4 readers",), COSTS, "db.r7g.large", (4, 8)).reason.startswith(
        "the UI's reads need 4 readers; Standard storage (the cheaper for this I/O), 4-8 readers")
    assert decide("aurora", (), COSTS, "db.r7g.large", (1, 2)).reason.startswith(
        "set in the environment file (database.engine); nothing in the workload requires it; Standard")
    cheaper_rds = EngineCosts(rds=500, aurora_standard=900, aurora_io_optimized=950, aurora_io_requests_per_month=0, detail="")
    assert "RDS with instance replicas would cost $400/month less" in decide("aurora", (), cheaper_rds, "db.r7g.large", (1, 2)).reason
    assert "Aurora Standard would cost $100/month less" in decide("auto", (), COSTS, "db.r7g.large", (1, 2)).reason


def test_io_optimized_is_taken_when_it_is_the_cheaper():
    heavy_io = EngineCosts(rds=5_000, aurora_standard=4_000, aurora_io_optimized=3_500, aurora_io_requests_per_month=1e10, detail="")
    assert decide("aurora", (), heavy_io, "db.r7g.large", (1, 2)).aurora_storage_type == "aurora-iopt1"
    assert decide("aurora", (), COSTS, "db.r7g.large", (1, 2)).aurora_storage_type == ""


@pytest.mark.parametrize("rds_class, aurora", [
    ("db.r7g.2xlarge", "db.r7g.2xlarge"),   # offered: the same
    ("db.t4g.medium", "db.t4g.medium"),
    ("db.t4g.micro", "db.t4g.medium"),      # no micro or small on Aurora
    ("db.m7g.large", "db.r7g.large"),       # no M classes: the R class of the same size
    ("db.t4g.xlarge", "db.r7g.xlarge"),
    ("db.m7g.16xlarge", "db.r7g.16xlarge"),
])
def test_aurora_runs_the_nearest_class_it_offers(rds_class, aurora):
    chosen = aurora_class(catalogue.instance_class(rds_class))
    assert chosen.name == aurora and chosen.name in catalogue.aurora().classes


@pytest.mark.parametrize("tier_minimum, by_load, multi_az, bounds", [
    (0, 0, False, (0, 0)),     # development: the writer alone
    (0, 0, True, (1, 2)),      # a failover target in a second zone
    (1, 0, True, (1, 2)),
    (1, 4, True, (4, 8)),      # twice the load for bursts
    (1, 9, True, (9, 15)),     # within Aurora's 15 readers
    (1, 40, True, (15, 15)),
])
def test_reader_autoscaling_bounds(tier_minimum, by_load, multi_az, bounds):
    assert aurora_readers(tier_minimum, by_load, multi_az) == bounds


def test_costs_side_by_side():
    prices = {"rds_instance_hourly": {"db.r7g.large": 0.2}, "aurora_instance_hourly": {"db.r7g.large": 0.3},
              "rds_gp3_gib_month": 0.1, "rds_gp3_iops_month": 0.02, "rds_gp3_mibps_month": 0.08,
              "aurora_storage_gib_month": 0.1, "aurora_io_optimized_storage_gib_month": 0.2, "aurora_io_per_million": 0.2,
              "aurora_io_optimized_instance_factor": 1.5}
    storage = StoragePlan(100, 200, 3_000, 125, False, 100, 5, "")
    costs = engine_costs(prices=prices, hours=100, rds_class="db.r7g.large", multi_az=True, replicas=1, storage=storage,
                         aurora_instance_class="db.r7g.large", aurora_instances=2, data_gib=50, io_per_month=10e6)
    assert costs.rds == pytest.approx(0.2 * 100 * 3 + 100 * 0.1 * 3)            # primary, standby, replica + gp3 each
    assert costs.aurora_standard == pytest.approx(0.3 * 100 * 2 + 50 * 0.1 + 10 * 0.2)
    assert costs.aurora_io_optimized == pytest.approx(0.3 * 100 * 2 * 1.5 + 50 * 0.2)


def test_write_ios_are_4_kib_units_but_at_least_one_per_commit():
    assert aurora_io_per_month(10, 4096 * 100, 24) == pytest.approx(100 * 86_400 * 365 / 12)
    assert aurora_io_per_month(10, 100, 12) == pytest.approx(10 * 43_200 * 365 / 12)


def test_shipped_environments_stay_on_rds_and_show_both_costs():
    for env in SHIPPED:
        e = plan(environment(env)).database.engine
        assert (e.requested, e.engine, e.triggers) == ("auto", "rds", ())
        assert e.costs.rds > 0 and e.costs.aurora_standard > 0 and e.costs.aurora_io_optimized > 0


def test_a_ui_heavy_production_plans_aurora_with_one_ui_service_on_the_reader_endpoint():
    p = plan(variant("prod", **{"workload.concurrent_ui_users": 1_000}))
    e = p.database.engine
    assert e.engine == "aurora" and "the UI's reads need" in e.reason and e.readers_min >= 3
    assert p.database.replicas.count == e.readers_min
    assert p.tracking.ui.services == 1 and not p.tracking.ui.read_fallback and p.tracking.ui.reads_from_replica
    assert "reader endpoint" in p.tracking.ui_reads_from_replica.reason
    assert [line.component for line in p.cost.lines[:2]] == ["database writer and readers", "database storage and I/O"]
    chosen = e.costs.aurora_io_optimized if e.aurora_storage_type else e.costs.aurora_standard
    assert sum(line.monthly_usd for line in p.cost.lines[:2]) == pytest.approx(chosen, abs=0.02)


def test_plan_json_carries_the_decision(capsys):
    assert main(["plan", "prod", "--json"]) == 0
    engine = json.loads(capsys.readouterr().out)["database"]["engine"]
    assert engine["engine"] == "rds" and engine["requested"] == "auto"
    assert set(engine["costs"]) == {"rds", "aurora_standard", "aurora_io_optimized", "aurora_io_requests_per_month", "detail"}


def test_the_ui_heavy_example_plans_aurora_renders_it_and_passes_the_policies():
    from infra import load_environment
    from infra.aws.mocks import render_stack
    from infra.policy.check import policy_config, stack_resources
    from infra.policy.rules import PolicyConfig, evaluate
    from helpers import ROOT

    path = ROOT / "examples" / "complete" / "environment-ui-heavy.yaml"
    spec = load_environment(path, path.parent)
    p = plan(spec)
    assert (p.database.engine.engine, p.database.engine.readers_min, p.database.engine.readers_max) == ("aurora", 4, 8)
    mocks, *_ = render_stack(spec)
    members = [m.name for m in mocks.of_type("aws:rds/clusterInstance:ClusterInstance")]
    assert len(members) == 6 and not mocks.of_type("aws:rds/instance:Instance"), members  # writer, 4 readers, the secondary's
    assert mocks.one("aws:rds/globalCluster:GlobalCluster") and mocks.one("pulumi:providers:aws", "-db-secondary-region").inputs["region"] == "us-west-2"
    target = next(t.inputs for t in mocks.of_type("aws:appautoscaling/target:Target") if t.inputs["serviceNamespace"] == "rds")
    assert (target["minCapacity"], target["maxCapacity"]) == (4, 8)
    violations = evaluate(stack_resources(spec), PolicyConfig.from_dict(policy_config(spec, p)))
    assert [v.message for v in violations if v.rule.mandatory] == []

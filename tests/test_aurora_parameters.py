"""Aurora PostgreSQL's two parameter groups: each tuned parameter in the group Aurora takes it in
(cluster or instance), the ones Aurora does not take left out with their reason."""

from __future__ import annotations

from infra.planning.aurora_parameters import LEVELS, aurora_parameters, left_to_aurora
from infra.planning.parameters import REGISTRY, ParameterInputs
from infra.planning.plan import plan
from helpers import environment, variant

INPUTS = ParameterInputs(memory_bytes=64 * 2**30, vcpu=8, max_connections=500, engine_major=17)


def test_every_registered_parameter_has_an_aurora_decision():
    assert {d.name for d in REGISTRY} == set(LEVELS)
    assert all(reason for level, reason in LEVELS.values() if level is None), "a parameter left out says why"


def test_cluster_and_instance_groups_split_the_set():
    cluster = {p.name for p in aurora_parameters("cluster", INPUTS)}
    instance = {p.name for p in aurora_parameters("instance", INPUTS)}
    assert not cluster & instance
    # cluster-only on Aurora (its parameter reference lists them in the cluster table alone)
    assert {"autovacuum_naptime", "autovacuum_max_workers", "autovacuum_work_mem", "rds.force_ssl",
            "synchronous_commit", "log_autovacuum_min_duration"} <= cluster
    assert {"max_connections", "work_mem", "shared_preload_libraries", "log_min_duration_statement"} <= instance
    absent = {"checkpoint_timeout", "max_wal_size", "min_wal_size", "checkpoint_completion_target", "fsync",
              "full_page_writes", "shared_buffers", "hot_standby_feedback"}
    assert not absent & (cluster | instance)
    assert absent <= {name for name, _ in left_to_aurora(INPUTS)}


def test_an_aurora_plan_carries_both_groups_and_an_rds_plan_neither_extra():
    rds = plan(environment("prod")).database
    assert rds.cluster_parameters == () and rds.left_to_engine == ()
    assert "checkpoint_timeout" in {p.name for p in rds.primary_parameters}
    aurora = plan(variant("prod", **{"database.engine": "aurora"})).database
    assert {p.name for p in aurora.cluster_parameters} == {n for n, (lvl, _) in LEVELS.items() if lvl == "cluster"}
    assert "max_connections" in {p.name for p in aurora.primary_parameters}
    assert "checkpoint_timeout" not in {p.name for p in aurora.primary_parameters}
    assert aurora.replica_parameters == ()

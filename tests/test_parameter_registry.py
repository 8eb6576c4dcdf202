"""The parameter registry is complete: every parameter declares its unit, static flag and nodes, has a
reason in every shipped environment, and the parameter groups hold exactly the registered parameters."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from helpers import SHIPPED, environment
from infra import plan
from infra.planning import parameters as p
from infra.planning.parameters import (BOTH, PRIMARY, REGISTRY, REPLICA, UNITS, ParameterInputs, available_arguments,
                                       primary_parameters, registered, replica_parameters)

ENVIRONMENTS = [*SHIPPED, "local"]
KB = 1024
GIB = 1024**3


@pytest.fixture(scope="module")
def shipped_inputs() -> dict[str, ParameterInputs]:
    return {env: plan(environment(env)).database.parameter_inputs for env in ENVIRONMENTS}


def test_no_two_registrations_share_a_name():
    assert [name for name, n in Counter(d.name for d in REGISTRY).items() if n > 1] == []


@pytest.mark.parametrize("definition", REGISTRY, ids=lambda d: d.name)
def test_every_registration_declares_unit_static_flag_and_nodes(definition):
    assert definition.unit in UNITS
    assert isinstance(definition.static, bool)
    assert definition.nodes in (PRIMARY, REPLICA, BOTH)
    assert isinstance(definition.min_engine_major, int)
    # every argument is an input field or a derived value, so it resolves by name
    assert set(definition.arguments) <= set(available_arguments(ParameterInputs(GIB, 2, 100, 17)))


@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("durability", ["strict", "relaxed"])
def test_every_parameter_has_a_one_line_reason_in_every_shipped_environment(shipped_inputs, env, durability):
    inputs = dataclasses.replace(shipped_inputs[env], durability=durability)
    available = available_arguments(inputs)
    for definition in REGISTRY:
        param = definition.evaluate(available)
        assert param.reason.strip() and "\n" not in param.reason, f"{env}: {definition.name} has no one-line reason"
        assert param.value != "", f"{env}: {definition.name} has no value"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_parameter_groups_are_the_registry_in_order(shipped_inputs, env):
    inputs = shipped_inputs[env]
    for node, params in (("primary", primary_parameters(inputs)), ("replica", replica_parameters(inputs))):
        expected = [d for d in REGISTRY if d.applies_to(node, inputs.engine_major)]
        assert [x.name for x in params] == [d.name for d in expected]
        assert [(x.unit, x.apply_method) for x in params] == [(d.unit, d.apply_method) for d in expected]


@pytest.mark.parametrize("name,nodes,min_major", [
    ("shared_buffers", BOTH, 0),
    ("max_connections", BOTH, 0),           # a hot standby needs at least the primary's
    ("synchronous_commit", PRIMARY, 0),      # a replica acknowledges no commits
    ("hot_standby_feedback", REPLICA, 0),
    ("max_standby_streaming_delay", REPLICA, 0),
    ("jit", BOTH, 12),
    ("wal_compression", BOTH, 15),           # lz4 from PG 15
])
def test_nodes_and_engine_gates(name, nodes, min_major):
    definition = registered(name)
    assert (definition.nodes, definition.min_engine_major) == (nodes, min_major)


@pytest.mark.parametrize("major,names", [
    (11, []), (12, ["jit"]), (14, ["jit"]), (15, ["jit", "wal_compression"]), (17, ["jit", "wal_compression"]),
])
def test_gated_parameters_appear_from_their_major(major, names):
    inputs = ParameterInputs(memory_bytes=4 * GIB, vcpu=2, max_connections=100, engine_major=major)
    for params in (primary_parameters(inputs), replica_parameters(inputs)):
        assert [x.name for x in params if x.name in ("jit", "wal_compression")] == names


def test_replica_is_the_primary_without_synchronous_commit_plus_standby_settings():
    inputs = ParameterInputs(memory_bytes=16 * GIB, vcpu=4, max_connections=300, engine_major=17)
    replica = replica_parameters(inputs)
    assert replica[:-2] == [x for x in primary_parameters(inputs) if x.name != "synchronous_commit"]
    assert [x.name for x in replica[-2:]] == ["hot_standby_feedback", "max_standby_streaming_delay"]


def test_static_parameters_are_exactly_these():
    assert {d.name for d in REGISTRY if d.static} == {
        "shared_buffers", "wal_buffers", "max_connections", "max_worker_processes", "shared_preload_libraries",
        "pg_stat_statements.max", "autovacuum_max_workers",
    }
    # the one whose flag differs from PostgreSQL 18's pg_settings.context says why
    assert [d.name for d in REGISTRY if d.static_exception] == ["autovacuum_max_workers"]


def test_decorator_registers_in_order_and_resolves_arguments_by_name(monkeypatch):
    monkeypatch.setattr(p, "REGISTRY", [])

    @p.parameter("a_plain", unit="", static=True, nodes=BOTH)
    def plain() -> p.Setting:
        return 7, "fixed"

    @p.parameter("a_derived", unit="kB", static=False, nodes=PRIMARY, min_engine_major=15)
    def derived(memory_bytes: int, max_worker_processes: int, durability: str) -> p.Setting:
        return memory_bytes // KB // max_worker_processes, f"per worker ({durability})"

    assert plain() == (7, "fixed"), "the decorator returns the function unchanged"
    inputs = ParameterInputs(memory_bytes=8 * 1024 * KB, vcpu=2, max_connections=10, engine_major=15,
                             durability="relaxed")
    assert [(x.name, x.value, x.unit, x.apply_method, x.reason) for x in primary_parameters(inputs)] == [
        ("a_plain", "7", "", "pending-reboot", "fixed"),
        ("a_derived", "1024", "kB", "immediate", "per worker (relaxed)"),   # 8 MiB / 8 workers (below 4 vCPUs)
    ]
    assert [x.name for x in replica_parameters(inputs)] == ["a_plain"]
    assert [x.name for x in primary_parameters(dataclasses.replace(inputs, engine_major=14))] == ["a_plain"]



@pytest.mark.parametrize("value,text", [(True, "1"), (False, "0"), (0.02, "0.02"), (1.1, "1.1"), (10_000, "10000"),
                                        ("lz4", "lz4")])
def test_values_are_spelled_as_postgresql_reads_them(value, text):
    assert p._text(value) == text

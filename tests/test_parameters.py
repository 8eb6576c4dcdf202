"""PostgreSQL parameters, PGTune style: inputs in, expected settings out."""

from __future__ import annotations

import pytest

from infra.planning import parameters as p
from infra.planning.parameters import ParameterInputs, by_name, primary_parameters, replica_parameters

GIB = 1024**3


@pytest.mark.parametrize("memory_gib,pages", [(4, 131_072), (16, 524_288), (32, 1_048_576), (512, 16_777_216)])
def test_shared_buffers_is_a_quarter_of_ram_in_8k_pages(memory_gib, pages):
    assert p.shared_buffers_pages(memory_gib * GIB) == pages


@pytest.mark.parametrize("memory_gib,pages", [(4, 393_216), (16, 1_572_864)])
def test_effective_cache_size_is_three_quarters(memory_gib, pages):
    assert p.effective_cache_size_pages(memory_gib * GIB) == pages


@pytest.mark.parametrize("memory_gib,kb", [
    (4, 262_144),         # 4 GiB / 16 = 256 MiB
    (16, 1_048_576),      # 1 GiB
    (32, 2_097_152),      # 2 GiB cap reached
    (256, 2_097_152),     # capped at 2 GiB
])
def test_maintenance_work_mem(memory_gib, kb):
    assert p.maintenance_work_mem_kb(memory_gib * GIB) == kb


@pytest.mark.parametrize("memory_gib,workers,kb", [
    (4, 3, 87_381),        # 256 MiB / 3
    (32, 3, 699_050),      # 2 GiB / 3
    (512, 3, 1_048_576),   # 1 GiB per worker cap
    (1, 3, 65_536),        # 64 MiB floor
])
def test_autovacuum_work_mem(memory_gib, workers, kb):
    assert p.autovacuum_work_mem_kb(memory_gib * GIB, workers) == kb


@pytest.mark.parametrize("shared_pages,wal_pages", [
    (131_072, 2_048),   # 1 GiB shared_buffers: 3% is 30.7 MiB, capped at one 16 MiB segment
    (16_384, 491),      # 128 MiB: 3% = 3.84 MiB = 491 pages
    (64, 4),            # 512 kB: 3% = 15 kB, floor 32 kB = 4 pages
    (65_536, 2_048),    # 512 MiB: 15.4 MiB is within 14-16 MiB, rounded up to a full segment
])
def test_wal_buffers(shared_pages, wal_pages):
    assert p.wal_buffers_pages(shared_pages) == wal_pages


@pytest.mark.parametrize("memory_gib,max_conn,workers,kb", [
    (32, 122, 4, 66_576),      # 24 GiB / (126 x 3)
    (4, 100, 8, 9_709),        # 3 GiB / (108 x 3)
    (4, 3_000, 8, 4_096),      # floor 4 MB
])
def test_work_mem(memory_gib, max_conn, workers, kb):
    assert p.work_mem_kb(memory_gib * GIB, max_conn, workers) == kb


@pytest.mark.parametrize("vcpu,workers,gather,autovac", [
    (2, 8, 0, 3), (4, 4, 2, 3), (8, 8, 4, 3), (16, 16, 4, 4), (64, 64, 4, 10),
])
def test_cpu_derived(vcpu, workers, gather, autovac):
    assert p.max_worker_processes(vcpu) == workers
    assert p.max_parallel_workers_per_gather(vcpu) == gather
    assert p.autovacuum_max_workers(vcpu) == autovac


@pytest.mark.parametrize("wal_mib_s,max_mb,min_mb", [(0.5, 8_192, 2_048), (10, 18_000, 2_048), (100, 180_000, 2_048)])
def test_wal_sizes(wal_mib_s, max_mb, min_mb):
    assert p.max_wal_size_mb(wal_mib_s) == max_mb
    assert p.min_wal_size_mb(max_mb) == min_mb


BASE = ParameterInputs(memory_bytes=32 * GIB, vcpu=4, max_connections=200, engine_major=17)


def test_every_required_parameter_is_set_with_a_reason_and_apply_method():
    required = {
        "shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "autovacuum_work_mem",
        "wal_buffers", "min_wal_size", "max_wal_size", "checkpoint_timeout", "checkpoint_completion_target",
        "random_page_cost", "effective_io_concurrency", "max_connections", "shared_preload_libraries",
        "pg_stat_statements.track", "track_io_timing", "log_min_duration_statement",
        "idle_in_transaction_session_timeout", "autovacuum_max_workers", "autovacuum_vacuum_scale_factor",
        "synchronous_commit", "rds.force_ssl", "fsync", "full_page_writes",
    }
    params = by_name(primary_parameters(BASE))
    assert required <= set(params)
    for param in params.values():
        assert param.reason and param.apply_method in ("immediate", "pending-reboot")


@pytest.mark.parametrize("name,method", [
    ("shared_buffers", "pending-reboot"), ("max_connections", "pending-reboot"),
    ("shared_preload_libraries", "pending-reboot"), ("wal_buffers", "pending-reboot"),
    ("autovacuum_max_workers", "pending-reboot"), ("max_worker_processes", "pending-reboot"),
    ("work_mem", "immediate"), ("effective_cache_size", "immediate"), ("synchronous_commit", "immediate"),
    ("rds.force_ssl", "immediate"), ("checkpoint_timeout", "immediate"), ("max_wal_size", "immediate"),
])
def test_static_parameters_wait_for_a_reboot(name, method):
    assert by_name(primary_parameters(BASE))[name].apply_method == method


def test_durability_controls_synchronous_commit_only():
    strict = by_name(primary_parameters(BASE))
    relaxed = by_name(primary_parameters(ParameterInputs(**{**BASE.__dict__, "durability": "relaxed"})))
    assert strict["synchronous_commit"].value == "on"
    assert relaxed["synchronous_commit"].value == "off"
    assert "can lose" in relaxed["synchronous_commit"].reason
    for params in (strict, relaxed):
        assert params["fsync"].value == "1" and params["full_page_writes"].value == "1"
    assert {k: v.value for k, v in strict.items() if k != "synchronous_commit"} == \
           {k: v.value for k, v in relaxed.items() if k != "synchronous_commit"}


def test_pg_stat_statements_is_preloaded_and_ssl_forced():
    params = by_name(primary_parameters(BASE))
    assert "pg_stat_statements" in params["shared_preload_libraries"].value.split(",")
    assert params["rds.force_ssl"].value == "1"
    assert params["rds.force_ssl"].rds_only


@pytest.mark.parametrize("major,has_jit,has_lz4", [(11, False, False), (14, True, False), (17, True, True)])
def test_version_gated_parameters(major, has_jit, has_lz4):
    params = by_name(primary_parameters(ParameterInputs(**{**BASE.__dict__, "engine_major": major})))
    assert ("jit" in params) == has_jit
    assert ("wal_compression" in params) == has_lz4


def test_replica_adds_standby_settings_and_keeps_hot_standby_minimums():
    primary = by_name(primary_parameters(BASE))
    replica = by_name(replica_parameters(BASE))
    assert replica["hot_standby_feedback"].value == "1"
    assert replica["max_standby_streaming_delay"].value == "30000"
    # a hot standby refuses to start with fewer of these than its primary
    for name in ("max_connections", "max_worker_processes"):
        assert replica[name].value == primary[name].value
    assert "synchronous_commit" not in replica


def test_scaled_to_keeps_workload_choices():
    scaled = p.scaled_to(BASE, memory_bytes=2 * GIB, vcpu=2)
    params = by_name(primary_parameters(scaled))
    assert params["shared_buffers"].value == str(2 * GIB // 4 // 8192)
    assert params["max_connections"].value == "200"
    settings, skipped, adapted = p.server_settings(primary_parameters(scaled))
    assert skipped == ["rds.force_ssl"] and adapted == []
    assert "rds.force_ssl" not in settings and settings["shared_buffers"] == params["shared_buffers"].value


def test_local_build_without_lz4_gets_pglz():
    settings, _, adapted = p.server_settings(primary_parameters(BASE), lz4=False)
    assert settings["wal_compression"] == "pglz"
    assert adapted == ["wal_compression lz4 -> pglz (this PostgreSQL build has no lz4)"]

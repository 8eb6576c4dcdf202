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
    ("pg_stat_statements.max", "pending-reboot"), ("pg_stat_statements.track", "immediate"),
    ("autovacuum_naptime", "immediate"), ("jit", "immediate"), ("wal_compression", "immediate"),
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


# --- the whole set for a machine: inputs in, every setting out ---------------------------------------

PROD_LIKE = ParameterInputs(memory_bytes=64 * GIB, vcpu=8, max_connections=2_310, engine_major=17,
                            wal_mib_per_s=0.9388, log_min_duration_ms=500)
DEV_LIKE = ParameterInputs(memory_bytes=4 * GIB, vcpu=2, max_connections=173, engine_major=17,
                           wal_mib_per_s=0.0078, log_min_duration_ms=250)
BIG_WAL = ParameterInputs(memory_bytes=512 * GIB, vcpu=64, max_connections=5_000, engine_major=16,
                          wal_mib_per_s=25.0, log_min_duration_ms=1_000)


@pytest.mark.parametrize("inputs,expected", [
    (PROD_LIKE, {
        "shared_buffers": "2097152",          # 64 GiB / 4 / 8 kB
        "effective_cache_size": "6291456",    # 48 GiB / 8 kB
        "work_mem": "7237",                   # 48 GiB / ((2310 + 8) x 3) = 7,411,505 B
        "maintenance_work_mem": "2097152",    # 4 GiB capped at 2 GiB
        "autovacuum_work_mem": "1048576",     # 4 GiB / 3 workers capped at 1 GiB
        "wal_buffers": "2048",                # 3% of 16 GiB capped at 16 MiB
        "min_wal_size": "2048",
        "max_wal_size": "8192",               # 0.94 MiB/s x 900 s x 2 = 1,690 MB < 8 GB
        "max_connections": "2310",
        "max_worker_processes": "8",
        "max_parallel_workers": "8",
        "max_parallel_workers_per_gather": "4",
        "autovacuum_max_workers": "3",        # 8 // 8 + 2 = 3
        "log_min_duration_statement": "500",
    }),
    (DEV_LIKE, {
        "shared_buffers": "131072",
        "effective_cache_size": "393216",
        "work_mem": "5793",                   # 3 GiB / ((173 + 8) x 3) = 5,932,275 B
        "maintenance_work_mem": "262144",     # 256 MiB
        "autovacuum_work_mem": "87381",       # 256 MiB / 3
        "wal_buffers": "2048",                # 3% of 1 GiB = 30.7 MiB, capped at 16 MiB
        "min_wal_size": "2048",
        "max_wal_size": "8192",
        "max_connections": "173",
        "max_worker_processes": "8",          # PostgreSQL's default below 4 vCPUs
        "max_parallel_workers": "8",
        "max_parallel_workers_per_gather": "0",
        "autovacuum_max_workers": "3",
        "log_min_duration_statement": "250",
    }),
    (BIG_WAL, {
        "shared_buffers": "16777216",         # 128 GiB
        "effective_cache_size": "50331648",
        "work_mem": "26504",                  # 384 GiB / ((5000 + 64) x 3) = 27,140,393 B
        "maintenance_work_mem": "2097152",
        "autovacuum_work_mem": "1048576",     # 32 GiB / 10 workers capped at 1 GiB
        "wal_buffers": "2048",
        "min_wal_size": "2048",               # a quarter of 45,000 is more; 2 GB stays
        "max_wal_size": "45000",              # 25 MiB/s x 900 s x 2
        "max_connections": "5000",
        "max_worker_processes": "64",
        "max_parallel_workers": "64",
        "max_parallel_workers_per_gather": "4",
        "autovacuum_max_workers": "10",       # 64 // 8 + 2 = 10, the cap
        "log_min_duration_statement": "1000",
    }),
])
def test_machine_dependent_settings(inputs, expected):
    params = by_name(primary_parameters(inputs))
    assert {name: params[name].value for name in expected} == expected


FIXED = [
    # name, value, unit: the same on every machine and workload
    ("checkpoint_timeout", "900", "s"),
    ("checkpoint_completion_target", "0.9", ""),
    ("random_page_cost", "1.1", ""),
    ("effective_io_concurrency", "200", ""),
    ("shared_preload_libraries", "pg_stat_statements", ""),
    ("pg_stat_statements.track", "top", ""),
    ("pg_stat_statements.max", "10000", ""),
    ("track_io_timing", "1", ""),
    ("log_autovacuum_min_duration", "10000", "ms"),
    ("idle_in_transaction_session_timeout", "60000", "ms"),
    ("autovacuum_naptime", "15", "s"),
    ("autovacuum_vacuum_scale_factor", "0.02", ""),
    ("autovacuum_analyze_scale_factor", "0.01", ""),
    ("autovacuum_vacuum_insert_scale_factor", "0.05", ""),
    ("autovacuum_vacuum_cost_limit", "2000", ""),
    ("fsync", "1", ""),
    ("full_page_writes", "1", ""),
    ("rds.force_ssl", "1", ""),
    ("jit", "0", ""),
    ("wal_compression", "lz4", ""),
]


@pytest.mark.parametrize("inputs", [PROD_LIKE, DEV_LIKE, BIG_WAL], ids=["prod-like", "dev-like", "big-wal"])
@pytest.mark.parametrize("name,value,unit", FIXED)
def test_fixed_settings(inputs, name, value, unit):
    param = by_name(primary_parameters(inputs))[name]
    assert (param.value, param.unit) == (value, unit)


@pytest.mark.parametrize("name,reason", [
    # reasons that quote the constant they explain, and the ones that quote the inputs
    ("checkpoint_timeout", "15 min instead of 5: fewer full-page images for a write-heavy logging load"),
    ("checkpoint_completion_target", "spread checkpoint writes over 90% of the interval (PGTune; the default since PG 14)"),
    ("autovacuum_naptime", "check tables every 15 s instead of 60: latest_metrics is updated on every logging call"),
    ("log_autovacuum_min_duration", "log autovacuum runs over 10 s: metric tables are where vacuum falls behind"),
    ("autovacuum_vacuum_scale_factor",
     "vacuum after 2% dead rows, not 20%: big update-heavy tables (latest_metrics) bloat otherwise"),
    ("autovacuum_analyze_scale_factor", "re-analyse after 1% change so search plans track fast-growing tables"),
    ("autovacuum_vacuum_insert_scale_factor",
     "insert-only metrics: vacuum sets visibility bits after 5% new rows (index-only scans)"),
    ("min_wal_size", "2 GB (PGTune OLTP): recycled WAL segments instead of new files"),
    ("shared_buffers", "25% of 64 GiB RAM (PGTune; RDS's own default ratio)"),
    ("work_mem", "(RAM - shared_buffers) / ((max_connections 2310 + 8 workers) x 3), floor 4 MB (PGTune)"),
    ("autovacuum_work_mem", "RAM/16 shared by 3 autovacuum workers, at most 1 GB each (vacuum's own cap before PG 17)"),
    ("max_wal_size", "8 GB (PGTune OLTP) or 2x the WAL written in one checkpoint_timeout at 0.9 MiB/s:"
                     " checkpoints stay timed, not forced"),
])
def test_reasons_state_the_values(name, reason):
    assert by_name(primary_parameters(PROD_LIKE))[name].reason == reason


def test_replica_standby_settings_and_reasons():
    replica = by_name(replica_parameters(PROD_LIKE))
    assert (replica["max_standby_streaming_delay"].value, replica["max_standby_streaming_delay"].unit) == ("30000", "ms")
    assert replica["max_standby_streaming_delay"].reason.startswith("replay may wait 30 s for a running search")
    assert (replica["hot_standby_feedback"].value, replica["hot_standby_feedback"].apply_method) == ("1", "immediate")

"""PostgreSQL parameters computed from the instance's memory and vCPUs and the workload, PGTune style.

One small function per parameter; each returns its value in PostgreSQL's base unit (the unit RDS
parameter groups and postgresql.conf both take) and a one-line reason. Static parameters need a
reboot on RDS (`pending-reboot`); dynamic ones apply at once (`immediate`). Reference text fix 3.
Sources: PGTune (le0pard/pgtune, configurationSlice.js), the RDS for PostgreSQL user guide.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
PAGE = 8 * KB

ApplyMethod = Literal["immediate", "pending-reboot"]

# Parameters PostgreSQL only reads at server start (RDS marks them static).
STATIC = frozenset({
    "shared_buffers", "max_connections", "shared_preload_libraries", "wal_buffers",
    "max_worker_processes", "autovacuum_max_workers", "pg_stat_statements.max",
    "max_locks_per_transaction", "max_files_per_process", "track_activity_query_size",
})


@dataclass(frozen=True)
class Parameter:
    name: str
    value: str
    unit: str  # base unit of the value: 8kB, kB, MB, ms, s, or "" for plain values
    apply_method: ApplyMethod
    reason: str

    @property
    def rds_only(self) -> bool:
        return self.name.startswith("rds.")


@dataclass(frozen=True)
class ParameterInputs:
    memory_bytes: int
    vcpu: int
    max_connections: int
    engine_major: int
    durability: str = "strict"         # strict | relaxed
    wal_mib_per_s: float = 1.0          # steady WAL rate, for max_wal_size
    log_min_duration_ms: int = 500
    storage: str = "ssd"


def _param(name: str, value: object, unit: str, reason: str) -> Parameter:
    if isinstance(value, bool):
        text = "1" if value else "0"
    else:
        text = str(value)
    return Parameter(name, text, unit, "pending-reboot" if name in STATIC else "immediate", reason)


# --- memory ---------------------------------------------------------------------------------

def shared_buffers_pages(memory_bytes: int) -> int:
    """RAM/4 (PGTune; also RDS's own default {DBInstanceClassMemory/32768})."""
    return memory_bytes // 4 // PAGE


def effective_cache_size_pages(memory_bytes: int) -> int:
    """3/4 of RAM: shared_buffers plus what the OS page cache will hold (PGTune)."""
    return memory_bytes * 3 // 4 // PAGE


def maintenance_work_mem_kb(memory_bytes: int) -> int:
    """RAM/16, at most 2 GB: index builds and vacuum get memory without starving the cache (PGTune)."""
    return min(memory_bytes // 16, 2 * GB) // KB


def autovacuum_work_mem_kb(memory_bytes: int, autovacuum_workers: int) -> int:
    """All autovacuum workers together get RAM/16; each at most 1 GB, the most vacuum uses before PG 17."""
    return max(64 * MB, min(memory_bytes // 16 // autovacuum_workers, 1 * GB)) // KB


def wal_buffers_pages(shared_buffers_pg: int) -> int:
    """3% of shared_buffers, at most 16 MB (one WAL segment) and at least 32 kB (PGTune, as 9.1 auto-tunes)."""
    value = shared_buffers_pg * PAGE * 3 // 100
    if value > 14 * MB:  # PGTune rounds 14-16 MB up to a full segment
        value = 16 * MB
    return max(32 * KB, min(value, 16 * MB)) // PAGE


def work_mem_kb(memory_bytes: int, max_connections: int, max_worker_processes: int) -> int:
    """(RAM - shared_buffers) / ((max_connections + parallel workers) x 3), at least 4 MB (PGTune)."""
    shared = shared_buffers_pages(memory_bytes) * PAGE
    value = (memory_bytes - shared) // ((max_connections + max_worker_processes) * 3)
    return max(4 * MB, value) // KB


# --- CPU and parallelism ---------------------------------------------------------------------

def max_worker_processes(vcpu: int) -> int:
    """One per vCPU from 4 vCPUs (PGTune); PostgreSQL's default 8 below that."""
    return vcpu if vcpu >= 4 else 8


def max_parallel_workers_per_gather(vcpu: int) -> int:
    """Half the vCPUs, at most 4, from 4 vCPUs (PGTune). Below that, none: on 2 vCPUs starting
    workers cost ~15 ms per query, more than they saved on MLflow's indexed searches (measured, see
    infra/data/mlflow_indexes.yaml: filter by param 28 -> 11 ms without them)."""
    return min(math.ceil(vcpu / 2), 4) if vcpu >= 4 else 0


def autovacuum_max_workers(vcpu: int) -> int:
    """3 (the default) up to 8 vCPUs, then one more per 8 vCPUs: metric tables churn, vacuum must keep up."""
    return max(3, min(10, vcpu // 8 + 2))


# --- WAL and checkpoints ---------------------------------------------------------------------

CHECKPOINT_TIMEOUT_S = 900


def max_wal_size_mb(wal_mib_per_s: float) -> int:
    """8 GB (PGTune, OLTP), or twice the WAL of one checkpoint interval if more, so checkpoints are timed, not forced."""
    return max(8 * 1024, math.ceil(wal_mib_per_s * CHECKPOINT_TIMEOUT_S * 2))


def min_wal_size_mb(max_wal_mb: int) -> int:
    """2 GB (PGTune, OLTP), a quarter of max_wal_size at most: recycled segments avoid new-file creation."""
    return min(2 * 1024, max_wal_mb // 4)


# --- the whole set -------------------------------------------------------------------------------

def primary_parameters(i: ParameterInputs) -> list[Parameter]:
    """The primary's parameter group."""
    shared = shared_buffers_pages(i.memory_bytes)
    workers = max_worker_processes(i.vcpu)
    av_workers = autovacuum_max_workers(i.vcpu)
    max_wal = max_wal_size_mb(i.wal_mib_per_s)
    gib = i.memory_bytes / GB
    params = [
        _param("shared_buffers", shared, "8kB", f"25% of {gib:g} GiB RAM (PGTune; RDS's own default ratio)"),
        _param("effective_cache_size", effective_cache_size_pages(i.memory_bytes), "8kB", "75% of RAM: shared_buffers + OS page cache (PGTune)"),
        _param("work_mem", work_mem_kb(i.memory_bytes, i.max_connections, workers), "kB",
               f"(RAM - shared_buffers) / ((max_connections {i.max_connections} + {workers} workers) x 3), floor 4 MB (PGTune)"),
        _param("maintenance_work_mem", maintenance_work_mem_kb(i.memory_bytes), "kB", "RAM/16, at most 2 GB: fast index builds and vacuum (PGTune)"),
        _param("autovacuum_work_mem", autovacuum_work_mem_kb(i.memory_bytes, av_workers), "kB",
               f"RAM/16 shared by {av_workers} autovacuum workers, at most 1 GB each (vacuum's own cap before PG 17)"),
        _param("wal_buffers", wal_buffers_pages(shared), "8kB", "3% of shared_buffers, capped at one 16 MB WAL segment (PGTune)"),
        _param("min_wal_size", min_wal_size_mb(max_wal), "MB", "2 GB (PGTune OLTP): recycled WAL segments instead of new files"),
        _param("max_wal_size", max_wal, "MB",
               f"8 GB (PGTune OLTP) or 2x the WAL written in one checkpoint_timeout at {i.wal_mib_per_s:.1f} MiB/s: checkpoints stay timed, not forced"),
        _param("checkpoint_timeout", CHECKPOINT_TIMEOUT_S, "s", "15 min instead of 5: fewer full-page images for a write-heavy logging load"),
        _param("checkpoint_completion_target", "0.9", "", "spread checkpoint writes over 90% of the interval (PGTune; the default since PG 14)"),
        _param("random_page_cost", "1.1", "", "SSD (gp3): random reads cost nearly what sequential ones do, so indexes get used (PGTune)"),
        _param("effective_io_concurrency", 200, "", "SSD (gp3) serves many concurrent reads (PGTune, Linux)"),
        _param("max_connections", i.max_connections, "", "the connection budget: fleet pools at max autoscale + reserve"),
        _param("max_worker_processes", workers, "", "one per vCPU from 4 vCPUs, else PostgreSQL's 8 (PGTune)"),
        _param("max_parallel_workers", workers, "", "all background workers may serve parallel queries (PGTune)"),
        _param("max_parallel_workers_per_gather", max_parallel_workers_per_gather(i.vcpu), "",
               "half the vCPUs, at most 4 (PGTune); 0 below 4 vCPUs, where starting workers costs more than MLflow's indexed searches gain (measured)"),
        _param("shared_preload_libraries", "pg_stat_statements", "", "query statistics the diagnose command and slow-search analysis read"),
        _param("pg_stat_statements.track", "top", "", "count the statements MLflow sends (it calls no functions), set explicitly so diagnosis can rely on it"),
        _param("pg_stat_statements.max", 10_000, "", "room for every distinct MLflow statement shape (search filters vary)"),
        _param("track_io_timing", True, "", "I/O time per statement in pg_stat_statements: tells slow disk from slow plans"),
        _param("log_min_duration_statement", i.log_min_duration_ms, "ms", "log slow searches so missing indexes show up (reference text fix 7)"),
        _param("log_autovacuum_min_duration", 10_000, "ms", "log autovacuum runs over 10 s: metric tables are where vacuum falls behind"),
        _param("idle_in_transaction_session_timeout", 60_000, "ms",
               "a worker killed mid-request must not hold locks and block vacuum for more than a minute"),
        _param("autovacuum_max_workers", av_workers, "", "3, one more per 8 vCPUs: metrics and latest_metrics churn constantly"),
        _param("autovacuum_naptime", 15, "s", "check tables every 15 s instead of 60: latest_metrics is updated on every logging call"),
        _param("autovacuum_vacuum_scale_factor", "0.02", "", "vacuum after 2% dead rows, not 20%: big update-heavy tables (latest_metrics) bloat otherwise"),
        _param("autovacuum_analyze_scale_factor", "0.01", "", "re-analyse after 1% change so search plans track fast-growing tables"),
        _param("autovacuum_vacuum_insert_scale_factor", "0.05", "", "insert-only metrics: vacuum sets visibility bits after 5% new rows (index-only scans)"),
        _param("autovacuum_vacuum_cost_limit", 2_000, "", "10x the default: gp3 has the I/O to let vacuum keep up with the insert rate"),
        _param("fsync", True, "", "never off: a crash would corrupt the database (reference text's fsync=off is refused)"),
        _param("full_page_writes", True, "", "never off: torn pages after a crash cannot be repaired without them"),
        _param("synchronous_commit", "off" if i.durability == "relaxed" else "on", "",
               "off (durability: relaxed): commits return before the WAL flush; a crash can lose the last ~0.6 s of writes"
               if i.durability == "relaxed" else "on (durability: strict): an acknowledged log call survives a crash"),
        _param("rds.force_ssl", True, "", "clients must use TLS: credentials and run data never cross the VPC in clear text"),
    ]
    if i.engine_major >= 12:
        params.append(_param("jit", False, "", "MLflow's queries are short OLTP statements; JIT compile time costs more than it saves (PGTune)"))
    if i.engine_major >= 15:
        params.append(_param("wal_compression", "lz4", "", "lz4-compressed full-page images cut WAL volume at little CPU (PGTune, PG 15+)"))
    return params


def replica_parameters(i: ParameterInputs) -> list[Parameter]:
    """The replicas' group: the primary's (a hot standby needs max_connections and
    max_worker_processes at least the primary's) plus what serving reads beside replay needs."""
    params = [p for p in primary_parameters(i) if p.name != "synchronous_commit"]
    params += [
        _param("hot_standby_feedback", True, "", "UI searches on the replica are not cancelled by vacuum on the primary"),
        _param("max_standby_streaming_delay", 30_000, "ms", "replay may wait 30 s for a running search, then wins: the replica never drifts far behind"),
    ]
    return params


def by_name(params: list[Parameter]) -> dict[str, Parameter]:
    return {p.name: p for p in params}


def scaled_to(i: ParameterInputs, memory_bytes: int, vcpu: int) -> ParameterInputs:
    """The same plan for another machine: memory-derived and CPU-derived values follow the box,
    every workload-derived choice (connections, durability, WAL rate) stays the plan's."""
    return dataclasses.replace(i, memory_bytes=memory_bytes, vcpu=vcpu)


def server_settings(params: list[Parameter], lz4: bool = True) -> tuple[dict[str, str], list[str], list[str]]:
    """Settings a self-managed PostgreSQL accepts (postgresql.conf), the RDS-only names skipped, and
    the values adapted to the local build (a server built without lz4 gets pglz WAL compression)."""
    settings = {p.name: p.value for p in params if not p.rds_only}
    skipped = [p.name for p in params if p.rds_only]
    adapted = []
    if not lz4 and settings.get("wal_compression") == "lz4":
        settings["wal_compression"] = "pglz"
        adapted.append("wal_compression lz4 -> pglz (this PostgreSQL build has no lz4)")
    return settings, skipped, adapted

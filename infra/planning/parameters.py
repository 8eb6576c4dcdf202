"""PostgreSQL parameters computed from the instance's memory and vCPUs and the workload, PGTune style.

A registry, like the policy rules' `@rule`: one decorated function per PostgreSQL parameter. The
decorator declares the parameter's name, the base unit of its value (the unit RDS parameter groups
and postgresql.conf both take), whether it is static (read at server start: RDS applies it at the
next reboot, `pending-reboot`; a dynamic one applies at once, `immediate`), the node(s) it is set on
and, optionally, the first engine major that has it. The function returns the value and a one-line
reason. Its arguments are resolved by name from `ParameterInputs` and `derived_inputs` (below), so
every input a value depends on is in its signature.

The parameter groups list the parameters in registration order; the reasons and formulas the plan
shows come from here. README bottleneck 3. Sources: PGTune (le0pard/pgtune, configurationSlice.js),
the RDS for PostgreSQL user guide.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
PAGE = 8 * KB

ApplyMethod = Literal["immediate", "pending-reboot"]
Node = Literal["primary", "replica"]
Setting = tuple[object, str]  # (value in the parameter's base unit, one-line reason)

UNITS = ("8kB", "kB", "MB", "ms", "s", "")
PRIMARY: tuple[Node, ...] = ("primary",)
REPLICA: tuple[Node, ...] = ("replica",)
BOTH: tuple[Node, ...] = ("primary", "replica")


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


# --- constants: each set value that is not computed ------------------------------------------------

CHECKPOINT_TIMEOUT_S = 900                   # 15 min, not 5: fewer full-page images under steady logging
CHECKPOINT_COMPLETION_TARGET = 0.9           # spread checkpoint writes over 90% of the interval (PGTune)
RANDOM_PAGE_COST_SSD = 1.1                   # gp3 random reads cost nearly what sequential ones do (PGTune)
EFFECTIVE_IO_CONCURRENCY_SSD = 200           # SSDs serve many concurrent reads (PGTune, Linux)
PG_STAT_STATEMENTS_MAX = 10_000              # default 5,000; MLflow's varying search filters make many shapes
LOG_AUTOVACUUM_MIN_DURATION_MS = 10_000      # log only vacuum runs long enough to mean it is falling behind
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000      # a killed worker's open transaction blocks vacuum at most a minute
AUTOVACUUM_NAPTIME_S = 15                    # default 60; latest_metrics is updated on every logging call
AUTOVACUUM_VACUUM_SCALE_FACTOR = 0.02        # default 0.2; update-heavy latest_metrics bloats at 20% dead rows
AUTOVACUUM_ANALYZE_SCALE_FACTOR = 0.01       # default 0.1; search plans must follow fast-growing tables
AUTOVACUUM_VACUUM_INSERT_SCALE_FACTOR = 0.05  # default 0.2; insert-only metrics get visibility bits sooner
AUTOVACUUM_VACUUM_COST_LIMIT = 2_000         # 10x the default 200: gp3 has the I/O for vacuum to keep up
MAX_STANDBY_STREAMING_DELAY_MS = 30_000      # a replica search may delay replay 30 s, then replay wins
MAX_WAL_SIZE_MB_OLTP = 8 * 1024              # PGTune's OLTP max_wal_size, 8 GB
MIN_WAL_SIZE_MB_OLTP = 2 * 1024              # PGTune's OLTP min_wal_size, 2 GB
PARALLEL_FROM_VCPU = 4                       # PGTune sizes workers by vCPU from 4 vCPUs; below, defaults
JIT_FROM_MAJOR = 12                          # jit is on by default from PG 12, so it is set off from there
LZ4_WAL_FROM_MAJOR = 15                      # wal_compression accepts lz4 from PG 15


# --- formulas: the computed values, each a small pure function ---------------------------------

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


def max_worker_processes(vcpu: int) -> int:
    """One per vCPU from 4 vCPUs (PGTune); PostgreSQL's default 8 below that."""
    return vcpu if vcpu >= PARALLEL_FROM_VCPU else 8


def max_parallel_workers_per_gather(vcpu: int) -> int:
    """Half the vCPUs, at most 4, from 4 vCPUs (PGTune). Below that, none: on 2 vCPUs starting
    workers cost ~15 ms per query, more than they saved on MLflow's indexed searches (measured, see
    infra/data/mlflow_indexes.yaml: filter by param 28 -> 11 ms without them)."""
    return min(math.ceil(vcpu / 2), 4) if vcpu >= PARALLEL_FROM_VCPU else 0


def autovacuum_max_workers(vcpu: int) -> int:
    """3 (the default) up to 8 vCPUs, then one more per 8 vCPUs: metric tables churn, vacuum must keep up."""
    return max(3, min(10, vcpu // 8 + 2))


def max_wal_size_mb(wal_mib_per_s: float) -> int:
    """8 GB (PGTune, OLTP), or twice the WAL of one checkpoint interval if more, so checkpoints are timed, not forced."""
    return max(MAX_WAL_SIZE_MB_OLTP, math.ceil(wal_mib_per_s * CHECKPOINT_TIMEOUT_S * 2))


def min_wal_size_mb(max_wal_mb: int) -> int:
    """2 GB (PGTune, OLTP), a quarter of max_wal_size at most: recycled segments avoid new-file creation."""
    return min(MIN_WAL_SIZE_MB_OLTP, max_wal_mb // 4)


def derived_inputs(i: ParameterInputs) -> dict[str, int]:
    """Values that more than one parameter depends on, computed once; parameter functions ask for
    them by these names, beside the `ParameterInputs` fields."""
    return {
        "shared_buffers_pages": shared_buffers_pages(i.memory_bytes),
        "max_worker_processes": max_worker_processes(i.vcpu),
        "autovacuum_max_workers": autovacuum_max_workers(i.vcpu),
        "max_wal_size_mb": max_wal_size_mb(i.wal_mib_per_s),
    }


# --- the registry ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Definition:
    """One registered parameter: what the decorator declared and the function computing it."""

    name: str
    unit: str
    static: bool
    nodes: tuple[Node, ...]
    compute: Callable[..., Setting]
    arguments: tuple[str, ...]      # the function's parameter names, resolved by name
    min_engine_major: int = 0
    static_exception: str = ""       # why `static` deliberately differs from PostgreSQL's pg_settings.context

    @property
    def apply_method(self) -> ApplyMethod:
        return "pending-reboot" if self.static else "immediate"

    def applies_to(self, node: Node, engine_major: int) -> bool:
        return node in self.nodes and engine_major >= self.min_engine_major

    def evaluate(self, available: dict[str, object]) -> Parameter:
        value, reason = self.compute(**{name: available[name] for name in self.arguments})
        return Parameter(self.name, _text(value), self.unit, self.apply_method, reason)


REGISTRY: list[Definition] = []


def parameter(name: str, *, unit: str, static: bool, nodes: tuple[Node, ...], min_engine_major: int = 0,
              static_exception: str = ""):
    """Register the decorated function as the PostgreSQL parameter `name`. Registration order is
    the order the parameter groups list them in."""
    def register(fn: Callable[..., Setting]) -> Callable[..., Setting]:
        arguments = tuple(inspect.signature(fn).parameters)
        REGISTRY.append(Definition(name, unit, static, nodes, fn, arguments, min_engine_major, static_exception))
        return fn
    return register


def _text(value: object) -> str:
    """PostgreSQL's spelling: booleans as 1/0, everything else as written."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def available_arguments(i: ParameterInputs) -> dict[str, object]:
    """Everything a parameter function may ask for by name."""
    return {**dataclasses.asdict(i), **derived_inputs(i)}


def registered(name: str) -> Definition:
    for definition in REGISTRY:
        if definition.name == name:
            return definition
    raise KeyError(f"no registered PostgreSQL parameter {name!r}")


# --- memory ---------------------------------------------------------------------------------------

@parameter("shared_buffers", unit="8kB", static=True, nodes=BOTH)
def _shared_buffers(memory_bytes: int, shared_buffers_pages: int) -> Setting:
    return shared_buffers_pages, f"25% of {memory_bytes / GB:g} GiB RAM (PGTune; RDS's own default ratio)"


@parameter("effective_cache_size", unit="8kB", static=False, nodes=BOTH)
def _effective_cache_size(memory_bytes: int) -> Setting:
    return effective_cache_size_pages(memory_bytes), "75% of RAM: shared_buffers + OS page cache (PGTune)"


@parameter("work_mem", unit="kB", static=False, nodes=BOTH)
def _work_mem(memory_bytes: int, max_connections: int, max_worker_processes: int) -> Setting:
    return (work_mem_kb(memory_bytes, max_connections, max_worker_processes),
            f"(RAM - shared_buffers) / ((max_connections {max_connections} + {max_worker_processes} workers) x 3),"
            " floor 4 MB (PGTune)")


@parameter("maintenance_work_mem", unit="kB", static=False, nodes=BOTH)
def _maintenance_work_mem(memory_bytes: int) -> Setting:
    return maintenance_work_mem_kb(memory_bytes), "RAM/16, at most 2 GB: fast index builds and vacuum (PGTune)"


@parameter("autovacuum_work_mem", unit="kB", static=False, nodes=BOTH)
def _autovacuum_work_mem(memory_bytes: int, autovacuum_max_workers: int) -> Setting:
    return (autovacuum_work_mem_kb(memory_bytes, autovacuum_max_workers),
            f"RAM/16 shared by {autovacuum_max_workers} autovacuum workers, at most 1 GB each"
            " (vacuum's own cap before PG 17)")


@parameter("wal_buffers", unit="8kB", static=True, nodes=BOTH)
def _wal_buffers(shared_buffers_pages: int) -> Setting:
    return wal_buffers_pages(shared_buffers_pages), "3% of shared_buffers, capped at one 16 MB WAL segment (PGTune)"


# --- WAL and checkpoints --------------------------------------------------------------------------

@parameter("min_wal_size", unit="MB", static=False, nodes=BOTH)
def _min_wal_size(max_wal_size_mb: int) -> Setting:
    return (min_wal_size_mb(max_wal_size_mb),
            f"{MIN_WAL_SIZE_MB_OLTP // 1024} GB (PGTune OLTP): recycled WAL segments instead of new files")


@parameter("max_wal_size", unit="MB", static=False, nodes=BOTH)
def _max_wal_size(max_wal_size_mb: int, wal_mib_per_s: float) -> Setting:
    return (max_wal_size_mb,
            f"{MAX_WAL_SIZE_MB_OLTP // 1024} GB (PGTune OLTP) or 2x the WAL written in one checkpoint_timeout"
            f" at {wal_mib_per_s:.1f} MiB/s: checkpoints stay timed, not forced")


@parameter("checkpoint_timeout", unit="s", static=False, nodes=BOTH)
def _checkpoint_timeout() -> Setting:
    return (CHECKPOINT_TIMEOUT_S,
            f"{CHECKPOINT_TIMEOUT_S // 60} min instead of 5: fewer full-page images for a write-heavy logging load")


@parameter("checkpoint_completion_target", unit="", static=False, nodes=BOTH)
def _checkpoint_completion_target() -> Setting:
    return (CHECKPOINT_COMPLETION_TARGET,
            f"spread checkpoint writes over {CHECKPOINT_COMPLETION_TARGET:.0%} of the interval"
            " (PGTune; the default since PG 14)")


# --- planner and I/O ------------------------------------------------------------------------------

@parameter("random_page_cost", unit="", static=False, nodes=BOTH)
def _random_page_cost() -> Setting:
    return (RANDOM_PAGE_COST_SSD,
            "SSD (gp3): random reads cost nearly what sequential ones do, so indexes get used (PGTune)")


@parameter("effective_io_concurrency", unit="", static=False, nodes=BOTH)
def _effective_io_concurrency() -> Setting:
    return EFFECTIVE_IO_CONCURRENCY_SSD, "SSD (gp3) serves many concurrent reads (PGTune, Linux)"


# --- connections and parallelism ------------------------------------------------------------------
# A hot standby refuses to start with fewer max_connections or max_worker_processes than its primary,
# so the replicas get the same values.

@parameter("max_connections", unit="", static=True, nodes=BOTH)
def _max_connections(max_connections: int) -> Setting:
    return max_connections, "the connection budget: fleet pools at max autoscale + reserve"


@parameter("max_worker_processes", unit="", static=True, nodes=BOTH)
def _max_worker_processes(max_worker_processes: int) -> Setting:
    return max_worker_processes, "one per vCPU from 4 vCPUs, else PostgreSQL's 8 (PGTune)"


@parameter("max_parallel_workers", unit="", static=False, nodes=BOTH)
def _max_parallel_workers(max_worker_processes: int) -> Setting:
    return max_worker_processes, "all background workers may serve parallel queries (PGTune)"


@parameter("max_parallel_workers_per_gather", unit="", static=False, nodes=BOTH)
def _max_parallel_workers_per_gather(vcpu: int) -> Setting:
    return (max_parallel_workers_per_gather(vcpu),
            "half the vCPUs, at most 4 (PGTune); 0 below 4 vCPUs, where starting workers costs more than"
            " MLflow's indexed searches gain (measured)")


# --- statistics and logging -----------------------------------------------------------------------

@parameter("shared_preload_libraries", unit="", static=True, nodes=BOTH)
def _shared_preload_libraries() -> Setting:
    return "pg_stat_statements", "query statistics for slow-search analysis (top statements by total time)"


@parameter("pg_stat_statements.track", unit="", static=False, nodes=BOTH)
def _pg_stat_statements_track() -> Setting:
    return "top", "count the statements MLflow sends (it calls no functions), set explicitly so slow-query analysis can rely on it"


@parameter("pg_stat_statements.max", unit="", static=True, nodes=BOTH)
def _pg_stat_statements_max() -> Setting:
    return PG_STAT_STATEMENTS_MAX, "room for every distinct MLflow statement shape (search filters vary)"


@parameter("track_io_timing", unit="", static=False, nodes=BOTH)
def _track_io_timing() -> Setting:
    return True, "I/O time per statement in pg_stat_statements: tells slow disk from slow plans"


@parameter("log_min_duration_statement", unit="ms", static=False, nodes=BOTH)
def _log_min_duration_statement(log_min_duration_ms: int) -> Setting:
    return log_min_duration_ms, "log slow searches so missing indexes show up (README bottleneck 7)"


@parameter("log_autovacuum_min_duration", unit="ms", static=False, nodes=BOTH)
def _log_autovacuum_min_duration() -> Setting:
    return (LOG_AUTOVACUUM_MIN_DURATION_MS,
            f"log autovacuum runs over {LOG_AUTOVACUUM_MIN_DURATION_MS // 1000} s:"
            " metric tables are where vacuum falls behind")


@parameter("idle_in_transaction_session_timeout", unit="ms", static=False, nodes=BOTH)
def _idle_in_transaction_session_timeout() -> Setting:
    return (IDLE_IN_TRANSACTION_TIMEOUT_MS,
            "a worker killed mid-request must not hold locks and block vacuum for more than a minute")


# --- autovacuum -----------------------------------------------------------------------------------

@parameter("autovacuum_max_workers", unit="", static=True, nodes=BOTH,
           static_exception="PostgreSQL 18 made it reloadable (context sighup, up to the new static"
                            " autovacuum_worker_slots); through 17, the majors the plans ship, it is postmaster."
                            " pending-reboot is valid for a dynamic parameter too, so static is the safe flag")
def _autovacuum_max_workers(autovacuum_max_workers: int) -> Setting:
    return autovacuum_max_workers, "3, one more per 8 vCPUs: metrics and latest_metrics churn constantly"


@parameter("autovacuum_naptime", unit="s", static=False, nodes=BOTH)
def _autovacuum_naptime() -> Setting:
    return (AUTOVACUUM_NAPTIME_S,
            f"check tables every {AUTOVACUUM_NAPTIME_S} s instead of 60: latest_metrics is updated on every logging call")


@parameter("autovacuum_vacuum_scale_factor", unit="", static=False, nodes=BOTH)
def _autovacuum_vacuum_scale_factor() -> Setting:
    return (AUTOVACUUM_VACUUM_SCALE_FACTOR,
            f"vacuum after {AUTOVACUUM_VACUUM_SCALE_FACTOR:.0%} dead rows, not 20%:"
            " big update-heavy tables (latest_metrics) bloat otherwise")


@parameter("autovacuum_analyze_scale_factor", unit="", static=False, nodes=BOTH)
def _autovacuum_analyze_scale_factor() -> Setting:
    return (AUTOVACUUM_ANALYZE_SCALE_FACTOR,
            f"re-analyse after {AUTOVACUUM_ANALYZE_SCALE_FACTOR:.0%} change so search plans track fast-growing tables")


@parameter("autovacuum_vacuum_insert_scale_factor", unit="", static=False, nodes=BOTH)
def _autovacuum_vacuum_insert_scale_factor() -> Setting:
    return (AUTOVACUUM_VACUUM_INSERT_SCALE_FACTOR,
            f"insert-only metrics: vacuum sets visibility bits after {AUTOVACUUM_VACUUM_INSERT_SCALE_FACTOR:.0%}"
            " new rows (index-only scans)")


@parameter("autovacuum_vacuum_cost_limit", unit="", static=False, nodes=BOTH)
def _autovacuum_vacuum_cost_limit() -> Setting:
    return AUTOVACUUM_VACUUM_COST_LIMIT, "10x the default: gp3 has the I/O to let vacuum keep up with the insert rate"


# --- durability and security ----------------------------------------------------------------------

@parameter("fsync", unit="", static=False, nodes=BOTH)
def _fsync() -> Setting:
    return True, "never off: a crash would corrupt the database (the fsync=off tuning tip is refused)"


@parameter("full_page_writes", unit="", static=False, nodes=BOTH)
def _full_page_writes() -> Setting:
    return True, "never off: torn pages after a crash cannot be repaired without them"


# Primary only: a replica acknowledges nothing to clients, so the setting would mean nothing there.
@parameter("synchronous_commit", unit="", static=False, nodes=PRIMARY)
def _synchronous_commit(durability: str) -> Setting:
    if durability == "relaxed":
        return "off", ("off (durability: relaxed): commits return before the WAL flush;"
                       " a crash can lose the last ~0.6 s of writes")
    return "on", "on (durability: strict): an acknowledged log call survives a crash"


@parameter("rds.force_ssl", unit="", static=False, nodes=BOTH)
def _rds_force_ssl() -> Setting:
    return True, "clients must use TLS: credentials and run data never cross the VPC in clear text"


# --- engine-version gated -------------------------------------------------------------------------

@parameter("jit", unit="", static=False, nodes=BOTH, min_engine_major=JIT_FROM_MAJOR)
def _jit() -> Setting:
    return False, "MLflow's queries are short OLTP statements; JIT compile time costs more than it saves (PGTune)"


@parameter("wal_compression", unit="", static=False, nodes=BOTH, min_engine_major=LZ4_WAL_FROM_MAJOR)
def _wal_compression() -> Setting:
    return "lz4", "lz4-compressed full-page images cut WAL volume at little CPU (PGTune, PG 15+)"


# --- replicas only: serving reads beside replay ----------------------------------------------------

@parameter("hot_standby_feedback", unit="", static=False, nodes=REPLICA)
def _hot_standby_feedback() -> Setting:
    return True, "UI searches on the replica are not cancelled by vacuum on the primary"


@parameter("max_standby_streaming_delay", unit="ms", static=False, nodes=REPLICA)
def _max_standby_streaming_delay() -> Setting:
    return (MAX_STANDBY_STREAMING_DELAY_MS,
            f"replay may wait {MAX_STANDBY_STREAMING_DELAY_MS // 1000} s for a running search, then wins:"
            " the replica never drifts far behind")


# --- the whole set -------------------------------------------------------------------------------

def parameters_for(node: Node, i: ParameterInputs) -> list[Parameter]:
    """Every registered parameter that applies to `node` on this engine, in registration order."""
    available = available_arguments(i)
    return [d.evaluate(available) for d in REGISTRY if d.applies_to(node, i.engine_major)]


def primary_parameters(i: ParameterInputs) -> list[Parameter]:
    """The primary's parameter group."""
    return parameters_for("primary", i)


def replica_parameters(i: ParameterInputs) -> list[Parameter]:
    """The replicas' group: the primary's (a hot standby needs max_connections and
    max_worker_processes at least the primary's) plus what serving reads beside replay needs."""
    return parameters_for("replica", i)


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

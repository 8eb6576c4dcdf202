"""Where each tuned PostgreSQL parameter goes on Aurora PostgreSQL: the DB cluster parameter group
(settings of the whole cluster), the DB (instance) parameter group (settings that may differ per
instance, such as memory), or nowhere, with the reason.

Source: "Amazon Aurora PostgreSQL parameters" (Aurora user guide,
AuroraPostgreSQL.Reference.ParameterGroups.html): the cluster table lists every parameter (it also
holds the instances' defaults), the instance table the ones an instance may override; a parameter
only in the cluster table is cluster-level; checkpoint and WAL-size parameters are in neither
(Aurora's storage applies the log itself: there is no checkpoint to tune). Every parameter of
`parameters.REGISTRY` must be named here (a test holds it), so a new one gets a decision.
"""

from __future__ import annotations

from typing import Literal

from .parameters import Parameter, ParameterInputs, parameters_for

Level = Literal["cluster", "instance"]

# the cluster's default stays: Aurora sizes these for its own cache (it reads no pages through the
# OS page cache, so PGTune's RAM/4 would leave most memory idle)
AURORA_CACHE = ("Aurora keeps its default, about 3/4 of memory (SUM(DBInstanceClassMemory/12038,-50003)):"
                " it caches pages itself, not through the OS page cache PGTune's rule leaves room for")
NO_CHECKPOINTS = "not an Aurora PostgreSQL parameter: Aurora's storage applies the log, there are no checkpoints to tune"
NO_REPLAY = "Aurora readers share the writer's storage and replay no WAL stream: nothing to tune"
NOT_LISTED = "not in Aurora PostgreSQL's parameter reference: left to Aurora"

# name -> level, or None with the reason it is not set
LEVELS: dict[str, tuple[Level | None, str]] = {
    "shared_buffers": (None, AURORA_CACHE),
    "effective_cache_size": (None, AURORA_CACHE),
    "work_mem": ("instance", ""),
    "maintenance_work_mem": ("instance", ""),
    "autovacuum_work_mem": ("cluster", ""),
    "wal_buffers": (None, "Aurora writes its log to its storage, not through local WAL buffers sized for segments"),
    "min_wal_size": (None, NO_CHECKPOINTS),
    "max_wal_size": (None, NO_CHECKPOINTS),
    "checkpoint_timeout": (None, NO_CHECKPOINTS),
    "checkpoint_completion_target": (None, NO_CHECKPOINTS),
    "random_page_cost": ("instance", ""),
    "effective_io_concurrency": (None, NOT_LISTED),
    "max_connections": ("instance", ""),
    "max_worker_processes": ("instance", ""),
    "max_parallel_workers": ("instance", ""),
    "max_parallel_workers_per_gather": ("instance", ""),
    "shared_preload_libraries": ("instance", ""),
    "pg_stat_statements.track": ("instance", ""),
    "pg_stat_statements.max": ("instance", ""),
    "track_io_timing": ("instance", ""),
    "log_min_duration_statement": ("instance", ""),
    "log_autovacuum_min_duration": ("cluster", ""),
    "idle_in_transaction_session_timeout": ("instance", ""),
    "autovacuum_max_workers": ("cluster", ""),
    "autovacuum_naptime": ("cluster", ""),
    "autovacuum_vacuum_scale_factor": ("cluster", ""),
    "autovacuum_analyze_scale_factor": ("cluster", ""),
    "autovacuum_vacuum_insert_scale_factor": ("cluster", ""),
    "autovacuum_vacuum_cost_limit": ("cluster", ""),
    "fsync": (None, "not settable on Aurora: its storage makes every commit durable"),
    "full_page_writes": (None, "not settable on Aurora: its storage writes no torn pages"),
    "synchronous_commit": ("cluster", ""),
    "rds.force_ssl": ("cluster", ""),
    "jit": ("instance", ""),
    "wal_compression": (None, NOT_LISTED),
    "hot_standby_feedback": (None, NO_REPLAY),
    "max_standby_streaming_delay": (None, NO_REPLAY),
}


def aurora_parameters(level: Level, i: ParameterInputs) -> list[Parameter]:
    """The writer's planned parameters that belong in Aurora's `level` group, in registration order.
    Readers run the same instance group: they serve the UI's reads with the writer's memory settings."""
    return [p for p in parameters_for("primary", i) if LEVELS[p.name][0] == level]


def left_to_aurora(i: ParameterInputs) -> list[tuple[str, str]]:
    """The planned parameters Aurora does not take, each with why."""
    names = {p.name for p in parameters_for("primary", i)} | {p.name for p in parameters_for("replica", i)}
    return [(name, reason) for name, (level, reason) in LEVELS.items() if level is None and name in names]

"""Right-sizing: database class, storage, read replicas and the tracking fleets.

Each function takes a few named inputs and returns its decision with a one-line reason
(README bottlenecks 1, 2 and 5).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from . import catalogue
from .catalogue import InstanceClass
from .demand import Coefficients, Demand
from ..spec import SpecError, SpecInvalid

# Size the database for 60% CPU at the planned peak: room for autovacuum, checkpoints and bursts.
DB_TARGET_CPU = 0.60
# Below 4 GiB the OS, RDS agents and shared_buffers leave almost no page cache.
MIN_DB_MEMORY_GIB = 4
# The hot set lives in shared_buffers plus the OS page cache: about 3/4 of RAM (PGTune's effective_cache_size).
CACHE_SHARE_OF_MEMORY = 0.75
# Sustained write bandwidth should use at most half the class's EBS baseline (checkpoint spikes, vacuum).
EBS_HEADROOM = 0.5
# WAL (with full-page images after each checkpoint) plus heap and index writes: ~3x the logical bytes.
WRITE_AMPLIFICATION = 3.0

ALLOWED_FAMILIES = {
    "development": ("burstable", "general_purpose", "memory_optimized"),
    "staging": ("general_purpose", "memory_optimized"),
    # MLflow metadata is cache-hungry; the classic fix for a starved tracking database is db.t3.small -> db.r6g.xlarge.
    "production": ("memory_optimized",),
}


@dataclass(frozen=True)
class DatabaseNeed:
    vcpu: float
    memory_gib: float
    write_mib_per_s: float
    reason: str


def database_need(d: Demand, ui_reads_on_primary: float, k: Coefficients) -> DatabaseNeed:
    """vCPU, memory and write bandwidth the primary needs for this demand and the UI reads it serves."""
    cpu_seconds = (d.write_requests_per_s * k.db_cpu_s_per_write_request
                   + d.metric_rows_per_s * k.db_cpu_s_per_metric_row
                   + d.param_tag_rows_per_s * k.db_cpu_s_per_param_or_tag_row
                   + ui_reads_on_primary * k.db_cpu_s_per_ui_read)
    vcpu = cpu_seconds / DB_TARGET_CPU
    memory = max(MIN_DB_MEMORY_GIB, d.hot_set_gib / CACHE_SHARE_OF_MEMORY)
    write_mib = d.write_bytes_per_s * WRITE_AMPLIFICATION / 1024**2
    reads = f" and {ui_reads_on_primary:.1f} UI req/s" if ui_reads_on_primary else ""
    return DatabaseNeed(vcpu, memory, write_mib,
                        f"{vcpu:.2f} vCPU for writes{reads} at {DB_TARGET_CPU:.0%} CPU; {memory:.1f} GiB so the"
                        f" {d.hot_set_gib:.1f} GiB hot set fits in cache; {write_mib:.1f} MiB/s written")


@dataclass(frozen=True)
class DatabaseClass:
    instance_class: str
    family: str
    vcpu: int
    memory_gib: float
    ebs_baseline_mbps: int
    overridden: bool
    reason: str
    warnings: tuple[str, ...] = ()


def fits(cls: InstanceClass, need: DatabaseNeed) -> bool:
    usable_vcpu = cls.vcpu * (cls.baseline_cpu_percent / 100 if cls.burstable else 1.0)
    return (usable_vcpu >= need.vcpu
            and cls.memory_gib >= need.memory_gib
            and cls.ebs_baseline_mib_per_s * EBS_HEADROOM >= need.write_mib_per_s)


def _size_order(cls: InstanceClass, hourly: dict[str, float]) -> tuple[float, float, float]:
    return (cls.vcpu, cls.memory_gib, hourly.get(cls.name, math.inf))


def choose_database_class(need: DatabaseNeed, tier: str, override: str | None,
                          hourly: dict[str, float], source_file: str) -> DatabaseClass:
    """The smallest class (by vCPU, then memory, then price) of the tier's families that fits the need."""
    if override is not None:
        cls = catalogue.instance_class(override)
        warnings = () if fits(cls, need) else (
            f"database.instance_class {override} is below the planned need ({need.reason})",)
        return DatabaseClass(cls.name, cls.family, cls.vcpu, cls.memory_gib, cls.ebs_baseline_mbps, True,
                             f"set in the environment file (database.instance_class); planned need: {need.reason}", warnings)
    families = ALLOWED_FAMILIES[tier]
    candidates = sorted((c for c in catalogue.instance_classes() if c.family in families),
                        key=lambda c: _size_order(c, hourly))
    for cls in candidates:
        if fits(cls, need):
            why = "smallest " + "/".join(f.replace("_", " ") for f in families) + f" class for {tier}"
            if cls.burstable:
                why += f"; burstable is fine: the need stays under its {cls.baseline_cpu_percent}% CPU baseline"
            return DatabaseClass(cls.name, cls.family, cls.vcpu, cls.memory_gib, cls.ebs_baseline_mbps, False,
                                 f"{why}: {need.reason}")
    largest = candidates[-1]
    raise SpecInvalid([SpecError(source_file, "workload",
                                 f"needs {need.vcpu:.1f} vCPU, {need.memory_gib:.0f} GiB and {need.write_mib_per_s:.0f} MiB/s of writes,"
                                 f" more than the largest class {largest.name} gives; expected a lighter workload"
                                 f" (fewer metrics per call or calls per minute) or one environment per team")])


# ---------------------------------------------------------------------------------------------
# Storage (gp3)
# ---------------------------------------------------------------------------------------------

GP3_MIN_GIB = 20
GP3_MAX_GIB = 65_536
# RDS gp3 below 400 GiB gives a fixed 3,000 IOPS / 125 MiB/s; from 400 GiB the baseline is
# 12,000 IOPS / 500 MiB/s and more can be provisioned (RDS user guide, "gp3 storage").
GP3_STRIPED_FROM_GIB = 400
GP3_SMALL_BASELINE = (3_000, 125)
GP3_STRIPED_BASELINE = (12_000, 500)
GP3_MAX = (64_000, 4_000)
# Allocate the first 30 days of growth (or the whole retention if shorter); storage autoscaling does
# the rest: RDS grows by at least 10% when free space falls under 10%, at most every 6 hours,
# which outpaces any daily growth the catalogue's classes can write.
INITIAL_GROWTH_DAYS = 30
FREE_SPACE_HEADROOM = 1.25  # keep 20% free: autovacuum, index builds and WAL need room
AUTOSCALING_HEADROOM = 1.5  # the ceiling is 1.5x the data at retention
IO_HEADROOM = 2.0           # checkpoints and autovacuum double the steady write I/O
IO_BYTES = 16 * 1024        # PostgreSQL writes 8 KiB pages; EBS merges sequential WAL into larger I/Os


@dataclass(frozen=True)
class StoragePlan:
    allocated_gib: int
    max_allocated_gib: int
    iops: int
    throughput_mibps: int
    iops_provisioned: bool
    needed_iops: int
    needed_mibps: int
    reason: str


def storage_need(d: Demand) -> tuple[int, int]:
    """Write IOPS and MiB/s the volume must sustain: twice the steady writes (checkpoints, autovacuum)."""
    need_iops = math.ceil((d.write_requests_per_s + d.write_bytes_per_s * WRITE_AMPLIFICATION / IO_BYTES) * IO_HEADROOM)
    need_mibps = math.ceil(d.write_bytes_per_s * WRITE_AMPLIFICATION / 1024**2 * IO_HEADROOM)
    return need_iops, need_mibps


def plan_storage(d: Demand, retention_days: int, override_gib: int | None, override_max_gib: int | None,
                 source_file: str) -> StoragePlan:
    need_iops, need_mibps = storage_need(d)
    early = d.storage_growth_gib_per_day * min(INITIAL_GROWTH_DAYS, retention_days)
    allocated = max(GP3_MIN_GIB, math.ceil(early * FREE_SPACE_HEADROOM))
    why = f"{d.storage_growth_gib_per_day:.2f} GiB/day; {min(INITIAL_GROWTH_DAYS, retention_days)} days of growth + 25% free"
    needs_more_io = need_iops > GP3_SMALL_BASELINE[0] or need_mibps > GP3_SMALL_BASELINE[1]
    if needs_more_io and allocated < GP3_STRIPED_FROM_GIB:
        allocated = GP3_STRIPED_FROM_GIB
        why += f"; raised to {GP3_STRIPED_FROM_GIB} GiB because gp3 gives more than 3,000 IOPS / 125 MiB/s only from there"
    if override_gib is not None:
        allocated = override_gib
        why = f"set in the environment file (database.storage_gib); planned: {why}"
    at_retention = math.ceil(d.storage_at_retention_gib * AUTOSCALING_HEADROOM)
    if at_retention > GP3_MAX_GIB:
        raise SpecInvalid([SpecError(source_file, "workload.retention_days",
                                     f"{retention_days} is not allowed for this workload; {d.storage_at_retention_gib:,.0f} GiB at retention"
                                     f" with 50% headroom ({at_retention:,} GiB) exceeds RDS's {GP3_MAX_GIB:,} GiB;"
                                     f" expected a shorter retention or fewer metric rows")])
    ceiling = override_max_gib if override_max_gib is not None else min(GP3_MAX_GIB, max(allocated * 2, at_retention))
    ceiling = max(ceiling, allocated)
    if allocated >= GP3_STRIPED_FROM_GIB:
        base_iops, base_mibps = GP3_STRIPED_BASELINE
        iops = min(GP3_MAX[0], max(base_iops, need_iops))
        mibps = min(GP3_MAX[1], max(base_mibps, need_mibps))
        provisioned = True
    else:
        iops, mibps = GP3_SMALL_BASELINE
        provisioned = False
    why += (f"; need {need_iops:,} IOPS and {need_mibps} MiB/s (2x steady writes) -> gp3 {iops:,} IOPS, {mibps} MiB/s;"
            f" autoscaling up to {ceiling:,} GiB ({d.storage_at_retention_gib:,.0f} GiB at retention x1.5)")
    return StoragePlan(allocated, ceiling, iops, mibps, provisioned, need_iops, need_mibps, why)


# ---------------------------------------------------------------------------------------------
# Read replicas
# ---------------------------------------------------------------------------------------------

# UI read requests/s one replica serves at 60% CPU, taking the smallest production replica
# (2 vCPU) as the unit, so the count depends on read load alone, never on the write-sized class.
def ui_reads_per_replica(k: Coefficients) -> float:
    return 2 * DB_TARGET_CPU / k.db_cpu_s_per_ui_read


MAX_AUTO_REPLICAS = 5
# Where isolation is not required (development), UI reads stay on the primary until they would
# take more than half a replica's worth of CPU from it.
READS_ON_PRIMARY_SHARE = 0.5


@dataclass(frozen=True)
class ReplicaPlan:
    count: int
    reason: str


def isolation_replicas(tier: str) -> int:
    # Production and staging put the UI on its own tier reading from a replica, so a UI query
    # storm never slows logging on the primary (README bottleneck 2); staging rehearses that.
    return 1 if tier in ("production", "staging") else 0


def ui_reads_on_primary(ui_read_requests_per_s: float, tier: str, replicas: int, k: Coefficients) -> float:
    """UI req/s the primary is sized for. Without a replica: all of them. Where isolation is not
    required, the primary keeps room for the reads it carried before a replica took them over,
    so adding a replica never shrinks the primary."""
    if replicas == 0:
        return ui_read_requests_per_s
    if isolation_replicas(tier):
        return 0.0
    return min(ui_read_requests_per_s, ui_reads_per_replica(k) * READS_ON_PRIMARY_SHARE)


def replicas_by_load(ui_read_requests_per_s: float, k: Coefficients) -> int:
    """Readers the UI's reads need, uncapped; none while the primary can keep them (READS_ON_PRIMARY_SHARE)."""
    per_replica = ui_reads_per_replica(k)
    return math.ceil(ui_read_requests_per_s / per_replica) if ui_read_requests_per_s > per_replica * READS_ON_PRIMARY_SHARE else 0


def plan_replicas(ui_read_requests_per_s: float, tier: str, override: int | None, k: Coefficients) -> ReplicaPlan:
    if override is not None:
        return ReplicaPlan(override, "set in the environment file (database.read_replicas)")
    isolation = isolation_replicas(tier)
    per_replica = ui_reads_per_replica(k)
    by_load = replicas_by_load(ui_read_requests_per_s, k)
    count = min(MAX_AUTO_REPLICAS, max(isolation, by_load))
    if count == 0:
        return ReplicaPlan(0, f"{tier}: the UI reads from the primary; {ui_read_requests_per_s:.1f} UI req/s is light")
    return ReplicaPlan(count, f"{ui_read_requests_per_s:.1f} UI req/s at {per_replica:.0f} per replica"
                              f" needs {by_load}; {tier} keeps UI reads off the primary (at least {isolation})")


# ---------------------------------------------------------------------------------------------
# Tracking fleets (API and UI, separately)
# ---------------------------------------------------------------------------------------------

# A worker holds the GIL while it parses JSON and runs the ORM; with two per vCPU one computes
# while the other waits on PostgreSQL.
WORKERS_PER_VCPU = 2
WORKER_MEMORY_GIB = 0.5    # an MLflow server worker's resident size under load, rounded up
SERVER_TARGET_CPU = 0.60   # scale out before the p99 climbs
BURST_FACTOR = 2.0         # sweeps start many jobs at once; autoscaling absorbs a doubling
DEFAULT_TASK_VCPU = {"api": 2, "ui": 1}
MIN_COUNT = {"production": 2, "staging": 2, "development": 1}


@dataclass(frozen=True)
class FleetPlan:
    role: str
    compute: str
    vcpu: float
    memory_gib: float
    workers: int
    min_count: int
    max_count: int
    requests_per_s_per_unit: float
    instance_type: str | None
    reason: str


def per_request_cpu(role: str, metrics_per_call: int, k: Coefficients) -> float:
    if role == "api":
        return k.server_cpu_s_per_logging_request + metrics_per_call * k.server_cpu_s_per_metric
    return k.server_cpu_s_per_ui_request


def fargate_memory(vcpu: float, need_gib: float) -> float:
    from ..spec.model import FARGATE_MEMORY_GIB

    for size in FARGATE_MEMORY_GIB[vcpu]:
        if size >= need_gib:
            return float(size)
    return float(FARGATE_MEMORY_GIB[vcpu][-1])


def ec2_instance_type(vcpu: float, memory_gib: float) -> dict:
    for row in catalogue.ec2_instance_types():
        if row["vcpu"] >= vcpu and row["memory_gib"] >= memory_gib:
            return row
    return catalogue.ec2_instance_types()[-1]


def plan_fleet(role: str, requests_per_s: float, metrics_per_call: int, tier: str, compute: str,
               override, k: Coefficients) -> FleetPlan:
    """Task (or instance) size, workers and autoscaling bounds for one tier of MLflow servers."""
    vcpu = override.vcpu if override.vcpu is not None else DEFAULT_TASK_VCPU[role]
    if compute == "ec2":
        vcpu = max(2, vcpu)  # the smallest instance type in the catalogue has 2 vCPU
    workers = override.workers if override.workers is not None else max(1, int(vcpu * WORKERS_PER_VCPU))
    memory_need = workers * WORKER_MEMORY_GIB + 1  # +1 GiB for the interpreter's shared pages and the OS
    instance_type = None
    if override.memory_gib is not None:
        memory = override.memory_gib
    elif compute == "ecs":
        memory = fargate_memory(vcpu, memory_need)
    else:
        memory = memory_need
    if compute == "ec2":
        row = ec2_instance_type(vcpu, memory)
        instance_type, vcpu, memory = row["name"], row["vcpu"], row["memory_gib"]
    cpu_per_request = per_request_cpu(role, metrics_per_call, k)
    usable_cpu = min(vcpu, workers)  # one worker process uses at most one core
    per_unit = usable_cpu * SERVER_TARGET_CPU / cpu_per_request
    needed = math.ceil(requests_per_s / per_unit) if requests_per_s > 0 else 0
    min_count = max(MIN_COUNT[tier], needed)
    max_count = max(min_count + 1, math.ceil(needed * BURST_FACTOR))
    if override.min_count is not None:
        min_count = override.min_count
    if override.max_count is not None:
        max_count = override.max_count
    max_count = max(max_count, min_count)
    unit = "instances" if compute == "ec2" else "tasks"
    reason = (f"{requests_per_s:.1f} req/s at {cpu_per_request * 1000:.1f} ms CPU each; one {vcpu:g} vCPU"
              f" unit serves {per_unit:.0f} req/s at {SERVER_TARGET_CPU:.0%} CPU -> {needed} {unit};"
              f" {tier} keeps at least {MIN_COUNT[tier]}, autoscaling to x{BURST_FACTOR:g} for job bursts")
    return FleetPlan(role, compute, float(vcpu), float(memory), workers, min_count, max_count,
                     per_unit, instance_type, reason)


def spread_over_replicas(fleet: FleetPlan, replicas: int) -> FleetPlan:
    """The UI fleet as one service per read replica, each reading its own: min and max rounded up to
    a multiple of the replicas with at least one task each, so every replica is read and losing one
    leaves the other services' tasks serving. Unchanged without replicas (the UI reads the primary)."""
    if replicas <= 1:
        return fleet
    per_min, per_max = math.ceil(fleet.min_count / replicas), math.ceil(fleet.max_count / replicas)
    per_min = max(1, per_min)
    return dataclasses.replace(
        fleet, min_count=per_min * replicas, max_count=max(per_min, per_max) * replicas,
        reason=f"{fleet.reason}; one service per replica ({replicas}), {per_min}-{max(per_min, per_max)} tasks each")


def service_names(role: str, services: int) -> tuple[str, ...]:
    """Each service's name in a tier: `api`; `ui`, then `ui-2`, `ui-3`, ... for the UI services of
    further replicas (the first keeps the tier's name, so adding replicas renames nothing)."""
    return (role, *(f"{role}-{n}" for n in range(2, services + 1)))

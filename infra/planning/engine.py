"""The database engine: RDS for PostgreSQL with instance read replicas (the default for most teams),
or Aurora PostgreSQL once the workload outgrows them. Pure: each reason names the figure that
decided, and both engines' monthly database cost stand side by side (Aurora Standard and
I/O-Optimized against RDS with its replicas).

What tips the choice (environment file `database.engine: auto`):
- readers: past RDS_COMFORT_READERS instance replicas, each its own endpoint and UI service created
  and sized by hand; Aurora serves all readers behind one reader endpoint and adds them by itself;
- storage: write I/O or data beyond half of what gp3 gives at most (the same headroom the class
  choice keeps on EBS bandwidth);
- failover: a `database.max_failover_seconds` below RDS Multi-AZ's documented 60-120 s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from . import catalogue
from .catalogue import InstanceClass
from .cost import rds_storage_monthly
from .sizing import EBS_HEADROOM, GP3_MAX, GP3_MAX_GIB, DatabaseClass, StoragePlan

# "Failover times are typically 60-120 seconds" (RDS user guide, Concepts.MultiAZ.Failover.html);
# Aurora with a reader: "Failover typically completes within 30 seconds" (Amazon Aurora FAQs).
RDS_FAILOVER_S = 120
AURORA_FAILOVER_S = 30
RDS_COMFORT_READERS = 2
# Aurora bills a write I/O per 4 KB of log written ("Planning I/O in Amazon Aurora", AWS Database
# Blog); reads are page reads that miss the cache, which the class is sized to hold the hot set in.
AURORA_WRITE_IO_BYTES = 4096
# Aurora bills storage as used, at least 10 GiB ("Amazon Aurora storage")
AURORA_MIN_BILLED_GIB = 10
# Reader autoscaling reaches twice the readers the UI needs (job sweeps and dashboards come in bursts).
READER_BURST_FACTOR = 2.0


@dataclass(frozen=True)
class EngineCosts:
    """Monthly database cost (instances, storage, I/O) of each engine for this workload, USD."""

    rds: float
    aurora_standard: float
    aurora_io_optimized: float
    aurora_io_requests_per_month: float
    detail: str


@dataclass(frozen=True)
class EngineDecision:
    engine: str                  # "rds" | "aurora"
    requested: str               # the environment file's database.engine
    aurora_storage_type: str     # "aurora-iopt1" (I/O-Optimized) or "" (Standard; RDS ignores it)
    aurora_instance_class: str   # the class an Aurora writer and its readers run on
    readers_min: int             # Aurora readers (autoscaling bounds); RDS keeps the replica plan's count
    readers_max: int
    triggers: tuple[str, ...]    # what, in this workload, outgrows RDS with instance replicas
    costs: EngineCosts
    reason: str
    warnings: tuple[str, ...] = ()


def smallest_aurora_class(vcpu: float, memory_gib: float, burstable: bool) -> InstanceClass:
    """The smallest class Aurora offers with at least `vcpu` and `memory_gib`, burstable only when
    `burstable` (never onto CPU credits a class did not run on); the largest when none has as much."""
    offered = [c for c in map(catalogue.instance_class, catalogue.aurora().classes) if burstable or not c.burstable]
    fitting = [c for c in offered if c.vcpu >= vcpu and c.memory_gib >= memory_gib]
    return min(fitting or offered[-1:], key=lambda c: (c.vcpu, c.memory_gib))


def aurora_class(instance_class: InstanceClass) -> InstanceClass:
    """The class itself when Aurora offers it, else the smallest Aurora class with at least its vCPU
    and memory, burstable only for a burstable class (Aurora has no M classes and only the medium
    and large burstable ones)."""
    if instance_class.name in catalogue.aurora().classes:
        return instance_class
    return smallest_aurora_class(instance_class.vcpu, instance_class.memory_gib, instance_class.burstable)


def _runs_on(db: DatabaseClass, chosen: InstanceClass, why: str) -> DatabaseClass:
    """The planned class moved onto `chosen`, the move said in its reason."""
    return dataclasses.replace(db, instance_class=chosen.name, family=chosen.family, vcpu=chosen.vcpu,
                               memory_gib=chosen.memory_gib, ebs_baseline_mbps=chosen.ebs_baseline_mbps,
                               reason=f"{db.reason}; {why}")


def on_aurora(db: DatabaseClass) -> DatabaseClass:
    """The planned class as Aurora runs it: the same when Aurora offers it, else the nearest it offers."""
    chosen = aurora_class(catalogue.instance_class(db.instance_class))
    if chosen.name == db.instance_class:
        return db
    return _runs_on(db, chosen, f"Aurora offers no {db.instance_class}: {chosen.name}, the smallest it offers with"
                                " as many vCPU and as much memory")


def memory_optimized(db: DatabaseClass) -> DatabaseClass:
    """An Aurora Global Database requires memory-optimized classes: a burstable class becomes the
    smallest non-burstable class Aurora offers with at least its vCPU and memory."""
    if not catalogue.instance_class(db.instance_class).burstable:
        return db
    chosen = smallest_aurora_class(db.vcpu, db.memory_gib, burstable=False)
    return _runs_on(db, chosen, f"an Aurora Global Database requires memory-optimized classes: {chosen.name} instead of"
                                f" {db.instance_class}")


def aurora_readers(tier_minimum: int, by_load: int, multi_az: bool) -> tuple[int, int]:
    """Autoscaling bounds: at least the tier's isolation reader, the load's readers and, with
    multi-AZ, one failover target in another zone; at most twice the load, within Aurora's 15."""
    cap = catalogue.aurora().max_readers
    low = min(cap, max(tier_minimum, by_load, 1 if multi_az else 0))
    high = min(cap, max(low + 1 if low else 0, math.ceil(by_load * READER_BURST_FACTOR)))
    return low, max(low, high)


def triggers(*, readers_by_load: int, need_iops: int, need_mibps: int, storage_at_retention_gib: float,
             max_failover_s: int | None, global_database: bool = False) -> tuple[str, ...]:
    found = []
    if global_database:
        found.append("database.disaster_recovery global: a Global Database secondary in the second region is Aurora's")
    if readers_by_load > RDS_COMFORT_READERS:
        found.append(f"the UI's reads need {readers_by_load} readers: more than {RDS_COMFORT_READERS} instance replicas,"
                     " each its own endpoint and UI service; Aurora puts them behind one reader endpoint and autoscales them")
    if need_iops > GP3_MAX[0] * EBS_HEADROOM or need_mibps > GP3_MAX[1] * EBS_HEADROOM:
        found.append(f"writes need {need_iops:,} IOPS and {need_mibps:,} MiB/s, more than half of gp3's"
                     f" {GP3_MAX[0]:,} IOPS / {GP3_MAX[1]:,} MiB/s")
    if storage_at_retention_gib * 1.5 > GP3_MAX_GIB * EBS_HEADROOM:
        found.append(f"{storage_at_retention_gib:,.0f} GiB at retention (x1.5 headroom) is more than half of RDS's"
                     f" {GP3_MAX_GIB:,} GiB; Aurora's storage grows by itself to {catalogue.aurora().max_storage_gib:,} GiB")
    if max_failover_s is not None and max_failover_s < RDS_FAILOVER_S:
        found.append(f"database.max_failover_seconds {max_failover_s} is below RDS Multi-AZ's documented 60-{RDS_FAILOVER_S} s;"
                     f" Aurora fails over to a reader in about {AURORA_FAILOVER_S} s")
    return tuple(found)


def aurora_io_per_month(write_requests_per_s: float, wal_bytes_per_s: float, busy_hours_per_day: float) -> float:
    """Write I/Os a month: every commit writes at least one 4 KB unit, more when its log is larger."""
    per_s = max(write_requests_per_s, wal_bytes_per_s / AURORA_WRITE_IO_BYTES)
    return per_s * busy_hours_per_day * 3600 * 365 / 12


def aurora_standard_monthly(prices: dict, hours: float, instance_class: str, instances: int, data_gib: float,
                            io_per_month: float) -> float:
    """Aurora Standard for a month: the instances, the data stored (billed as used) and the I/O."""
    return (prices["aurora_instance_hourly"][instance_class] * hours * instances + data_gib * prices["aurora_storage_gib_month"]
            + io_per_month / 1e6 * prices["aurora_io_per_million"])


def engine_costs(*, prices: dict, hours: float, rds_class: str, multi_az: bool, replicas: int, storage: StoragePlan,
                 aurora_instance_class: str, aurora_instances: int, data_gib: float, io_per_month: float) -> EngineCosts:
    """RDS: the primary (twice with Multi-AZ), its replicas, gp3 on each; Aurora: writer and readers,
    the data it stores (billed as used) and, on Standard, its I/O."""
    copies = (2 if multi_az else 1) + replicas
    rds = prices["rds_instance_hourly"][rds_class] * hours * copies + rds_storage_monthly(prices, storage, copies)
    instance = prices["aurora_instance_hourly"][aurora_instance_class] * hours * aurora_instances
    standard = aurora_standard_monthly(prices, hours, aurora_instance_class, aurora_instances, data_gib, io_per_month)
    optimized = (instance * prices["aurora_io_optimized_instance_factor"]
                 + data_gib * prices["aurora_io_optimized_storage_gib_month"])
    detail = (f"RDS: {copies} x {rds_class}, {storage.allocated_gib:,} GiB gp3 each; Aurora: {aurora_instances} x"
              f" {aurora_instance_class}, {data_gib:,.0f} GiB stored, {io_per_month / 1e6:,.0f} million write I/Os a month")
    return EngineCosts(round(rds, 2), round(standard, 2), round(optimized, 2), round(io_per_month), detail)


def decide(requested: str, found: tuple[str, ...], costs: EngineCosts, aurora_instance_class: str,
           readers: tuple[int, int]) -> EngineDecision:
    """`auto` takes Aurora when something in `found` outgrows RDS; either way the cheaper Aurora
    storage configuration is named (I/O-Optimized pays off once I/O is about a quarter of the bill)."""
    optimized = costs.aurora_io_optimized < costs.aurora_standard
    storage_type = "aurora-iopt1" if optimized else ""
    aurora_cost = min(costs.aurora_standard, costs.aurora_io_optimized)
    side_by_side = (f"RDS ${costs.rds:,.0f}/month, Aurora Standard ${costs.aurora_standard:,.0f},"
                    f" I/O-Optimized ${costs.aurora_io_optimized:,.0f}")
    warnings: tuple[str, ...] = ()
    if requested == "auto":
        engine = "aurora" if found else "rds"
        why = ("; ".join(found) if found else
               f"RDS with instance replicas fits: at most {RDS_COMFORT_READERS} readers, writes and data within half of gp3,"
               " no failover requirement below RDS's")
    else:
        engine = requested
        why = "set in the environment file (database.engine)"
        if requested == "rds" and found:
            warnings = tuple(f"database.engine rds: {f}" for f in found)
            why += "; outgrown by: " + "; ".join(found)
        elif requested == "aurora" and not found:
            why += "; nothing in the workload requires it"
            if costs.rds < aurora_cost:
                why += f": RDS with instance replicas would cost ${aurora_cost - costs.rds:,.0f}/month less"
    if engine == "rds" and aurora_cost < costs.rds:
        why += (f"; Aurora {'I/O-Optimized' if optimized else 'Standard'} would cost ${costs.rds - aurora_cost:,.0f}/month less"
                " (a reader doubles as the failover target): database.engine aurora takes it")
    if engine == "aurora":
        why += (f"; {'I/O-Optimized' if optimized else 'Standard'} storage (the cheaper for this I/O),"
                f" {readers[0]}-{readers[1]} readers")
    return EngineDecision(engine, requested, storage_type, aurora_instance_class, readers[0], readers[1], found, costs,
                          f"{why} ({side_by_side})", warnings)

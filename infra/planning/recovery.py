"""Losing a region (`database.disaster_recovery`): what is copied to the second region, what a
recovery there loses (recovery point) and how long it takes (recovery time), as AWS documents them,
and what it costs a month. Pure; the README's runbook ("Losing a region") follows these texts.

- backups on RDS: RDS replicates the primary's automated backups (snapshots and transaction logs)
  to the second region; recovery is a point-in-time restore there.
- backups on Aurora: AWS Backup copies a daily snapshot of the cluster to the second region (Aurora
  has no automated backup replication); recovery is a restore of the last copy.
- global (Aurora only): an Aurora Global Database secondary cluster in the second region, replicated
  by Aurora's storage; recovery is a failover of the global database.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import aurora_standard_monthly

# "RDS uploads transaction logs for DB instances to Amazon S3 every 5 minutes" (RDS User Guide,
# USER_PIT.html); backup replication copies them to the second region as they are ready
# (USER_ReplicateBackups.html), with no copy delay AWS states.
RDS_LOG_UPLOAD_MINUTES = 5
AWS_BACKUP_COPY_HOURS = 24  # the daily snapshot and its copy
# Aurora Global Database: "RPO is typically measured in seconds" and "RTO can be in the order of
# minutes" (Aurora User Guide, aurora-global-database-disaster-recovery.html); replication "with
# latency typically under a second" (aurora-global-database.html).


@dataclass(frozen=True)
class RecoveryPlan:
    mode: str                      # none | backups | global
    secondary_region: str | None
    recovery_point: str
    recovery_time: str
    monthly_usd: float
    reason: str


def plan_recovery(*, mode: str, region: str, secondary_region: str | None, engine: str, named: bool, production: bool,
                  data_gib: float, growth_gib_per_month: float, instance_class: str, prices: dict,
                  hours: float, io_per_month: float, retention_days: int) -> RecoveryPlan:
    """The recovery plan of one environment. `named`: the file names the second region (else it is
    the region's recovery pair); `data_gib`: the database's first-month size, as the cost comparison."""
    if mode == "none":
        why = ("production without disaster recovery (database.disaster_recovery none): a region outage stops"
               " logging until the region returns" if production else "not production: no copy outside the region")
        return RecoveryPlan("none", None, "everything since the region was lost, until it returns",
                            "until the region returns", 0.0, why)
    where = secondary_region if named else f"{secondary_region} ({region}'s default pair; database.secondary_region names another)"
    transfer = growth_gib_per_month * prices["inter_region_transfer_gib"]
    if mode == "global":
        cost = aurora_standard_monthly(prices, hours, instance_class, 1, data_gib, io_per_month) + transfer
        return RecoveryPlan(
            "global", secondary_region, "typically seconds (Aurora replicates with latency typically under a second)",
            "minutes: a managed failover of the global database (AWS: in the order of minutes), then a copy-on-write"
            " clone of the promoted secondary and the servers in the second region (a `pulumi up`)",
            round(cost, 2),
            f"an Aurora Global Database secondary cluster in {where}: one {instance_class} reader the failover promotes;"
            " its storage and replicated writes are billed there")
    if engine == "aurora":
        # an upper bound: every daily copy counted in full, both stored for the retention and transferred
        cost = data_gib * retention_days * prices["aurora_backup_gib_month"] + data_gib * 30 * prices["inter_region_transfer_gib"]
        return RecoveryPlan(
            "backups", secondary_region, f"up to {AWS_BACKUP_COPY_HOURS} h: the last daily snapshot copied to the second region",
            "a restore of that snapshot into a new cluster (hours, growing with the data), then the servers in the second region",
            round(cost, 2),
            f"AWS Backup copies a daily snapshot of the cluster to {where} and keeps {retention_days} days of them"
            " (Aurora has no automated backup replication); the cost is an upper bound, each daily copy counted in full")
    cost = data_gib * prices["rds_backup_gib_month"] + transfer
    return RecoveryPlan(
        "backups", secondary_region,
        f"the last transaction log copied to the second region: RDS uploads them every {RDS_LOG_UPLOAD_MINUTES} minutes,"
        " and the copy adds a delay AWS does not state",
        "a point-in-time restore in the second region (growing with the data; AWS states no figure), then the servers there",
        round(cost, 2),
        f"RDS replicates the primary's automated backups (snapshots and transaction logs) to {where},"
        f" kept {retention_days} days: a point-in-time restore there after losing {region}")
